"""Peak memory of chapters 02 and 03 as the corpus grows: the whole list against the stream.

    python benchmarks/bench_stream_memory.py --articles 5000,50000 --mode stream
    python benchmarks/bench_stream_memory.py --articles 5000 --mode list
    python benchmarks/bench_stream_memory.py --articles 5000,50000 --mode pairs

The corpus is the tiny corpus's real articles, copied until it holds the number asked for (the colab
profile's slice is 5,000 articles), each copy with fresh ids and titles and with six words in ten
(of three letters or more) replaced by words of the same article, drawn as often as the article uses
them: the duplicate filters keep the copies, and the text keeps the article's vocabulary and its
share of function words. Why six in ten: every base paragraph has a copy in each of the corpus's
copies (15,625 at 500,000 articles), and near-duplicate candidates grow with that number. With one
word in four replaced, a copy shares about 42% of its 3-word shingles with the original paragraph
and meets it in an LSH band about one time in seven: at 2,000 articles a paragraph already had 3.2
candidates to check (measured), at 50,000 some 80, and the main process spent 920 of the run's
1,647 CPU seconds checking them. Real text has few such near-misses; with six in ten replaced, a
copy shares about 6% of the original's shingles and meets it about one time in 26,000. Each size is cleaned in a fresh process, timed, its peak RSS read
from the kernel by that process itself (``ru_maxrss``):

- ``list``: ``clean_articles(read_jsonl(...))`` then ``save_articles``, chapter 02's cells;
- ``stream``: ``clean_jsonl(in, out)``, one article in memory at a time;
- ``pairs-list``: chapter 03's cells, ``make_pairs``, ``dedupe_pairs``, ``split_by_article`` and
  ``save_pairs`` on the whole list;
- ``pairs``: ``pairs_jsonl(in, out_dir)``, one article in memory at a time (pass 1 deals the
  articles, pass 2 writes the split files and their Arrow batches, the DatasetDict is saved from those).

The pairing reads the grown corpus itself (chapter 01's schema, which chapter 02 keeps). Beside the
peak, each record has the duplicate index's own arrays when the work ended (cleaning:
``CleaningReport.duplicate_index_bytes``; pairing: ``pairs_jsonl``'s ``duplicate_index_bytes``, the
response keys' table; the lists mode counts 12 bytes a kept pair) and the peak of anonymous memory (sampled) less them: the part that must stay flat.
With ``--processes N`` or a list such as ``1,2,4,8,16`` (stream mode), ``clean_jsonl`` runs its per-article filters in N worker
processes; the record adds the largest worker's peak RSS and the main process's own CPU seconds
(the part that does not spread: reading, the duplicate index, writing).

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
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "benchmarks" / "data"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "bench_stream_memory.jsonl"
WORD_RE = re.compile(r"[A-Za-z]{3,}")
VARIED_SHARE = 0.6  # of the words of 3 letters or more, replaced in each copy (why 0.6: the module docstring)

# The process's anonymous memory (its heap: what it allocated, not the files it maps), sampled every
# 20 ms by a thread. Peak RSS also counts the pages of files mapped into memory, such as the Arrow
# files `datasets` writes and reads back: the kernel's page cache, which it can drop at any time.
ANON = ("import threading, time\n"
        "peak_anon = [0]\n"
        "def sample():\n"
        "    while True:\n"
        "        with open('/proc/self/status') as status:\n"
        "            kib = next(int(line.split()[1]) for line in status if line.startswith('RssAnon:'))\n"
        "        peak_anon[0] = max(peak_anon[0], kib)\n"
        "        time.sleep(0.02)\n"
        "threading.Thread(target=sample, daemon=True).start()\n")
# KiB: this process's own peak, then its largest worker's (0 if none); this process's own CPU milliseconds
PEAK = ("import resource; time.sleep(0.05)\n"
        "own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(peak_anon[0], own.ru_maxrss, workers.ru_maxrss, round(1000 * (own.ru_utime + own.ru_stime)))\n")
MAIN = "if __name__ == '__main__':\n"  # worker processes (spawn) import this script: the work runs once


def _main_only(code: str) -> str:
    return MAIN + "".join(f"    {line}\n" for line in code.splitlines())
CLEAN = {
    "list": "from helpers import clean, dump; import sys\n"
            "result = clean.clean_articles(dump.read_jsonl(sys.argv[1]))\n"
            "clean.save_articles(result.articles, sys.argv[2])\n"
            "print(result.report.duplicate_index_bytes, result.report.totals['paragraphs_out'])\n" + PEAK,
    "stream": "from helpers import clean; import sys\n"
              "report, _ = clean.clean_jsonl(sys.argv[1], sys.argv[2], processes=int(sys.argv[3]))\n"
              "print(report.duplicate_index_bytes, report.totals['paragraphs_out'])\n" + PEAK,
    # chapter 03 on the same grown corpus (articles as chapter 01 writes them: pairing reads that schema)
    "pairs-list": "from helpers import dump, pairs; import sys\n"
                  "kept, _ = pairs.dedupe_pairs(pairs.make_pairs(dump.read_jsonl(sys.argv[1])))\n"
                  "splits = pairs.split_by_article(kept)\n"
                  "pairs.save_pairs(splits, sys.argv[2])\n"
                  "print(12 * len(kept), sum(map(len, splits.values())))\n" + PEAK,
    "pairs": "from helpers import pairs; import sys\n"
             "counts = pairs.pairs_jsonl(sys.argv[1], sys.argv[2])\n"
             "print(counts['duplicate_index_bytes'], sum(counts['rows'].values()))\n" + PEAK,
}


def varied(text: str, rng: random.Random, vocabulary: list[str]) -> str:
    return WORD_RE.sub(lambda word: rng.choice(vocabulary) if rng.random() < VARIED_SHARE else word.group(0), text)


def build_corpus(articles: int) -> Path:
    """``articles`` articles made from the tiny corpus's, ``VARIED_SHARE`` of the words varied per copy; built once."""
    path = DATA / f"stream-{articles}-articles-varied{round(100 * VARIED_SHARE)}.jsonl"
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


