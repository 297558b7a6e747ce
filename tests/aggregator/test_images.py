"""Which image a card shows: widths read from image URLs, the page's share image over a feed
thumbnail, and Livemint's plain <bigimage> items (../shared/data/news-feeds)."""

from __future__ import annotations

import pytest

from aggregator.feeds import parse_feed
from aggregator.images import SMALL_IMAGE_PX, better_image, width_hint

BBC_THUMB = "https://ichef.bbci.co.uk/ace/standard/240/cpsprodpb/2a18/live/de8b4cc0.jpg"
BBC_PAGE = "http://ichef.bbci.co.uk/news/1024/cpsprodpb/3D8B/production/_84455751_84455749.jpg"


@pytest.mark.parametrize(("url", "px"), [
    (BBC_THUMB, 240),
    (BBC_PAGE, 1024),
    ("https://images.livemint.com/img/2019/05/29/600x338/PTI5_27.jpg", 600),
    ("https://static.seattletimes.com/wp-content/uploads/2019/04/120028-1200x630.jpg", 1200),
    ("http://i.mol.im/i/pix/2013/02/03/article-2272640-174FCEE2000005DC-697_154x115.jpg", 154),
    ("https://i.guim.co.uk/img/media/b7/master/3000.jpg?w=460&q=55&auto=format&s=a606a2", 460),
    ("https://images.tagesschau.de/image/991e/16x9-big/akw.jpg?width=1920", 1920),
    ("https://www.heise.de/scale/geometry/450/q80//imgs/18/5/BoschJeep.jpeg", 450),
    # nothing said, or numbers that are no width
    ("https://static01.nyt.com/images/2023/11/24/multimedia/x-mediumSquareAt3X.jpg", None),
    ("https://i.guim.co.uk/img/media/b7/master/3000.jpg?s=1234abcd", None),
    ("https://example.com/2019/11/19/story.jpg", None),
])
def test_width_hint(url: str, px: int | None) -> None:
    assert width_hint(url) == px


@pytest.mark.parametrize(("feed", "page", "chosen"), [
    (BBC_THUMB, BBC_PAGE, BBC_PAGE),              # a 240 px thumbnail: the page's 1024 px
    (BBC_THUMB, "https://x.example/og.jpg", "https://x.example/og.jpg"),  # og:image, no width
    (BBC_THUMB, "https://x.example/a-150x100.jpg", BBC_THUMB),  # the page's is smaller still
    ("https://i.guim.co.uk/m/3000.jpg?w=460", BBC_PAGE, "https://i.guim.co.uk/m/3000.jpg?w=460"),
    ("https://x.example/feed.jpg", BBC_PAGE, "https://x.example/feed.jpg"),  # unknown: the feed's
    ("", BBC_PAGE, BBC_PAGE),
    (BBC_THUMB, "", BBC_THUMB),
    ("", "", ""),
])
def test_better_image(feed: str, page: str, chosen: str) -> None:
    assert better_image(feed, page) == chosen


def test_a_width_the_feed_states_counts_where_the_url_says_none() -> None:
    feed, page = "https://x.example/thumb.jpg", "https://x.example/og.jpg"
    assert better_image(feed, page, feed_width_px=150) == page
    assert better_image(feed, page, feed_width_px=600) == feed
    assert better_image(feed, page, feed_width_px=0) == feed
    # the URL's own width is the one served
    assert better_image(BBC_THUMB, page, feed_width_px=976) == page


def test_feed_states_the_width_of_the_rendition_it_took() -> None:
    body = (b'<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>t'
            b"</title><item><title>A</title><link>https://s.example/a</link>"
            b'<media:thumbnail url="https://i.example/s.jpg" width="90"/>'
            b'<media:thumbnail url="https://i.example/m.jpg" width="150"/></item>'
            b"<item><title>B</title><link>https://s.example/b</link>"
            b'<media:content url="https://i.example/c.jpg" medium="image"/></item></channel></rss>')
    for fast in (True, False):
        a, b = parse_feed(body, base_url="https://s.example/feed", fast=fast).items
        assert (a.image_url, a.image_width_px) == ("https://i.example/m.jpg", 150)
        assert (b.image_url, b.image_width_px) == ("https://i.example/c.jpg", 0)


