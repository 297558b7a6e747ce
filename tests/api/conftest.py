"""A running API on loopback over a real SQLite database and the real index.

The stack holds BBC politics and entertainment stories, embedded with the hashing embedder
(plumbing tests; quality tests use the real model in tests/recommender). A LocalSite serves
article pages that callers ask about by URL; its host is in `api.fetch_allow_hosts`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from aggregator.importer import LineError, read_jsonl
from aggregator.model import StoryDraft
from aggregator.settings import load_settings
from aggregator.store import utcnow
from tests.datasets import bbc_records
from tests.localsite import LocalSite, LoopbackResolver

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    base_url: str
    svc: object
    site: LocalSite
    records: list[dict]
    app: object

    async def events_written(self) -> None:
        """Wait until the events answered 202 so far are written: the sink writes them in the
        background, a batch every `flush_s` (0.2 s), later on a loaded machine, where a fixed
        sleep "past the flush" could end first."""
        await self.app.state.events.settle()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_server(app, port: int, sock: socket.socket | None = None):
    """Serve `app` on 127.0.0.1:port, or on `sock`, a listening socket made by the test (its
    accepted connections inherit its options, such as buffer sizes)."""
    import uvicorn

    from api.app import server_config

    server = uvicorn.Server(server_config(app, "127.0.0.1", port, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    return server, task


async def make_stack(tmp: Path, shared_data: Path, *, embedder=None, limit=60, env=None,
                     extra_drafts: Sequence[StoryDraft] = (), wrap_app=None):
    """Build and serve a stack; `extra_drafts` are stored with the BBC stories before indexing
    (a draft with a BBC story's URL replaces it: the last copy of a URL wins), and `wrap_app`
    (an ASGI app -> ASGI app) wraps the served app, e.g. to record requests or fake an outage.
    """
    from api.app import create_app
    from api.services import build

    site = LocalSite(shared_data)
    await site.start()
    settings = load_settings(REPO / "config" / "tidings.toml", env={
        "TIDINGS_DATA_DIR": str(tmp),
        "TIDINGS_INDEX_EMBEDDER": "hash",
        "TIDINGS_API_FETCH_ALLOW_HOSTS": "news.example",
        **(env or {}),
    })
    svc = await build(settings, serve=True, index=True, owner_of_files=True, embedder=embedder,
                      resolver_factory=lambda: LoopbackResolver(port=site.port))
    records = bbc_records(shared_data, limit=limit)
    import json

    drafts = [d for d in read_jsonl((json.dumps(r) for r in records), utcnow())
              if not isinstance(d, LineError)]
    await svc.store.upsert_stories([*drafts, *extra_drafts])
    await svc.corpus.start()
    await svc.indexer.drain()
    await svc.corpus.follow()
    port = free_port()
    app = create_app(svc)
    server, task = await start_server(wrap_app(app) if wrap_app else app, port)
    return Stack(f"http://127.0.0.1:{port}", svc, site, records, app), server, task


@pytest.fixture(scope="module")
async def stack(tmp_path_factory, shared_data):
    st, server, task = await make_stack(tmp_path_factory.mktemp("api"), shared_data)
    yield st
    await stop_stack(st, server, task)


async def stop_stack(st: Stack, server, task) -> None:
    """Undo `make_stack`: the server stopped, then the services and the article site closed."""
    server.should_exit = True
    await task
    await st.svc.close()
    await st.site.close()


@pytest.fixture
async def http(stack):
    import httpx

    async with httpx.AsyncClient(base_url=stack.base_url, timeout=20) as client:
        yield client
