"""The API's HTTP/1.1 protocol: uvicorn's h11 one with deadlines for receiving a request and
for the client taking its answer.

uvicorn times a connection out only between requests (timeout_keep_alive, after a response):
one that sends nothing, or a request head a byte at a time, or a body that stops halfway, was
held for as long as the client liked (slowloris). Each costs the server a file descriptor, so
a few thousand such connections from one machine filled the process's limit and every other
caller, browsers loading the widget included, was refused. Here a request head must arrive
within REQUEST_HEAD_TIMEOUT_S of the connection (or of the previous response), and its body
within REQUEST_BODY_TIMEOUT_S of the head (after Apache's mod_reqtimeout, nginx's
client_header_timeout and client_body_timeout); past either the connection is closed.

The answer side had the same hole: a client that asks for a large answer (a reader's export,
a feed, a search) or pipelines requests, and then does not read, fills the socket's buffers;
the transport then pauses writing, the app's `send` waits for a drain that never comes, and
the connection, the app's task and up to the high-water mark of buffered answer were held for
good. Even a closed connection (keep-alive timeout, `Connection: close`) waits for its buffered
bytes to be taken before it lets go of the socket. So while bytes of an answer wait for the
peer, it must take some of them every RESPONSE_SEND_TIMEOUT_S (nginx's send_timeout), else the
connection is reset. The app then sees a disconnect, as when the client goes away. Nothing
here reads or decides HTTP: h11 and uvicorn do; this only watches the clock.

An app that raises, or returns without finishing, after its answer began is closed by uvicorn
itself (RequestResponseCycle.run_asgi closes the transport) with up to 64 KiB unsent: no
pause, no end of answer, no call into this protocol. So while an answer is under way the
connection's timer keeps looking every RESPONSE_SEND_TIMEOUT_S: its first look is at the
head deadline the connection had when the request came (a timer it had anyway), and a
request answered before then costs nothing more. Such a stall is cut within the head
timeout plus one to two send timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import socket
import struct
import termios

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# The head (request line and headers, at most api.app.MAX_REQUEST_HEAD_BYTES) is one packet
# from any real client; 20 s leaves room for a congested mobile link, as mod_reqtimeout's
# default (20 s, up to 40 while data flows) does.
REQUEST_HEAD_TIMEOUT_S = 20.0
# The largest body the API reads (2 MB, api.app.MAX_REQUEST_BODY_BYTES) within this, at 35 kB/s.
REQUEST_BODY_TIMEOUT_S = 60.0
# nginx's send_timeout default. Any byte taken counts, so only a peer that takes nothing for a
# minute is cut, however slow its link: TCP retransmits a lost segment within seconds (its
# back-off passes a minute only after some ten losses in a row, a link that is down), and a
# reader that stops reading to process what it has already got has taken the socket's buffers
# (hundreds of kB) in the meantime. Longer only lets each non-reading connection hold its file
# descriptor, task and up to 64 KiB of answer (uvicorn's high-water mark) longer. Progress is
# looked at when the deadline is due, so a stall is cut after one to two of these.
RESPONSE_SEND_TIMEOUT_S = 60.0

# SO_LINGER on, zero seconds: closing resets the connection (nginx's reset_timedout_connection).
# A plain close of a stalled connection leaves the unsent answer in the kernel, which keeps
# probing the peer's zero window with it for minutes after the descriptor is gone.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class Sending(enum.Enum):
    """Where an answer's unsent bytes stand at a look, for the write deadline."""

    IDLE = "idle"  # none wait for the peer, or the app is still writing: no verdict
    MOVING = "moving"  # the peer took some since the last look: the clock starts again
    STALLED = "stalled"  # it took none for a whole timeout: reset the connection


def sending(buffered: int, queued: int, queued_at_last_look: int, *,
            app_writing: bool) -> Sending:
    """The write deadline's decision at a look, from the bytes of answer in the transport's
    buffer (`buffered`) and those and the kernel's not yet acknowledged by the peer
    (`queued`). Progress is `queued` shrinking: only the peer's reads (its TCP window
    opening) let it shrink. The transport's buffer alone hid a slow reader: the kernel takes
    from it only once a third of the socket's send buffer is free, and with buffers grown to
    megabytes a reader of kilobytes a second was reset. While the app may still write
    (writing not paused, its answer not finished) the bytes can grow as the peer reads, so no
    verdict is given then; the app's next pause, or its answer's end, starts the clock again."""
    if buffered == 0 or app_writing:
        return Sending.IDLE
    if queued < queued_at_last_look:
        return Sending.MOVING
    return Sending.STALLED


