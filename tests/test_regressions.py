"""The nightly's regression check: the real tiny run passes its baseline; planted regressions are caught."""
from __future__ import annotations

import copy
import json

import pytest

from helpers import regressions
from helpers.profiles import REPO_ROOT

BASELINE = json.loads((REPO_ROOT / "benchmarks" / "baseline_tiny.json").read_text())
SUMMARY = REPO_ROOT / "runs" / "tiny" / "summary.json"


def _summary_from_baseline():
    """A summary equal to the baseline's run (no runs/ needed: CI checks out a clean tree)."""
    chapters = {}
    for chapter, expected in BASELINE["chapters"].items():
        metrics = {**expected["exact"], **expected["max"], **expected["min"]}
        if chapter == "05_finetune":
            metrics["val_loss_after"] = expected["max"]["val_loss_after"] - 0.05
        if chapter == "06_export":
            metrics["max_logit_diff"] = 6e-6
        chapters[chapter] = {"status": "ok", "wall_seconds": expected["wall_seconds"], "metrics": metrics}
    return {"profile": "tiny", "chapters": chapters}


def test_the_baseline_covers_every_chapter_with_sensible_limits():
    assert set(BASELINE["chapters"]) == set(regressions.RULES)
    assert BASELINE["wall_factor"] == 2.0 and BASELINE["max_total_seconds"] == 300
    assert BASELINE["chapters"]["06_export"]["max"]["max_logit_diff"] == regressions.EXPORT_ATOL
    assert BASELINE["chapters"]["03_pairs"]["exact"]["pairs"] > 0


def test_a_run_like_the_baseline_passes():
    assert regressions.check(_summary_from_baseline(), BASELINE) == []


@pytest.mark.parametrize("plant,expected", [
    (lambda s: s["chapters"]["03_pairs"]["metrics"].update(pairs=393), "pairs = 393, expected exactly 394"),
    (lambda s: s["chapters"]["01_dump"]["metrics"].update(articles_kept=31), "articles_kept = 31"),
    (lambda s: s["chapters"]["05_finetune"]["metrics"].update(val_loss_after=9.0), "val_loss_after = 9.0, expected at most"),
    (lambda s: s["chapters"]["06_export"]["metrics"].update(max_logit_diff=0.01), "max_logit_diff = 0.01"),
    (lambda s: s["chapters"]["02_cleaning"].update(status="failed", error="boom"), "status 'failed'"),
    (lambda s: s["chapters"].pop("07_deploy"), "07_deploy: missing"),
    (lambda s: s["chapters"]["04_model"].update(wall_seconds=500.0), "04_model: took 500.0s"),
    (lambda s: [e.update(wall_seconds=e["wall_seconds"] * 2 + 5) for e in s["chapters"].values()], "over the limit of 300s"),
])
def test_a_planted_regression_is_caught(plant, expected):
    summary = copy.deepcopy(_summary_from_baseline())
    plant(summary)
    problems = regressions.check(summary, BASELINE)
    assert any(expected in problem for problem in problems), problems


def test_cli_exits_1_on_a_regression_and_names_it(tmp_path, capsys):
    summary = _summary_from_baseline()
    summary["chapters"]["03_pairs"]["metrics"]["pairs"] = 1
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    baseline = REPO_ROOT / "benchmarks" / "baseline_tiny.json"
    assert regressions.main(["check", "--summary", str(path), "--baseline", str(baseline)]) == 1
    assert "pairs = 1" in capsys.readouterr().err
    path.write_text(json.dumps(_summary_from_baseline()))
    assert regressions.main(["check", "--summary", str(path), "--baseline", str(baseline)]) == 0


def test_cli_names_the_command_to_run_when_the_summary_is_missing(tmp_path, capsys):
    assert regressions.main(["check", "--summary", str(tmp_path / "none.json")]) == 1
    assert "python -m helpers.course --profile tiny" in capsys.readouterr().err


def test_baseline_refuses_an_incomplete_run():
    summary = _summary_from_baseline()
    summary["chapters"]["05_finetune"]["status"] = "failed"
    with pytest.raises(ValueError, match="05_finetune"):
        regressions.make_baseline(summary)
