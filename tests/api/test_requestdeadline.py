"""The API's server closes connections whose request does not arrive in time (slowloris), and
leaves alone the ones that send theirs, however long the app then takes to answer.

A real uvicorn server made by api.app.server_config, on loopback, with the deadlines cut to a
fraction of a second; a tiny ASGI app stands in for the API, whose routes are not the point.
"""

from __future__ import annotations

import asyncio

import pytest

from api import requestdeadline
from tests.api.conftest import free_port, start_server

HEAD_S = 0.3
BODY_S = 0.6
# How long a test waits for the server to close a connection: far past the deadlines, so only
# a connection that is never closed fails it.
GIVE_UP_S = 10.0


async def slow_app(scope, receive, send):
    """Reads the whole body, takes longer than both deadlines to answer, then says how much
    it read; a client gone before the body ended gets nothing."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await asyncio.sleep(HEAD_S + BODY_S)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server(monkeypatch):
    monkeypatch.setattr(requestdeadline.DeadlineH11Protocol, "head_timeout_s", HEAD_S)
    monkeypatch.setattr(requestdeadline.DeadlineH11Protocol, "body_timeout_s", BODY_S)
    port = free_port()
    srv, task = await start_server(slow_app, port)
    yield port
    srv.should_exit = True
    await task


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing the connection; fails if it never closes it."""
    try:
        async with asyncio.timeout(GIVE_UP_S):
            return await reader.read()
    except TimeoutError:
        pytest.fail(f"the server still held the connection after {GIVE_UP_S:g} s")


async def test_a_connection_that_sends_nothing_is_closed(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_a_head_sent_a_byte_at_a_time_is_closed(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)

    async def dribble():
        # Each byte well within the deadline: only a deadline for the whole head stops it.
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 1000:
            if writer.is_closing():
                return
            writer.write(bytes([byte]))
            await asyncio.sleep(HEAD_S / 10)

    dribbling = asyncio.create_task(dribble())
    assert await closed_by_server(reader) == b""
    dribbling.cancel()
    writer.close()


async def test_a_body_that_stops_halfway_is_closed(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"a" * 50)
    assert await closed_by_server(reader) == b""
    writer.close()


async def test_requests_sent_in_time_are_answered_however_long_the_app_takes(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    # A body in two parts, within its deadline; the app answers after both deadlines.
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcde")
    await asyncio.sleep(BODY_S / 3)
    writer.write(b"fghij")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert await reader.readexactly(2) == b"10"
    # The same connection takes the next request: its head is timed from the answer.
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n0")
    writer.close()
