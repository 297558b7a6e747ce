"""The API fuzzed from its own OpenAPI document (schemathesis): no 5xx, responses as declared.

A live stack (real SQLite, FAISS, hashing embedder, BBC stories, uvicorn on loopback) runs on its
own event loop in a thread, because schemathesis drives the API with blocking `requests` calls
from a sync test. Every operation in /openapi.json gets a bounded number of generated requests,
valid and invalid ones (schemathesis' positive and negative modes), and each answer must pass
`not_a_server_error` and `response_schema_conformance` (the body matches the schema the app
declares for that status, where it declares one).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis import checks as st_checks  # noqa: E402

from tests.api.conftest import make_stack  # noqa: E402

EXAMPLES_PER_OPERATION = 30
FUZZ_CHECKS = [st_checks.not_a_server_error, st_checks.response_schema_conformance]


class ThreadedStack:
    """make_stack() on a private event loop in a daemon thread, so sync clients can call it."""

    def __init__(self, tmp: Path, shared_data: Path):
        self.tmp, self.shared_data = tmp, shared_data
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-stack", daemon=True)

    def start(self):
        self.thread.start()
        # No rate limits: the fuzzer sends far more than 60 URL lookups a minute, and a 429
        # would hide what the handler behind it does with the input.
        env = {"TIDINGS_API_RELATED_URL_PER_MINUTE": "0", "TIDINGS_API_EVENTS_PER_MINUTE": "0",
               "TIDINGS_API_RELATED_TEXT_PER_MINUTE": "0", "TIDINGS_API_RELATED_URL_READS_AT_ONCE": "0"}
        fut = asyncio.run_coroutine_threadsafe(
            make_stack(self.tmp, self.shared_data, limit=20, env=env), self.loop)
        self.stack, self.server, self.task = fut.result(timeout=180)
        return self.stack

    def stop(self) -> None:
        async def _stop():
            self.server.should_exit = True
            await self.task
            await self.stack.svc.close()
            await self.stack.site.close()

        try:
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory, shared_data):
    ts = ThreadedStack(tmp_path_factory.mktemp("fuzz"), shared_data)
    stack = ts.start()
    yield stack
    ts.stop()


@pytest.fixture(scope="module")
def api_schema(live_stack):
    return schemathesis.openapi.from_url(f"{live_stack.base_url}/openapi.json")


def fuzz_operation(operation, mode: GenerationMode, base_url: str, session) -> None:
    """Up to EXAMPLES_PER_OPERATION generated requests; raises on the first (shrunk) failure."""

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        case.call_and_validate(base_url=base_url, session=session, checks=FUZZ_CHECKS, timeout=30)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_from_its_openapi_document(api_schema, live_stack, mode):
    # One test per generation mode that walks every operation, so the operation list comes from
    # the live document (schemathesis' own pytest loader does not work with pytest 9 here).
    failures, tried = [], []
    session = requests.Session()  # keep-alive: the run is bounded by request count, not setup
    for result in api_schema.get_all_operations():
        operation = result.ok()
        tried.append(operation.label)
        t0 = time.perf_counter()
        try:
            fuzz_operation(operation, mode, live_stack.base_url, session)
        except Unsatisfiable:
            # Nothing to make invalid (no parameters, or only free-form strings): negative
            # mode has no case for this operation; positive mode always has one.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as e:  # a failing check: collect it, fuzz the other operations too
            failures.append(f"{operation.label}: {type(e).__name__}: {e}")
        print(f"{mode} {operation.label}: {time.perf_counter() - t0:.1f}s")
    assert len(tried) >= 8, tried
    assert not failures, "\n\n".join(failures)


def test_the_document_covers_the_public_operations(api_schema):
    """Guard against a vacuous fuzz run: the operations of DESIGN.md 4.3 are all in the document."""
    paths = set(api_schema.raw_schema["paths"])
    for p in ("/v1/stories", "/v1/stories/{id}", "/v1/stories/{id}/related",
              "/v1/related", "/v1/widget", "/v1/events", "/v1/sources", "/healthz"):
        assert p in paths


TEN_MB = 10 * 1024 * 1024


def _made(raw: str) -> str:
    """A cursor made by hand, in the API's encoding, holding what no page would give."""
    import base64

    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("method,path,kwargs", [
    ("GET", "/v1/stories/1/related", {"params": {"k": 10**9}}),
    ("GET", "/v1/related", {"params": {"url": "https://www.bbc.co.uk/news/x", "k": 10**9}}),
    ("GET", "/v1/widget", {"params": {"url": "https://www.bbc.co.uk/news/x", "k": -1}}),
    ("GET", "/v1/stories", {"params": {"limit": 10**9}}),
    ("GET", "/v1/stories/1/related", {"params": {"max_age_days": 1e308}}),
    ("GET", f"/v1/stories/{10**30}", {}),
    ("GET", f"/v1/stories/{2**63}/related", {}),
    ("GET", "/v1/related", {"params": {"url": "https://a.example/" + "x" * 100_000}}),
    ("GET", "/v1/stories", {"params": {"cursor": "c" * 100_000}}),
    ("GET", "/v1/stories", {"params": {"source": "s" * 100_000}}),
    ("GET", "/v1/stories", {"params": {"cursor": _made('["2026-01-01T00:00:00+00:00", 1e30]')}}),
    ("GET", "/v1/stories", {"params": {"cursor": _made(f'["2026-01-01T00:00:00+00:00", {10**30}]')}}),
    ("GET", "/v1/stories", {"params": {"cursor": _made('["9999-12-31T23:59:59-23:59", 1]')}}),
    ("GET", "/v1/readers/r1/feed", {"params": {"cursor": _made(f"f1:0:{10**20}")}}),
    ("POST", "/v1/related", {"json": {"title": "t", "text": "y" * TEN_MB}}),
    ("POST", "/v1/related", {"json": {"title": "t" * TEN_MB}}),
    ("POST", "/v1/related", {"json": {"title": "t", "k": 10**9}}),
    # a lone surrogate: valid JSON, not text (the tokenizer raised a TypeError: a 500)
    ("POST", "/v1/related", {"data": b'{"title": "t \\ud800", "text": "x"}',
                             "headers": {"Content-Type": "application/json"}}),
    ("POST", "/v1/events", {"json": {"reader": "r", "story_id": 1, "type": "click",
                                     "pad": "z" * TEN_MB}}),
    ("POST", "/v1/events", {"json": {"reader": "r", "story_id": 2**64, "type": "click"}}),
    ("POST", "/v1/events", {"json": {"reader": "r", "url": "http://[::1", "type": "click"}}),
    ("POST", "/v1/events", {"json": {"reader": "r", "url": "https://e.org:99999/", "type": "click"}}),
    ("POST", "/v1/events", {"json": {"events": [{"reader": "r", "story_id": 1, "type": "click"}]
                                     * 10_000}}),
])
def test_oversized_bodies_and_absurd_parameters_are_4xx(live_stack, method, path, kwargs):
    r = requests.request(method, live_stack.base_url + path, timeout=60, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["error"]["code"] and r.json()["error"]["message"]


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("path", ["/v1/related", "/v1/events"])
def test_bodies_over_the_cap_are_refused_with_413(live_stack, path, chunked):
    from api.app import MAX_REQUEST_BODY_BYTES

    body = b'{"title": "t", "text": "' + b"y" * (MAX_REQUEST_BODY_BYTES + 10) + b'"}'

    def chunks():  # no Content-Length: requests sends Transfer-Encoding: chunked
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = requests.post(live_stack.base_url + path, data=chunks() if chunked else body, timeout=60,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert r.json()["error"]["code"] == "too_large"



def test_a_long_request_line_sent_in_pieces_gets_the_api_error(live_stack):
    """A 100 kB URL arriving in 4 kB pieces (as on a loaded machine) used to trip the HTTP
    server's own 16 KiB head limit: a plain-text 400 and a reset instead of the API's 422."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(live_stack.base_url)
    head = (f"GET /v1/related?url=https%3A%2F%2Fa.example%2F{'x' * 100_000} HTTP/1.1\r\n"
            f"Host: {where.netloc}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
        for i in range(0, len(head), 4096):
            sock.sendall(head[i:i + 4096])
            time.sleep(0.002)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 422"), answer[:200]
    assert json.loads(body)["error"]["code"] == "invalid_request"
