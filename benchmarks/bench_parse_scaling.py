"""Chapter 01's parser on several processes: a multistream dump of over a gigabyte, cut at its streams.

    python benchmarks/bench_parse_scaling.py --gigabytes 1.0 --processes 16,8,4,2,1
    python benchmarks/bench_parse_scaling.py --gigabytes 1.0 --report

The dump is real pages: the tiny corpus's pages (articles, redirects, disambiguation pages and the
table-heavy articles) repeated with fresh ids and titles, written as a Wikimedia-style multistream
dump (100 pages per bz2 stream, the XML header and the closing tag in streams of their own) with its
``-index.txt.bz2``, until the compressed file reaches the size asked for. Its streams are compressed
on every core, as independent streams can be; it goes to benchmarks/data/ (git-ignored), built once.

Each run is a whole process, timed from start to exit (interpreter and worker start-up, reading the
index, bz2 decompression, writing the JSONL and joining the shards included)::

    python -m helpers.dump DUMP -o OUT.jsonl --processes N --no-progress

Every output's SHA-256 is recorded: the outputs of every N must be the same bytes. Records are
appended to benchmarks/results/bench_parse_scaling.jsonl; ``--report`` prints the speed-ups against
the one-process run of the same dump on the same machine.
"""
from __future__ import annotations

import argparse
import bz2
import hashlib
import html
import json
import os
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from real_pages import page_copy, real_pages

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "benchmarks" / "data"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "bench_parse_scaling.jsonl"
PAGES_PER_STREAM = 100
STREAMS_PER_TASK = 50

def _streams(first_stream: int, count: int) -> list[tuple[bytes, int, list[tuple[int, bytes]]]]:
    """Streams ``first_stream``... of the benchmark dump: (compressed bytes, XML bytes, [(page id, title)])."""
    _, pages = real_pages()
    out = []
    for stream in range(first_stream, first_stream + count):
        xml, listed = [], []
        for number in range(stream * PAGES_PER_STREAM, (stream + 1) * PAGES_PER_STREAM):
            copy, page = divmod(number, len(pages))
            text, title = page_copy(pages[page], number + 1, copy + 1)
            xml.append(text)
            listed.append((number + 1, html.unescape(title.decode()).encode()))  # the index holds plain titles
        data = b"".join(xml)
        out.append((bz2.compress(data, 9), len(data), listed))
    return out


def build_dump(gigabytes: float) -> tuple[Path, Path, int]:
    """The multistream dump of at least ``gigabytes`` GB (compressed) and its index; built once."""
    dump = DATA / f"bench-{gigabytes:g}GB-multistream.xml.bz2"
    index = DATA / f"bench-{gigabytes:g}GB-multistream-index.txt.bz2"
    sizes = dump.with_suffix(".sizes.json")
    if dump.exists() and index.exists() and sizes.exists():
        return dump, index, json.loads(sizes.read_text())["xml_bytes"]
    DATA.mkdir(parents=True, exist_ok=True)
    header, _ = real_pages()
    target = int(gigabytes * 1e9)
    xml_bytes, task = len(header), 0
    index_lines = []
    with open(dump.with_suffix(".partial"), "wb") as out, ProcessPoolExecutor() as pool:
        out.write(bz2.compress(header, 9))
        while out.tell() < target:
            batch = [pool.submit(_streams, (task + k) * STREAMS_PER_TASK, STREAMS_PER_TASK) for k in range(os.cpu_count() or 1)]
            task += len(batch)
            for future in batch:
                for compressed, size, listed in future.result():
                    offset = out.tell()
                    out.write(compressed)
                    xml_bytes += size
                    index_lines += [b"%d:%d:%s\n" % (offset, page_id, title) for page_id, title in listed]
                    if out.tell() >= target:
                        break
                if out.tell() >= target:
                    break
        out.write(bz2.compress(b"</mediawiki>\n", 9))
    index.write_bytes(bz2.compress(b"".join(index_lines), 9))
    dump.with_suffix(".partial").rename(dump)
    sizes.write_text(json.dumps({"xml_bytes": xml_bytes + len(b"</mediawiki>\n"), "pages": len(index_lines)}))
    return dump, index, xml_bytes


def sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def run(dump: Path, processes: int, out: Path) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system, the parser's processes all together)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "helpers.dump", str(dump), "-o", str(out), "--processes", str(processes),
                           "--no-progress"], cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{processes} processes failed:\n{done.stderr[-3000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def report(dump: Path) -> None:
    records = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    records = [r for r in records if r["dump"] == dump.name]
    one = [r for r in records if r["processes"] == 1]
    print(f"{'processes':>9s} {'seconds':>8s} {'CPU s':>7s} {'XML MB/s':>9s} {'speed-up':>9s}  same bytes as 1 process")
    for record in sorted(records, key=lambda r: (r["machine"], r["processes"])):
        base = next((r for r in one if r["machine"] == record["machine"]), None)
        speedup = f"{base['seconds'] / record['seconds']:.2f}x" if base else "-"
        same = "yes" if base and base["sha256"] == record["sha256"] else ("-" if not base else "NO")
        print(f"{record['processes']:9d} {record['seconds']:8.1f} {record.get('cpu_seconds', float('nan')):7.0f} "
              f"{record['xml_mb_per_s']:9.1f} {speedup:>9s}  {same}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, default=1.0, help="compressed size of the dump (default 1.0)")
    parser.add_argument("--processes", default="16,8,4,2,1", help="the process counts to time, in this order")
    parser.add_argument("--machine", default=f"{platform.node()} ({os.cpu_count()} cores)", help="a name for this machine")
    parser.add_argument("--report", action="store_true", help="print the recorded runs of this dump and stop")
    args = parser.parse_args(argv)

    dump, index, xml_bytes = build_dump(args.gigabytes)
    if args.report:
        report(dump)
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for processes in [int(n) for n in args.processes.split(",")]:
        out = DATA / f"{dump.stem}.{processes}-processes.jsonl"
        load_before = os.getloadavg()[0]
        seconds, cpu_seconds = run(dump, processes, out)
        record = {"dump": dump.name, "compressed_mb": round(dump.stat().st_size / 1e6, 1),
                  "xml_mb": round(xml_bytes / 1e6, 1), "processes": processes, "seconds": round(seconds, 2),
                  "cpu_seconds": round(cpu_seconds, 1),
                  "xml_mb_per_s": round(xml_bytes / 1e6 / seconds, 1), "output_mb": round(out.stat().st_size / 1e6, 1),
                  "sha256": sha256(out), "machine": args.machine, "cpus": os.cpu_count(),
                  "load_before": load_before, "python": platform.python_version()}
        out.unlink()
        with RESULTS.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    report(dump)
    return 0


if __name__ == "__main__":
    sys.exit(main())
