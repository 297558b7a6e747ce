"""Reader profiles: several interests when the reader has several, decay, sessions, bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.profile import (
    Event,
    ProfileParams,
    build_profile,
    event_weight,
    vectors_from_index,
)
from recommender.vindex import BruteForceIndex

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
DIM = 32


def _topic_vectors(seed: int = 0):
    """Two unrelated topics; stories are noisy copies of their topic's direction."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((2, DIM))
    table = {}
    meta = {}
    for sid in range(20):
        t = 0 if sid < 10 else 1
        v = topics[t] + 0.3 * rng.standard_normal(DIM)
        table[sid] = (v / np.linalg.norm(v)).astype(np.float32)
        meta[sid] = ("politics" if t == 0 else "music", f"src{sid % 3}")
    return table, meta, topics


def _lookup(table):
    return lambda ids: np.stack([table[i] for i in ids]) if ids else np.zeros((0, DIM))


def test_two_clear_interests_give_two_vectors_weighted_by_reading():
    table, meta, topics = _topic_vectors()
    events = [Event("r", sid, "read", NOW - timedelta(hours=sid + 1)) for sid in (0, 1, 2, 3)]
    events += [Event("r", sid, "read", NOW - timedelta(hours=sid)) for sid in (10, 11)]
    p = build_profile("r", events, _lookup(table), meta, now=NOW, half_life_days=1000)
    assert len(p.interests) == 2
    first, second = p.interests
    # Each interest points at its own topic, not at the average between them.
    t0 = topics[0] / np.linalg.norm(topics[0])
    t1 = topics[1] / np.linalg.norm(topics[1])
    assert float(first.vector @ t0) > 0.8 and float(second.vector @ t1) > 0.8
    assert abs(first.weight - 4 / 6) < 0.02 and abs(second.weight - 2 / 6) < 0.02
    assert first.anchor_story_id in (0, 1, 2, 3) and second.anchor_story_id in (10, 11)
    assert abs(p.category_affinity["politics"] - 4 / 6) < 0.02
    assert p.read == frozenset({0, 1, 2, 3, 10, 11})


def test_affinities_are_keyed_by_name_whatever_the_stored_spelling():
    """The collector keeps the operator's spelling and import the file's: a reader of
    "Politics" and "politics" stories had two halves of an affinity, and the feed, which looks
    a candidate up by its own spelling, lifted each by half as much."""
    table, meta, _ = _topic_vectors()
    spelled = {sid: (("Politics", "politics", " POLITICS ")[sid % 3] if cat == "politics" else cat,
                     "SRC0" if src == "src0" else src) for sid, (cat, src) in meta.items()}
    events = [Event("r", sid, "read", NOW - timedelta(hours=sid + 1)) for sid in (0, 1, 2, 3, 10, 11)]
    plain = build_profile("r", events, _lookup(table), meta, now=NOW)
    mixed = build_profile("r", events, _lookup(table), spelled, now=NOW)
    assert dict(mixed.category_affinity) == dict(plain.category_affinity)
    assert set(mixed.category_affinity) == {"politics", "music"}
    assert dict(mixed.source_affinity) == dict(plain.source_affinity)


def test_one_topic_is_one_interest():
    table, meta, _ = _topic_vectors(1)
    events = [Event("r", sid, "click", NOW - timedelta(days=1)) for sid in range(6)]
    p = build_profile("r", events, _lookup(table), meta, now=NOW)
    assert len(p.interests) == 1 and abs(p.interests[0].weight - 1.0) < 1e-9


def test_older_reads_weigh_less_by_half_life():
    table, meta, _ = _topic_vectors(2)
    half_life = 7.0
    events = [
        Event("r", 0, "read", NOW - timedelta(days=half_life)),  # one half-life ago
        Event("r", 10, "read", NOW),
    ]
    p = build_profile("r", events, _lookup(table), meta, now=NOW, half_life_days=half_life)
    weights = {it.anchor_story_id: it.weight for it in p.interests}
    assert abs(weights[10] - 2 / 3) < 1e-6 and abs(weights[0] - 1 / 3) < 1e-6
    assert p.category_affinity["music"] > p.category_affinity["politics"]


