"""What chapter 02's duplicate index costs the main process a paragraph, as the index grows.

    python benchmarks/bench_key_index.py                       # 150,000 and 1,500,000 paragraphs (1x, 10x)
    python benchmarks/bench_key_index.py --max-load 0.5,0.75   # how full the hash table may get
    python benchmarks/bench_key_index.py --key-index-from 2cc8bc5   # the sorted runs it replaced
    python benchmarks/bench_key_index.py --per-lookup 30       # an article's paragraphs in one lookup

For each kept paragraph, ``clean_jsonl``'s main process looks up its exact key (one 64-bit key) and
its 32 band keys (32-bit), then adds them: the work that does not spread over worker processes.
This fills a ``clean.KeyIndex`` of each kind with random keys (hashes, like the real ones) for the
given number of paragraphs, then times 20,000 more paragraphs' lookups and adds, and prints
microseconds a paragraph with the table's size and how full it is. With ``--per-lookup 30`` the
timed paragraphs go 30 at a time (about an article's, as ``clean._deduplicated`` takes them): one
lookup of their exact keys, one of their band keys, one add of each.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
from helpers import clean  # noqa: E402

BANDS = 32
TIMED = 20_000


def key_index_from(revision: str) -> type:
    """``KeyIndex`` as ``helpers/clean.py`` had it at a git revision (with the helpers it used)."""
    source = subprocess.run(["git", "show", f"{revision}:helpers/clean.py"], cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True).stdout
    namespace = dict(vars(clean))
    exec(source[source.index("class KeyIndex:"):source.index("class NearDuplicateIndex:")], namespace)
    return namespace["KeyIndex"]


def measure(paragraphs: int, max_load: float, key_index: type, per_lookup: int = 1, seed: int = 0) -> dict:
    key_index.MAX_LOAD = max_load
    rng = np.random.default_rng(seed)
    band, exact = key_index(np.uint32), key_index(np.uint64)
    for start in range(0, paragraphs, 10_000):  # filled in blocks: only the timed paragraphs go one by one
        count = min(10_000, paragraphs - start)
        band.add(rng.integers(1, 2**32, BANDS * count, dtype=np.uint32), start)
        exact.add(rng.integers(1, 2**64 - 1, count, dtype=np.uint64), start)
    band_keys = rng.integers(1, 2**32, (TIMED, BANDS), dtype=np.uint32)
    exact_keys = rng.integers(1, 2**64 - 1, TIMED, dtype=np.uint64).tolist()
    started = time.perf_counter()
    if per_lookup == 1:
        for number, (keys, key) in enumerate(zip(band_keys, exact_keys), start=paragraphs):
            exact.paragraphs([key])
            band.paragraphs(keys)
            band.add(keys, number)
            exact.add([key], number)
    else:
        exact_keys = np.array(exact_keys, dtype=np.uint64)
        for start in range(0, TIMED, per_lookup):
            numbers = np.arange(paragraphs + start, paragraphs + min(start + per_lookup, TIMED), dtype=np.uint32)
            keys, key = band_keys[start : start + per_lookup], exact_keys[start : start + per_lookup]
            exact.lookup(key)
            band.lookup(keys.ravel())
            band.add(keys.ravel(), np.repeat(numbers, BANDS))
            exact.add(key, numbers)
    microseconds = (time.perf_counter() - started) / TIMED * 1e6
    slots = getattr(band, "_capacity", None)  # a hash table's; sorted runs have none
    return {"paragraphs": paragraphs, "per_lookup": per_lookup, "max_load": max_load if slots else None, "band_slots": slots,
            "band_load": round(BANDS * (paragraphs + TIMED) / slots, 3) if slots else None,
            "us_per_paragraph": round(microseconds, 1), "band_mib": round(band.nbytes() / 2**20, 1),
            "index_mib": round((band.nbytes() + exact.nbytes()) / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--paragraphs", default="150000,1500000", help="kept paragraphs before the timing")
    parser.add_argument("--max-load", default="0.5", help="KeyIndex.MAX_LOAD values to compare")
    parser.add_argument("--key-index-from", help="a git revision: time its KeyIndex instead of today's")
    parser.add_argument("--per-lookup", type=int, default=1, help="paragraphs looked up and added together")
    args = parser.parse_args(argv)
    key_index = key_index_from(args.key_index_from) if args.key_index_from else clean.KeyIndex
    for max_load in [float(x) for x in args.max_load.split(",")]:
        for paragraphs in [int(n) for n in args.paragraphs.split(",")]:
            print(json.dumps(measure(paragraphs, max_load, key_index, args.per_lookup)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
