"""Cards: the JSON shape of a story in every block, feed and listing (DESIGN.md 4.3)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from aggregator.model import Story
from recommender.blocks import Article, Block
from recommender.corpus import StoryMeta


class CardOut(BaseModel):
    """A card as the OpenAPI document states it (blocks, listings, feeds); tests/api/test_fuzz.py
    checks the bodies the API sends against it."""

    id: int | None
    url: str
    title: str
    summary: str | None
    site: str | None
    source: str | None
    category: str | None
    author: str | None
    image_url: str | None
    published_at: str | None
    tags: list[str] = []
    score: float | None
    reason: str


CARD_FIELDS = ("id", "url", "title", "summary", "site", "source", "category", "author",
               "image_url", "published_at", "tags", "score", "reason")


def iso(at: datetime | None) -> str | None:
    """A UTC time as every JSON answer writes it, `…Z`: the API's and the CLI's `--json`
    alike (`takedown list`, `retention` and `stats` wrote `…+00:00`, the API `…Z`)."""
    return at.isoformat().replace("+00:00", "Z") if at else None


def card(m: StoryMeta | Story | Article, *, score: float | None = None, reason: str = "") -> dict:
    published = m.published_at if isinstance(m, Article) else (m.published_at or m.collected_at)
    return {
        "id": m.id,
        "url": m.url,
        "title": m.title,
        "summary": m.summary,
        "site": m.site,
        "source": m.source,
        "category": m.category,
        "author": m.author,
        "image_url": m.image_url,
        "published_at": iso(published),
        "tags": list(m.tags),  # the publisher's topics: what a reader can mute (mute_topics)
        "score": round(score, 4) if score is not None else None,
        "reason": reason,
    }


def block_json(block: Block) -> dict:
    return {
        "article": card(block.article),
        "related": [card(m, score=r.score, reason=r.reason) for m, r in block.related],
        "took_ms": round(block.took_ms, 2),
    }


def search_json(query: str, block: Block) -> dict:
    """A search's answer: the query as searched and its stories, as cards."""
    return {
        "query": query,
        "items": [card(m, score=r.score, reason=r.reason) for m, r in block.related],
        "took_ms": round(block.took_ms, 2),
    }


def source_json(r) -> dict:
    """A source's health row (store.SourceHealth) as `GET /v1/sources` and `tidings sources
    list --json` both give it: the command wrote its times `…+00:00` where the API wrote `…Z`."""
    return {"name": r.name, "url": r.url, "category": r.category, "kind": r.kind,
            "enabled": r.enabled, "weight": r.weight, "status": r.status, "stories": r.stories,
            "last_check_at": iso(r.last_check_at), "last_success_at": iso(r.last_success_at),
            "last_error": r.last_error, "error_count": r.error_count,
            "next_check_at": iso(r.next_check_at), "interval_s": r.interval_s,
            "keep": r.keep, "block": r.block, "retired_at": iso(r.retired_at),
            "failing_pages": r.failing_pages}
