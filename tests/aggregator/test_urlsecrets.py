"""Secrets in URLs masked for log lines (aggregator/urlsecrets.py)."""

from __future__ import annotations

import pytest

from aggregator.urlsecrets import masked_secrets


@pytest.mark.parametrize(("text", "shown"), [
    ("HTTP 404 Not Found from https://f.example/feed.xml?token=abc",
     "HTTP 404 Not Found from https://f.example/feed.xml?token=***"),
    # Other parameters, the fragment and the reason after the URL stay as they were.
    ("ClientConnectorError fetching https://f.example/rss?lang=en&apikey=K1&page=2#top: refused",
     "ClientConnectorError fetching https://f.example/rss?lang=en&apikey=***&page=2#top: refused"),
    ("https://f.example/f?api-key=1&access_key=a:b&Signature=x%2Fy&session_id=9",
     "https://f.example/f?api-key=***&access_key=***&Signature=***&session_id=***"),
    ("(https://u:pw@f.example/f?at=12:30)", "(https://u:***@f.example/f?at=12:30)"),
    # Not secrets: names that only end in "key", blank values, text without a URL's query.
    ("https://f.example/f?monkey=1&key=&q=token", "https://f.example/f?monkey=1&key=&q=token"),
    ("not a feed: no RSS, Atom or RDF root element", "not a feed: no RSS, Atom or RDF root element"),
])
def test_secret_parameters_and_passwords_are_masked(text, shown):
    assert masked_secrets(text) == shown
