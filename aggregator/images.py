"""Which image a story card shows when a feed and the story's page each offer one. Pure.

Knows only image URLs: no fetching (a HEAD or a download per image to learn its size would
double a round's requests). Many image services write the width they serve into the URL,
and that is enough to tell a feed's thumbnail from a page's share image (../shared/data):
- BBC: ichef.bbci.co.uk/ace/standard/240/… in every item of its feed (27 of 27), and
  …/news/1024/… as its pages' og:image (the same picture is served at 304, 555, 976, 1024…);
- Livemint: images.livemint.com/img/2019/05/29/600x338/…, 250x250 and 90x90 renditions;
- WordPress and the Daily Mail: …-1200x630.jpg, …_154x115.jpg;
- query parameters: the Guardian's ?w=460, tagesschau's ?width=1920; heise's /geometry/450/.
"""

from __future__ import annotations

import re

# A card is at most ~320 CSS px wide (api/static/widget.js: a grid of minmax(190px, 1fr)),
# so an image narrower than this looks blurred on it already at 1x; the Guardian's 460 px
# feed rendition is kept, the BBC's 240 px thumbnail is not.
SMALL_IMAGE_PX = 400

_WIDTH_PATTERNS = (
    re.compile(r"//ichef\.bbci\.co\.uk/(?:ace/(?:standard|ws)|news|images/ic)/(\d{2,4})(?:x\d{2,4})?/"),
    re.compile(r"/(\d{2,4})x\d{2,4}/"),                         # a path segment: /600x338/
    re.compile(r"[-_](\d{2,4})x\d{2,4}\.(?:jpe?g|png|gif|webp|avif)(?:[?#]|$)", re.I),
    re.compile(r"[?&](?:w|width)=(\d{2,4})(?:&|#|$)"),
    re.compile(r"/geometry/(\d{2,4})/"),
)


def width_hint(url: str) -> int | None:
    """The width in px that `url` says it serves, or None when it says none."""
    for pattern in _WIDTH_PATTERNS:
        m = pattern.search(url)
        if m:
            return int(m.group(1))
    return None


def better_image(feed_url: str, page_url: str, *, feed_width_px: int = 0) -> str:
    """The image for a story read from its page: the feed's, unless its URL (or the width
    the feed states for it, `feed_width_px`, 0 when none) says it is a thumbnail narrower
    than SMALL_IMAGE_PX and the page's share image is not smaller.

    A page's og:image of unknown width wins over a known thumbnail: share images are made
    for large previews (Facebook asks for 1200 px). An unknown feed image stays: the feed
    chose it for the item, and the page's may be a site logo (yahoo-2, nytimes-5)."""
    if not feed_url or not page_url:
        return feed_url or page_url
    feed_px = width_hint(feed_url) or feed_width_px or None
    if feed_px is None or feed_px >= SMALL_IMAGE_PX:
        return feed_url
    page_px = width_hint(page_url)
    return page_url if page_px is None or page_px > feed_px else feed_url
