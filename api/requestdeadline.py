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
    """uvicorn's H11Protocol, closing a connection whose request does not arrive in time.

    A request moves a deadline (a float), not a timer: one timer per connection looks at it
    when it is due and sets itself again for the deadline then in force. A timer made and
    cancelled per request cost each cached answer a heap push and a cancelled handle."""

    head_timeout_s = REQUEST_HEAD_TIMEOUT_S
    body_timeout_s = REQUEST_BODY_TIMEOUT_S

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop time the client must have sent by
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = None
        super().connection_lost(exc)

    def _watch(self) -> None:
        """Set the deadline by where the client is: waiting for a head, for a body, or done
        sending (the app has the request, and its answer is not the client's to hurry)."""
        state = self.conn.their_state
        if self.transport is None or self.transport.is_closing() or state not in (h11.IDLE, h11.SEND_BODY):
            self._deadline, self._awaiting_body = None, False
        elif state is h11.SEND_BODY and not self._awaiting_body:
            self._set(self.body_timeout_s, awaiting_body=True)
        elif state is h11.IDLE and (self._deadline is None or self._awaiting_body):
            # A response just completed, or the connection is new; bytes of an unfinished head
            # do not move the deadline (a head sent a byte at a time is the attack).
            self._set(self.head_timeout_s, awaiting_body=False)

    def _set(self, timeout_s: float, *, awaiting_body: bool) -> None:
        self._awaiting_body = awaiting_body
        self._deadline = self.loop.time() + timeout_s
        if self._timer is not None and self._timer.when() > self._deadline:
            # Set for a later deadline (a body's, before a response brought a head's)
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._due)

    def _due(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing() or self._deadline is None:
            return  # done sending: the next `_set` starts a timer again
        if self.loop.time() >= self._deadline:
            self.transport.close()
        else:  # moved by a later request: look again then
            self._timer = self.loop.call_at(self._deadline, self._due)
