"""Static files the API serves (widget.js): each read and gzipped once, with an ETag per encoding.

Pure (the caller reads the file); knows nothing about HTTP frameworks. widget.js goes on every
article page of every publisher, so it is sent gzipped to clients that accept it (a third of
its size) and revalidated by ETag instead of downloaded again when its max-age runs out.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StaticFile:
    raw: bytes
    gzipped: bytes
    etag: str  # of the raw bytes; the gzipped variant's is etag_for(True)

    def etag_for(self, gzipped: bool) -> str:
        # RFC 9110 8.8.3: a strong validator names one representation, so each encoding has its own.
        return f'"{self.etag}-gz"' if gzipped else f'"{self.etag}"'

    def body(self, gzipped: bool) -> bytes:
        return self.gzipped if gzipped else self.raw


def static_file(raw: bytes) -> StaticFile:
    # mtime=0: the same file gives the same bytes in every worker process.
    return StaticFile(raw=raw, gzipped=gzip.compress(raw, compresslevel=9, mtime=0),
                      etag=hashlib.sha256(raw).hexdigest()[:20])


def accepts_gzip(accept_encoding: str | None) -> bool:
    """RFC 9110 12.5.3: does this Accept-Encoding take gzip? `q=0` refuses; `*` stands for gzip
    unless gzip is named."""
    if not accept_encoding:
        return False
    star = None
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)
