"""The `[related]` settings reach the ranking: an operator who tunes them sees blocks change.

`freshness_half_life_h` was read by nothing (the ranking kept its own 3 days); the relevance
floor (`min_relevance`) is set there too, 0 filling every block."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import make_stack, stop_stack

# Forty-odd words (an article held to the floor) about nothing the stack's BBC stories carry.
TITLE = "Orchard growers report a record apricot harvest"
TEXT = ("Growers across the valley said the mild spring and a dry summer gave the largest "
        "apricot crop in a decade, with cooperatives adding night shifts at their packing "
        "sheds and exporters booking extra refrigerated containers for shipments overseas "
        "before the autumn rains arrive.")


@pytest.mark.parametrize(("floor", "full"), [("0", True), ("1.5", False)])
async def test_the_relevance_floor_is_the_operators_setting(tmp_path, shared_data, floor, full):
    st, server, task = await make_stack(tmp_path, shared_data, limit=20, env={
        "TIDINGS_RELATED_MIN_RELEVANCE": floor, "TIDINGS_RELATED_FRESHNESS_HALF_LIFE_H": "12"})
    try:
        params = st.svc.related.rank_params
        assert params.freshness_half_life_days == 0.5 and params.min_relevance == float(floor)
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            r = await http.post("/v1/related", json={"title": TITLE, "text": TEXT, "k": 5})
        assert r.status_code == 200, r.text
        # The hashing embedder is not on the model's scale: a floor no story reaches here.
        assert len(r.json()["related"]) == (5 if full else 0), r.json()["related"]
    finally:
        await stop_stack(st, server, task)
