"""Chapter 01: stream a MediaWiki XML dump into sectioned articles, one JSON object per line.

The work is split along its jobs, and every name stays importable from here (``dump.iter_pages``,
``from helpers.dump import read_jsonl``), the one module chapter 01 and the tests import:

- ``helpers.pages``: errors and counters, reading pages in constant memory (``iter_pages``), and
  the articles among them (``iter_articles``);
- ``helpers.wikitext``: wikitext to plain text split into sections (``parse_wikitext``);
- ``helpers.multistream``: random access by title (``build_multistream``, ``read_multistream_index``,
  ``fetch_articles``);
- ``helpers.download``: downloading a dump with resume (``download``, ``local_source``);
- here: writing and reading JSONL (``dump_to_jsonl``, ``read_jsonl``, ``load_articles_dataset``),
  the quality checks (``markup_residue``, ``heading_recall``) and the command line.

``python -m helpers.dump DUMP -o OUT.jsonl`` runs ``dump_to_jsonl`` and prints its counts.
"""
from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from helpers.course import OutputBusyError, new_partial, output_lock

# Re-exported: each job's module owns its names; this one gathers them for the chapter and the tests.
from helpers.download import (
    checksums_url,
    download,
    download_sample,
    local_source,
    published_sha1,
)
from helpers.multistream import (
    IndexEntry,
    build_multistream,
    fetch_articles,
    read_multistream_index,
    read_stream,
    read_stream_offsets,
    shard_segments,
)
from helpers.pages import (
    DEFAULT_BASE_URL,
    DISAMBIGUATION_TEMPLATE_RE,
    READ_CHUNK_BYTES,
    REDIRECT_TEXT_RE,
    SKIP_REASONS,
    WIKIMEDIA_MIRRORS,
    DownloadError,
    DumpError,
    DumpNotFoundError,
    DumpStats,
    Page,
    base_url_from_siteinfo,
    is_bz2,
    is_disambiguation,
    is_redirect,
    iter_articles,
    iter_pages,
    page_from_element,
    page_to_article,
    page_url,
    progress_bar,
    read_siteinfo,
    text_licence,
)
from helpers.wikitext import (
    ANY_TAG_RE,
    BOILERPLATE_HEADINGS,
    BOLD_ITALIC_RE,
    BRACE_TOKEN_RE,
    CELL_ATTRIBUTES_RE,
    COMMENT_RE,
    DROPPED_TAG_RE,
    DROPPED_TAGS,
    EMPTY_PARENTHESES_RE,
    ENTITY_RE,
    EXTERNAL_LINK_RE,
    HEADING_RE,
    KEEP_FIRST_ARGUMENT_TEMPLATES,
    KEPT_TEMPLATES,
    LANGUAGE_PREFIX_RE,
    LINE_BREAK_TAG_RE,
    LINK_TOKEN_RE,
    LIST_MARKER_RE,
    MAGIC_WORD_RE,
    NON_TEXT_LINK_PREFIXES,
    RUN_TO_END_TAGS,
    SPACES_RE,
    SPACE_BEFORE_PUNCTUATION_RE,
    TABLE_ROW_MARK,
    clean_inline,
    drop_elements,
    is_boilerplate_heading,
    parse_wikitext,
    strip_braces,
    strip_links,
    table_to_text,
)


# --------------------------------------------------------------------------------------------
# 5. JSONL in and out
# --------------------------------------------------------------------------------------------


def salvage_path(out: Path | str) -> Path:
    """Where ``dump_to_jsonl`` keeps the articles read before a fault: ``NAME.until-fault.jsonl`` beside ``out``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.until-fault{out.suffix}")


def multistream_index_for(dump: Path | str) -> Path:
    """Where Wikimedia puts a multistream dump's index: ``X-multistream.xml.bz2`` -> ``X-multistream-index.txt.bz2``."""
    dump = Path(dump)
    stem = dump.name.removesuffix(".bz2").removesuffix(".xml")
    return dump.with_name(f"{stem}-index.txt.bz2")


