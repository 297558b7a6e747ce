"""Half-precision vector rows on disk: what the 8-bit indexes re-score with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommender.halfvectors import HalfVectors


def rows(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_rows_come_back_by_slot_in_half_precision(tmp_path: Path):
    store = HalfVectors(8, tmp_path)
    data = rows(10)
    store.append(data[:4])
    store.append(data[4:])
    assert len(store) == 10
    got = store.get(np.array([9, 0, 4, 4]))
    np.testing.assert_allclose(got, data[[9, 0, 4, 4]], rtol=1e-3, atol=1e-3)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(store.read_range(3, 7), store.get(np.arange(3, 7)))
    assert store.read_range(5, 5).shape == (0, 8)
    with pytest.raises(IndexError):
        store.get(np.array([10]))
    with pytest.raises(IndexError):
        store.read_range(8, 11)
    with pytest.raises(ValueError):
        store.append(rows(2, dim=7))
    assert not list(tmp_path.iterdir())  # the scratch file is unlinked


def test_saved_rows_load_private_or_read_only(tmp_path: Path):
    store = HalfVectors(8, tmp_path)
    data = rows(5)
    store.append(data)
    size, digest = store.save(tmp_path / "v.f16")
    assert size == 5 * 8 * 2 and len(digest) == 64
    copy = HalfVectors.load(tmp_path / "v.f16", 8, 5, read_only=False, scratch_dir=tmp_path)
    copy.append(rows(1, seed=1))  # appends go to the private copy, never to the saved file
    assert (tmp_path / "v.f16").stat().st_size == size
    np.testing.assert_array_equal(copy.get(np.arange(5)), store.get(np.arange(5)))
    mapped = HalfVectors.load(tmp_path / "v.f16", 8, 5, read_only=True)
    (tmp_path / "v.f16").unlink()  # a later save replaces the name: the open file still reads
    np.testing.assert_array_equal(mapped.get(np.array([3])), store.get(np.array([3])))
    with pytest.raises(ValueError):
        mapped.append(data)
    store.save(tmp_path / "w.f16")
    with pytest.raises(ValueError):
        HalfVectors.load(tmp_path / "w.f16", 8, 6, read_only=True)  # not the rows it claims
