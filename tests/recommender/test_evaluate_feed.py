"""The MIND figures that FeedParams.skip_weight rests on (`tidings eval feed` prints them)."""

from __future__ import annotations

from recommender.evaluate_feed import load_impression_logs, skip_click_rates

ROWS = [
    # id, user, time, history, impressions
    ("1", "u1", "11/10/2019 9:00:00 AM", "N9", "N1-0 N2-0 N3-1 N9-0"),
    ("2", "u1", "11/11/2019 9:00:00 AM", "N9", "N1-1 N2-0 N3-0 N4-0"),
    ("3", "u1", "11/12/2019 9:00:00 AM", "N9", "N2-0 N5-1"),
    ("4", "u2", "11/12/2019 8:00:00 AM", "", "N1-1 N2-0"),
]


def test_skip_click_rates_count_earlier_unclicked_showings(tmp_path):
    """u1 passes over N1 and N2 on the first visit, clicks N1 on the second; N2 comes a third
    time. What the user clicked before (N3) or read before the log (N9, history) is left out.
    u2's impressions count for u2 only."""
    (tmp_path / "behaviors.tsv").write_text("".join("\t".join(r) + "\n" for r in ROWS))
    rates = skip_click_rates(load_impression_logs(tmp_path), top=2)
    cells = {name: {k: (c["clicks"], c["shown"]) for k, c in t.items()} for name, t in rates.items()}
    assert cells["all"] == {"0": (3, 7), "1": (1, 2), "2+": (0, 1)}
    # Rows 2 and 3 hold a repeat: their new stories are N4 (row 2) and N5 (row 3).
    assert cells["same_impressions"] == {"0": (1, 2), "1": (1, 2), "2+": (0, 1)}
    lo, hi = rates["all"]["2+"]["ci95"]
    assert lo == 0.0 and 0.5 < hi < 1.0  # one showing, no click: an interval, not a rate of 0


def test_mind_passed_over_stories_are_clicked_less(shared_data):
    """The figures FeedParams.skip_weight quotes: shown once before without a click, a story is
    clicked 18 times in 993, the new stories beside it 262 in 8,445; twice, 0 in 12."""
    import pytest

    data = shared_data / "mind-small-sample"
    if not data.is_dir():
        pytest.skip(f"MIND sample not found at {data}")
    same = skip_click_rates(load_impression_logs(data))["same_impressions"]
    got = {k: (c["clicks"], c["shown"]) for k, c in same.items()}
    assert got == {"0": (262, 8445), "1": (18, 993), "2": (0, 12)}
    # The first showing counts: 0.58x (over users, 95% 0.31-0.94: FeedParams.skip_weight).
    assert same["1"]["rate"] < 0.6 * same["0"]["rate"]
