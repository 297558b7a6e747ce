"""`make test` runs on two pytest-xdist workers with `--dist loadgroup`: the tests that run the
model share one worker (tests/conftest.py). Nothing says so when the grouping stops working: pytest 9.2 with
pytest-xdist 3.8 dropped it silently (pytest-xdist#1386), and the model's tests ran side by
side, each 3-4x slower. This test says so."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.xdist_group("grouping-check")


def test_a_grouped_test_runs_in_its_group(request):
    if not os.environ.get("PYTEST_XDIST_WORKER") or not request.config.getoption("loadgroup", False):
        pytest.skip("only under pytest-xdist's --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@grouping-check"), (
        f"{request.node.nodeid}: pytest-xdist did not group it (pytest's version: "
        f"{pytest.__version__}; see pyproject.toml's pin)")
