"""Article pages read in a worker process, each within a time limit.

trafilatura has no time limit, and a page can take seconds of CPU (~7 s for 3 MB of
paragraphs; a crafted one, longer). Read in a thread, such a page could not be stopped: it
held the process's one page-reading thread (every caller's page and every full-text source
waited behind it) and, for the Python parts of the parse, the interpreter lock that the API's
event loop needs. A process can be stopped. `PageReader.read` hands a page to one worker
process and waits at most `timeout_s`; a page past it kills the worker (the next page starts a
new one) and fails as `PageTooSlow`, a ParseError: the caller's page is refused like any
unreadable page, a source's article keeps its feed text.

One thread uses a reader at a time (`extract._READER`): pages are read in turn, as before.
If no worker can be started at all, pages are read in the calling thread, without a limit.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from multiprocessing.connection import Connection

from aggregator.childproc import child_start, interrupts_held
from aggregator.errors import ParseError

log = logging.getLogger("tidings.pages")

# Past this, a page is given up (the worker killed). The 3 MB pages of the security tests take
# ~7 s on this machine kind; an ordinary article page, 0.05-0.3 s.
READ_TIMEOUT_S = 15.0
# A new worker imports trafilatura and reads one small page (~1-2 s); a machine that cannot
# start one in this long reads pages in its own thread instead.
START_TIMEOUT_S = 60.0
_WARM_PAGE = (b"<html><head><title>Warm</title></head><body><article><p>"
              + b"A paragraph long enough to be kept as the text of this page. " * 4
              + b"</p></article></body></html>")


class PageTooSlow(ParseError):
    pass


def _serve(conn: Connection, parent: int) -> None:
    """The worker: read each page sent, answer (True, Article) or (False, exception)."""
    child_start(parent)
    from aggregator.extract import extract_article

    extract_article(_WARM_PAGE, "http://warm.example/a")
    conn.send("ready")
    while True:
        try:
            html, url = conn.recv()
        except EOFError:  # the parent closed its end, or is gone
            return
        try:
            answer = (True, extract_article(html, url))
        except Exception as e:  # an unexpected error is a bug, reported to the parent as is
            answer = (False, e)
        try:
            conn.send(answer)
        except Exception as e:  # an exception that does not pickle
            conn.send((False, RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}; {e}")))


class PageReader:
    def __init__(self) -> None:
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._in_thread = False  # no worker could be started: read here
        os.register_at_fork(after_in_child=self._forget)

    def read(self, html: bytes, url: str, timeout_s: float = READ_TIMEOUT_S):
        """`extract_article(html, url)`, given up after `timeout_s` (PageTooSlow)."""
        from aggregator.extract import extract_article

        conn = None if self._in_thread else self._worker()
        if conn is None:
            return extract_article(html, url)
        try:
            conn.send((html, url))
            answered = conn.poll(timeout_s)
            ok, value = conn.recv() if answered else (False, None)
        except (EOFError, OSError) as e:  # the worker died on this page (a crash in libxml2)
            self.stop()
            raise ParseError(f"the page reader died reading this page: {type(e).__name__}") from e
        if not answered:
            self.stop()
            raise PageTooSlow(f"reading the page took over {timeout_s:g} s")
        if ok:
            return value
        raise value

    def stop(self) -> None:
        """Kill the worker; the next page starts a new one."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.kill()
            proc.join()

    def _worker(self) -> Connection | None:
        if self._proc is not None and self._proc.is_alive():
            return self._conn
        self.stop()
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(theirs, os.getpid()), name="tidings-pages",
                           daemon=True)
        try:
            with interrupts_held():
                proc.start()
            theirs.close()
            if ours.poll(START_TIMEOUT_S) and ours.recv() == "ready":
                self._proc, self._conn = proc, ours
                return ours
            failure = "it did not answer"
        except (OSError, EOFError, AssertionError) as e:  # AssertionError: a daemonic parent
            failure = f"{type(e).__name__}: {e}"
        log.warning("pages.worker_failed: reading pages in this process, without a time limit (%s)",
                    failure)
        if proc.pid is not None:
            proc.kill()
            proc.join()
        ours.close()
        self._in_thread = True
        return None

    def _forget(self) -> None:
        # A forked child does not own its parent's worker; it starts its own when it reads.
        self._proc = self._conn = None
