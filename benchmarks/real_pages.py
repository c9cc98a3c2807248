"""The benchmarks' corpus: the tiny corpus's real pages, repeated with fresh page ids and titles.

Used by ``bench_dump.py`` (one bz2 stream) and ``bench_parse_scaling.py`` (a multistream dump).
"""
from __future__ import annotations

import bz2
import re
from pathlib import Path

TINY = Path(__file__).resolve().parent.parent / "data" / "tiny"
PAGE_RE = re.compile(rb"  <page>\n.*?  </page>\n", re.S)
ID_RE = re.compile(rb"<id>\d+</id>")
TITLE_RE = re.compile(rb"<title>(.*?)</title>")


def real_pages() -> tuple[bytes, list[bytes]]:
    """The XML header (``<mediawiki>`` and ``<siteinfo>``) and every page of the tiny corpus and its table pages."""
    tiny = bz2.decompress((TINY / "enwiki-tiny.xml.bz2").read_bytes())
    tables = bz2.decompress((TINY / "enwiki-table-markup.xml.bz2").read_bytes())
    return tiny[: tiny.index(b"  <page>")], PAGE_RE.findall(tiny) + PAGE_RE.findall(tables)


def page_copy(page: bytes, page_id: int, copy: int) -> tuple[bytes, bytes]:
    """``page`` as its ``copy``-th copy: (its XML with ``page_id`` and the title "<title> (copy N)", that title)."""
    title = TITLE_RE.search(page).group(1) + b" (copy %d)" % copy
    text = ID_RE.sub(b"<id>%d</id>" % page_id, page, count=1)
    return TITLE_RE.sub(lambda _: b"<title>" + title + b"</title>", text, count=1), title
