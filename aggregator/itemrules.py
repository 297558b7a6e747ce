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

Python's `re` has no timeout. A rule is capped at `MAX_RULE_CHARS`, and the texts it
searches are bounded (`normalize.MAX_*`: a title of 300 characters, 20 tags of 80, ...), but a
pattern that backtracks catastrophically ("(a+)+$") can still stall a parse: rules should
stay plain words and alternations.
"""

from __future__ import annotations

import functools
import re

from aggregator.model import StoryDraft

MAX_RULE_CHARS = 500


def compile_rule(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled as a rule; ValueError saying why it cannot be one."""
    if not pattern:
        raise ValueError("must not be empty (leave the key out for no rule)")
    if len(pattern) > MAX_RULE_CHARS:
        raise ValueError(f"must be at most {MAX_RULE_CHARS} characters, got {len(pattern)}")
    try:
        return _compiled(pattern)
    except (re.error, OverflowError, RecursionError) as e:  # OverflowError: "a{99999999999}"
        raise ValueError(f"is not a valid regular expression: {e}") from None


# Compiled once per process: a parse worker applies one source's rules to every item.
@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def rule_texts(draft: StoryDraft) -> list[str]:
    """What a rule is searched in: the title, the link as the feed gives it, the author and
    each tag (the empty ones left out)."""
    return [t for t in (draft.title, draft.original_url or draft.url, draft.author, *draft.tags) if t]


def admitted(draft: StoryDraft, keep: str, block: str) -> bool:
    """Whether `draft` passes the rules (each "" for none)."""
    if not keep and not block:
        return True
    texts = rule_texts(draft)
    if keep and not any(_compiled(keep).search(t) for t in texts):
        return False
    return not (block and any(_compiled(block).search(t) for t in texts))
