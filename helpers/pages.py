"""Reading a MediaWiki XML dump page by page, in constant memory, and the articles among its pages.

Read top to bottom:

1. errors and counters (``DumpError``, ``DumpStats``)
2. reading pages from ``.xml``, ``.xml.bz2`` and multistream ``.xml.bz2`` (``iter_pages``)
3. articles: pages filtered (namespace, redirects, disambiguation) and parsed (``iter_articles``),
   the wikitext turned into sections by ``helpers.wikitext``

Every name here is importable from ``helpers.dump`` too, as chapter 01 and the tests do.
"""
from __future__ import annotations

import bz2
import queue
import re
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from helpers.wikitext import parse_wikitext

READ_CHUNK_BYTES = 1 << 18
DEFAULT_BASE_URL = "https://en.wikipedia.org/wiki/"
WIKIMEDIA_MIRRORS = "https://dumps.wikimedia.org/mirrors.html"


# --------------------------------------------------------------------------------------------
# 1. Errors and counters
# --------------------------------------------------------------------------------------------


class DumpError(ValueError):
    """A dump cannot be read to its end. The message names the file, where it broke and what to do.

    ``path``, ``byte_offset`` (in the file as stored, compressed if it is), ``pages_read`` (complete
    pages before the fault) and ``last_title`` (the last complete page) are kept as attributes.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        byte_offset: int | None = None,
        pages_read: int | None = None,
        last_title: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.byte_offset = byte_offset
        self.pages_read = pages_read
        self.last_title = last_title


class DumpNotFoundError(DumpError, FileNotFoundError):
    """The dump (or its index) is not there."""


class DownloadError(DumpError, ConnectionError):
    """A dump could not be downloaded; the message names the URL and suggests a mirror."""


SKIP_REASONS = ("redirect", "disambiguation", "namespace", "empty")


@dataclass
class DumpStats:
    """What a pass over a dump saw: pages read, articles kept and pages skipped, by reason."""

    pages_read: int = 0
    articles_kept: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    sections_kept: int = 0
    characters_kept: int = 0
    seconds: float = 0.0
    latest_edit: str = ""  # the newest revision timestamp of a kept article (ISO 8601): it dates the text's licence
    last_title: str | None = None  # of the last page read (not in as_dict: where a fault came, for messages)
    processes: int = 1  # that parsed the dump (dump_to_jsonl's processes)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def add(self, other: DumpStats) -> None:
        """Count in what another pass saw (a shard of the same dump); seconds are not added up."""
        self.pages_read += other.pages_read
        self.articles_kept += other.articles_kept
        for reason, count in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + count
        self.sections_kept += other.sections_kept
        self.characters_kept += other.characters_kept
        self.latest_edit = max(self.latest_edit, other.latest_edit)
        self.last_title = other.last_title if other.pages_read else self.last_title

    def as_dict(self) -> dict[str, int | float]:
        """A flat dict (``skipped_<reason>`` keys), ready for ``summary.json`` or a table."""
        flat: dict[str, int | float] = {"pages_read": self.pages_read, "articles_kept": self.articles_kept}
        flat |= {f"skipped_{reason}": count for reason, count in self.skipped.items()}
        flat |= {
            "sections_kept": self.sections_kept,
            "characters_kept": self.characters_kept,
            "seconds": round(self.seconds, 3),
            "latest_edit": self.latest_edit,
            "processes": self.processes,
        }
        return flat


# --------------------------------------------------------------------------------------------
# 2. Reading pages
# --------------------------------------------------------------------------------------------


@dataclass
class Page:
    """One ``<page>`` of the dump, as stored: wikitext not yet parsed."""

    id: int
    title: str
    namespace: int
    redirect: str | None  # the target title when the page is a redirect
    text: str
    url: str
    timestamp: str = ""  # of the revision read (ISO 8601, as the dump spells it)


# Wikimedia's Terms of Use revision of June 2023: edits from 2023-06-29 on are under CC BY-SA 4.0;
# older revisions stay under CC BY-SA 3.0 (and the GFDL), whose share-alike clause lets adaptations
# of them be shared under 4.0. So the newest edit in a dump says which licence its text comes under.
CC_BY_SA_4_FROM = "2023-06-29"
LICENCES = {
    "cc-by-sa-3.0": ("CC BY-SA 3.0", "Creative Commons Attribution-ShareAlike 3.0 Unported",
                     "https://creativecommons.org/licenses/by-sa/3.0/"),
    "cc-by-sa-4.0": ("CC BY-SA 4.0", "Creative Commons Attribution-ShareAlike 4.0 International",
                     "https://creativecommons.org/licenses/by-sa/4.0/"),
}


def text_licence(latest_edit: str | None) -> dict[str, str]:
    """The licence of a dump's text from its newest edit (ISO 8601): CC BY-SA 4.0 from 2023-06-29, else 3.0.

    An unknown date (``None`` or ``""``) is taken as a current dump: 4.0.
    """
    licence_id = "cc-by-sa-3.0" if latest_edit and latest_edit[:10] < CC_BY_SA_4_FROM else "cc-by-sa-4.0"
    short, name, url = LICENCES[licence_id]
    why = (f"its newest edit is from {latest_edit[:10]}" if latest_edit else "the dump's date was not recorded") + (
        f", before Wikimedia's move to CC BY-SA 4.0 on {CC_BY_SA_4_FROM}" if licence_id == "cc-by-sa-3.0"
        else f"; text edited from {CC_BY_SA_4_FROM} on is under CC BY-SA 4.0, and older text under 3.0 may be adapted under 4.0")
    return {"id": licence_id, "short": short, "name": name, "url": url, "why": why}

def page_url(base_url: str, title: str) -> str:
    """The article URL of ``title`` under a wiki's ``/wiki/`` base, the way MediaWiki spells it."""
    return base_url + urllib.parse.quote(title.replace(" ", "_"), safe="/:,()'!*@;$~-._")


