"""A parse that takes as long as its body asks, for tests of the collector's parse time limit
(`[collect] parse_timeout_s`). A test puts `slow_parse` in place of
`aggregator.parsepool.parse_and_normalize`; a worker process imports it by name, so the
sleeping happens in the worker, where the limit applies."""

from __future__ import annotations

import re
import time
from pathlib import Path

from aggregator.parsepool import parse_and_normalize

# A body holding this parses after SLOW_PARSE_S, far past any limit a test sets.
SLOW_MARK = b"<!-- parse slowly -->"
SLOW_PARSE_S = 60.0
# A body holding `<!-- wait for PATH -->` makes PATH.started, then parses once PATH exists.
_WAIT = re.compile(rb"<!-- wait for (\S+) -->")


def slow_parse(body: bytes, *args):
    if SLOW_MARK in body:
        time.sleep(SLOW_PARSE_S)
    if m := _WAIT.search(body):
        flag = Path(m.group(1).decode())
        flag.with_suffix(".started").touch()
        while not flag.exists():
            time.sleep(0.01)
    return parse_and_normalize(body, *args)


def waiting_mark(flag: Path) -> bytes:
    return f"<!-- wait for {flag} -->".encode()


def marked(body: bytes, mark: bytes) -> bytes:
    """`body` (a feed) with `mark` just inside its <channel>."""
    return body.replace(b"<channel>", b"<channel>" + mark, 1)
