"""How many stories a route answers is `k` on most routes and `limit` on the story list
(DESIGN.md 4.3): one sent under the other's name is a 422 naming the right one.

FastAPI drops a query parameter a route does not declare, so `?limit=5` on a feed or a
related block, or `?k=5` on `/v1/stories`, answered the default number of stories without a
word. Other undeclared parameters are left alone: a cache-buster or a tracking tag on a widget
URL must not break it.
"""

from __future__ import annotations

from fastapi import Depends, Request

from api.errors import ApiError

SIZE_NAMES = ("k", "limit")


def misnamed_size(takes: str, given: list[str]) -> str | None:
    """Why a query naming `given` parameters is refused by a route whose number of stories is
    `takes`, else None."""
    for other in SIZE_NAMES:
        if other != takes and other in given:
            return (f"{other}: not a parameter here; the number of stories is {takes} "
                    f"(?{takes}=)")
    return None


def size_named(takes: str):
    """A route dependency: the 422 of `misnamed_size`."""
    def check(request: Request) -> None:
        if problem := misnamed_size(takes, list(request.query_params)):
            raise ApiError(422, "invalid_request", problem)
    return Depends(check)


SIZE_IS_K, SIZE_IS_LIMIT = size_named("k"), size_named("limit")
