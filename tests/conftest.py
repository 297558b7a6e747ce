"""Shared fixtures: the third-party data folder, databases (SQLite file and real PostgreSQL),
the bundled model (loaded once per session), and settings for e2e runs.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
PG_ADMIN = os.environ.get("TIDINGS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party evaluation data not found at {SHARED_DATA}")
    return SHARED_DATA


def _pg_available() -> bool:
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(PG_ADMIN)
    try:
        with socket.create_connection((u.hostname, u.port or 5432), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_server() -> str:
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but not reachable at {PG_ADMIN}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}")
    return PG_ADMIN


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def pg_url(pg_server):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"tidings_t_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    base = pg_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request, tmp_path):
    """Each storage test runs on both engines: one contract, two backends."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"
        return
    pg = request.getfixturevalue("pg_server")
    name = f"tidings_t_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    base = pg.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def store(db_url):
    from aggregator.store import Store

    s = Store(db_url)
    await s.migrate()
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path):
    """A migrated store on a SQLite file, for what only SQLite does."""
    from aggregator.store import Store

    s = Store(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    await s.migrate()
    yield s
    await s.close()


@pytest.fixture(scope="session")
def minilm():
    """The real bundled model, loaded once per test session."""
    from recommender.embed import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder()
    emb.encode(["warm up"])
    return emb


@pytest.fixture(scope="session")
def ov_models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ov-models")


@pytest.fixture(scope="session")
def ov_path(ov_models_dir):
    """The OpenVINO int8 files of the bundled model, built once per session (~20 s)."""
    from recommender.openvino_embed import build_openvino_model

    return build_openvino_model(ov_models_dir / "minilm-int8-ov")


@pytest.fixture(scope="session")
def ov8(ov_path):
    """The embedder the product runs by default on these machines ("minilm-int8" on a CPU
    with VNNI: OpenVINO int8 of the bundled model). The quality tests measure it, not torch:
    it is what users get, and it embeds 3-4x faster (the suite's slowest tests)."""
    from recommender.openvino_embed import OpenVinoEmbedder

    emb = OpenVinoEmbedder(ov_path, threads=2)
    emb.encode(["warm up"])
    return emb


@pytest.fixture(scope="session")
def ov8_once(ov8):
    """`ov8` for the quality tests: each text embedded once per session (tests/embedcache.py),
    as they read the same corpora again. The tests of the embedder itself take `ov8`."""
    from tests.embedcache import OnceEmbedder

    return OnceEmbedder(ov8)


def pytest_collection_modifyitems(config, items):
    # Under pytest-xdist (`-n 2 --dist loadgroup`), the tests that run the model share one
    # worker: two of them side by side (2 model threads each on 2 cores) ran 3-4x slower.
    # Not with pytest 9.2, which undoes the grouping (see pyproject.toml).
    for item in items:
        if item.get_closest_marker("model"):
            item.add_marker(pytest.mark.xdist_group("model"))