def parse_processes(dump: Path | str, processes: int | None, index: Path | str | None = None) -> tuple[int, Path | None]:
    """How many processes parse ``dump``, and the index that shards it.

    ``None`` means every core when the dump has its multistream index (``index``, or Wikimedia's name
    for it beside the dump), else one. More than one needs the index: a dump of one bz2 stream cannot
    be cut without reading it from the start.
    """
    index = Path(index) if index is not None else multistream_index_for(dump)
    has_index = index.exists()
    if processes is None:
        return (os.cpu_count() or 1, index) if has_index else (1, None)
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    if processes > 1 and not has_index:
        raise DumpError(f"{dump}: parsing with {processes} processes cuts the dump at its bz2 streams, which needs "
                        f"its multistream index ({index} is not there). Download the -multistream-index.txt.bz2 "
                        "beside the -multistream.xml.bz2 dump, pass it (index=...), or use processes=1.", path=dump)
    return processes, index if processes > 1 else None


def dump_to_jsonl(dump: Path | str, out: Path | str, *, processes: int | None = 1, index: Path | str | None = None,
                  **options: Any) -> DumpStats:
    """Write the articles of ``dump`` to ``out`` as JSON lines; return the counts.

    ``options`` are those of ``iter_articles`` (a ``stats`` given there is filled in and returned).
    ``processes`` > 1 parses a multistream dump in shards of whole bz2 streams, one process each
    (``None``: every core when the index is there; see ``parse_processes``), and writes exactly the
    bytes one process writes. ``out`` appears only when complete, and a failed parse never touches
    it: if the dump breaks midway, the articles before the fault go to ``salvage_path(out)`` and the
    ``DumpError`` says so. A second process writing the same ``out`` is refused
    (``course.OutputBusyError``, naming its PID), and so is an ``out`` that is the dump itself.
    """
    dump, out = Path(dump), Path(out)
    if dump.resolve() == out.resolve() or (dump.exists() and out.exists() and dump.samefile(out)):
        raise DumpError(f"{out}: the output is the dump itself, and writing it would destroy the dump. "
                        "Give another output file (chapter 01 writes 01_dump/articles.jsonl).", path=dump)
    stats: DumpStats = options.pop("stats", None) or DumpStats()
    workers, index = parse_processes(dump, processes if options.get("max_articles") is None else 1, index)
    stats.processes = workers
    with output_lock(out):
        partial = new_partial(out)
        try:
            if workers > 1:
                _write_shards(dump, index, workers, partial, stats, options)
            else:
                with open(partial, "w", encoding="utf-8") as handle:
                    for article in iter_articles(dump, stats=stats, **options):
                        handle.write(json.dumps(article, ensure_ascii=False) + "\n")
        except DumpError as error:
            kept = stats.articles_kept
            if kept and not isinstance(error, DumpNotFoundError):
                os.replace(partial, salvage_path(out))
                where = f"The {kept} articles before the fault were written to {salvage_path(out)}"
            else:
                partial.unlink()
                where = "No article was read before the fault"
            before = "the earlier complete file is still there" if out.exists() else "nothing was written there"
            error.args = (f"{error.args[0]}\n{where}; {out} was not touched ({before}).",)
            raise
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            raise
        os.replace(partial, out)
    return stats


def _write_shards(dump: Path, index: Path, processes: int, partial: Path, stats: DumpStats,
                  options: dict[str, Any]) -> None:
    """Parse the shards of a multistream dump in ``processes`` processes; append them to ``partial`` in order."""
    import multiprocessing

    started = time.perf_counter()
    progress = options.pop("progress", False)
    # Several shards per process, so that one slow shard (long articles) does not leave the others idle.
    shards = shard_segments(dump, read_stream_offsets(index), processes * 8)
    bar = progress_bar(dump.stat().st_size, f"{dump.name}, {processes} processes") if progress else None
    shard_dir = Path(tempfile.mkdtemp(prefix=f".{partial.name}.", suffix=".shards", dir=partial.parent))
    try:
        # spawn: a fresh interpreter per worker, safe in a Jupyter kernel (fork copies its threads' locks)
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool, \
                open(partial, "wb") as target:
            files = [shard_dir / f"{number:05d}.jsonl" for number in range(len(shards))]
            # A reader thread per worker pays only while cores are left for it: past half the cores it
            # adds switching between threads, about a tenth more CPU time (benchmarks/README.md).
            read_ahead = processes * 2 <= (os.cpu_count() or 1)
            futures = [pool.submit(_parse_shard, str(dump), segments, str(file), options | {"read_ahead": read_ahead})
                       for segments, file in zip(shards, files)]
            if bar is not None:
                for future, segments in zip(futures, shards):
                    start, end = segments[1]
                    future.add_done_callback(lambda _, size=(end or dump.stat().st_size) - start: bar.update(size))
            for future, file in zip(futures, files):
                shard_stats, error = future.result()
                pages_before, title_before = stats.pages_read, stats.last_title
                stats.add(shard_stats)
                with open(file, "rb") as source:
                    shutil.copyfileobj(source, target, 1 << 20)
                file.unlink()
                if error is not None:
                    for pending in futures:
                        pending.cancel()
                    message, fields = error
                    # The worker counted the pages of its shard; the message counts from the dump's start
                    # (both phrases are iter_pages's own).
                    read, title = pages_before + fields["pages_read"], fields["last_title"] if fields["pages_read"] else title_before
                    local = f"after page {fields['pages_read']} ({fields['last_title']!r})" if fields["pages_read"] else "before the first page"
                    message = message.replace(local, f"after page {read} ({title!r})" if read else "before the first page", 1)
                    raise DumpError(message, path=dump, byte_offset=fields["byte_offset"], pages_read=read, last_title=title)
    finally:
        shutil.rmtree(shard_dir, ignore_errors=True)
        if bar is not None:
            bar.close()
        stats.seconds += time.perf_counter() - started


