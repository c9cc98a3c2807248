"""Shared fixtures: the real tiny corpus, parsed and cleaned once per test session."""
from __future__ import annotations

import hashlib
import http.server
import io
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pytest

from helpers.profiles import REPO_ROOT

TINY_DUMP = REPO_ROOT / "data" / "tiny" / "enwiki-tiny.xml.bz2"
TABLE_DUMP = REPO_ROOT / "data" / "tiny" / "enwiki-table-markup.xml.bz2"


@pytest.fixture(scope="session")
def tiny_dump() -> Path:
    return TINY_DUMP


@pytest.fixture(scope="session")
def tiny_xml(tiny_dump) -> bytes:
    """The tiny dump's XML, decompressed."""
    import bz2

    return bz2.decompress(tiny_dump.read_bytes())


@pytest.fixture(scope="session")
def table_dump() -> Path:
    return TABLE_DUMP


@pytest.fixture(scope="session")
def tiny_articles() -> list[dict]:
    from helpers import dump

    return list(dump.iter_articles(TINY_DUMP, progress=False))


@pytest.fixture(scope="session")
def cleaned(tiny_articles):
    """The result of the training-text cleaning on the tiny corpus (articles + report)."""
    from helpers import clean

    return clean.clean_articles(tiny_articles)


@pytest.fixture(scope="session")
def clean_articles(cleaned) -> list[dict]:
    return cleaned.articles


@pytest.fixture(scope="session")
def pair_splits(clean_articles) -> dict[str, list[dict]]:
    """Chapter 03's train/validation/test pairs from the tiny corpus, with the tiny profile's settings."""
    from helpers import pairs
    from helpers.profiles import get_profile

    params = get_profile("tiny")
    config = pairs.PairingConfig(
        seed=params["pair_seed"],
        max_paragraphs=params["pair_max_paragraphs"],
        max_response_chars=params["pair_max_response_chars"],
    )
    kept, _ = pairs.dedupe_pairs(pairs.make_pairs(clean_articles, config))
    return pairs.split_by_article(kept, params["split_fractions"], seed=params["pair_seed"])


@pytest.fixture(scope="session")
def course_tokenizer(tmp_path_factory, clean_articles, pair_splits):
    """The tiny profile's byte-level BPE tokenizer, trained on the training split as chapter 03 does."""
    from helpers import pairs, tokenizer

    texts = pairs.tokenizer_training_texts(clean_articles, pair_splits["train"])
    return tokenizer.train_course_tokenizer(texts, tmp_path_factory.mktemp("tokenizer"), vocab_size=2048)


# --- Chapters 06-07: tiny random models in the layout chapter 05 writes, and their ONNX export ---


