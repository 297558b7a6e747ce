"""Secrets in URLs masked for log lines. Pure string work, no I/O; decides nothing else.

A private or paid feed carries its key in the query (`?token=…`, `?apikey=…`), and every
failed fetch logged it whole at WARNING (`collect.failed … error=HTTP 404 Not Found from
https://…?token=…`), as did the unread article pages of such a feed: log files are shipped
to aggregators and pasted into bug reports, which is why the database URL's password is
masked already (store.shown_url). The operator's own views (`sources list`, /v1/sources)
keep the text whole: they show the source's URL itself.
"""

from __future__ import annotations

import re

MASK = "***"

# Query parameter names that hold a secret: the widget's list of those it never sends
# (api/static/widget.js, PRIVATE_PARAM), and the keys feed providers give their subscribers
# (key, apikey, api-key, access_key, feed_key; not "monkey").
SECRET_PARAM = re.compile(
    r"token|secret|passw(?:or)?d|^pwd$|^auth|session|sessid|^sid$|(?:^|api|access|private|[_-])key$"
    r"|^sig(?:nature)?$|^otp$|^ticket$|^jwt$|^code$", re.IGNORECASE)

# A query parameter inside free text: its separator, name and value. The value stops where a
# URL would end in a message (space, quote, bracket, a colon before a space: "fetching
# URL: reason") as well as at the next parameter.
_PARAM = re.compile(r"(?P<lead>[?&;](?P<name>[^=&;#\s'\"<>()\[\]]+)=)"
                    r"(?P<value>(?:[^&;#\s'\"<>()\[\]:]|:(?!\s|$))*)")
# user:password@ in a URL's authority (refused in sources.toml, but a redirect may carry one).
_USERINFO = re.compile(r"(?P<lead>//[^/@\s:]*:)[^/@\s]*@")


def masked_secrets(text: str) -> str:
    """`text` with the values of secret-named query parameters and URL passwords as `***`."""
    def mask(m: re.Match) -> str:
        if m["value"] and SECRET_PARAM.search(m["name"]):
            return m["lead"] + MASK
        return m[0]

    return _USERINFO.sub(lambda m: m["lead"] + MASK + "@", _PARAM.sub(mask, text))