def _parse_shard(dump: str, segments: list, out: str, options: dict[str, Any]) -> tuple[DumpStats, tuple | None]:
    """One worker's part: the articles of one shard, written to ``out``; its counts and any fault."""
    stats = DumpStats()
    with open(out, "w", encoding="utf-8") as handle:
        try:
            for article in iter_articles(dump, stats=stats, segments=segments, **options):
                handle.write(json.dumps(article, ensure_ascii=False) + "\n")
        except DumpError as error:  # returned, not raised: the parent keeps what came before it
            return stats, (str(error), {"byte_offset": error.byte_offset, "pages_read": error.pages_read or 0,
                                        "last_title": error.last_title})
    return stats, None


class JsonlError(ValueError):
    """A JSON-lines file holds a line that is not a JSON object; the message names the file and the line."""


def iter_jsonl(path: Path | str, *, required: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
    """Yield the records of a JSON-lines file one at a time.

    A line that is not a JSON object, or lacks one of the ``required`` keys, raises ``JsonlError``
    naming the file, the line number and what to do, before anything downstream uses a bad record.
    """
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise JsonlError(
                    f"{path}, line {number}: not valid JSON ({error.msg}, column {error.colno}). The file was "
                    "probably cut short or edited by hand: run the chapter that writes it again") from None
            if not isinstance(record, dict):
                raise JsonlError(f"{path}, line {number}: a {type(record).__name__}, not a JSON object. "
                                 "Run the chapter that writes it again")
            missing = [key for key in required if key not in record]
            if missing:
                raise JsonlError(f"{path}, line {number}: the record has no {', '.join(missing)}. "
                                 "Run the chapter that writes it again")
            yield record


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
    parser.add_argument("--max-articles", type=int, default=None, help="stop after this many articles (one process)")
    parser.add_argument("--processes", type=int, default=None,
                        help="parse a multistream dump in this many processes (default: every core when its index "
                             "is beside it, else one); the output is the same bytes whatever the number")
    parser.add_argument("--index", type=Path, default=None,
                        help="the multistream index (default: X-multistream-index.txt.bz2 beside X-multistream.xml.bz2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    stats = DumpStats()
    try:
        dump_to_jsonl(
            args.dump, args.output, stats=stats, keep_tables=args.keep_tables,
            skip_redirects=not args.keep_redirects, skip_disambiguation=not args.keep_disambiguation,
            max_articles=args.max_articles, progress=not args.no_progress, processes=args.processes, index=args.index,
        )
    except DumpError as error:
        print(f"error: {error}", file=sys.stderr)
        _print_stats(stats, file=sys.stderr)
        return 1
    except (OutputBusyError, OSError, ValueError) as error:  # OSError: no permission, a read-only or full disk
        print(f"error: {error}", file=sys.stderr)
        return 1
    _print_stats(stats)
    print(f"wrote {args.output}")
    return 0


def _print_stats(stats: DumpStats, file: IO[str] = sys.stdout) -> None:
    for key, value in stats.as_dict().items():
        print(f"{key:24s} {value:>12,}" if isinstance(value, int) else f"{key:24s} {value:>12}", file=file)


if __name__ == "__main__":
    sys.exit(main())
