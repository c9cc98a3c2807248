"""Output quality of chapter 01's parser against WikiExtractor 3.1.0, on the same real pages.

    python benchmarks/quality_dump.py            # both tiny dumps, prints a Markdown table

For every dump in data/tiny/ both tools parse the same file; the articles both of them output are
compared (WikiExtractor keeps disambiguation pages, we skip them). Reported, side by side:

- markup residue per 10,000 output characters, by kind (``helpers.dump.RESIDUE_PATTERNS``);
- heading recall: of the wikitext's non-boilerplate section headings, the fraction that are section
  headings in our output, and the fraction that are a line of their own in WikiExtractor's text
  (it writes a heading as a line, with a full stop added).

WikiExtractor is run as installed (``python -m wikiextractor.WikiExtractor --json``), in a temporary
folder. One workaround, and no change to its code: it reads the ``<siteinfo>`` header by looping
over the input until ``</siteinfo>``; data/tiny/enwiki-table-markup.xml.bz2 has no siteinfo, so that
loop consumes the whole file and WikiExtractor writes 0 articles without an error. For that file it
is given a copy with the tiny dump's siteinfo header inserted.
"""
from __future__ import annotations

import argparse
import bz2
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from helpers import dump  # noqa: E402

TINY = REPO_ROOT / "data" / "tiny"


def with_siteinfo(path: Path, folder: Path) -> Path:
    """``path`` itself if it has a ``<siteinfo>``, else a copy with the tiny dump's header inserted."""
    xml = bz2.decompress(path.read_bytes())
    if b"<siteinfo>" in xml[:10_000]:
        return path
    header = bz2.decompress((TINY / "enwiki-tiny.xml.bz2").read_bytes())
    siteinfo = header[header.index(b"  <siteinfo>"): header.index(b"</siteinfo>") + len(b"</siteinfo>\n")]
    opening_end = xml.index(b">", xml.index(b"<mediawiki")) + 2
    copy = folder / f"{path.name.removesuffix('.xml.bz2')}-with-siteinfo.xml.bz2"
    copy.write_bytes(bz2.compress(xml[:opening_end] + siteinfo + xml[opening_end:]))
    return copy


def run_wikiextractor(path: Path, folder: Path) -> dict[str, str]:
    """Title -> text of WikiExtractor's JSON output for ``path``."""
    out = folder / "wikiextractor"
    result = subprocess.run(
        [sys.executable, "-m", "wikiextractor.WikiExtractor", "--json", "-q", "-o", str(out), str(path)],
        capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"WikiExtractor failed on {path}:\n{result.stderr[-3000:]}")
    texts: dict[str, str] = {}
    for part in sorted(out.rglob("wiki_*")):
        for line in part.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            texts[record["title"]] = record["text"]
    return texts


def wikiextractor_heading_recall(path: Path, texts: dict[str, str]) -> tuple[int, int]:
    """(found, expected): wikitext headings that are a line of WikiExtractor's text."""
    found = expected = 0
    for page in dump.iter_pages(path):
        if page.title not in texts or dump.is_redirect(page) or dump.is_disambiguation(page):
            continue
        lines = {line.strip().rstrip(".").casefold() for line in texts[page.title].split("\n")}
        for heading in dump.wikitext_headings(page.text):
            expected += 1
            found += heading.rstrip(".").casefold() in lines
    return found, expected


def compare(path: Path, keep_tables: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        theirs = run_wikiextractor(with_siteinfo(path, Path(tmp)), Path(tmp))
    ours = {article["title"]: article for article in dump.iter_articles(path, keep_tables=keep_tables)}
    shared = sorted(set(ours) & set(theirs))
    recall = dump.heading_recall(path, keep_tables=keep_tables)
    their_found, their_expected = wikiextractor_heading_recall(path, theirs)
    return {
        "dump": path.name,
        "articles": {"ours": len(ours), "wikiextractor": len(theirs), "compared": len(shared)},
        "ours": dump.markup_residue(dump.article_text(ours[title]) for title in shared),
        "wikiextractor": dump.markup_residue(theirs[title] for title in shared),
        "heading_recall": {
            "ours": recall["recall"],
            "ours_found": recall["found"],
            "expected": recall["expected"],
            "wikiextractor": their_found / max(their_expected, 1),
            "wikiextractor_found": their_found,
            "missed_by_us": recall["missed"],
        },
    }


def markdown(results: list[dict]) -> str:
    kinds = [kind for kind in dump.RESIDUE_PATTERNS] + ["total"]
    lines = []
    for result in results:
        articles = result["articles"]
        lines += [
            f"**{result['dump']}**: {articles['compared']} articles compared (ours {articles['ours']}, "
            f"WikiExtractor {articles['wikiextractor']}); output characters: ours "
            f"{result['ours']['characters']:,}, WikiExtractor {result['wikiextractor']['characters']:,}",
            "",
            "| marks per 10k characters | ours | WikiExtractor 3.1.0 |",
            "| --- | ---: | ---: |",
        ]
        lines += [f"| `{kind}` | {result['ours'][kind]:.2f} | {result['wikiextractor'][kind]:.2f} |" for kind in kinds]
        recall = result["heading_recall"]
        lines += [
            f"| heading recall | {recall['ours']:.1%} ({recall['ours_found']}/{recall['expected']}) "
            f"| {recall['wikiextractor']:.1%} ({recall['wikiextractor_found']}/{recall['expected']}) |",
            "",
        ]
        if recall["missed_by_us"]:
            missed = ", ".join(f"{title}: {heading}" for title, heading in recall["missed_by_us"][:12])
            lines += [f"Headings we do not output: {missed}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dumps", nargs="*", type=Path, default=sorted(TINY.glob("*.xml.bz2")))
    parser.add_argument("--keep-tables", action="store_true", help="parse ours with keep_tables=True")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = [compare(path, args.keep_tables) for path in args.dumps]
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    worse = [r["dump"] for r in results if r["ours"]["total"] > r["wikiextractor"]["total"]]
    if worse:
        print(f"ours leaves more markup than WikiExtractor on: {', '.join(worse)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
