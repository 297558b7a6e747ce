"""The operator's `[[source]] weight`s as the API ranks with them.

One object shared by related blocks and feeds, replaced in place when the sources file (or,
on an API-only replica, the database) says otherwise: the feed service kept the dict it was
built with, so an edited weight changed related blocks but never feeds. `version` counts the
changes, so the block caches (keyed by it with the corpus version) drop blocks ranked with
the old weights instead of serving them until the next story arrives.

Looked up by the name's key, as the store files stories under a source (`source_key`): an import
line naming "BBC-Politics" is a story of the configured `bbc-politics`, counted, renamed and
purged with it, and its weight holds for it too (looked up by the exact name, a weight 0 left it
in blocks, searches and feeds).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from aggregator.names import name_key

# The weight that keeps a source's stories out of related blocks and feeds
# (config/sources.toml: "0 keeps its stories out"); a multiplier alone only sank them.
EXCLUDED = 0.0


class SourceWeights(Mapping[str, float]):
    def __init__(self, weights: Mapping[str, float] | None = None):
        self._weights = dict(weights or {})
        self._by_key = _keyed(self._weights)
        self.version = 0

    def __getitem__(self, source: str) -> float:
        return self._by_key[name_key(source)]

    def get(self, source: str, default: float | None = None) -> float | None:  # type: ignore[override]
        # Asked for every candidate of a block or feed: a dict lookup, not a raised KeyError.
        return self._by_key.get(name_key(source), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._weights)

    def __len__(self) -> int:
        return len(self._weights)

    @classmethod
    def of(cls, weights: SourceWeights | Mapping[str, float] | None) -> SourceWeights:
        """`weights` itself when shared already, else a new holder of them."""
        return weights if isinstance(weights, SourceWeights) else cls(weights)

    def replace(self, weights: Mapping[str, float]) -> bool:
        """Take the new weights; True when they differ (and `version` moved)."""
        new = dict(weights)
        if new == self._weights:
            return False
        self._weights, self._by_key = new, _keyed(new)
        self.version += 1
        return True

    def excluded(self, source: str) -> bool:
        return self.get(source, 1.0) <= EXCLUDED


def _keyed(weights: Mapping[str, float]) -> dict[str, float]:
    return {name_key(name): weight for name, weight in weights.items()}
