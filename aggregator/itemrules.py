"""A source's `keep` and `block` rules: which of its items become stories (pure).

A general feed mixes sections (sport, weather, "Live:" pages, podcasts, adverts), and every
item came in under the source's one category. An operator now says which to keep and which
to leave out, as Miniflux's feed rules do: a rule is a regular expression searched (not
anchored, case ignored) in each of the item's title, link, author and tags separately; a
match in any of them counts. An item is kept when it matches `keep` (if set) and does not
match `block` (if set). Not in the summary or body: a teaser's passing mention ("the
minister, speaking after the match, ...") would leave out a story about something else.

The rules are matched against the draft as `normalize` made it (entities decoded, tags
cleaned) and before any article page is read, so a left-out item costs no page fetch.

Rules are matched with the `regex` package, not `re`: same syntax (its version 0 is made to
match `re`'s), but a search can be given a time limit. A pattern that backtracks without end
("(a|aa)+$" against a long run of a's) would otherwise hold a parse worker, and every source
queued behind it, for hours: `re` has no timeout and a worker cannot be interrupted. A search
past `SEARCH_TIMEOUT_S` raises `RuleTooSlow`; the caller keeps the items (nothing is lost to
an operator's mistake) and says which rule to simplify. `regex` also spots many such patterns
itself ("(a+)+$" ends at once there, not in `re`).
"""

from __future__ import annotations

import functools

import regex

from aggregator.model import StoryDraft

MAX_RULE_CHARS = 500
# One search of one rule in one of an item's texts (bounded by normalize.MAX_*: a title of 300
# characters, tags of 80): a plain rule takes microseconds there, so this is only ever met by
# a pattern that backtracks without end.
SEARCH_TIMEOUT_S = 0.05


class RuleTooSlow(Exception):
    """A rule's search ran past `SEARCH_TIMEOUT_S`. `which` is "keep" or "block"."""

    def __init__(self, which: str, pattern: str):
        super().__init__(f"the {which} rule took over {SEARCH_TIMEOUT_S * 1000:.0f} ms on one "
                         f"item (it backtracks without end): {pattern!r}")
        self.which, self.pattern = which, pattern


def compile_rule(pattern: str) -> regex.Pattern[str]:
    """`pattern` compiled as a rule; ValueError saying why it cannot be one."""
    if not pattern:
        raise ValueError("must not be empty (leave the key out for no rule)")
    if len(pattern) > MAX_RULE_CHARS:
        raise ValueError(f"must be at most {MAX_RULE_CHARS} characters, got {len(pattern)}")
    try:
        return _compiled(pattern)
    except (regex.error, OverflowError, RecursionError) as e:  # OverflowError: "a{99999999999}"
        raise ValueError(f"is not a valid regular expression: {e}") from None


# Compiled once per process: a parse worker applies one source's rules to every item.
@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)


def rule_texts(draft: StoryDraft) -> list[str]:
    """What a rule is searched in: the title, the link as the feed gives it, the author and
    each tag (the empty ones left out)."""
    return [t for t in (draft.title, draft.original_url or draft.url, draft.author, *draft.tags) if t]


def admitted(draft: StoryDraft, keep: str, block: str) -> bool:
    """Whether `draft` passes the rules (each "" for none). Raises `RuleTooSlow` for a rule
    whose search ran past `SEARCH_TIMEOUT_S`."""
    if not keep and not block:
        return True
    texts = rule_texts(draft)
    if keep and not _found("keep", keep, texts):
        return False
    return not (block and _found("block", block, texts))


def _found(which: str, pattern: str, texts: list[str]) -> bool:
    rule = _compiled(pattern)
    try:
        return any(rule.search(t, timeout=SEARCH_TIMEOUT_S) for t in texts)
    except TimeoutError:
        raise RuleTooSlow(which, pattern) from None
