"""The one error tree: every error Tidings raises on purpose derives from TidingsError.

Third-party errors are wrapped where they enter (`raise FetchError(...) from e`), so callers
catch by meaning, not by library. Expected per-source failures are recorded on the source, not
raised past the collector; bugs surface.
"""

from __future__ import annotations


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
        super().__init__(f"HTTP {status} from {url}")


class BlockedAddress(FetchError):
    """A caller's or a feed's URL points at a non-public address (SSRF guard) or a bad scheme."""


class RobotsDisallowed(FetchError):
    pass


class ParseError(TidingsError):
    """Nothing usable could be read from a body (recoverable problems are not errors)."""


class StoreError(TidingsError):
    """The database is unreachable or refused an operation."""


class NotFound(TidingsError):
    pass
