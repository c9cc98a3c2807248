"""The nightly's regression check: a run's ``summary.json`` against a baseline.

``python -m helpers.regressions check --summary runs/tiny/summary.json --baseline benchmarks/baseline_tiny.json``
exits 1 and lists every regression:

- a chapter of the baseline missing from the run, or with a status other than ``ok``;
- a chapter slower than ``wall_factor`` (2) times its baseline wall seconds (plus ``wall_slack_seconds``,
  5 s, so that a 3-second chapter is not failed by a busy CI machine's jitter), or the whole run over
  ``max_total_seconds`` (300);
- a metric that changed: ``exact`` metrics must be equal (article and pair counts: the tiny run is
  deterministic), ``max`` metrics must not exceed their bound (a loss, a logit difference), ``min``
  metrics must reach theirs.

``python -m helpers.regressions baseline --summary runs/tiny/summary.json --out benchmarks/baseline_tiny.json``
writes a baseline from a good run, with the course's choice of metrics and tolerances (:data:`RULES`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# chapter -> {"exact": [metric...], "max": {metric: tolerance added to the run's value}, "min": {...}}
RULES: dict[str, dict[str, Any]] = {
    "01_dump": {"exact": ["pages_read", "articles_kept", "sections_kept", "characters_kept"],
                "max": {"markup_residue_per_10k": 0.0}, "min": {"heading_recall": 0.0}},
    "02_cleaning": {"exact": ["articles_out", "sections_out", "paragraphs_out", "chars_out"]},
    "03_pairs": {"exact": ["articles", "pairs", "duplicates_removed", "split_pairs", "split_articles", "vocab_size"]},
    "04_model": {"exact": ["parameters", "pretrain_steps"], "max": {"pretrain_last_loss": 0.1}},
    "05_finetune": {"exact": ["train_pairs", "validation_pairs", "trainable_parameters"],
                    "max": {"val_loss_after": 0.05}},
    "06_export": {"exact": ["greedy_match", "layout_problems"], "max": {"max_logit_diff": None}},  # None: the atol
    "07_deploy": {"exact": ["browser_matches_python"]},
}
EXPORT_ATOL = 1e-4  # the profiles' export_atol: the largest accepted |ONNX - PyTorch| logit difference


def make_baseline(summary: dict[str, Any], *, wall_factor: float = 2.0, wall_slack_seconds: float = 5.0,
                  max_total_seconds: float = 300.0) -> dict[str, Any]:
    """A baseline from a complete, all-ok run's summary, with :data:`RULES`' metrics and tolerances."""
    chapters = {}
    for chapter, rules in RULES.items():
        entry = summary["chapters"].get(chapter)
        if entry is None or entry.get("status") != "ok":
            raise ValueError(f"the summary's chapter {chapter} is missing or not ok: make a baseline from a good run")
        metrics = entry.get("metrics", {})
        chapters[chapter] = {
            "wall_seconds": entry["wall_seconds"],
            "exact": {name: metrics[name] for name in rules.get("exact", []) if name in metrics},
            "max": {name: round(metrics[name] + tol, 6) if tol is not None else EXPORT_ATOL
                    for name, tol in rules.get("max", {}).items() if name in metrics},
            "min": {name: round(metrics[name] - tol, 6) for name, tol in rules.get("min", {}).items() if name in metrics},
        }
    return {"profile": summary.get("profile"), "wall_factor": wall_factor, "wall_slack_seconds": wall_slack_seconds,
            "max_total_seconds": max_total_seconds, "chapters": chapters}


def check(summary: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """Every regression of ``summary`` against ``baseline``, as sentences (empty: no regression)."""
    problems = []
    factor, slack = baseline.get("wall_factor", 2.0), baseline.get("wall_slack_seconds", 0.0)
    total = 0.0
    for chapter, expected in baseline["chapters"].items():
        entry = summary.get("chapters", {}).get(chapter)
        if entry is None:
            problems.append(f"{chapter}: missing from the run's summary (did the run stop before it?)")
            continue
        if entry.get("status") != "ok":
            problems.append(f"{chapter}: status {entry.get('status')!r}, not 'ok': {entry.get('error')}")
        seconds = float(entry.get("wall_seconds") or 0.0)
        total += seconds
        limit = factor * expected["wall_seconds"] + slack
        if seconds > limit:
            problems.append(f"{chapter}: took {seconds:.1f}s, more than {factor:g}x its baseline "
                            f"{expected['wall_seconds']:.1f}s (+{slack:g}s slack)")
        metrics = entry.get("metrics", {})
        for kind, compare, words in (("exact", lambda v, b: v == b, "expected exactly"),
                                     ("max", lambda v, b: v <= b, "expected at most"),
                                     ("min", lambda v, b: v >= b, "expected at least")):
            for name, bound in expected.get(kind, {}).items():
                if name not in metrics:
                    problems.append(f"{chapter}: metric {name} is missing")
                elif not compare(metrics[name], bound):
                    problems.append(f"{chapter}: {name} = {metrics[name]!r}, {words} {bound!r}")
    if total > baseline.get("max_total_seconds", float("inf")):
        problems.append(f"the run took {total:.1f}s in all, over the limit of {baseline['max_total_seconds']:g}s")
    return problems


def _read(path: Path | str) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare a run's summary.json with a baseline (the nightly).")
    sub = parser.add_subparsers(dest="command", required=True)
    checker = sub.add_parser("check", help="exit 1 on any regression")
    checker.add_argument("--summary", type=Path, default=Path("runs/tiny/summary.json"))
    checker.add_argument("--baseline", type=Path, default=Path("benchmarks/baseline_tiny.json"))
    maker = sub.add_parser("baseline", help="write a baseline from a good run")
    maker.add_argument("--summary", type=Path, default=Path("runs/tiny/summary.json"))
    maker.add_argument("--out", type=Path, default=Path("benchmarks/baseline_tiny.json"))
    args = parser.parse_args(argv)
    for path in [args.summary]:
        if not path.exists():
            print(f"error: {path} does not exist: run `python -m helpers.course --profile tiny` first", file=sys.stderr)
            return 1
    if args.command == "baseline":
        from helpers.course import write_json

        write_json(args.out, make_baseline(_read(args.summary)))
        print(f"baseline written to {args.out}")
        return 0
    problems = check(_read(args.summary), _read(args.baseline))
    if problems:
        print(f"{len(problems)} regression(s) against {args.baseline}:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"no regression against {args.baseline}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