def test_bbc_feed_images_are_known_thumbnails(shared_data) -> None:
    doc = parse_feed((shared_data / "news-feeds/fast-news-reader/bbc.xml").read_bytes(),
                     base_url="https://feeds.bbci.co.uk/news/rss.xml")
    assert len(doc.items) == 27
    assert {width_hint(item.image_url) for item in doc.items} == {240}
    assert 240 < SMALL_IMAGE_PX


@pytest.mark.parametrize("fast", [True, False])
def test_livemint_plain_image_elements_are_read(shared_data, fast: bool) -> None:
    """Livemint's items carry their pictures only in plain <bigimage>/<smallimage>/<image>
    elements: all 25 stories had no image. The big one (600x338) is taken, both ways."""
    body = (shared_data / "news-feeds/RSParser/livemint.xml").read_bytes()
    doc = parse_feed(body, base_url="https://www.livemint.com/rss/news", fast=fast)
    assert len(doc.items) == 25
    images = [item.image_url for item in doc.items]
    assert all(url.startswith("https://images.livemint.com/img/") and "/600x338/" in url
               for url in images), images[:3]
    assert len(set(images)) == 25


ITUNES = 'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd" xmlns:media="http://search.yahoo.com/mrss/"'


@pytest.mark.parametrize("fast", [True, False])
def test_an_items_itunes_image_is_its_image_the_channels_is_not(fast: bool) -> None:
    """Feeds made by podcast tooling (news sites' audio and video sections among them) give an
    item's picture as <itunes:image href>: those stories had none. A better image the item
    gives (media:content) still comes first, and the channel's <itunes:image>, its logo,
    is no item's."""
    body = (f'<?xml version="1.0"?><rss version="2.0" {ITUNES}><channel><title>t</title>'
            '<link>https://s.example/</link><itunes:image href="https://s.example/logo.jpg"/>'
            "<item><title>A</title><link>https://s.example/a</link>"
            '<itunes:image href="/img/a-1400x1400.jpg"/></item>'
            "<item><title>B</title><link>https://s.example/b</link>"
            '<itunes:image url="https://i.example/b.jpg"/></item>'
            "<item><title>C</title><link>https://s.example/c</link><itunes:image href=\"https://i.example/c.jpg\"/>"
            '<media:content url="https://i.example/c-big.jpg" medium="image"/></item>'
            "<item><title>D</title><link>https://s.example/d</link></item></channel></rss>").encode()
    doc = parse_feed(body, base_url="https://s.example/feed", fast=fast)
    assert [item.image_url for item in doc.items] == [
        "https://s.example/img/a-1400x1400.jpg", "https://i.example/b.jpg", "https://i.example/c-big.jpg", ""]


def test_a_json_feed_items_image_then_banner_then_image_attachment() -> None:
    """JSON Feed's `image`, else its `banner_image`, else the first attachment typed as an
    image: an item whose picture came only as an attachment had none."""
    import json

    from aggregator.jsonfeed import parse_jsonfeed

    def item(n: int, **image) -> dict:
        return {"id": str(n), "url": f"https://s.example/{n}", "title": f"T{n}", **image}

    audio = {"url": "https://s.example/a.mp3", "mime_type": "audio/mpeg"}
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [
        item(1, image="https://i.example/1.jpg", banner_image="https://i.example/1b.jpg"),
        item(2, banner_image="/2b.jpg"),
        item(3, attachments=[audio, {"url": "/3.jpg", "mime_type": "Image/JPEG"}]),
        item(4, attachments=[audio, {"url": "", "mime_type": "image/png"}, "junk"]),
        item(5, attachments="none")]}).encode()
    doc = parse_jsonfeed(body, base_url="https://s.example/feed.json")
    assert [it.image_url for it in doc.items] == [
        "https://i.example/1.jpg", "https://s.example/2b.jpg", "https://s.example/3.jpg", "", ""]