def _save_tiny_model(model, tokenizer, out_dir: Path) -> Path:
    """Save like chapter 05: model, tokenizer and generation config, plus the prompt template."""
    from transformers import GenerationConfig

    from helpers import prompt
    from helpers.tokenizer import save_tokenizer

    model.save_pretrained(out_dir)
    save_tokenizer(tokenizer, out_dir)
    eos = tokenizer.eos_token_id
    GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos).save_pretrained(out_dir)
    prompt.write_template(out_dir / "prompt_template.json", tokenizer)
    return out_dir


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, course_tokenizer) -> Path:
    """A random 2-layer GPT-2 over the course tokenizer, saved as chapter 05 saves its model.

    A wide initialisation makes its greedy output vary from token to token, so that comparing two
    decoders token for token means something.
    """
    return _save_tiny_model(_random_gpt2(course_tokenizer), course_tokenizer, tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def distilgpt2_standin_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """distilgpt2's stand-in as the Hub serves it: a random 2-layer GPT-2 and a real pretrained tokenizer
    without a chat template, saved plainly (no prompt template, no generation config)."""
    import copy

    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.chat_template = None
    folder = tmp_path_factory.mktemp("distilgpt2-standin")
    _random_gpt2(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _random_gpt2(tokenizer):
    """A random 2-layer GPT-2 over ``tokenizer`` (512 positions), with a wide initialisation."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_head=4, n_embd=64, n_positions=512,
                        initializer_range=0.2, bos_token_id=eos, eos_token_id=eos)
    return GPT2LMHeadModel(config).eval()


def _random_llama(tokenizer, *, tie_word_embeddings: bool):
    """A random 2-layer Llama (grouped-query attention, RoPE) over ``tokenizer``, with a wide initialisation."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=0.2, bos_token_id=bos, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=tie_word_embeddings)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, course_tokenizer) -> Path:
    """A random 2-layer Llama over the course tokenizer."""
    return _save_tiny_model(_random_llama(course_tokenizer, tie_word_embeddings=False), course_tokenizer,
                            tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def exported_gpt2(tmp_path_factory, tiny_gpt2_dir) -> Path:
    """The tiny GPT-2 exported in Transformers.js's layout, every dtype the course makes."""
    from helpers import export

    return export.export_onnx(tiny_gpt2_dir, tmp_path_factory.mktemp("gpt2-onnx") / "model")


@pytest.fixture(scope="session")
def exported_llama(tmp_path_factory, tiny_llama_dir) -> Path:
    """The tiny Llama exported in Transformers.js's layout, every dtype the course makes."""
    from helpers import export

    return export.export_onnx(tiny_llama_dir, tmp_path_factory.mktemp("llama-onnx") / "model")


# --- The laptop profile's real model: SmolLM2-135M-Instruct, the Hub's or its offline stand-in ---


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct's folder (helpers.hub: the Hub at the pinned revision, or the offline stand-in)."""
    from helpers import hub

    folder, _ = hub.pretrained_source("HuggingFaceTB/SmolLM2-135M-Instruct")
    return folder


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    """Its tokenizer, which ships a chat template: the prompt format of kind "chat"."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="session")
def exported_chat_llama(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A random 2-layer Llama over SmolLM2's tokenizer (which ships a chat template), exported: kind "chat"."""
    from helpers import export

    folder = _save_tiny_model(_random_llama(smollm2_tokenizer, tie_word_embeddings=True), smollm2_tokenizer,
                              tmp_path_factory.mktemp("chat-llama"))
    return export.export_onnx(folder, tmp_path_factory.mktemp("chat-llama-onnx") / "model", dtypes=("fp32", "q8"))


# --- A dump host: Simple English Wikipedia's layout, served over HTTP (chapter 01 on Colab) ---


class DumpHostHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=a-b``, ``If-Range`` and ``ETag`` (SimpleHTTPRequestHandler has
    none of them): enough of dumps.wikimedia.org. ``requests`` records what was asked."""

    requests: list[tuple[str, str | None]] = []

    def send_head(self):
        self.requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        etag = f'"{len(data)}-{int(path.stat().st_mtime)}"'
        start, stop = 0, len(data)
        wanted = self.headers.get("Range")
        if wanted and self.headers.get("If-Range") in (None, etag):
            first, _, last = wanted.split("=", 1)[1].partition("-")
            start, stop = int(first), (int(last) + 1 if last else len(data))
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(stop - start))
        self.end_headers()
        return io.BytesIO(data[start:stop])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def dump_host(tmp_path_factory, tiny_dump):
    """simplewiki/latest/ with a multistream dump of the shipped pages, its index and SHA-1 sums, over HTTP."""
    from helpers import dump

    root = tmp_path_factory.mktemp("dumps")
    latest = root / "simplewiki" / "latest"
    latest.mkdir(parents=True)
    dump_file = latest / "simplewiki-latest-pages-articles-multistream.xml.bz2"
    index_file = latest / "simplewiki-latest-pages-articles-multistream-index.txt.bz2"
    dump.build_multistream(tiny_dump, dump_file, index_file, pages_per_stream=10)
    sums = "".join(f"{hashlib.sha1(path.read_bytes()).hexdigest()}  {path.name.replace('-latest-', '-20261101-')}\n"
                   for path in (dump_file, index_file))
    (latest / "simplewiki-latest-sha1sums.txt").write_text(sums)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(DumpHostHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/simplewiki/latest/"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def dump_host_requests(dump_host) -> list[tuple[str, str | None]]:
    """The (path, Range) of every request the dump host answers from now on."""
    DumpHostHandler.requests.clear()
    return DumpHostHandler.requests


@pytest.fixture()
def serve_folder():
    """Serve a folder as the dump host serves its own (Range, If-Range, ETag); returns its base URL."""
    servers = []

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(DumpHostHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# A second process holding `course.output_lock(path)` until killed: a real other writer, with its own PID.
_HOLD_LOCK = ("import sys, time; from helpers import course\n"
              "with course.output_lock(sys.argv[1]):\n"
              "    print('held', flush=True); time.sleep(60)\n")


@pytest.fixture()
def lock_holder():
    """Start a process that holds the lock on a path; returns its PID once the lock is held."""
    holders = []

    def hold(path: Path) -> int:
        holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path)], cwd=REPO_ROOT,
                                  stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "held"
        return holder.pid

    def release() -> None:
        for holder in holders:
            holder.kill()
            holder.wait()
            holder.stdout.close()
        holders.clear()

    hold.release = release  # a holder killed mid-test leaves its lock behind, as a crash would
    yield hold
    release()
