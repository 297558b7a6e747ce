"""The API's HTTP/1.1 protocol: uvicorn's h11 one with deadlines for receiving a request.

uvicorn times a connection out only between requests (timeout_keep_alive, after a response):
one that sends nothing, or a request head a byte at a time, or a body that stops halfway, was
held for as long as the client liked (slowloris). Each costs the server a file descriptor, so
a few thousand such connections from one machine filled the process's limit and every other
caller, browsers loading the widget included, was refused. Here a request head must arrive
within REQUEST_HEAD_TIMEOUT_S of the connection (or of the previous response), and its body
within REQUEST_BODY_TIMEOUT_S of the head (after Apache's mod_reqtimeout, nginx's
client_header_timeout and client_body_timeout); past either the connection is closed. The app
then sees a disconnect, as when the client goes away. Nothing here reads or decides HTTP: h11
and uvicorn do; this only watches the clock.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# The head (request line and headers, at most api.app.MAX_REQUEST_HEAD_BYTES) is one packet
# from any real client; 20 s leaves room for a congested mobile link, as mod_reqtimeout's
# default (20 s, up to 40 while data flows) does.
REQUEST_HEAD_TIMEOUT_S = 20.0
# The largest body the API reads (2 MB, api.app.MAX_REQUEST_BODY_BYTES) within this, at 35 kB/s.
REQUEST_BODY_TIMEOUT_S = 60.0


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's H11Protocol, closing a connection whose request does not arrive in time."""

    head_timeout_s = REQUEST_HEAD_TIMEOUT_S
    body_timeout_s = REQUEST_BODY_TIMEOUT_S

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()  # the next request's head is timed from here (keep-alive, pipelining)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Set the clock by where the client is: waiting for a head, for a body, or done
        sending (the app has the request, and its answer is not the client's to hurry)."""
        state = self.conn.their_state
        if self.transport is None or self.transport.is_closing() or state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()
        elif state is h11.SEND_BODY and not self._awaiting_body:
            self._arm(self.body_timeout_s, awaiting_body=True)
        elif state is h11.IDLE and (self._deadline is None or self._awaiting_body):
            # A response just completed, or the connection is new; bytes of an unfinished head
            # do not move the deadline (a head sent a byte at a time is the attack).
            self._arm(self.head_timeout_s, awaiting_body=False)

    def _arm(self, timeout_s: float, *, awaiting_body: bool) -> None:
        self._disarm()
        self._awaiting_body = awaiting_body
        self._deadline = self.loop.call_later(timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting_body = False

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()
