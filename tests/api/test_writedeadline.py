"""The API's server resets connections whose peer stops taking its answer, and leaves alone
the ones that take it, however slowly (api/requestdeadline.py, the write deadline).

A real uvicorn server made by api.app.server_config, on loopback, with the write deadline cut
to half a second; a tiny ASGI app stands in for the API, whose routes are not the point. The
server's listening socket has a small send buffer and the clients a small receive buffer:
against a peer that does not read, loopback's send buffer grows to megabytes and would hide
the answer from the server's own buffer, which a real link fills much sooner.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time
from urllib.parse import parse_qs

import pytest

from api import requestdeadline
from tests.api.conftest import start_server

SEND_S = 0.5
# How long a test waits for the server to reset a connection: far past the deadline, so only
# a connection that is never reset fails it.
GIVE_UP_S = 10.0
SOCKET_BUFFER_BYTES = 4096
CHUNK_BYTES = 16 * 1024


def payload(n: int) -> bytes:
    return (b"0123456789abcdef" * (n // 16 + 1))[:n]


def make_app(finished: asyncio.Event):
    async def app(scope, receive, send):
        """GET /stream?n=: n bytes sent in 16 KiB messages, as the API streams an export or a
        feed, then `finished` is set (sent or not); GET /once?n=: n bytes in one message;
        GET /raise?n= and /unfinished?n=: half of the n bytes, then it raises or returns."""
        if scope["type"] != "http":
            return
        n = int(parse_qs(scope["query_string"].decode())["n"][0])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(n).encode())]})
        body = payload(n)
        if scope["path"] == "/once":
            await send({"type": "http.response.body", "body": body})
            return
        if scope["path"] in ("/raise", "/unfinished"):
            # Part of the answer, then the app fails, or returns as if it were done.
            await send({"type": "http.response.body", "body": body[:n // 2], "more_body": True})
            if scope["path"] == "/raise":
                raise RuntimeError("the app failed halfway through its answer")
            return
        for at in range(0, n, CHUNK_BYTES):
            await send({"type": "http.response.body", "body": body[at:at + CHUNK_BYTES],
                        "more_body": at + CHUNK_BYTES < n})
        finished.set()

    return app


@contextlib.asynccontextmanager
async def serving(monkeypatch, send_buffer_bytes: int):
    monkeypatch.setattr(requestdeadline.DeadlineH11Protocol, "send_timeout_s", SEND_S)
    listener = socket.socket()
    # Accepted connections inherit it; set explicitly, the kernel no longer grows it.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    listener.bind(("127.0.0.1", 0))
    finished = asyncio.Event()
    srv, task = await start_server(make_app(finished), listener.getsockname()[1], sock=listener)
    try:
        yield listener.getsockname()[1], finished
    finally:
        srv.should_exit = True
        await task
        listener.close()


@pytest.fixture
async def server(monkeypatch):
    async with serving(monkeypatch, SOCKET_BUFFER_BYTES) as served:
        yield served


def connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)  # before connect: the window
    sock.connect(("127.0.0.1", port))
    return sock


def reset_by_server(sock: socket.socket) -> bool:
    """Whether the server resets the connection within GIVE_UP_S, seen without reading: the
    unread answer would make it readable, a reset makes it hang up (reported whatever the mask)."""
    poller = select.poll()
    poller.register(sock, 0)
    events = poller.poll(GIVE_UP_S * 1000)
    return any(mask & (select.POLLHUP | select.POLLERR) for _, mask in events)


REQUESTS = {
    # Streamed: the app's task waits on the paused transport.
    "a large answer": b"GET /stream?n=4000000 HTTP/1.1\r\nHost: x\r\n\r\n",
    # Each small; together they fill the buffers, and the next answer waits.
    "pipelined answers": b"GET /once?n=16384 HTTP/1.1\r\nHost: x\r\n\r\n" * 200,
    # Under uvicorn's high-water mark, so writing never pauses; uvicorn closes the connection
    # after it, but a closing transport keeps its socket until its buffer is sent.
    "an answer, then close": b"GET /once?n=60000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
}


async def ask_without_reading(port: int, request_bytes: bytes) -> None:
    """Send the request, read nothing, and see the server reset the connection."""
    sock = await asyncio.to_thread(connect, port)
    try:
        sock.sendall(request_bytes)
        assert await asyncio.to_thread(reset_by_server, sock), (
            f"the server still held the connection after {GIVE_UP_S:g} s")
        with pytest.raises(ConnectionResetError):
            while sock.recv(1 << 16):
                pass
    finally:
        sock.close()


@pytest.mark.parametrize("request_bytes", REQUESTS.values(), ids=REQUESTS.keys())
async def test_a_client_that_does_not_read_its_answer_is_reset(server, request_bytes):
    port, finished = server
    await ask_without_reading(port, request_bytes)
    if b"/stream" in request_bytes:
        # The app saw the client go away: its task ended instead of waiting for a drain.
        async with asyncio.timeout(GIVE_UP_S):
            await finished.wait()


def read_slowly(port: int, request: bytes) -> bytes:
    """A reader on a slow link: 1 KiB every twentieth of the deadline (40 KiB/s), to the end.
    uvicorn resumes writing once 48 KiB are taken, which at this pace is more than a deadline
    apart: only counting every byte taken keeps it."""
    sock = connect(port)
    received = bytearray()
    try:
        sock.sendall(request)
        while chunk := sock.recv(1024):
            received += chunk
            select.select([], [], [], SEND_S / 20)  # a blocking pause in the client's thread
    finally:
        sock.close()
    return bytes(received)


async def test_a_slow_but_steady_reader_gets_the_whole_answer(server):
    port, _ = server
    n = 120_000  # several times the buffers between the app and the reader
    answer = await asyncio.to_thread(
        read_slowly, port, f"GET /stream?n={n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == payload(n)


def read_slowly_then_fast(port: int, n: int, slow_s: float) -> bytes:
    """A reader whose link slows down: 1 KiB every eighth of the deadline (8 KiB a deadline)
    for `slow_s`, then as fast as it can, to the end of an n-byte answer."""
    sock = connect(port)
    received = bytearray()
    slow_until = time.monotonic() + slow_s
    try:
        sock.sendall(f"GET /stream?n={n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        while chunk := sock.recv(1024):
            received += chunk
            if time.monotonic() < slow_until:
                select.select([], [], [], SEND_S / 8)
    finally:
        sock.close()
    return bytes(received)


async def test_a_slow_reader_behind_a_large_send_buffer_is_not_reset(monkeypatch):
    """The kernel takes bytes from the transport's buffer only once a third of the socket's
    send buffer is free: behind one of 2 MB (what Linux grows a fast link's to, here set)
    a reader of 8 KiB a deadline left the transport's buffer as it was for several
    deadlines, and was reset while it read. The bytes the kernel holds count too."""
    async with serving(monkeypatch, 1 << 20) as (port, _):
        n = 4_000_000  # past the 2 MB the kernel holds, so the transport's buffer fills too
        answer = await asyncio.to_thread(read_slowly_then_fast, port, n, 6 * SEND_S)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == payload(n)


def test_progress_is_the_bytes_the_peer_has_not_taken():
    """`sending` judges by the bytes not acknowledged (transport's and kernel's), not by the
    transport's buffer alone, which stays full while the kernel's drains."""
    assert requestdeadline.sending(70_000, 900_000, 1_000_000, app_writing=False) \
        is requestdeadline.Sending.MOVING
    assert requestdeadline.sending(70_000, 1_000_000, 1_000_000, app_writing=False) \
        is requestdeadline.Sending.STALLED
    assert requestdeadline.sending(0, 5_000, 5_000, app_writing=False) is requestdeadline.Sending.IDLE
    assert requestdeadline.sending(70_000, 1_000_000, 1_000_000, app_writing=True) \
        is requestdeadline.Sending.IDLE


def test_the_kernel_queue_of_a_closed_or_missing_socket_is_none():
    """After `connection_lost` the transport's socket is closed, or there is none: no error."""
    sock = socket.socket()
    sock.close()
    assert requestdeadline.kernel_queued(sock) == 0
    assert requestdeadline.kernel_queued(None) == 0


# Under uvicorn's high-water mark: writing never pauses, and the answer never completes.
BROKEN = {
    "the app raises halfway": b"GET /raise?n=120000 HTTP/1.1\r\nHost: x\r\n\r\n",
    "the app returns halfway": b"GET /unfinished?n=120000 HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", BROKEN.values(), ids=BROKEN.keys())
async def test_a_peer_that_does_not_read_an_answer_the_app_broke_off_is_reset(
        server, request_bytes, monkeypatch):
    """uvicorn closes the connection of an app that raises, or returns without finishing,
    after its answer began, with up to 64 KiB of it unsent: no pause, no end of answer, so
    no event started the write deadline's clock, and a peer that did not read held the
    connection for good. The connection's timer (due at the head deadline it had when the
    request came) looks at an answer under way and starts the clock then."""
    monkeypatch.setattr(requestdeadline.DeadlineH11Protocol, "head_timeout_s", SEND_S)
    port, _ = server
    await ask_without_reading(port, request_bytes)
