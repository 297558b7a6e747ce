"""Where a fetch's new stories sit among stories of the same time: in the publisher's order.

Listings sort newest first by (sort_at, id), and a fetch's rows take ids in feed order. Items
of one time (a feed that dates all its items alike, or by the day only, or not at all: then
each takes the round's collection time) were therefore listed last item first, the reverse of
the feed, which lists newest first. Such items' sort times are set a microsecond apart
instead, the feed's first item latest, and above the stories already placed at that time: a
later round's new items are newer than those an earlier one stored. Nothing else moves:
`published_at` (what readers see) keeps the feed's time, stored rows keep theirs (a later
round does not reshuffle them), and no sort time is later than the collection time.

Not for an import: its lines are in no order known to be newest first.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

STEP = timedelta(microseconds=1)
# How far from a time the stories an earlier round placed there are looked for: the steps
# that round took above it. Far above what rounds of one day add up to (a microsecond an
# item), and small enough that a story truly a second later is never one of them.
NEAR = timedelta(milliseconds=10)
# Times looked up together in one range read of the source's stories (`spans`): a feed's new
# items are mostly of the last hours, so its stories read are about as many as its items; a
# fetch that also brings an item weeks old reads that item's neighbourhood apart.
SPAN_GAP = timedelta(hours=6)


def spans(times: Iterable[datetime], gap: timedelta = SPAN_GAP) -> Iterator[tuple[datetime, datetime]]:
    """The ranges [first - NEAR, last + NEAR) that cover `times`, one per run of times
    less than `gap` apart."""
    run: list[datetime] = []
    for t in sorted(times):
        if run and t - run[-1] >= gap:
            yield run[0] - NEAR, run[-1] + NEAR
            run = []
        run.append(t)
    if run:
        yield run[0] - NEAR, run[-1] + NEAR


def latest_near(times: Iterable[datetime], stored: Sequence[datetime]) -> dict[datetime, datetime]:
    """For each time, the latest of the sorted `stored` sort times within `NEAR` of it (the
    `placed` of `in_feed_order`); a time without one is left out."""
    out = {}
    for t in times:
        i = bisect_left(stored, t + NEAR) - 1  # the last stored time below t + NEAR
        if i >= 0 and stored[i] >= t - NEAR:
            out[t] = stored[i]
    return out


def in_feed_order(times: Sequence[datetime], placed: Mapping[datetime, datetime],
                  now: datetime) -> list[datetime]:
    """The sort times of a fetch's new items, given in feed order with their plain sort
    times (`store.sort_time`); `placed`: for a time, the latest sort time a stored story of
    the source has within `NEAR` of it (`latest_near`; a time without one is not in it; the
    store looks up times two items share and whole minutes). A time that no other item and no stored story shares is kept as it
    is: a new item alone at a stored story's time sorts above it by its higher id."""
    count = Counter(times)
    taken: Counter[datetime] = Counter()
    out = []
    for t in times:
        n, below = count[t], placed.get(t)
        if n == 1 and below is None:
            out.append(t)
            continue
        top = t if below is None else max(t, below + n * STEP)
        # Never later than collected (`sort_time`); at the collection time itself only
        # another source's undated items of this round can be there, in no order to keep.
        top = min(top, now)
        out.append(top - taken[t] * STEP)
        taken[t] += 1
    return out
