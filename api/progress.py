"""Progress bars on a terminal, silence elsewhere (CI logs, pipes)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

# The size a bar takes on a terminal that reports none (below).
FALLBACK_COLUMNS, FALLBACK_LINES = 80, 24


class Progress:
    """A tqdm bar when stderr is a terminal; a no-op otherwise."""

    def __init__(self, desc: str, unit: str = "story", *, bytes_: bool = False):
        """`bytes_`: counts are bytes, shown scaled (kB, MB)."""
        self.bar = None
        self._logs = contextlib.ExitStack()
        # sys.stderr is None when the command was started with it closed (`2>&-`): an
        # AttributeError stopped `import` after its first line, exit 1.
        if sys.stderr is not None and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, unit="B" if bytes_ else unit, unit_scale=bytes_,
                            unit_divisor=1024 if bytes_ else 1000, total=0, leave=True,
                            **_bar_size(sys.stderr))
            # Log lines too go above the bar while it runs: a rerun's `index.repaired` began
            # after the load bar's last drawing ("... 4737.70item/s]2026-12-07 ... INFO").
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._logs.enter_context(logging_redirect_tqdm())

    def update(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.total = max(total, done)
            self.bar.n = done
            self.bar.refresh()

    def step(self, n: int = 1) -> None:
        """`n` more done of a total not known (a pipe's lines, a round's sources): shown as a
        count and a rate. A total grown with the count showed 100% from the first line on."""
        if self.bar is not None:
            self.bar.update(n)

    def note(self, message: str) -> None:
        """A line for the operator on stderr (an import's bad line) while the bar runs: above
        the bar, which is drawn again below it. Printed as it is, the line began right after
        the bar's last drawing ("... 5.08MB/s]tidings: big.jsonl: line 1002: ...") and the
        next drawing left a stale bar behind it."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self._logs.close()  # the log's own handlers back

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def callback(self) -> Callable[[int, int], None]:
        return self.update


def _bar_size(stream) -> dict:
    """tqdm's size arguments for a terminal: its own size, followed as it is resized, when it
    reports one; a fixed 80x24 when it reports 0x0. A terminal whose size nobody set (`script`
    run without one, `docker run -t` or `ssh -t` before the first resize) says 0 lines, and
    tqdm draws no line at all below its last one: the bar was an empty line."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError, AttributeError):
        size = None
    if size is not None and size.columns > 0 and size.lines > 0:
        return {"dynamic_ncols": True}
    return {"ncols": FALLBACK_COLUMNS, "nrows": FALLBACK_LINES}
