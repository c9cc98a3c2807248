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

import http.server
import io
import shutil
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from helpers import course, dump
from helpers.profiles import REPO_ROOT

# Not tracked by git but needed by the chapters: the vendored Transformers.js (07) and WordNet (02).
GENERATED = ("site/vendor", "nltk_data")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with Range and ETag (SimpleHTTPRequestHandler has neither): enough of a dump host."""

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        etag = f'"{len(data)}-{int(path.stat().st_mtime)}"'
        start = 0
        wanted = self.headers.get("Range")
        if wanted and self.headers.get("If-Range") in (None, etag):
            start = int(wanted.split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        return io.BytesIO(data[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def dump_host(tmp_path_factory, tiny_dump):
    """simplewiki/latest/ with a multistream dump of the shipped pages, its index and SHA-1 sums, over HTTP."""
    import hashlib

    root = tmp_path_factory.mktemp("dumps")
    latest = root / "simplewiki" / "latest"
    latest.mkdir(parents=True)
    dump_file = latest / "simplewiki-latest-pages-articles-multistream.xml.bz2"
    index_file = latest / "simplewiki-latest-pages-articles-multistream-index.txt.bz2"
    dump.build_multistream(tiny_dump, dump_file, index_file, pages_per_stream=10)
    sums = "".join(f"{hashlib.sha1(path.read_bytes()).hexdigest()}  {path.name.replace('-latest-', '-20261101-')}\n"
                   for path in (dump_file, index_file))
    (latest / "simplewiki-latest-sha1sums.txt").write_text(sums)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/simplewiki/latest/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def hub_model(tmp_path_factory, smollm2_tokenizer):
    """distilgpt2's stand-in: a two-layer random GPT-2 over a real pretrained tokenizer without a chat template."""
    import copy

    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.chat_template = None
    folder = tmp_path_factory.mktemp("distilgpt2-standin")
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_head=2, n_embd=32, n_positions=512,
                                       bos_token_id=eos, eos_token_id=eos))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


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


def test_each_chapter_in_its_own_runtime_finds_the_run_on_drive(tmp_path, monkeypatch, dump_host, hub_model):
    import papermill

    drive = tmp_path / "MyDrive"
    run = drive / course.DRIVE_RUNS / "colab"
    overrides = {
        "dump_source": dump_host + "simplewiki-latest-pages-articles-multistream.xml.bz2",
        "dump_index_source": dump_host + "simplewiki-latest-pages-articles-multistream-index.txt.bz2",
        "model_name": str(hub_model),
        "tokenizer_name": str(hub_model),
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
    assert (run / "01_dump" / "downloads" / "simplewiki-latest-pages-articles-multistream.xml.bz2.sha1").exists()
    assert course.chapter_input(run, "onnx_model").is_dir() and course.missing_chapters(run, "08_troubleshooting") == []
    assert summary["chapters"]["06_export"]["metrics"]["greedy_match"] is True
    assert summary["chapters"]["01_dump"]["metrics"]["articles_kept"] == 16  # papermill's -p reached params
