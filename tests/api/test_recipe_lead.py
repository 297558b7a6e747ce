"""An API process whose embedder differs from the indexers' says so: at start in the log, and
while running in /healthz and /metrics. Its index would miss every story the indexers embedded."""

from __future__ import annotations

import logging

import httpx

from aggregator.settings import load_settings
from recommender.embed import HashingEmbedder
from tests.api.conftest import REPO


async def test_with_no_indexer_registered_healthz_and_metrics_agree(tmp_path):
    """On an empty database (or once the indexers stopped) /healthz said `recipe_current: null`
    while /metrics said `tidings_embedding_recipe_current 1`: nothing leads, so this process's
    recipe is current in both."""
    from api.app import create_app
    from api.services import build

    settings = load_settings(REPO / "config" / "tidings.toml", env={
        "TIDINGS_DATA_DIR": str(tmp_path), "TIDINGS_INDEX_EMBEDDER": "hash"})
    api = await build(settings, serve=True)
    try:
        transport = httpx.ASGITransport(app=create_app(api))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            r = await http.get("/healthz")
            metrics = (await http.get("/metrics")).text
        assert r.status_code == 200 and r.json()["recipe_current"] is True, r.json()
        assert "tidings_embedding_recipe_current 1.0" in metrics
    finally:
        await api.close()


async def test_an_api_of_another_recipe_says_so(tmp_path, caplog):
    from api.app import create_app
    from api.services import build

    settings = load_settings(REPO / "config" / "tidings.toml", env={
        "TIDINGS_DATA_DIR": str(tmp_path), "TIDINGS_INDEX_EMBEDDER": "hash"})
    indexers = await build(settings, index=True)  # the cluster's indexers embed with hash:64
    seat = await indexers.store.register_embedder("indexer-host:1", indexers.embedder.recipe,
                                                  lease_s=600)
    try:
        for dim, current in ((32, False), (64, True)):
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger="tidings"):
                api = await build(settings, serve=True, embedder=HashingEmbedder(dim))
            try:
                mismatch = [r for r in caplog.records if "api.recipe_mismatch" in r.getMessage()]
                assert bool(mismatch) is not current
                if mismatch:
                    assert "indexer-host:1" in mismatch[0].getMessage()
                transport = httpx.ASGITransport(app=create_app(api))
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    r = await http.get("/healthz")
                    metrics = (await http.get("/metrics")).text
                assert r.status_code == 200 and r.json()["recipe_current"] is current
                assert f"tidings_embedding_recipe_current {float(current)}" in metrics
            finally:
                await api.close()
    finally:
        await indexers.store.drop_embedder(seat.id)
        await indexers.close()