def kernel_queued(sock) -> int:
    """Bytes the kernel holds for the peer on `sock` (sent and not acknowledged, or not sent
    yet: SIOCOUTQ, termios's TIOCOUTQ on Linux); 0 where it cannot tell (no socket, or a
    system without the request), which leaves the transport's buffer to judge progress."""
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, AttributeError, ValueError):  # closed, or no such request here
        return 0


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's H11Protocol, closing a connection whose request does not arrive in time, or
    whose peer stops taking its answer.

    A request moves a deadline (a float), not a timer: one timer per connection looks at it
    when it is due and sets itself again for the deadline then in force. A timer made and
    cancelled per request cost each cached answer a heap push and a cancelled handle. The
    write deadline shares that timer and is moved only when writing pauses or resumes, or an
    answer ends with bytes unsent: never per write."""

    head_timeout_s = REQUEST_HEAD_TIMEOUT_S
    body_timeout_s = REQUEST_BODY_TIMEOUT_S
    send_timeout_s = RESPONSE_SEND_TIMEOUT_S

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None  # loop time the client must have sent by
        self._awaiting_body = False
        self._send_deadline: float | None = None  # loop time the peer must have taken bytes by
        self._queued = 0  # bytes of answer not taken by the peer at the last look

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.get_write_buffer_size():
            # The answer is whole but not all sent: a peer that never takes the rest would
            # hold the connection, closed or kept alive, as long as it likes.
            self._await_peer()
        self._watch()  # the next request's head is timed from here (keep-alive, pipelining)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._await_peer()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._await_peer()  # the peer took bytes: its clock starts again

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = self._send_deadline = None
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
        self._arm()

    def _await_peer(self) -> None:
        """Start the write deadline's clock from the bytes buffered now."""
        if self.transport is None:
            return
        self._queued = self._unacknowledged()
        self._send_deadline = self.loop.time() + self.send_timeout_s
        self._arm()

    def _arm(self) -> None:
        """Have the timer due at the earliest deadline in force. A request's deadline no longer
        holds once the connection is closing; the write deadline does, since a closing
        transport keeps its socket until its buffer is sent."""
        # Plain comparisons, no list: this runs once per answer on the cached fast path.
        due = self._send_deadline
        if (self._deadline is not None and (due is None or self._deadline < due)
                and not self.transport.is_closing()):
            due = self._deadline
        if self._timer is not None and (due is None or self._timer.when() > due):
            # Set for a later deadline (a body's, before a response brought a head's)
            self._timer.cancel()
            self._timer = None
        if self._timer is None and due is not None:
            self._timer = self.loop.call_at(due, self._due)

    def _due(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        now = self.loop.time()
        answering = self.cycle is not None and not self.cycle.response_complete
        if self._send_deadline is not None and now >= self._send_deadline:
            app_writing = not self.flow.write_paused and not self.transport.is_closing() and answering
            state = sending(self.transport.get_write_buffer_size(), self._unacknowledged(),
                            self._queued, app_writing=app_writing)
            if state is Sending.STALLED:
                self._reset()
                return
            if state is Sending.MOVING or answering:
                self._await_peer()  # an answer under way: look again (see the module's doc)
            else:
                self._send_deadline = None
        elif self._send_deadline is None and answering:
            self._await_peer()
        if self._deadline is not None and now >= self._deadline and not self.transport.is_closing():
            self.transport.close()
        self._arm()  # a deadline moved since the timer was set: look again then

    def _unacknowledged(self) -> int:
        """The answer's bytes the peer has not taken: the transport's and the kernel's. Read
        only when the write deadline starts or looks, never per write."""
        return self.transport.get_write_buffer_size() + kernel_queued(
            self.transport.get_extra_info("socket"))

    def _reset(self) -> None:
        """Drop the connection and its unsent answer now; uvicorn tells the app the client
        went away (connection_lost)."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # already broken: abort frees it all the same
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        self.transport.abort()
