"""Peak memory of chapter 02's cleaning as the corpus grows: the whole list against the stream.

    python benchmarks/bench_stream_memory.py --articles 5000,50000 --mode stream
    python benchmarks/bench_stream_memory.py --articles 5000 --mode list

The corpus is the tiny corpus's real articles, copied until it holds the number asked for (the colab
profile's slice is 5,000 articles), each copy with fresh ids and titles and with one word in four
replaced by another word of the same article, so that the duplicate filters do not collapse the
copies into one (a copy of a paragraph shares few 5-word shingles with its original) while the text
stays the article's own vocabulary. Each size is cleaned in a fresh process, timed, its peak RSS read
from the kernel by that process itself (``ru_maxrss``):

- ``list``: ``clean_articles(read_jsonl(...))`` then ``save_articles``, chapter 02's cells;
- ``stream``: ``clean_jsonl(in, out)``, one article in memory at a time.

Records go to benchmarks/results/bench_stream_memory.jsonl (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "benchmarks" / "data"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "bench_stream_memory.jsonl"
WORD_RE = re.compile(r"[A-Za-z]{3,}")

PEAK = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"  # KiB, this process's own
CLEAN = {
    "list": "from helpers import clean, dump; import sys\n"
            "result = clean.clean_articles(dump.read_jsonl(sys.argv[1]))\n"
            "clean.save_articles(result.articles, sys.argv[2])\n" + PEAK,
    "stream": "from helpers import clean; import sys\n"
              "clean.clean_jsonl(sys.argv[1], sys.argv[2])\n" + PEAK,
}


def varied(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    return WORD_RE.sub(lambda word: rng.choice(vocabulary) if rng.random() < 0.25 else word.group(0), text)


def build_corpus(articles: int) -> Path:
    """``articles`` articles made from the tiny corpus's, one word in four varied per copy; built once."""
    path = DATA / f"stream-{articles}-articles.jsonl"
    if path.exists():
        return path
    sys.path.insert(0, str(REPO_ROOT))
    from helpers import dump

    real = list(dump.iter_articles(REPO_ROOT / "data" / "tiny" / "enwiki-tiny.xml.bz2"))
    DATA.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(path.with_suffix(".partial"), "w", encoding="utf-8") as out:
        for number in range(articles):
            copy, index = divmod(number, len(real))
            article = real[index]
            vocabulary = WORD_RE.findall(" ".join(section["text"] for section in article["sections"])) or ["word"]
            sections = [{**section, "text": varied(section["text"], rng, vocabulary) if copy else section["text"]}
                        for section in article["sections"]]
            out.write(json.dumps({**article, "id": number + 1, "title": f"{article['title']} ({copy + 1})",
                                  "sections": sections}, ensure_ascii=False) + "\n")
    path.with_suffix(".partial").rename(path)
    return path


def run(mode: str, source: Path) -> dict:
    out = source.with_name(f"{source.stem}.{mode}.clean.jsonl")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CLEAN[mode], str(source), str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    peak_kib = int(done.stdout.split()[-1])
    lines = sum(1 for _ in open(out, encoding="utf-8"))
    out.unlink()
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(peak_kib / 1024, 1), "articles_out": lines,
            "cpu_seconds": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before.ru_utime, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", default="5000", help="corpus sizes, e.g. 5000,50000 (the colab slice is 5,000)")
    parser.add_argument("--mode", choices=sorted(CLEAN), default="stream")
    args = parser.parse_args(argv)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for articles in [int(n) for n in args.articles.split(",")]:
        source = build_corpus(articles)
        # one size per process: ru_maxrss of RUSAGE_CHILDREN is the largest child's, so each size runs alone
        record = {"mode": args.mode, "articles": articles, "input_mb": round(source.stat().st_size / 1e6, 1),
                  **run(args.mode, source), "machine": f"{platform.node()} ({os.cpu_count()} cores)"}
        print(json.dumps(record), flush=True)
        with RESULTS.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
