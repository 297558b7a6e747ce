"""Fixtures of the cluster tests: a fresh PostgreSQL database per test (dropped afterwards)
and a Cluster whose processes are reaped even when the test fails."""

from __future__ import annotations

import pytest

from tests.cluster.cluster import Cluster, Db, create_database, drop_database


@pytest.fixture
async def cluster_db(pg_server):
    url = await create_database(pg_server)
    try:
        yield url
    finally:
        await drop_database(pg_server, url)


@pytest.fixture
def make_cluster(cluster_db, tmp_path):
    made: list[Cluster] = []

    def make(env_extra: dict[str, str] | None = None) -> tuple[Cluster, Db]:
        c = Cluster(cluster_db, tmp_path / "sources.toml", tmp_path, dict(env_extra or {}))
        made.append(c)
        return c, Db(cluster_db)

    yield make
    for c in made:
        c.close()
