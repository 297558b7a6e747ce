"""Progress bars on a terminal, silence elsewhere (CI logs, pipes)."""

from __future__ import annotations

import sys
from collections.abc import Callable


class Progress:
    """A tqdm bar when stderr is a terminal; a no-op otherwise."""

    def __init__(self, desc: str, unit: str = "story", *, bytes_: bool = False):
        """`bytes_`: counts are bytes, shown scaled (kB, MB)."""
        self.bar = None
        # sys.stderr is None when the command was started with it closed (`2>&-`): an
        # AttributeError stopped `import` after its first line, exit 1.
        if sys.stderr is not None and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=desc, unit="B" if bytes_ else unit, unit_scale=bytes_,
                            unit_divisor=1024 if bytes_ else 1000, total=0, leave=True,
                            dynamic_ncols=True)

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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def callback(self) -> Callable[[int, int], None]:
        return self.update
