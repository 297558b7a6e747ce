"""PageReader: article pages read in a worker process that is stopped past a time limit."""

from __future__ import annotations

import random
import time

import pytest

from aggregator.errors import ParseError
from aggregator.pagereader import PageReader, PageTooSlow


def paragraphs_page(count: int) -> bytes:
    """`count` paragraphs of 60 made-up words (~430 bytes each): 7,000 of them (3 MB) take
    trafilatura ~3 s of CPU on this machine kind."""
    rnd = random.Random(count)
    words = ["".join(rnd.choice("abcdefghij") for _ in range(6)) for _ in range(2000)]
    body = "".join("<p>" + " ".join(rnd.choice(words) for _ in range(60)) + ".</p>\n"
                   for _ in range(count))
    return f"<html><head><title>Long</title></head><body><article>{body}</article></body></html>".encode()


@pytest.fixture
def reader():
    r = PageReader()
    yield r
    r.stop()


def test_a_page_past_its_time_is_given_up_and_the_next_one_is_read(reader, shared_data):
    """A thread reading a page could not be stopped: a 3 MB page held the page reader (and
    the GIL's share it took) for seconds, however long the caller was willing to wait."""
    assert reader.read(paragraphs_page(3), "https://news.example/warm").text  # worker started
    worker = reader._proc
    t0 = time.monotonic()
    with pytest.raises(PageTooSlow, match="took over 0.3 s"):
        reader.read(paragraphs_page(7000), "https://news.example/long", timeout_s=0.3)
    assert time.monotonic() - t0 < 2.0  # the page alone takes ~3 s, more on a loaded machine
    assert not worker.is_alive()  # stopped, not left reading in the background
    html = (shared_data / "readability-news-pages" / "bbc-1" / "source.html").read_bytes()
    article = reader.read(html, "https://www.bbc.example/news/a")
    assert article.title and len(article.text.split()) > 100
    assert reader._proc is not worker and reader._proc.is_alive()


def test_a_page_without_text_is_a_parse_error_from_the_worker(reader):
    with pytest.raises(ParseError, match="empty body"):
        reader.read(b"  \n ", "https://news.example/empty")
    assert reader.read(paragraphs_page(3), "https://news.example/a").title == "Long"


def test_a_worker_that_died_is_replaced(reader):
    """A worker killed between pages (the OOM killer) is not a page's failure."""
    reader.read(paragraphs_page(3), "https://news.example/a")
    reader._proc.kill()
    reader._proc.join()
    assert reader.read(paragraphs_page(3), "https://news.example/b").title == "Long"


def test_the_address_a_page_declares_comes_back_from_the_worker(reader, shared_data):
    """The Article is pickled back from the worker process: its every field must arrive, the
    page's declared address included (related-by-URL looks the stored story up under it)."""
    html = (shared_data / "readability-news-pages" / "bbc-1" / "source.html").read_bytes()
    article = reader.read(html, "https://www.bbc.example/news/amp/a")
    assert reader._proc is not None and reader._proc.is_alive()  # read there, not here
    assert article.canonical_url == "http://www.bbc.com/news/world-us-canada-33646704"