def base_url_from_siteinfo(base: str | None, language: str | None = None) -> str:
    """``https://en.wikipedia.org/wiki/`` from siteinfo's ``<base>`` (a Main_Page URL).

    Dumps cut without ``<siteinfo>`` fall back to the root's ``xml:lang`` on Wikipedia.
    """
    if base:
        return base[: base.rfind("/") + 1]
    return f"https://{language}.wikipedia.org/wiki/" if language else DEFAULT_BASE_URL


def _bz2_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    """Decompress concatenated bz2 streams (a multistream dump holds thousands) chunk by chunk.

    Done by hand rather than with ``bz2.BZ2File`` so that every byte decompressed before a fault
    reaches the parser: BZ2File raises for the whole read that runs into the fault.
    """
    decompressor = bz2.BZ2Decompressor()
    started = False  # whether the current stream has been fed anything
    while chunk := raw.read(READ_CHUNK_BYTES):
        while chunk:
            started = True
            yield decompressor.decompress(chunk)  # OSError on corrupt data
            if not decompressor.eof:
                break
            chunk = decompressor.unused_data
            decompressor, started = bz2.BZ2Decompressor(), False
    if started:
        raise EOFError("the file ends inside a bz2 stream")


def _read_ahead(chunks: Iterator[bytes], depth: int = 8) -> Iterator[bytes]:
    """Yield ``chunks`` produced by a background thread, up to ``depth`` chunks ahead.

    bz2 releases the GIL while it decompresses, so on a second core decompression overlaps with
    parsing; it is a third of the work. An exception in the thread is raised here, in order.
    """
    pending: queue.Queue[Any] = queue.Queue(maxsize=depth)
    finished = object()
    stop = threading.Event()

    def put(item: Any) -> None:
        while not stop.is_set():
            try:
                pending.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for chunk in chunks:
                put(chunk)
                if stop.is_set():
                    return
            put(finished)
        except BaseException as error:  # handed over to the consumer, raised there
            put(error)

    thread = threading.Thread(target=produce, name="dump-reader", daemon=True)
    thread.start()
    try:
        while (item := pending.get()) is not finished:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class _Segments:
    """A read-only file made of pieces of a real one (``(start, end)`` byte ranges, ``end`` None for
    the file's end) and literal byte strings, read one after another.

    How one process reads its shard of a multistream dump: the header stream, its run of page
    streams, and a closing stream. ``tell()`` is a position in the real file, for error messages.
    """

    def __init__(self, raw: IO[bytes], segments: Sequence[tuple[int, int | None] | bytes]) -> None:
        self.raw, self.segments = raw, list(segments)
        self.seek(0)

    def seek(self, position: int) -> None:
        if position != 0:
            raise ValueError("a segmented file can only be rewound")
        self.index, self.done, self.last_real = 0, 0, 0  # segment, bytes read of it, last real offset

    def tell(self) -> int:
        return self.last_real

    def read(self, size: int) -> bytes:
        while self.index < len(self.segments):
            segment = self.segments[self.index]
            if isinstance(segment, bytes):
                piece = segment[self.done:self.done + size]
            else:
                start, end = segment
                self.raw.seek(start + self.done)
                piece = self.raw.read(size if end is None else min(size, end - start - self.done))
                self.last_real = start + self.done + len(piece)
            if piece:
                self.done += len(piece)
                return piece
            self.index, self.done = self.index + 1, 0
        return b""


