"""The key that category and source names are compared by. Pure string work, no I/O.

Callers name a section however they write it ("Politics", "POLITICS"), an operator may write
`category = "Politics"` in sources.toml, and an import line "politics": all are one section.
Every place that matches a name a user gives against stored names compares these keys: the
related filters, `/v1/stories`, trending, exports and a reader's follows and mutes. The store
keeps each story's keys beside its names (`stories.category_key`, `stories.source_key`), so
the SQL side compares keys on an index instead of wrapping the column in lower().
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=4096)  # asked per candidate of a filtered block or feed: a few names recur
def name_key(name: str) -> str:
    """`name` without surrounding space and case: Unicode case folding ("Straße" is
    "STRASSE") of the decomposed text, so a precomposed and a decomposed "é" are one letter
    (the canonical caseless match of Unicode 3.13, D145), kept composed (NFC). An operator's
    source slug (lower-case ASCII) is its own key. Idempotent (folded before decomposing,
    "İ" followed by a combining mark gave a key whose own key differed)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", name.strip()).casefold())