def test_event_strengths_and_what_is_ignored():
    table, meta, _ = _topic_vectors(3)
    assert event_weight(Event("r", 1, "impression", NOW)) == 0
    click = event_weight(Event("r", 1, "click", NOW))
    read = event_weight(Event("r", 1, "read", NOW))
    long_read = event_weight(Event("r", 1, "read", NOW, dwell_s=300))
    assert 0 < click < read < long_read
    events = [
        Event("r", 0, "impression", NOW - timedelta(hours=1)),
        Event("other", 1, "read", NOW - timedelta(hours=1)),  # someone else's
        Event("r", 2, "read", NOW + timedelta(hours=1)),  # after `now`: not known yet
    ]
    p = build_profile("r", events, _lookup(table), meta, now=NOW)
    assert p.is_cold and p.seen == frozenset({0}) and p.read == frozenset()


def test_stories_read_beyond_the_events_given_stay_read_but_shape_nothing():
    """The caller builds interests from the newest events only; older reads it passes as
    `read_ids` must still keep those stories out of the reader's feed."""
    table, meta, _ = _topic_vectors(6)
    events = [Event("r", sid, "read", NOW - timedelta(hours=1)) for sid in (10, 11)]
    p = build_profile("r", events, _lookup(table), meta, now=NOW, read_ids=[0, 1, 10])
    assert p.read == frozenset({0, 1, 10, 11}) and p.seen == p.read
    assert len(p.interests) == 1 and p.interests[0].anchor_story_id in (10, 11)
    assert set(p.category_affinity) == {"music"} and 0 not in p.history
    only_older = build_profile("r", [], _lookup(table), meta, now=NOW, read_ids=[0])
    assert only_older.is_cold and only_older.read == frozenset({0})


def test_session_vector_follows_recent_reads_only():
    table, meta, topics = _topic_vectors(4)
    events = [Event("r", sid, "read", NOW - timedelta(days=2, hours=sid)) for sid in range(5)]
    events += [Event("r", 12, "read", NOW - timedelta(minutes=10))]
    p = build_profile("r", events, _lookup(table), meta, now=NOW)
    assert p.session_vector is not None
    assert float(p.session_vector @ table[12]) > 0.99
    old = build_profile("r", events[:5], _lookup(table), meta, now=NOW)
    assert old.session_vector is None
    assert p.history[-1] == 12  # newest last


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    max_k=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_interests_bounded_and_weights_sum_to_one(n, max_k, seed):
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    table = {i: vecs[i] for i in range(n)}
    events = [
        Event("r", i, "read", NOW - timedelta(hours=int(rng.integers(0, 500)))) for i in range(n)
    ]
    p = build_profile(
        "r", events, _lookup(table), {}, now=NOW, max_interests=max_k, params=ProfileParams()
    )
    assert 1 <= len(p.interests) <= max_k
    assert abs(sum(it.weight for it in p.interests) - 1.0) < 1e-6
    assert all(abs(float(np.linalg.norm(it.vector)) - 1.0) < 1e-4 for it in p.interests)
    assert {it.anchor_story_id for it in p.interests} <= set(range(n))


def test_stories_missing_from_the_index_do_not_break_the_profile():
    table, meta, _ = _topic_vectors(5)
    index = BruteForceIndex(DIM)
    known = [0, 1, 2, 10]
    index.add(np.array(known, dtype=np.int64), np.stack([table[i] for i in known]))
    events = [Event("r", sid, "read", NOW - timedelta(hours=sid + 1)) for sid in (0, 1, 2, 10, 11)]
    p = build_profile("r", events, vectors_from_index(index), meta, now=NOW)
    assert p.read == frozenset({0, 1, 2, 10, 11})
    assert abs(sum(it.weight for it in p.interests) - 1.0) < 1e-6
    assert {it.anchor_story_id for it in p.interests} <= set(known)  # 11 has no vector
    assert 11 in p.history and "music" in p.category_affinity
