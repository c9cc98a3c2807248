"""Multistream dumps: random access to one article without reading the file from its start.

Wikimedia's ``pages-articles-multistream.xml.bz2`` is a series of independent bz2 streams: the XML
header, then 100 pages per stream, then the closing tag. Its index has one line per page,
``offset:page_id:title``, offset being where the page's stream starts in the compressed file.
``read_multistream_index`` reads the index, ``read_stream`` decompresses one stream,
``fetch_articles`` returns parsed articles by title; ``build_multistream`` makes such a file (and its
index) from any dump, as chapter 01 does for the tiny corpus. Every name here is importable from
``helpers.dump`` too.
"""
from __future__ import annotations

import bisect
import bz2
import contextlib
import html
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from helpers.pages import (
    READ_CHUNK_BYTES,
    DumpError,
    DumpNotFoundError,
    Page,
    base_url_from_siteinfo,
    is_bz2,
    page_from_element,
    page_to_article,
)


@dataclass(frozen=True)
class IndexEntry:
    """Where a page lives in a multistream dump: its stream's offset and length in bytes."""

    title: str
    page_id: int
    offset: int
    length: int | None  # None for the last stream: read until the stream ends


def build_multistream(
    src_dump: Path | str,
    out_dump: Path | str,
    out_index: Path | str,
    pages_per_stream: int = 100,
) -> int:
    """Rewrite a dump as a Wikimedia-style multistream dump plus its index; return the stream count.

    The index is bz2-compressed when ``out_index`` ends in ``.bz2``, as Wikimedia ships it. Pages are
    copied byte for byte, line by line, so memory stays flat.
    """
    src_dump, out_dump, out_index = Path(src_dump), Path(out_dump), Path(out_index)
    opener = bz2.open if is_bz2(src_dump) else open
    out_dump.parent.mkdir(parents=True, exist_ok=True)
    index_lines: list[str] = []
    streams = 0
    with opener(src_dump, "rb") as source, open(out_dump, "wb") as target:
        def write_stream(data: bytes) -> int:
            nonlocal streams
            offset = target.tell()
            target.write(bz2.compress(data, 9))
            streams += 1
            return offset

        header: list[bytes] = []
        line = source.readline()
        while line and b"<page>" not in line:
            header.append(line)
            line = source.readline()
        write_stream(b"".join(header))
        batch: list[bytes] = []
        batch_pages: list[tuple[int, str]] = []
        page_lines: list[bytes] = []
        footer: list[bytes] = []
        while line:
            if page_lines or b"<page>" in line:
                page_lines.append(line)
                if b"</page>" in line:
                    page = b"".join(page_lines)
                    page_id = int(re.search(rb"<id>(\d+)</id>", page).group(1))
                    title = html.unescape(re.search(rb"<title>(.*?)</title>", page).group(1).decode("utf-8"))
                    batch.append(page)
                    batch_pages.append((page_id, title))
                    page_lines = []
                    if len(batch_pages) == pages_per_stream:
                        offset = write_stream(b"".join(batch))
                        index_lines += [f"{offset}:{page_id}:{title}\n" for page_id, title in batch_pages]
                        batch, batch_pages = [], []
            else:
                footer.append(line)
            line = source.readline()
        if batch_pages:
            offset = write_stream(b"".join(batch))
            index_lines += [f"{offset}:{page_id}:{title}\n" for page_id, title in batch_pages]
        write_stream(b"".join(footer))
    index_bytes = "".join(index_lines).encode("utf-8")
    out_index.parent.mkdir(parents=True, exist_ok=True)
    out_index.write_bytes(bz2.compress(index_bytes, 9) if out_index.suffix == ".bz2" else index_bytes)
    return streams


def iter_index_lines(path: Path | str) -> Iterator[tuple[int, int, str]]:
    """``(offset, page_id, title)`` for each line of a multistream index (plain text or ``.bz2``), one at a time.

    The one reader of the index's ``offset:page_id:title`` lines; a line that is not one raises
    ``DumpError`` naming the file and the line.
    """
    path = Path(path)
    if not path.exists():
        raise DumpNotFoundError(f"{path}: no such multistream index (…-multistream-index.txt.bz2)", path=path)
    opener = bz2.open if is_bz2(path) else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            try:
                offset, page_id, title = line.split(":", 2)  # titles may contain colons
                yield int(offset), int(page_id), title
            except ValueError as error:
                raise DumpError(
                    f"{path}, line {number}: {line[:80]!r} is not `offset:page_id:title`; is this the "
                    "dump's -multistream-index.txt.bz2?", path=path,
                ) from error