def run(mode: str, source: Path, processes: int) -> dict:
    out = source.with_name(f"{source.stem}.{mode}.pairs" if mode.startswith("pairs") else f"{source.stem}.{mode}.clean.jsonl")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    script = source.with_name(f"{source.stem}.{mode}.py")  # a file: spawned workers re-import the main module
    script.write_text(_main_only(ANON + CLEAN[mode]))
    done = subprocess.run([sys.executable, str(script), str(source), str(out), str(processes)], cwd=REPO_ROOT,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))})
    seconds = time.perf_counter() - started
    script.unlink()
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    index_bytes, paragraphs, anon_kib, peak_kib, worker_kib, main_cpu_ms = (int(word) for word in done.stdout.split()[-6:])
    if out.is_dir():  # chapter 03's folder: the split files and the DatasetDict
        lines = sum(1 for split in out.glob("*.jsonl") for _ in open(split, encoding="utf-8"))
        shutil.rmtree(out)
    else:
        lines = sum(1 for _ in open(out, encoding="utf-8"))
        out.unlink()
    return {"seconds": round(seconds, 1), "peak_rss_mib": round(peak_kib / 1024, 1), "rows_out": lines,
            "paragraphs_or_pairs_out": paragraphs, "index_mib": round(index_bytes / 2**20, 1),
            "peak_anon_mib": round(anon_kib / 1024, 1), "anon_less_index_mib": round(anon_kib / 1024 - index_bytes / 2**20, 1),
            "processes": processes, "largest_worker_peak_rss_mib": round(worker_kib / 1024, 1),
            "main_process_cpu_seconds": round(main_cpu_ms / 1000, 1),
            "cpu_seconds": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before.ru_utime, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", default="5000", help="corpus sizes, e.g. 5000,50000 (the colab slice is 5,000)")
    parser.add_argument("--mode", choices=sorted(CLEAN), default="stream")
    parser.add_argument("--processes", default="1",
                        help="stream mode: clean_jsonl's processes, e.g. 1,2,4,8,16 (the workers' peak is recorded beside the main one)")
    args = parser.parse_args(argv)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for articles in [int(n) for n in args.articles.split(",")]:
        source = build_corpus(articles)
        for processes in [int(n) for n in args.processes.split(",")]:
            # one run per process: ru_maxrss of RUSAGE_CHILDREN is the largest child's, so each runs alone
            record = {"mode": args.mode, "articles": articles, "input_mb": round(source.stat().st_size / 1e6, 1),
                      **run(args.mode, source, processes), "machine": f"{platform.node()} ({os.cpu_count()} cores)"}
            print(json.dumps(record), flush=True)
            with RESULTS.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
