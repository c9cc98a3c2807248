"""What chapter 02's duplicate index costs the main process a paragraph, as the index grows.

    python benchmarks/bench_key_index.py                       # 150,000 and 1,500,000 paragraphs (1x, 10x)
    python benchmarks/bench_key_index.py --max-load 0.5,0.75   # how full the hash table may get

For each kept paragraph, ``clean_jsonl``'s main process looks up its exact key (one 64-bit key) and
its 32 band keys (32-bit), then adds them: the work that does not spread over worker processes.
This fills a ``clean.KeyIndex`` of each kind with random keys (hashes, like the real ones) for the
given number of paragraphs, then times 20,000 more paragraphs' lookups and adds, and prints
microseconds a paragraph with the table's size and how full it is.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from helpers import clean  # noqa: E402

BANDS = 32
TIMED = 20_000


def measure(paragraphs: int, max_load: float, seed: int = 0) -> dict:
    clean.KeyIndex.MAX_LOAD = max_load
    rng = np.random.default_rng(seed)
    band, exact = clean.KeyIndex(np.uint32), clean.KeyIndex(np.uint64)
    for start in range(0, paragraphs, 10_000):  # filled in blocks: only the timed paragraphs go one by one
        count = min(10_000, paragraphs - start)
        band.add(rng.integers(1, 2**32, BANDS * count, dtype=np.uint32), start)
        exact.add(rng.integers(1, 2**64 - 1, count, dtype=np.uint64), start)
    band_keys = rng.integers(1, 2**32, (TIMED, BANDS), dtype=np.uint32)
    exact_keys = rng.integers(1, 2**64 - 1, TIMED, dtype=np.uint64).tolist()
    started = time.perf_counter()
    for number, (keys, key) in enumerate(zip(band_keys, exact_keys), start=paragraphs):
        exact.paragraphs([key])
        band.paragraphs(keys)
        band.add(keys, number)
        exact.add([key], number)
    microseconds = (time.perf_counter() - started) / TIMED * 1e6
    return {"paragraphs": paragraphs, "max_load": max_load, "band_keys": len(band), "band_slots": band._capacity,
            "band_load": round(len(band) / band._capacity, 3), "us_per_paragraph": round(microseconds, 1),
            "index_mib": round((band.nbytes() + exact.nbytes()) / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paragraphs", default="150000,1500000", help="kept paragraphs before the timing")
    parser.add_argument("--max-load", default="0.5", help="KeyIndex.MAX_LOAD values to compare")
    args = parser.parse_args(argv)
    for max_load in [float(x) for x in args.max_load.split(",")]:
        for paragraphs in [int(n) for n in args.paragraphs.split(",")]:
            print(json.dumps(measure(paragraphs, max_load)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
