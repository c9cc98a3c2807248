"""Chapter 01: stream a MediaWiki XML dump into sectioned articles, one JSON object per line.

Read top to bottom:

1. errors and counters (``DumpError``, ``DumpStats``)
2. reading pages from ``.xml``, ``.xml.bz2`` and multistream ``.xml.bz2`` in constant memory
3. turning wikitext into plain text split into sections (``parse_wikitext``)
4. articles: pages filtered (namespace, redirects, disambiguation) and parsed (``iter_articles``)
5. writing and reading JSONL (``dump_to_jsonl``, ``read_jsonl``, ``load_articles_dataset``)
6. multistream random access (``build_multistream``, ``read_multistream_index``, ``fetch_articles``)
7. downloading a dump with resume (``download``)

``python -m helpers.dump DUMP -o OUT.jsonl`` runs ``dump_to_jsonl`` and prints its counts.
"""
from __future__ import annotations

import argparse
import bz2
import contextlib
import html
import json
import os
import queue
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def as_dict(self) -> dict[str, int | float]:
        """A flat dict (``skipped_<reason>`` keys), ready for ``summary.json`` or a table."""
        flat: dict[str, int | float] = {"pages_read": self.pages_read, "articles_kept": self.articles_kept}
        flat |= {f"skipped_{reason}": count for reason, count in self.skipped.items()}
        flat |= {
            "sections_kept": self.sections_kept,
            "characters_kept": self.characters_kept,
            "seconds": round(self.seconds, 3),
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


def _is_bz2(path: Path | str) -> bool:
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


def _page_from_element(element: ET.Element, base_url: str) -> Page:
    fields: dict[str, Any] = {"id": None, "title": "", "ns": 0, "redirect": None, "text": ""}
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
                if _local_name(part.tag) == "text":
                    fields["text"] = part.text or ""
    title = fields["title"]
    return Page(fields["id"], title, fields["ns"], fields["redirect"], fields["text"], page_url(base_url, title))


def iter_pages(
    path: Path | str,
    *,
    progress: bool = False,
    stats: DumpStats | None = None,
) -> Iterator[Page]:
    """Yield every ``<page>`` of a dump (``.xml``, ``.xml.bz2`` or multistream ``.xml.bz2``).

    The XML is fed to a pull parser chunk by chunk and each page is cleared once yielded, so memory
    stays flat however big the dump is. A truncated or corrupt file raises ``DumpError`` after the
    pages before the fault have been yielded (bz2 restores whole blocks of up to 900 kB, so the
    pages of the block that breaks are lost with it). ``stats.pages_read`` counts pages as they go.
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

    with open(path, "rb") as raw_file:
        is_bz2 = raw_file.read(3) == b"BZh"
        raw_file.seek(0)
        chunks = _read_ahead(_bz2_chunks(raw_file)) if is_bz2 else _plain_chunks(raw_file)
        bar = _progress_bar(path.stat().st_size, path.name) if progress else None
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
                    page = _page_from_element(element, base_url or base_url_from_siteinfo(None, language))
                    root.clear()  # constant memory: drop the finished page from the tree
                    pages_read += 1
                    last_title = page.title
                    if stats is not None:
                        stats.pages_read += 1
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
    opener = bz2.open if _is_bz2(path) else open
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


def _progress_bar(total_bytes: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc=f"parsing {name}", mininterval=0.5)


# --------------------------------------------------------------------------------------------
# 3. Wikitext to sections of plain text
# --------------------------------------------------------------------------------------------

# Tags whose content is not article prose: references, formulas, galleries, scores...
DROPPED_TAGS = (
    "ref", "references", "math", "chem", "ce", "gallery", "timeline", "imagemap", "score", "graph",
    "mapframe", "maplink", "templatedata", "syntaxhighlight", "source", "hiero", "inputbox",
    "categorytree", "includeonly", "noinclude",
)
_DROPPED_TAG_NAMES = "|".join(DROPPED_TAGS)
COMMENT_RE = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
SELF_CLOSING_DROPPED_RE = re.compile(rf"<(?:{_DROPPED_TAG_NAMES})\b[^>]*/>", re.I)
DROPPED_ELEMENT_RE = re.compile(rf"<({_DROPPED_TAG_NAMES})\b[^>]*>.*?(?:</\1\s*>|\Z)", re.I | re.S)
LINE_BREAK_TAG_RE = re.compile(r"<br\s*/?>|<br\s[^>]*>", re.I)
ANY_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")

# One scan finds template braces and table delimiters (a table opens and closes at a line start).
BRACE_TOKEN_RE = re.compile(r"\{\{|\}\}|^[ \t]*\{\||^[ \t]*\|\}", re.M)
CELL_ATTRIBUTES_RE = re.compile(r"""^(?:\s*[\w-]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s|"']+))+\s*$""")
TABLE_ROW_MARK = "\x01"  # tells the paragraph builder that a line is a table row, kept as its own line
LINK_TOKEN_RE = re.compile(r"\[\[|\]\]")
EXTERNAL_LINK_RE = re.compile(r"\[(?:https?:|ftp:|mailto:|//)[^\s\]]*(?:[ \t]+([^\]\n]*))?\]", re.I)
BOLD_ITALIC_RE = re.compile(r"'{2,5}")
MAGIC_WORD_RE = re.compile(r"__[A-Z]+__")
HEADING_RE = re.compile(r"^(={1,6})(.+?)(={1,6})[ \t]*$", re.M)
# Runs of spaces and odd spaces only: matching every single space would cost a call per word.
SPACES_RE = re.compile(r" [ \t\u00a0\u2009\u202f]+|[\t\u00a0\u2009\u202f][ \t\u00a0\u2009\u202f]*")
LIST_MARKER_RE = re.compile(r"^[*#:;]+\s*")
# What removed templates leave behind: "Andorra (; , )" and "Award of Merit ."
EMPTY_PARENTHESES_RE = re.compile(r"\([ \t,;:.–-]*\)")
SPACE_BEFORE_PUNCTUATION_RE = re.compile(r" ([.,;:!?])(?=\s|$)", re.M)
ENTITY_RE = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")

# Links into these namespaces are not prose: media, categories. (Lower case, no colon.)
NON_TEXT_LINK_PREFIXES = {"file", "image", "category", "media"}
# An interlanguage link's prefix is a language code: "fr", "zh-min-nan", "simple".
LANGUAGE_PREFIX_RE = re.compile(r"^(?:[a-z]{2,3}(?:-[a-z]{2,8}){0,3}|simple)$")

BOILERPLATE_HEADINGS = {
    "references", "reference", "external links", "external link", "see also", "further reading",
    "notes", "note", "bibliography", "sources", "citations", "footnotes", "works cited",
    "general references", "specific references", "other references", "cited sources", "reference notes",
    "explanatory notes", "citation notes", "endnotes", "additional reading", "related articles",
    "references cited", "web links",
}
DISAMBIGUATION_TEMPLATE_RE = re.compile(
    r"\{\{\s*(?:disambiguation|disambig|disamb|dab|hndis|geodis|numberdis|mathdab|schooldis|hospitaldis"
    r"|roaddis|letter-numbercombdisambig)\s*(?:\||\}\})",
    re.I,
)
REDIRECT_TEXT_RE = re.compile(r"^\s*#redirect\b", re.I)

# A few inline templates carry words of the sentence around them; their content is kept.
KEEP_FIRST_ARGUMENT_TEMPLATES = {"nowrap", "nobr", "small", "big", "smallcaps", "sc", "nowiki", "lang-en"}
KEPT_TEMPLATES = KEEP_FIRST_ARGUMENT_TEMPLATES | {"lang", "convert", "cvt"}


def _template_replacement(body: str, keep_tables: bool) -> str:
    """The text a template leaves in the sentence: nothing, except for a few inline ones."""
    name, _, rest = body.partition("|")
    name = name.strip().lower().replace("_", " ")
    if not rest or name not in KEPT_TEMPLATES:
        return ""
    arguments = [argument for argument in _split_arguments(rest) if "=" not in argument]
    if name in KEEP_FIRST_ARGUMENT_TEMPLATES and arguments:
        return strip_braces(arguments[0], keep_tables)
    if name == "lang" and len(arguments) >= 2:
        return strip_braces(arguments[1], keep_tables)
    if name in ("convert", "cvt") and len(arguments) >= 2:
        # "{{convert|468|km2|sqmi}}" reads "468 km2"; a range "{{convert|1|to|2|m}}" reads "1 to 2 m"
        if len(arguments) >= 4 and arguments[1] in ("to", "-", "and", "or", "by", "x", "×"):
            return " ".join(argument.strip() for argument in arguments[:4])
        return f"{arguments[0].strip()} {arguments[1].strip()}"
    return ""


def _split_arguments(text: str) -> list[str]:
    """Split template arguments at the pipes that are not inside a nested link or template."""
    arguments, depth, start = [], 0, 0
    for position, character in enumerate(text):
        if character in "[{":
            depth += 1
        elif character in "]}":
            depth -= 1
        elif character == "|" and depth <= 0:
            arguments.append(text[start:position])
            start = position + 1
    arguments.append(text[start:])
    return arguments


def strip_braces(text: str, keep_tables: bool = False) -> str:
    """Remove templates ``{{...}}`` and tables ``{|...|}``, nested to any depth, in one linear scan.

    A stack of open positions pairs each closing token with its opener; only the outermost spans are
    cut, so the cost is linear in the text length. With ``keep_tables`` a table becomes one line per
    row, cells separated by `` | ``.
    """
    if "{" not in text and "}" not in text:
        return text
    pieces: list[str] = []
    stack: list[tuple[str, int]] = []  # (kind, start) of open templates ("{{") and tables ("{|")
    copied_up_to = 0
    for token in BRACE_TOKEN_RE.finditer(text):
        mark = token.group().strip()
        if mark in ("{{", "{|"):
            if not stack:
                pieces.append(text[copied_up_to:token.start()])
            stack.append((mark, token.end()))
            continue
        wanted = "{{" if mark == "}}" else "{|"
        if not stack or not any(kind == wanted for kind, _ in stack):
            if not stack:  # a stray closer outside any span: drop it, keep the text before
                pieces.append(text[copied_up_to:token.start()])
                copied_up_to = token.end()
            continue
        while stack[-1][0] != wanted:  # an unclosed inner span ends with its parent
            stack.pop()
        kind, body_start = stack.pop()
        if not stack:
            body = text[body_start:token.start()]
            if kind == "{{":
                pieces.append(_template_replacement(body, keep_tables))
            elif keep_tables:
                pieces.append("\n" + table_to_text(strip_braces(body, keep_tables)) + "\n")
            copied_up_to = token.end()
    if stack:  # the outermost opener never closes: drop just its mark and read on after it
        pieces.append(strip_braces(text[stack[0][1]:], keep_tables))
    else:
        pieces.append(text[copied_up_to:])
    return "".join(pieces)


def table_to_text(table_body: str) -> str:
    """Rows of a wikitable (the part between ``{|`` and ``|}``) as lines of `` | ``-separated cells."""
    rows: list[list[str]] = []
    current: list[str] = []
    caption = ""
    for line in table_body.split("\n")[1:]:  # the first line holds the table's attributes
        line = line.strip()
        if not line:
            continue
        if line.startswith("|-"):
            if current:
                rows.append(current)
            current = []
        elif line.startswith("|+"):
            caption = _cell_content(line[2:])
        elif line[0] in "|!":
            separator = "||" if line[0] == "|" else "!!"
            cells = line[1:].split(separator) if separator == "||" else re.split(r"!!|\|\|", line[1:])
            current.extend(_cell_content(cell) for cell in cells)
        elif current:  # a cell's content continues on the next line
            current[-1] = (current[-1] + " " + line).strip()
    if current:
        rows.append(current)
    lines = [caption] if caption else []
    lines += [" | ".join(cell for cell in row if cell) for row in rows]
    return "\n".join(TABLE_ROW_MARK + line for line in lines if line.strip())


def _cell_content(cell: str) -> str:
    """A cell's text without its attributes (``style="..." | text``); links are still whole here."""
    depth, cut = 0, -1
    for position, character in enumerate(cell):
        if character == "[":
            depth += 1
        elif character == "]":
            depth -= 1
        elif character == "|" and depth == 0:
            cut = position
            break
    if cut >= 0 and "=" in cell[:cut] or cut >= 0 and not cell[:cut].strip():
        cell = cell[cut + 1:]
    if CELL_ATTRIBUTES_RE.match(cell):  # only attributes left: the cell held a template
        return ""
    return cell.strip()


def strip_links(text: str) -> str:
    """Replace ``[[target|label]]`` by its label and drop file, image, category and language links.

    File captions may hold links of their own, so outermost links are found with a stack.
    """
    if "[[" not in text:
        return text
    pieces: list[str] = []
    depth = 0
    start = 0
    copied_up_to = 0
    for token in LINK_TOKEN_RE.finditer(text):
        if token.group() == "[[":
            if depth == 0:
                pieces.append(text[copied_up_to:token.start()])
                start = token.end()
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                pieces.append(_link_label(text[start:token.start()]))
                copied_up_to = token.end()
    if depth > 0:  # an unclosed "[[": drop just that mark and read on from there
        pieces.append(strip_links(text[start:]))
    else:
        pieces.append(text[copied_up_to:])
    return "".join(pieces).replace("]]", "")


def _link_label(inner: str) -> str:
    target, pipe, label = inner.partition("|")
    visible_colon = target.startswith(":")  # [[:Category:X]] is an ordinary, visible link
    target = target.lstrip(":").strip()
    prefix, colon, _ = target.partition(":")
    prefix = prefix.strip().lower()
    if colon and not visible_colon and (prefix in NON_TEXT_LINK_PREFIXES or LANGUAGE_PREFIX_RE.match(prefix)):
        return ""
    if pipe:
        label = label.strip()
        if not label:  # the "pipe trick": [[Paris, Texas|]] reads "Paris"
            return re.sub(r"\s*\(.*?\)\s*$", "", target.split(",")[0]).strip()
        return strip_links(label) if "[[" in label else label
    return target


def _unescape(text: str) -> str:
    # The XML parser undid one level of escaping; "&amp;nbsp;" in the dump leaves "&nbsp;" here,
    # and a second level occasionally survives in the wikitext itself.
    for _ in range(2):
        if "&" not in text or not ENTITY_RE.search(text):
            break
        text = html.unescape(text)
    return text


def clean_inline(text: str, keep_tables: bool = False) -> str:
    """Wikitext to plain text, lines kept: comments, refs, tags, templates, tables, links, quotes out."""
    text = COMMENT_RE.sub("", text)
    if "<" in text:
        text = SELF_CLOSING_DROPPED_RE.sub("", text)
        text = DROPPED_ELEMENT_RE.sub("", text)
        text = LINE_BREAK_TAG_RE.sub("\n", text)
    text = strip_braces(text, keep_tables)
    text = strip_links(text)
    if "[" in text:
        text = EXTERNAL_LINK_RE.sub(lambda match: match.group(1) or "", text)
    if "''" in text:
        text = BOLD_ITALIC_RE.sub("", text)
    text = MAGIC_WORD_RE.sub("", text)
    if "<" in text:
        text = ANY_TAG_RE.sub("", text)
    text = _unescape(text)
    if "<" in text:  # tags written as entities ("&lt;br/&gt;") only become tags once unescaped
        text = LINE_BREAK_TAG_RE.sub("\n", text)
        text = ANY_TAG_RE.sub("", text)
    return text


def _paragraphs(text: str) -> str:
    """A section's lines to paragraphs: prose lines joined, list items and table rows one per line."""
    if "(" in text:
        text = EMPTY_PARENTHESES_RE.sub("", text)
    text = SPACES_RE.sub(" ", text)
    text = SPACE_BEFORE_PUNCTUATION_RE.sub(r"\1", text)
    paragraphs: list[str] = []
    block: list[str] = []
    prose: list[str] = []

    def end_prose() -> None:
        if prose:
            block.append(" ".join(prose))
            prose.clear()

    def end_block() -> None:
        end_prose()
        if block:
            paragraphs.append("\n".join(block))
            block.clear()

    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("----"):
            end_block()
        elif line[0] in "*#:;" + TABLE_ROW_MARK:
            end_prose()
            item = LIST_MARKER_RE.sub("", line.lstrip(TABLE_ROW_MARK))
            if item:
                block.append(item)
        else:
            if block and not prose:  # prose after a list starts a new paragraph
                end_block()
            prose.append(line)
    end_block()
    return "\n\n".join(paragraphs)


def is_boilerplate_heading(heading: str) -> bool:
    """True for References, External links, See also, "Notes and references" and the like."""
    normalized = re.sub(r"[^\w\s&,]", "", heading.lower())
    parts = [part.strip() for part in re.split(r",|&|\band\b", normalized)]
    parts = [part for part in parts if part]
    return bool(parts) and all(part in BOILERPLATE_HEADINGS for part in parts)


def parse_wikitext(text: str, keep_tables: bool = False) -> list[dict[str, Any]]:
    """Split wikitext into ``[{"heading", "level", "text"}]`` sections of plain text.

    The lead section comes first with heading ``""`` and level 1; ``==`` headings are level 2,
    ``===`` level 3 and so on. Boilerplate sections (References, See also...) are dropped with their
    subsections, and so are sections left with neither text nor subsections.
    """
    text = clean_inline(text, keep_tables)
    sections: list[dict[str, Any]] = []
    heading, level, start = "", 1, 0
    for match in HEADING_RE.finditer(text):
        sections.append({"heading": heading, "level": level, "text": text[start:match.start()]})
        opening, closing = match.group(1), match.group(3)
        level = min(len(opening), len(closing))
        # unequal marks ("== A ===") leave the extra signs in the heading, as MediaWiki does
        heading = (opening[level:] + match.group(2) + closing[level:]).strip()
        heading = SPACES_RE.sub(" ", heading).strip(" =")
        start = match.end()
    sections.append({"heading": heading, "level": level, "text": text[start:]})

    kept: list[dict[str, Any]] = []
    dropping_below: int | None = None  # inside a boilerplate section: its level
    for section in sections:
        if dropping_below is not None and section["level"] > dropping_below:
            continue
        dropping_below = None
        if section["heading"] and is_boilerplate_heading(section["heading"]):
            dropping_below = section["level"]
            continue
        section["text"] = _paragraphs(section["text"])
        kept.append(section)
    return _drop_empty_sections(kept)


def _drop_empty_sections(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Walk backwards so a heading whose subsections all vanished is seen as empty too.
    kept: list[dict[str, Any]] = []
    for section in reversed(sections):
        has_children = bool(kept) and kept[-1]["level"] > section["level"]
        if section["text"] or (has_children and section["heading"]):
            kept.append(section)
    return kept[::-1]


# --------------------------------------------------------------------------------------------
# 4. Articles
# --------------------------------------------------------------------------------------------


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
) -> Iterator[dict[str, Any]]:
    """Yield the article records of a dump: main namespace, redirects and disambiguation skipped.

    ``stats`` (a ``DumpStats``) is filled in as pages go by; ``max_articles`` stops after that many
    kept articles (a sample from the start of the dump).
    """
    stats = stats if stats is not None else DumpStats()
    started = time.perf_counter()
    try:
        for page in iter_pages(path, progress=progress, stats=stats):
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
                yield article
                if max_articles is not None and stats.articles_kept >= max_articles:
                    return
    finally:
        stats.seconds += time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# 5. JSONL in and out
# --------------------------------------------------------------------------------------------


def dump_to_jsonl(dump: Path | str, out: Path | str, **options: Any) -> DumpStats:
    """Write the articles of ``dump`` to ``out`` as JSON lines; return the counts.

    ``options`` are those of ``iter_articles`` (a ``stats`` given there is filled in and returned).
    The file appears only when complete. If the dump
    breaks midway, the articles before the fault are written to ``out`` (complete lines, up to the
    fault) and the ``DumpError`` is raised afterwards, saying so.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats: DumpStats = options.pop("stats", None) or DumpStats()
    partial = out.with_name(f".{out.name}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as handle:
            for article in iter_articles(dump, stats=stats, **options):
                handle.write(json.dumps(article, ensure_ascii=False) + "\n")
    except DumpNotFoundError:
        partial.unlink()
        raise
    except DumpError as error:
        os.replace(partial, out)
        error.args = (
            f"{error.args[0]}\nThe {stats.articles_kept} articles before the fault were written to {out}.",
        )
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    os.replace(partial, out)
    return stats


def iter_jsonl(path: Path | str) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSON-lines file one at a time."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """All records of a JSON-lines file (the article files of chapters 01 and 02)."""
    return list(iter_jsonl(path))


def load_articles_dataset(path: Path | str):
    """The articles of a JSONL file as a ``datasets.Dataset`` with a fixed schema."""
    import datasets

    features = datasets.Features({
        "id": datasets.Value("int64"),
        "title": datasets.Value("string"),
        "url": datasets.Value("string"),
        "sections": [{
            "heading": datasets.Value("string"),
            "level": datasets.Value("int32"),
            "text": datasets.Value("string"),
        }],
    })
    records = [{key: record[key] for key in features} for record in iter_jsonl(path)]
    return datasets.Dataset.from_list(records, features=features)


# --------------------------------------------------------------------------------------------
# 6. Multistream dumps: random access by title
# --------------------------------------------------------------------------------------------
# Wikimedia's pages-articles-multistream.xml.bz2 is a series of independent bz2 streams: the XML
# header, then 100 pages per stream, then the closing tag. Its index has one line per page,
# "offset:page_id:title", offset being where the page's stream starts in the compressed file.


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
    opener = bz2.open if _is_bz2(src_dump) else open
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


def read_multistream_index(path: Path | str) -> dict[str, IndexEntry]:
    """Title -> ``IndexEntry`` from a multistream index (plain text or ``.bz2``).

    Stream lengths come from the next stream's offset; the last page stream's length is left open.
    """
    path = Path(path)
    if not path.exists():
        raise DumpNotFoundError(f"{path}: no such multistream index (…-multistream-index.txt.bz2)", path=path)
    opener = bz2.open if _is_bz2(path) else open
    rows: list[tuple[int, int, str]] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            try:
                offset, page_id, title = line.split(":", 2)  # titles may contain colons
                rows.append((int(offset), int(page_id), title))
            except ValueError as error:
                raise DumpError(
                    f"{path}, line {number}: {line[:80]!r} is not `offset:page_id:title`; is this the "
                    "dump's -multistream-index.txt.bz2?", path=path,
                ) from error
    offsets = sorted({offset for offset, _, _ in rows})
    next_offset = dict(zip(offsets, offsets[1:]))
    return {
        title: IndexEntry(title, page_id, offset, next_offset[offset] - offset if offset in next_offset else None)
        for offset, page_id, title in rows
    }


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
                page = _page_from_element(element, base_url)
                pages[page.title] = page
    return [page_to_article(pages[title], keep_tables) for title in titles]


# --------------------------------------------------------------------------------------------
# 7. Downloading a dump
# --------------------------------------------------------------------------------------------


def download(url: str, dest: Path | str, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download; return ``dest``.

    The bytes go to ``dest.partial`` first and move into place only once complete, so a file at
    ``dest`` is always whole (and is not downloaded again). An unreachable host raises
    ``DownloadError`` naming the URL and pointing at Wikimedia's mirrors.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "corpus-to-client course"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file already holds every byte
            os.replace(partial, dest)
            return dest
        raise DownloadError(
            f"{url}: the server answered HTTP {error.code} ({error.reason}). Check the URL, or try a "
            f"mirror of the dumps (list: {WIKIMEDIA_MIRRORS}) and put the file at {dest}.",
            path=dest,
        ) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(
            f"{url}: cannot reach the host ({reason}). Check your connection, or download the file from "
            f"a mirror of the dumps (list: {WIKIMEDIA_MIRRORS}) and put it at {dest}.",
            path=dest,
        ) from error
    with response:
        resumed = response.status == 206
        mode = "ab" if resumed else "wb"  # a server that ignores Range sends the whole file again
        length = response.headers.get("Content-Length")
        total = (int(length) + (have if resumed else 0)) if length else None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
                       desc=f"downloading {dest.name}")
        try:
            with open(partial, mode) as handle:
                while chunk := response.read(READ_CHUNK_BYTES):
                    handle.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except OSError as error:
            raise DownloadError(
                f"{url}: the download broke off after {partial.stat().st_size:,} bytes ({error}). Run "
                "again to resume it.", path=dest,
            ) from error
        finally:
            if bar is not None:
                bar.close()
    if total is not None and partial.stat().st_size < total:
        raise DownloadError(
            f"{url}: got {partial.stat().st_size:,} of {total:,} bytes. Run again to resume the download.",
            path=dest,
        )
    os.replace(partial, dest)
    return dest


def local_source(source: str | Path, download_dir: Path | str) -> Path:
    """A profile's dump source as a local file: a URL is downloaded (resumably) into ``download_dir``."""
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        name = urllib.parse.urlparse(source).path.rsplit("/", 1)[-1]
        return download(source, Path(download_dir) / name)
    return Path(source)


# --------------------------------------------------------------------------------------------
# 8. Quality checks: markup left in the output, headings kept
# --------------------------------------------------------------------------------------------

# What a reader should never see in the text: the marks of wikitext and of HTML/XML.
RESIDUE_PATTERNS: dict[str, re.Pattern[str]] = {
    "{{": re.compile(r"\{\{"),
    "}}": re.compile(r"\}\}"),
    "[[": re.compile(r"\[\["),
    "]]": re.compile(r"\]\]"),
    "<ref": re.compile(r"<ref", re.I),
    "{|": re.compile(r"\{\|"),
    "|}": re.compile(r"\|\}"),
    "'''": re.compile(r"'''"),
    "html/xml tag": ANY_TAG_RE,
    "html entity": ENTITY_RE,
    "heading ==": re.compile(r"^=+|==", re.M),
}


def markup_residue(texts: Iterable[str]) -> dict[str, float]:
    """Markup marks per 10,000 characters of ``texts``, by kind, plus ``"total"`` and ``"characters"``."""
    counts = dict.fromkeys(RESIDUE_PATTERNS, 0)
    characters = 0
    for text in texts:
        characters += len(text)
        for name, pattern in RESIDUE_PATTERNS.items():
            counts[name] += len(pattern.findall(text))
    scale = 10_000 / max(characters, 1)
    per_10k = {name: count * scale for name, count in counts.items()}
    return per_10k | {"total": sum(per_10k.values()), "characters": characters}


def article_text(article: dict[str, Any]) -> str:
    """An article record as one text: headings as lines of their own, sections separated by blank lines."""
    parts = [article["title"]]
    for section in article["sections"]:
        parts += [section["heading"], section["text"]] if section["heading"] else [section["text"]]
    return "\n\n".join(part for part in parts if part)


def wikitext_headings(wikitext: str) -> list[str]:
    """The section headings of raw wikitext as a reader sees them, boilerplate sections left out.

    Deliberately independent of ``parse_wikitext``: simple patterns on the heading lines only.
    """
    wikitext = COMMENT_RE.sub("", wikitext)
    headings: list[str] = []
    dropping_below: int | None = None
    for match in HEADING_RE.finditer(wikitext):
        level = min(len(match.group(1)), len(match.group(3)))
        heading = re.sub(r"<ref[^>]*/>|<ref.*?</ref>|\{\{[^{}]*\}\}|<[^>]+>|'{2,}", "", match.group(2))
        heading = re.sub(r"\[\[(?:[^|\]]*\|)?([^\]]*)\]\]", r"\1", heading)
        heading = " ".join(html.unescape(heading).split())
        if dropping_below is not None and level > dropping_below:
            continue
        dropping_below = None
        if is_boilerplate_heading(heading):
            dropping_below = level
            continue
        if heading:
            headings.append(heading)
    return headings


def heading_recall(
    path: Path | str, *, keep_tables: bool = False, max_articles: int | None = None
) -> dict[str, Any]:
    """How many of the wikitext's non-boilerplate headings are section headings in our output.

    Only the articles ``iter_articles`` keeps count (the first ``max_articles`` of them if given).
    Returns ``found``, ``expected``, ``recall`` and the ``missed`` (title, heading) pairs.
    """
    found, expected, missed, articles = 0, 0, [], 0
    for page in iter_pages(path):
        if page.namespace != 0 or is_redirect(page) or is_disambiguation(page) or not page.text.strip():
            continue
        articles += 1
        if max_articles is not None and articles > max_articles:
            break
        ours = {" ".join(section["heading"].split()).casefold() for section in parse_wikitext(page.text, keep_tables)}
        for heading in wikitext_headings(page.text):
            expected += 1
            if heading.casefold() in ours:
                found += 1
            else:
                missed.append((page.title, heading))
    return {"found": found, "expected": expected, "recall": found / max(expected, 1), "missed": missed}


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Parse a MediaWiki XML dump into sectioned articles (JSONL).")
    parser.add_argument("dump", type=Path, help=".xml, .xml.bz2 or pages-articles-multistream.xml.bz2")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the JSONL file to write")
    parser.add_argument("--keep-tables", action="store_true", help="keep table rows as text")
    parser.add_argument("--keep-redirects", action="store_true", help="do not skip redirect pages")
    parser.add_argument("--keep-disambiguation", action="store_true", help="do not skip disambiguation pages")
    parser.add_argument("--max-articles", type=int, default=None, help="stop after this many articles")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    stats = DumpStats()
    try:
        dump_to_jsonl(
            args.dump, args.output, stats=stats, keep_tables=args.keep_tables,
            skip_redirects=not args.keep_redirects, skip_disambiguation=not args.keep_disambiguation,
            max_articles=args.max_articles, progress=not args.no_progress,
        )
    except DumpError as error:
        print(f"error: {error}", file=sys.stderr)
        _print_stats(stats, file=sys.stderr)
        return 1
    _print_stats(stats)
    print(f"wrote {args.output}")
    return 0


def _print_stats(stats: DumpStats, file: IO[str] = sys.stdout) -> None:
    for key, value in stats.as_dict().items():
        print(f"{key:24s} {value:>12,}" if isinstance(value, int) else f"{key:24s} {value:>12}", file=file)


if __name__ == "__main__":
    sys.exit(main())