def read_multistream_index(path: Path | str) -> dict[str, IndexEntry]:
    """Title -> ``IndexEntry`` from a multistream index (plain text or ``.bz2``).

    Stream lengths come from the next stream's offset; the last page stream's length is left open.
    """
    rows = list(iter_index_lines(path))
    offsets = sorted({offset for offset, _, _ in rows})
    next_offset = dict(zip(offsets, offsets[1:]))
    return {
        title: IndexEntry(title, page_id, offset, next_offset[offset] - offset if offset in next_offset else None)
        for offset, page_id, title in rows
    }


def read_stream_offsets(path: Path | str) -> list[int]:
    """The byte offsets where the page streams of a multistream dump begin, sorted, from its index.

    Read line by line and kept as one int per stream (not per page), so the English Wikipedia's
    index (24 million lines) costs a few MB.
    """
    return sorted({offset for offset, _, _ in iter_index_lines(path)})


# A stream that closes the XML: every shard but the last ends with it (the last reads the dump's own).
CLOSING_STREAM = bz2.compress(b"</mediawiki>\n", 9)


def shard_segments(dump: Path | str, offsets: list[int], shards: int) -> list[list[tuple[int, int | None] | bytes]]:
    """Cut a multistream dump into ``shards`` runs of whole page streams of about equal size.

    Each shard is what ``iter_pages(dump, segments=...)`` reads: the header stream (the bytes before
    the first page stream), its run of streams, then ``CLOSING_STREAM``; the last runs to the end of
    the file, the dump's own closing stream included. In order, the shards hold every page once.
    """
    size = Path(dump).stat().st_size
    if not offsets or offsets[0] <= 0 or offsets[-1] >= size:
        raise DumpError(f"{dump}: its index does not fit it (stream offsets {offsets[:1]}…{offsets[-1:]} in a "
                        f"{size:,}-byte file); is the index for this dump?", path=dump)
    header = (0, offsets[0])
    shards = max(1, min(shards, len(offsets)))
    span = size - offsets[0]
    targets = [offsets[0] + span * k // shards for k in range(shards)]  # equal shares of the compressed bytes
    starts = sorted({offsets[min(bisect.bisect_left(offsets, target), len(offsets) - 1)] for target in targets})
    ends = starts[1:] + [None]
    return [[header, (start, end), CLOSING_STREAM] if end is not None else [header, (start, None)]
            for start, end in zip(starts, ends)]


def read_stream(dump: IO[bytes], offset: int, length: int | None = None) -> bytes:
    """Decompress the one bz2 stream starting at ``offset``, reading no further than it ends."""
    dump.seek(offset)
    decompressor = bz2.BZ2Decompressor()
    pieces: list[bytes] = []
    remaining = length
    while not decompressor.eof:
        size = READ_CHUNK_BYTES if remaining is None else min(READ_CHUNK_BYTES, remaining)
        chunk = dump.read(size)
        if not chunk:
            raise DumpError(f"the bz2 stream at byte {offset:,} ends early; is the index for this dump?",
                            byte_offset=offset)
        if remaining is not None:
            remaining -= len(chunk)
        pieces.append(decompressor.decompress(chunk))
    return b"".join(pieces)


def fetch_articles(
    dump: Path | str | IO[bytes],
    index: Path | str | dict[str, IndexEntry],
    titles: Iterable[str],
    *,
    keep_tables: bool = False,
) -> list[dict[str, Any]]:
    """The article records of ``titles``, decompressing only the streams that hold them.

    ``dump`` is a multistream dump's path or an open binary file; ``index`` its index file or the
    dict ``read_multistream_index`` returned. The first stream (the XML header, a few KiB) is read
    too, for the site's URL base. Raises ``KeyError`` for a title the index does not have.
    """
    entries = index if isinstance(index, dict) else read_multistream_index(index)
    titles = list(titles)
    missing = [title for title in titles if title not in entries]
    if missing:
        raise KeyError(f"not in the multistream index: {', '.join(map(repr, missing))}")
    with contextlib.ExitStack() as stack:
        handle = dump if hasattr(dump, "read") else stack.enter_context(open(dump, "rb"))
        first_page_stream = min(entry.offset for entry in entries.values())
        header = read_stream(handle, 0, first_page_stream)
        language = re.search(rb'xml:lang="([^"]+)"', header)
        base = re.search(rb"<base>(.*?)</base>", header)
        base_url = base_url_from_siteinfo(
            base.group(1).decode() if base else None, language.group(1).decode() if language else None
        )
        pages: dict[str, Page] = {}
        for entry in {entries[title].offset: entries[title] for title in titles}.values():
            xml_fragment = read_stream(handle, entry.offset, entry.length)
            for element in ET.fromstring(b"<pages>" + xml_fragment + b"</pages>"):
                page = page_from_element(element, base_url)
                pages[page.title] = page
    return [page_to_article(pages[title], keep_tables) for title in titles]
