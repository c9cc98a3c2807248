"""Which notebook cell needs the memory: a resident-memory timeline matched to papermill's cell times.

``run`` starts a command (e.g. the course runner) and samples, every 0.5 s, the resident memory of
the largest process among it and its children (a chapter's kernel, Chromium...), one line per
sample: ``unix-time GiB command``. ``cells`` reads that log and an executed notebook (papermill
records each cell's start and end) and prints each cell's duration and peak.

    python benchmarks/memory_timeline.py run /tmp/mem.log -- python -m helpers.course --profile laptop --runs-root /tmp/lap
    python benchmarks/memory_timeline.py cells /tmp/mem.log /tmp/lap/laptop/05_finetune/05_fine_tuning.executed.ipynb

Numbers in benchmarks/README.md ("The laptop profile, 00-08").
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime

import psutil


def record(log_path: str, command: list[str]) -> int:
    child = subprocess.Popen(command)
    parent = psutil.Process(child.pid)
    with open(log_path, "w", encoding="utf-8") as log:
        while child.poll() is None:
            sizes = []
            for process in [parent, *parent.children(recursive=True)]:
                try:
                    sizes.append((process.memory_info().rss, " ".join(process.cmdline()[:3])[:60]))
                except psutil.Error:  # it ended between the listing and the reading
                    pass
            rss, name = max(sizes) if sizes else (0, "")
            log.write(f"{time.time():.1f} {rss / 2**30:.3f} {name}\n")
            log.flush()
            time.sleep(0.5)
    return child.returncode


def cell_peaks(log_path: str, notebook_path: str, min_seconds: float = 1.0) -> None:
    samples = []
    for line in open(log_path, encoding="utf-8"):
        stamp, gib, *_ = line.split()
        samples.append((float(stamp), float(gib)))
    notebook = json.load(open(notebook_path, encoding="utf-8"))
    for index, cell in enumerate(notebook["cells"]):
        times = cell.get("metadata", {}).get("papermill", {})
        if cell["cell_type"] != "code" or not times.get("start_time") or not times.get("end_time"):
            continue
        start, end = (datetime.fromisoformat(times[key].replace("Z", "+00:00")).timestamp()
                      for key in ("start_time", "end_time"))
        if end - start < min_seconds:
            continue
        peak = max((gib for stamp, gib in samples if start - 0.5 <= stamp <= end + 0.5), default=float("nan"))
        first_line = "".join(cell["source"]).strip().splitlines()[0][:60]
        print(f"cell {index:3d} {end - start:7.1f} s  peak {peak:5.2f} GiB  {first_line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser("run")
    run.add_argument("log")
    run.add_argument("command", nargs=argparse.REMAINDER)
    cells = commands.add_parser("cells")
    cells.add_argument("log")
    cells.add_argument("notebook")
    args = parser.parse_args()
    if args.action == "run":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        return record(args.log, command)
    cell_peaks(args.log, args.notebook)
    return 0


if __name__ == "__main__":
    sys.exit(main())
