"""The API's error shape: {"error": {"code", "message"}} with the right 4xx (never a 500 for bad input)."""

from __future__ import annotations

import json
import sys

from fastapi.responses import JSONResponse


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        self.status, self.code, self.message, self.headers = status, code, message, headers
        super().__init__(message)


# The OpenAPI answers of a route whose own body is not JSON (HTML, Atom, Prometheus text): its
# errors stay this JSON. Declared per route, since FastAPI documents the app-wide error answers
# with the route's own media type: /v1/widget said its 422 was text/html, /metrics its 405
# text/plain, and a client generated from the document read the error bodies as HTML or text.
ERROR_BODY_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def json_errors(bad_input: str, unavailable: str) -> dict:
    """The 4xx and 503 answers of such a route, each described for it."""
    return {"4XX": {"description": bad_input, "content": ERROR_BODY_CONTENT},
            503: {"description": unavailable, "content": ERROR_BODY_CONTENT}}


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def unreadable_body_message(cause: BaseException | None) -> str:
    """Why FastAPI could not read a JSON body at all: bytes that are no text, or a structure
    deeper than the parser goes (what /v1/events says for the same bodies)."""
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not JSON: it is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "the body is not JSON this API reads: nested too deeply"
    if isinstance(cause, ValueError) and not isinstance(cause, json.JSONDecodeError):
        # The one other ValueError json.loads raises: Python's cap on digits in an integer
        # (CVE-2020-10735). Its own words called valid JSON "not JSON" and told the caller to
        # use sys.set_int_max_str_digits().
        return (f"the body is not JSON this API reads: a number of more than "
                f"{sys.get_int_max_str_digits()} digits")
    return "the body is not JSON this API can read"


def validation_message(err: dict) -> str:
    """A pydantic error's message, without the "Value error, " that pydantic puts before the
    words of the API's own validators ("reader: Value error, reader must be ...")."""
    return str(err.get("msg", "")).removeprefix("Value error, ")
