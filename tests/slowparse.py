"""A parse that takes as long as its body asks, or crashes its worker when asked, for tests of
the collector's parse time limit (`[collect] parse_timeout_s`) and of its crashed workers. A
test puts `slow_parse` in place of `aggregator.parsepool.parse_and_normalize`; a worker process
imports it by name, so the sleeping and the crashing happen in the worker."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import time
from pathlib import Path

from aggregator.parsepool import parse_and_normalize

# A body holding this parses after SLOW_PARSE_S, far past any limit a test sets.
SLOW_MARK = b"<!-- parse slowly -->"
SLOW_PARSE_S = 60.0
# A body holding `<!-- wait for PATH -->` makes PATH.started, then parses once PATH exists.
_WAIT = re.compile(rb"<!-- wait for (\S+) -->")
# A body holding this ends its worker as a segfault in lxml would (os._exit skips every
# handler); `<!-- crash once PATH -->`, only while PATH does not exist (it makes it).
CRASH_MARK = b"<!-- crash -->"
_CRASH_ONCE = re.compile(rb"<!-- crash once (\S+) -->")
# A body holding this is killed as the OOM killer would.
KILL_MARK = b"<!-- kill -->"


class ParsedInCollector(AssertionError):
    """A crashing body parsed in the test's own process: there it would end the test run."""


def slow_parse(body: bytes, *args):
    if SLOW_MARK in body:
        time.sleep(SLOW_PARSE_S)
    if _crashes(body):
        if multiprocessing.parent_process() is None:
            raise ParsedInCollector("a body that crashes its parser was parsed in the collector")
        if KILL_MARK in body:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(1)
    if m := _WAIT.search(body):
        flag = Path(m.group(1).decode())
        flag.with_suffix(".started").touch()
        while not flag.exists():
            time.sleep(0.01)
    return parse_and_normalize(body, *args)


def _crashes(body: bytes) -> bool:
    if m := _CRASH_ONCE.search(body):
        flag = Path(m.group(1).decode())
        if flag.exists():
            return False
        flag.touch()
        return True
    return CRASH_MARK in body or KILL_MARK in body


def waiting_mark(flag: Path) -> bytes:
    return f"<!-- wait for {flag} -->".encode()


def crash_once_mark(flag: Path) -> bytes:
    return f"<!-- crash once {flag} -->".encode()


def marked(body: bytes, mark: bytes) -> bytes:
    """`body` (a feed) with `mark` just inside its <channel>."""
    return body.replace(b"<channel>", b"<channel>" + mark, 1)
