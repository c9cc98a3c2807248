"""The colab profile's path, as a workshop runs it, offline: one fresh runtime per chapter.

On Colab each notebook opened from its badge gets its own runtime; all the chapters share is the
attendee's Google Drive. Here every chapter runs (papermill) in its own fresh working copy of the
repository, importing the helpers from that copy, with the colab profile and only a shared "Drive"
folder for the run. The stand-ins are faithful where it matters:

- the dump: Simple English Wikipedia's layout (a multistream dump, its index and the SHA-1 sums file
  in ``simplewiki/latest/``), made from the shipped pages and served over HTTP with ``Range``,
  ``If-Range`` and ``ETag`` as dumps.wikimedia.org serves them;
- the model: a GPT-2 (distilgpt2's architecture, so the same export and page path) with a real
  pretrained tokenizer (SmolLM2's byte-level BPE, without a chat template, like distilgpt2's), random
  weights and two layers, given as a folder where the profile names a Hub model.

Profile values are shrunk with ``overrides`` (the papermill parameter every chapter has) and one
directly as papermill's own parameter (``-p max_articles 16``), so that the nine chapters take
minutes on a CPU.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import course
from helpers.profiles import REPO_ROOT

# Not tracked by git but needed by the chapters: the vendored Transformers.js (07) and WordNet (02).
GENERATED = ("site/vendor", "nltk_data")


def _fresh_copy(dest: Path) -> Path:
    """A working copy as a new runtime's clone would have it: the tracked files, plus what setup.sh builds."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, check=True, capture_output=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    for name in GENERATED:
        if (REPO_ROOT / name).exists():
            shutil.copytree(REPO_ROOT / name, dest / name, symlinks=True)
    return dest


def test_each_chapter_in_its_own_runtime_finds_the_run_on_drive(tmp_path, monkeypatch, dump_host, distilgpt2_standin_dir):
    import papermill

    drive = tmp_path / "MyDrive"
    run = drive / course.DRIVE_RUNS / "colab"
    overrides = {
        "dump_source": dump_host + "simplewiki-latest-pages-articles-multistream.xml.bz2",
        "dump_index_source": dump_host + "simplewiki-latest-pages-articles-multistream-index.txt.bz2",
        "model_name": str(distilgpt2_standin_dir),
        "tokenizer_name": str(distilgpt2_standin_dir),
        "dump_sample_pages": 100,  # the first 10 of the 12 page streams: 90 pages hold the first 16 articles
        "finetune_max_steps": 4,
        "finetune_eval_steps": 2,
        "finetune_batch_size": 4,
        "finetune_max_length": 256,
        "finetune_eval_pairs": 8,
        "eval_generated_pairs": 2,
        "eval_max_new_tokens": 8,
        "export_eval_pairs": 4,
        "export_check_prompts": 1,
        "checkpoint_dir": None,
    }
    for number, (chapter, stem) in enumerate(course.CHAPTERS.items()):
        copy = _fresh_copy(tmp_path / f"runtime-{number}")
        executed = tmp_path / f"{stem}.executed.ipynb"
        monkeypatch.setenv("PYTHONPATH", str(copy))  # the kernel imports this runtime's helpers, not the repository's
        found = subprocess.run([sys.executable, "-c", "import helpers; print(helpers.__file__)"],
                               cwd=copy / "notebooks", capture_output=True, text=True, check=True).stdout.strip()
        assert Path(found).is_relative_to(copy), f"a kernel here would import {found}, not this runtime's copy"
        try:
            papermill.execute_notebook(
                str(copy / "notebooks" / f"{stem}.ipynb"), str(executed), cwd=str(copy / "notebooks"),
                # max_articles as papermill's own parameter (-p max_articles 16), the rest as overrides
                parameters={"profile": "colab", "run_dir": str(run), "overrides": overrides, "mount_drive": False,
                            "max_articles": 16},
                kernel_name="python3", progress_bar=False)
        except papermill.PapermillExecutionError as error:
            pytest.fail(f"{chapter} failed in its own runtime: {error.ename}: {error.evalue}")
        shutil.rmtree(copy)  # the runtime ends: nothing of it survives but what went to Drive
    summary = course.read_summary(run)
    assert list(summary["chapters"]) == list(course.CHAPTERS)
    assert all("metrics" in entry for entry in summary["chapters"].values())
    downloads = run / "01_dump" / "downloads"
    assert (downloads / "simplewiki-latest-pages-articles-multistream-index.txt.bz2.sha1").exists()  # verified
    sample = downloads / "simplewiki-latest-pages-articles-multistream.first-100-pages.xml.bz2"
    assert sample.exists() and not (downloads / "simplewiki-latest-pages-articles-multistream.xml.bz2").exists()
    assert course.chapter_input(run, "onnx_model").is_dir() and course.missing_chapters(run, "08_troubleshooting") == []
    assert summary["chapters"]["06_export"]["metrics"]["greedy_match"] is True
    assert summary["chapters"]["01_dump"]["metrics"]["articles_kept"] == 16  # papermill's -p reached params
