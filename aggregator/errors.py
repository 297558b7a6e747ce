"""The one error tree: every error Tidings raises on purpose derives from TidingsError.

Third-party errors are wrapped where they enter (`raise FetchError(...) from e`), so callers
catch by meaning, not by library. Expected per-source failures are recorded on the source, not
raised past the collector; bugs surface.
"""

from __future__ import annotations

from http import HTTPStatus


class TidingsError(Exception):
    """Base of every deliberate error."""


class ConfigError(TidingsError):
    """A settings or sources file is wrong; the message names file, line and key. `also`:
    further errors found in the same pass, one line each after this one's."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, key: str = "",
                 also: tuple[ConfigError, ...] = ()):
        self.message, self.file, self.line, self.key, self.also = message, file, line, key, also
        where = file + (f":{line}" if line else "")
        prefix = f"{where}: " if where else ""
        suffix = f" (key '{key}')" if key else ""
        super().__init__(f"{prefix}{message}{suffix}" + "".join(f"\n{e}" for e in also))


class FetchError(TidingsError):
    """A fetch failed; `retry_after_s` is set when the server said when to come back."""

    retry_after_s: float | None = None


class FetchTimeout(FetchError):
    pass


class BodyTooLarge(FetchError):
    pass


class TooManyRedirects(FetchError):
    pass


class HTTPStatusError(FetchError):
    def __init__(self, status: int, url: str, retry_after_s: float | None = None):
        self.status, self.url, self.retry_after_s = status, url, retry_after_s
        super().__init__(http_status_message(status, url, retry_after_s))


def http_status_message(status: int, url: str, retry_after_s: float | None = None) -> str:
    """"HTTP 410 Gone from URL", "HTTP 429 Too Many Requests from URL; asked to wait 2 h":
    what `sources list` shows. "HTTP 410 from URL" left the operator to know that 410 means
    the feed was removed for good, and a throttled source's wait was in no message."""
    try:
        reason = f" {HTTPStatus(status).phrase}"
    except ValueError:  # a status no RFC names (e.g. Cloudflare's 520)
        reason = ""
    wait = ""
    if retry_after_s is not None and retry_after_s > 0:
        wait = f"; asked to wait {_duration(retry_after_s)}"
    return f"HTTP {status}{reason} from {url}{wait}"


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{round(s / 60)} min"
    return f"{round(s / 3600)} h"


class BlockedAddress(FetchError):
    """A caller's or a feed's URL points at a non-public address (SSRF guard) or a bad scheme.

    `caller_message`: what an API caller may be told, when the message says more than their
    URL did (the private address a name resolves to); the message itself is for the operator
    (logs, a source's last_error)."""

    def __init__(self, message: str, *, caller_message: str | None = None):
        super().__init__(message)
        self.caller_message = caller_message if caller_message is not None else message


class RobotsDisallowed(FetchError):
    pass


class ParseError(TidingsError):
    """Nothing usable could be read from a body (recoverable problems are not errors)."""


class StoreError(TidingsError):
    """The database is unreachable or refused an operation."""


class DatabaseTimeout(StoreError):
    """A database call ran past the limit its caller set (aggregator.store.calls_limited):
    the database took the connection and did not answer in time."""


class BadDatabaseURL(StoreError, ConfigError):
    """The database URL (settings) cannot be used: a bad URL, a missing driver, a parameter
    the driver does not take. A StoreError to those who catch one, and the operator's input
    to fix (ConfigError: the CLI's exit status 2, not a failure of the work)."""

    def __init__(self, message: str):
        ConfigError.__init__(self, message)


class NoDatabase(ConfigError):
    """A command that only reads (or changes what is stored) found no database where the
    settings point: a mistyped data dir, most likely, and the operator's input to fix (exit
    status 2). Such a command made an empty one there and answered as if nothing were stored."""

    def __init__(self, message: str):
        ConfigError.__init__(self, message)


class NoSources(ConfigError):
    """A sources file that names no [[source]] at all (no `source` key: emptied, or read while
    an editor was saving it), where the caller asked to be told (`load_sources`'s
    `refuse_empty`): applied, it retires every configured source. `source = []` says it is meant."""

    def __init__(self, file: str):
        ConfigError.__init__(self, "names no [[source]] table (emptied, or read while being saved)",
                             file=file)


class ChangesPruned(TidingsError):
    """The change log no longer holds every change after `seq`: retention pruned it up to
    `horizon`. Not an outage (not a StoreError): the caller must reload what it caches."""

    def __init__(self, seq: int, horizon: int):
        self.seq, self.horizon = seq, horizon
        super().__init__(f"index changes after {seq} were pruned up to {horizon}")


class NotFound(TidingsError):
    pass


class TakenDown(TidingsError):
    """The URL a caller asked about was taken down (`tidings takedown add`): its page is not
    fetched for them, and no block is made about it."""
