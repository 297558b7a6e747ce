"""The widget's performance report (`GET /v1/stats`, `tidings stats`): the period asked for,
and the database's counts shaped into days, totals and rates. Pure: no I/O, no clock.

The store counts (aggregator.store.Store.widget_stats); this module only decides what the
operator sees: every day of the period (a day without events is a row of zeros, not a gap a
chart would bridge), and click-through rates that are null, not 0, without impressions (a
story clicked from a reader's app was never shown by the widget: no rate to speak of).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # light to import: `tidings --help` reads MAX_DAYS, without SQLAlchemy
    from aggregator.store import WidgetCounts

MAX_DAYS = 90  # the report's longest period, as the endpoint and the CLI accept it
CTR_DIGITS = 4  # clicks per impression to 0.01 %: finer is noise at widget volumes


def stats_period(now: datetime, days: int) -> tuple[datetime, datetime]:
    """[since, until) of a report over the last `days` UTC days, today (so far) included:
    whole days from midnight, so each day's row counts its whole day."""
    first = now.astimezone(UTC).date() - timedelta(days=days - 1)
    return datetime.combine(first, time(), tzinfo=UTC), now


def ctr(clicks: int, impressions: int) -> float | None:
    """The share of impressions clicked, rounded; None without impressions. At most 1: the
    widget counts a story once per page view but every click on it (a reader opening it in
    two tabs), and a reader's app sends clicks without impressions, so a story could show
    "1200.00%". The clicks themselves are reported whole beside it."""
    return round(min(clicks, impressions) / impressions, CTR_DIGITS) if impressions else None


def _days_of(since: datetime, until: datetime) -> list[date]:
    """The UTC days that [since, until) touches, in order."""
    first = since.astimezone(UTC).date()
    last = (until.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def stats_report(counts: WidgetCounts, since: datetime, until: datetime) -> dict:
    """The JSON answer of `GET /v1/stats` (and `tidings stats --json`)."""
    from api.cards import iso  # here: `tidings --help` imports this module for MAX_DAYS

    by_day = {d: (i, c, r) for d, i, c, r in counts.days}
    days = []
    for day in _days_of(since, until):
        i, c, r = by_day.get(day.isoformat(), (0, 0, 0))
        days.append({"date": day.isoformat(), "impressions": i, "clicks": c, "reads": r,
                     "ctr": ctr(c, i)})
    # From the days, which hold every event of the period (the sites, stories and pages are
    # cut to their top few).
    ti, tc, tr = (sum(d[k] for d in days) for k in ("impressions", "clicks", "reads"))
    return {
        "since": iso(since.astimezone(UTC)),
        "until": iso(until.astimezone(UTC)),
        "days": days,
        "total": {"impressions": ti, "clicks": tc, "reads": tr, "ctr": ctr(tc, ti)},
        "sites": [{"site": site, "impressions": i, "clicks": c, "ctr": ctr(c, i)}
                  for site, i, c in counts.sites],
        "stories": [{"id": s.id, "title": s.title, "url": s.url, "site": s.site,
                     "impressions": s.impressions, "clicks": s.clicks,
                     "ctr": ctr(s.clicks, s.impressions)} for s in counts.stories],
        "pages": [{"page": page, "impressions": i, "clicks": c, "ctr": ctr(c, i)}
                  for page, i, c in counts.pages],
    }