def is_bz2(path: Path | str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(3) == b"BZh"


def _plain_chunks(raw: IO[bytes]) -> Iterator[bytes]:
    while chunk := raw.read(READ_CHUNK_BYTES):
        yield chunk


def _sniff_encoding_problem(head: bytes) -> str | None:
    """MediaWiki dumps are UTF-8; name any other encoding the first bytes declare."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head[:4] in (b"<\x00?\x00", b"\x00<\x00?"):
        return "UTF-16"
    declared = re.match(rb"<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']", head)
    if declared and declared.group(1).decode().lower().replace("_", "-") not in ("utf-8", "utf8", "us-ascii", "ascii"):
        return declared.group(1).decode()
    return None


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def page_from_element(element: ET.Element, base_url: str) -> Page:
    fields: dict[str, Any] = {"id": None, "title": "", "ns": 0, "redirect": None, "text": "", "timestamp": ""}
    for child in element:
        name = _local_name(child.tag)
        if name == "title":
            fields["title"] = child.text or ""
        elif name == "ns":
            fields["ns"] = int(child.text or 0)
        elif name == "id":
            fields["id"] = int(child.text or 0)
        elif name == "redirect":
            fields["redirect"] = child.get("title", "")
        elif name == "revision":
            # the newest revision wins when a dump carries several (pages-meta-history)
            for part in child:
                if _local_name(part.tag) in ("text", "timestamp"):
                    fields[_local_name(part.tag)] = part.text or ""
    title = fields["title"]
    return Page(fields["id"], title, fields["ns"], fields["redirect"], fields["text"], page_url(base_url, title),
                fields["timestamp"])


def iter_pages(
    path: Path | str,
    *,
    progress: bool = False,
    stats: DumpStats | None = None,
    segments: Sequence[tuple[int, int | None] | bytes] | None = None,
    read_ahead: bool = True,
) -> Iterator[Page]:
    """Yield every ``<page>`` of a dump (``.xml``, ``.xml.bz2`` or multistream ``.xml.bz2``).

    The XML is fed to a pull parser chunk by chunk and each page is cleared once yielded, so memory
    stays flat however big the dump is. A truncated or corrupt file raises ``DumpError`` after the
    pages before the fault have been yielded (bz2 restores whole blocks of up to 900 kB, so the
    pages of the block that breaks are lost with it). ``stats.pages_read`` counts pages as they go.
    ``segments`` reads only those byte ranges of the file (and literal bytes) as if they were the
    file: one shard of a multistream dump (``helpers.multistream.shard_segments``). ``read_ahead``
    decompresses bz2 on a second thread; where every core already runs a parser it only adds work.
    """
    path = Path(path)
    if not path.exists():
        raise DumpNotFoundError(
            f"{path}: no such dump. Check the path, or download one (see `helpers.dump.download`); "
            "the tiny profile reads data/tiny/enwiki-tiny.xml.bz2",
            path=path,
        )
    pages_read = 0
    last_title: str | None = None

    def fail(what: str, offset: int, advice: str) -> DumpError:
        after = f"after page {pages_read} ({last_title!r})" if last_title is not None else "before the first page"
        return DumpError(
            f"{path}: {what}, {after}; reading had reached byte {offset:,} of the file. {advice}",
            path=path, byte_offset=offset, pages_read=pages_read, last_title=last_title,
        )

    with open(path, "rb") as real_file:
        raw_file = real_file if segments is None else _Segments(real_file, segments)
        head = raw_file.read(4)
        raw_file.seek(0)
        compressed = head.startswith(b"BZh")
        if head.startswith(b"\x1f\x8b"):
            raise fail("the file is gzip-compressed; MediaWiki dumps come as .xml.bz2 or plain .xml", 0,
                       f"Download the .xml.bz2 dump, or decompress this file first (`gunzip -k {path.name}`).")
        if not compressed and path.suffix == ".bz2":
            raise fail(f"the file is named .bz2 but holds no bz2 data (it starts with {head!r})", 0,
                       "The download is probably an error page or incomplete: download it again (helpers.dump.download).")
        chunks = ((_read_ahead(_bz2_chunks(raw_file)) if read_ahead else _bz2_chunks(raw_file)) if compressed
                  else _plain_chunks(raw_file))
        bar = progress_bar(path.stat().st_size, path.name) if progress else None
        parser = ET.XMLPullParser(events=("start", "end"))
        base_url: str | None = None
        language: str | None = None
        root: ET.Element | None = None
        in_siteinfo = False
        first_chunk = True
        try:
            while True:
                try:
                    chunk = next(chunks, None)
                except (EOFError, OSError) as error:
                    what = "truncated" if isinstance(error, EOFError) else f"corrupt ({error})"
                    raise fail(
                        f"the bz2 data is {what}", raw_file.tell(),
                        "The download is probably incomplete: download the file again (helpers.dump.download "
                        "resumes), or check it against the dump's md5sums/sha1sums file.",
                    ) from error
                if first_chunk and chunk:
                    first_chunk = False
                    encoding = _sniff_encoding_problem(chunk[:200])
                    if encoding:
                        raise fail(
                            f"the dump is encoded in {encoding}, but MediaWiki dumps are UTF-8", 0,
                            f"Convert it first, e.g. `iconv -f {encoding} -t UTF-8 in.xml > out.xml`.",
                        )
                    if not chunk.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
                        raise fail(
                            f"the {'decompressed data is' if compressed else 'file is'} not XML (it starts with "
                            f"{chunk[:40]!r})", 0,
                            "Pass a MediaWiki XML export, such as simplewiki-latest-pages-articles-multistream.xml.bz2.",
                        )
                if bar is not None:
                    bar.update(raw_file.tell() - bar.n)
                if chunk is None:
                    break
                parser.feed(chunk)
                for event, element in parser.read_events():
                    name = _local_name(element.tag)
                    if event == "start":
                        if root is None:
                            root = element
                            language = element.get("{http://www.w3.org/XML/1998/namespace}lang")
                            if name != "mediawiki":
                                raise fail(
                                    f"the XML is not a MediaWiki export (its root element is <{name}>, not <mediawiki>)",
                                    0, "Pass a dump from dumps.wikimedia.org, or an export from Special:Export.",
                                )
                        elif name == "siteinfo":
                            in_siteinfo = True
                        continue
                    if in_siteinfo:
                        if name == "base":
                            base_url = base_url_from_siteinfo(element.text)
                        elif name == "siteinfo":
                            in_siteinfo = False
                            root.clear()
                        continue
                    if name != "page":
                        continue
                    page = page_from_element(element, base_url or base_url_from_siteinfo(None, language))
                    root.clear()  # constant memory: drop the finished page from the tree
                    pages_read += 1
                    last_title = page.title
                    if stats is not None:
                        stats.pages_read += 1
                        stats.last_title = page.title
                    yield page
            parser.close()
            for _ in parser.read_events():
                pass
        except ET.ParseError as error:
            raise fail(
                f"malformed XML ({error} of the XML)",
                raw_file.tell(),
                "The file is not a complete MediaWiki XML export: download it again, or cut it at a "
                "page boundary.",
            ) from error
        finally:
            if bar is not None:
                bar.close()


def read_siteinfo(path: Path | str) -> dict[str, Any]:
    """The dump's ``<siteinfo>`` (sitename, dbname, base, generator, namespaces); reads only the head."""
    path = Path(path)
    opener = bz2.open if is_bz2(path) else open
    info: dict[str, Any] = {"namespaces": {}}
    with opener(path, "rb") as handle:
        for event, element in ET.iterparse(handle, events=("start", "end")):
            name = _local_name(element.tag)
            if name == "page" or (event, name) == ("end", "siteinfo"):
                break  # a dump cut without <siteinfo> has its first page here
            if event == "start":
                continue
            if name == "namespace":
                info["namespaces"][int(element.get("key", 0))] = element.text or ""
            elif name != "namespaces":
                info[name] = element.text
    return info


def progress_bar(total_bytes: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"parsing {name}", mininterval=0.5)


# --------------------------------------------------------------------------------------------
# 3. Articles
# --------------------------------------------------------------------------------------------

DISAMBIGUATION_TEMPLATE_RE = re.compile(
    r"\{\{\s*(?:disambiguation|disambig|disamb|dab|hndis|geodis|numberdis|mathdab|schooldis|hospitaldis"
    r"|roaddis|letter-numbercombdisambig)\s*(?:\||\}\})",
    re.I,
)
REDIRECT_TEXT_RE = re.compile(r"^\s*#redirect\b", re.I)


def is_disambiguation(page: Page) -> bool:
    """A disambiguation page: "(disambiguation)" in the title or a {{disambiguation}}-like template."""
    return page.title.endswith("(disambiguation)") or bool(DISAMBIGUATION_TEMPLATE_RE.search(page.text))


def is_redirect(page: Page) -> bool:
    return page.redirect is not None or bool(REDIRECT_TEXT_RE.match(page.text))


def page_to_article(page: Page, keep_tables: bool = False) -> dict[str, Any]:
    """The article record of a page: ``{"id", "title", "url", "sections"}``."""
    return {"id": page.id, "title": page.title, "url": page.url, "sections": parse_wikitext(page.text, keep_tables)}


def iter_articles(
    path: Path | str,
    *,
    skip_redirects: bool = True,
    skip_disambiguation: bool = True,
    keep_tables: bool = False,
    progress: bool = False,
    stats: DumpStats | None = None,
    max_articles: int | None = None,
    segments: Sequence[tuple[int, int | None] | bytes] | None = None,
    read_ahead: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield the article records of a dump: main namespace, redirects and disambiguation skipped.

    ``stats`` (a ``DumpStats``) is filled in as pages go by; ``max_articles`` stops after that many
    kept articles (a sample from the start of the dump); ``segments``, ``read_ahead``: see ``iter_pages``.
    """
    stats = stats if stats is not None else DumpStats()
    started = time.perf_counter()
    try:
        for page in iter_pages(path, progress=progress, stats=stats, segments=segments, read_ahead=read_ahead):
            if page.namespace != 0:
                stats.skip("namespace")
            elif skip_redirects and is_redirect(page):
                stats.skip("redirect")
            elif skip_disambiguation and is_disambiguation(page):
                stats.skip("disambiguation")
            elif not page.text.strip():
                stats.skip("empty")
            else:
                article = page_to_article(page, keep_tables)
                if not article["sections"]:
                    stats.skip("empty")
                    continue
                stats.articles_kept += 1
                stats.sections_kept += len(article["sections"])
                stats.characters_kept += sum(len(section["text"]) for section in article["sections"])
                stats.latest_edit = max(stats.latest_edit, page.timestamp)
                yield article
                if max_articles is not None and stats.articles_kept >= max_articles:
                    return
    finally:
        stats.seconds += time.perf_counter() - started
