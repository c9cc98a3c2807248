"""Cut the course's tiny corpus from the real dump samples in ``../shared/corpora``.

Run once by a maintainer (``python data/make_tiny_corpus.py``); the result is committed under
``data/tiny/`` so that nothing reads ``../shared`` at run time. The pages are copied byte for byte
from the real dumps (XML header, redirects, the non-article page, disambiguation pages and a
selection of articles), then recompressed with bz2.
"""
from __future__ import annotations

import argparse
import bz2
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "corpora"

# Small and medium articles keep the shipped file at a few hundred KiB while still covering
# infoboxes, tables, lists, refs and nested sections.
MAX_ARTICLE_CHARS = 75_000
ARTICLE_BUDGET_CHARS = 1_050_000

PAGE_RE = re.compile(rb"  <page>\n.*?  </page>\n", re.S)


def _page_fields(page: bytes) -> tuple[str, int, bool, int]:
    title = re.search(rb"<title>(.*?)</title>", page).group(1).decode()
    namespace = int(re.search(rb"<ns>(-?\d+)</ns>", page).group(1))
    is_redirect = b"<redirect" in page
    return title, namespace, is_redirect, len(page)


def cut(source: Path, destination: Path) -> list[str]:
    """Write a smaller dump holding a selection of ``source``'s pages; return the kept titles."""
    raw = bz2.open(source).read()
    pages = list(PAGE_RE.finditer(raw))
    header, footer = raw[: pages[0].start()], raw[pages[-1].end():]
    kept, used = [], 0
    for match in pages:
        page = match.group(0)
        title, namespace, is_redirect, size = _page_fields(page)
        keep = is_redirect or namespace != 0 or "(disambiguation)" in title
        if not keep and size <= MAX_ARTICLE_CHARS and used + size <= ARTICLE_BUDGET_CHARS:
            keep, used = True, used + size
        if keep:
            kept.append(page)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with bz2.open(destination, "wb", compresslevel=9) as out:
        out.write(header + b"".join(kept) + footer)
    return [_page_fields(p)[0] for p in kept]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    titles = cut(args.shared / "enwiki-2016-sample.xml.bz2", HERE / "tiny" / "enwiki-tiny.xml.bz2")
    print(f"enwiki-tiny.xml.bz2: {len(titles)} pages")
    tables = HERE / "tiny" / "enwiki-table-markup.xml.bz2"
    tables.write_bytes((args.shared / "enwiki-table-markup.xml.bz2").read_bytes())
    print(f"{tables.name}: copied as is")


if __name__ == "__main__":
    main()
