"""Throughput of chapter 01's parser against WikiExtractor 3.1.0 on a dump of tens of MB.

    python benchmarks/bench_dump.py                 # builds benchmarks/data/bench-40MB.xml.bz2 once
    python benchmarks/bench_dump.py --megabytes 80  # a bigger one

The dump is real pages: the tiny corpus's pages (articles, redirects, disambiguation pages and the
table-heavy articles) repeated with fresh ids and titles until the uncompressed XML reaches the
size asked for, then bz2-compressed. It goes to benchmarks/data/ (git-ignored).

Each tool runs once as a whole process, timed from start to exit (interpreter start-up, bz2
decompression and writing included):

- ``python -m helpers.dump DUMP -o OUT.jsonl --no-progress`` (one process);
- ``python -m wikiextractor.WikiExtractor --json -q -o OUTDIR DUMP`` with its defaults: template
  preprocessing pass, then ``cpu_count() - 1`` extract processes plus a reader and a reducer.

Results are printed and written to benchmarks/results/bench_dump.json. This is a measurement, not a
test: the machine's load changes the numbers, so note what else was running.
"""
from __future__ import annotations

import argparse
import bz2
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from real_pages import page_copy, real_pages

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "benchmarks" / "data"
RESULTS = REPO_ROOT / "benchmarks" / "results"


def build_bench_dump(megabytes: int) -> Path:
    """A dump of about ``megabytes`` MB of XML made of the tiny corpus's real pages; built once."""
    path = DATA / f"bench-{megabytes}MB.xml.bz2"
    if path.exists():
        return path
    header, pages = real_pages()
    target = megabytes * 1_000_000
    DATA.mkdir(parents=True, exist_ok=True)
    compressor = bz2.BZ2Compressor(9)
    written, copy, next_id = len(header), 0, 1
    with open(path.with_suffix(".partial"), "wb") as out:
        out.write(compressor.compress(header))
        while written < target:
            copy += 1
            for page in pages:
                page, _ = page_copy(page, next_id, copy)
                next_id += 1
                written += len(page)
                out.write(compressor.compress(page))
        out.write(compressor.compress(b"</mediawiki>\n"))
        out.write(compressor.flush())
    path.with_suffix(".partial").rename(path)
    return path


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds


def count_wikiextractor_articles(folder: Path) -> int:
    return sum(len(part.read_bytes().splitlines()) for part in folder.rglob("wiki_*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=40, help="uncompressed size of the dump (default 40)")
    args = parser.parse_args(argv)

    bench = build_bench_dump(args.megabytes)
    xml_bytes = sum(len(chunk) for chunk in _decompressed(bench))
    RESULTS.mkdir(parents=True, exist_ok=True)
    ours_out = RESULTS / "bench-ours.jsonl"
    theirs_out = RESULTS / "bench-wikiextractor"
    shutil.rmtree(theirs_out, ignore_errors=True)

    ours_seconds = timed([sys.executable, "-m", "helpers.dump", str(bench), "-o", str(ours_out), "--no-progress"])
    theirs_seconds = timed([sys.executable, "-m", "wikiextractor.WikiExtractor", "--json", "-q",
                            "-o", str(theirs_out), str(bench)])
    ours_articles = len(ours_out.read_bytes().splitlines())
    theirs_articles = count_wikiextractor_articles(theirs_out)

    result = {
        "dump": str(bench.relative_to(REPO_ROOT)),
        "compressed_mb": round(bench.stat().st_size / 1e6, 2),
        "xml_mb": round(xml_bytes / 1e6, 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ours": {"seconds": round(ours_seconds, 2), "articles": ours_articles,
                 "xml_mb_per_s": round(xml_bytes / 1e6 / ours_seconds, 2)},
        "wikiextractor": {"seconds": round(theirs_seconds, 2), "articles": theirs_articles,
                          "xml_mb_per_s": round(xml_bytes / 1e6 / theirs_seconds, 2),
                          "processes": f"defaults: {max(1, (os.cpu_count() or 2) - 1)} extract process(es) + reader + reducer"},
        "speedup": round(theirs_seconds / ours_seconds, 2),
    }
    (RESULTS / "bench_dump.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


def _decompressed(path: Path):
    with bz2.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            yield chunk


if __name__ == "__main__":
    sys.exit(main())
