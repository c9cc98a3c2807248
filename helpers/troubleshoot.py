"""Chapter 08: the classic failures, each reproduced small, diagnosed and fixed.

Every diagnosis returns a ``Diagnosis``: whether it fired, what it saw, and the fix. The same
functions run on a real run's numbers, so they are a checklist for any training or deployment:

1. overfitting: ``detect_overfitting`` on train/validation losses (``train_with_evals`` reproduces it);
2. catastrophic forgetting: ``detect_forgetting`` on general-text perplexity before and after;
3. out of memory: ``diagnose_memory`` (estimate against a budget, with the changes that make it fit)
   and ``measure_training_memory`` (what a step really holds);
4. poor data: ``detect_poor_data`` (lemmatized, stopword-stripped text);
5. deployment: ``diagnose_model_folder``, ``diagnose_site(url)`` (MIME types, local WASM, isolation),
   ``backend_choice`` (what the page picks without WebGPU).
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from helpers import finetune as ft
from helpers.deploy import SiteServer
from helpers.export import WASM_ONLY_DTYPES

CHAPTER = "08_troubleshooting"
GiB = 2**30


@dataclass
class Diagnosis:
    """One check's verdict: ``fired`` means the failure is there; ``fix`` says what to do."""

    failure: str
    fired: bool
    message: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        verdict = "FIRED" if self.fired else "ok"
        return f"[{verdict}] {self.failure}: {self.message}" + (f"\n  fix: {self.fix}" if self.fired and self.fix else "")


def diagnosis_table(diagnoses: Sequence[Diagnosis]) -> pd.DataFrame:
    """The diagnoses as a table: failure, fired, what was seen, the fix."""
    return pd.DataFrame([{"failure": d.failure, "fired": d.fired, "seen": d.message, "fix": d.fix if d.fired else ""}
                         for d in diagnoses]).set_index("failure")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one CPU thread: the course's tiny matrices run faster so on a shared machine
    (the same measurement as ``helpers.models.pretrain``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Inputs: the run's base model, tokenizer, pairs and held-out article text


@dataclass
class Inputs:
    """What the reproductions need from earlier chapters."""

    base: torch.nn.Module
    tokenizer: Any
    splits: dict[str, list[dict[str, Any]]]
    train_texts: list[str]  # the cleaned articles of the training split (what the base model saw)
    general_texts: list[str]  # the cleaned articles of the test split: text no training step ever saw


def article_text(article: dict[str, Any]) -> str:
    """An article as plain text: title, then each section's heading and text."""
    parts = [article["title"]]
    for section in article["sections"]:
        parts.extend(part for part in (section["heading"], section["text"]) if part)
    return "\n\n".join(parts)


def load_inputs(params: dict[str, Any], run_dir: Path | str) -> Inputs:
    """Chapter 04's base model, chapter 03's tokenizer and pairs, chapter 02's articles by split.

    With the profile's ``troubleshoot_model`` set to ``"course-tiny-gpt2"`` (every profile's default), the
    reproductions get the tiny profile's stand-in instead, built here as chapters 03 and 04 build it
    for the tiny profile (its tokenizer into ``08_troubleshooting/tokenizer``, then a minute of
    pretraining on the training articles): on a CPU, every training run of a 135M-parameter model
    would take minutes, and a model cut down to a few layers is no longer a language model at all.
    """
    from helpers import models, pairs
    from helpers.course import chapter_input
    from helpers.dump import read_jsonl

    run = Path(run_dir)
    articles = list(read_jsonl(chapter_input(run, "clean_articles")))
    splits = pairs.load_pairs(chapter_input(run, "pairs"))
    if params["troubleshoot_model"] == models.COURSE_TINY_GPT2 != params["model_name"]:
        tokenizer, base = _tiny_stand_in(run, articles, splits)
    else:
        tokenizer = ft.load_course_tokenizer(params, run)
        base = models.load_base_model(params, run).eval()
    ids = {split: {pair["article_id"] for pair in splits[split]} for split in ("train", "test")}
    return Inputs(
        base=base,
        tokenizer=tokenizer,
        splits={split: list(rows) for split, rows in splits.items()},
        train_texts=[article_text(a) for a in articles if a["id"] in ids["train"]],
        general_texts=[article_text(a) for a in articles if a["id"] in ids["test"]],
    )


def _tiny_stand_in(run: Path, articles: list[dict[str, Any]], splits: Any) -> tuple[Any, torch.nn.Module]:
    """The tiny profile's tokenizer and pretrained stand-in, built on this run's training split with its settings."""
    from helpers import models, pairs
    from helpers.course import chapter_dir
    from helpers.profiles import get_profile
    from helpers.tokenizer import train_course_tokenizer

    tiny = get_profile("tiny")
    texts = pairs.tokenizer_training_texts(articles, list(splits["train"]))
    tokenizer = train_course_tokenizer(texts, chapter_dir(run, CHAPTER) / "tokenizer", vocab_size=tiny["tokenizer_vocab_size"])
    model = models.build_tiny_gpt2(tokenizer, tiny["tiny_model_config"], seed=tiny["pretrain_seed"])
    models.pretrain(model, tokenizer, models.pretraining_texts(articles, list(splits["train"])),
                    steps=tiny["pretrain_steps"], batch_size=tiny["pretrain_batch_size"],
                    block_size=tiny["pretrain_block_size"], learning_rate=tiny["pretrain_learning_rate"],
                    seed=tiny["pretrain_seed"])
    return tokenizer, model.eval()


def pair_dataset(pairs: Sequence[dict[str, Any]], tokenizer: Any, max_length: int = 512):
    """Pairs tokenized as chapter 05 does (prompt labels -100); pairs too long are cut, not refused."""
    return ft.tokenize_pairs(pairs, tokenizer, max_length=max_length, truncate=True)


def text_perplexity(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], *,
                    block_size: int = 128, max_blocks: int = 48) -> float:
    """Perplexity of ``model`` on plain ``texts``: the token stream cut into blocks, every token scored.

    The same measure as ``helpers.finetune.evaluate_loss`` (exp of the mean next-token loss), on
    running text instead of answers: how well the model still knows general language.
    """
    import datasets

    from helpers.models import token_stream

    stream = token_stream(texts, tokenizer)
    blocks = [stream[i:i + block_size].tolist() for i in range(0, len(stream) - block_size, block_size)][:max_blocks]
    if not blocks:
        raise ValueError(f"{len(stream)} tokens is too little text for one block of {block_size}")
    dataset = datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks, "length": [block_size] * len(blocks)})
    with one_thread():
        return ft.evaluate_loss(model, dataset, ft.RightPaddingCollator(ft.pad_token_id(tokenizer)))["perplexity"]


# ---------------------------------------------------------------------------------------------
# 1. Overfitting


@dataclass
class TrainingRun:
    """A small training run with evaluations: the history, and the best evaluation's step and loss."""

    history: list[dict[str, float]]  # one row per evaluation: step, train_loss, val_loss
    best_step: int
    best_val_loss: float
    model: torch.nn.Module  # with restore_best, the weights of best_step; else the last step's

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history).set_index("step")

    def early_stop_step(self, patience: int) -> int:
        """Where early stopping with ``patience`` evaluations would have ended this run."""
        best, stop = math.inf, self.history[-1]["step"]
        waited = 0
        for row in self.history:
            if row["val_loss"] < best:
                best, waited = row["val_loss"], 0
            else:
                waited += 1
                if waited >= patience:
                    return int(row["step"])
        return int(stop)


def train_with_evals(
    model: torch.nn.Module,
    train_dataset,
    val_dataset,
    collator: ft.RightPaddingCollator,
    *,
    steps: int,
    lr: float,
    eval_every: int = 5,
    batch_size: int = 8,
    weight_decay: float = 0.0,
    restore_best: bool = True,
    seed: int = 0,
) -> TrainingRun:
    """Train ``model`` in place with AdamW at a constant ``lr``, evaluating every ``eval_every`` steps.

    ``train_loss`` in the history is the mean loss of the steps since the last evaluation. The
    weights of the best evaluation are kept aside; ``restore_best`` loads them back at the end,
    which is what early stopping (chapter 05's Trainer, ``load_best_model_at_end``) does.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: list[dict[str, float]] = []
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    recent: list[float] = []
    step = 0
    with one_thread():
        while step < steps:
            order = torch.randperm(len(train_dataset), generator=generator).tolist()
            for start in range(0, len(order), batch_size):
                model.train()
                batch = collator([train_dataset[i] for i in order[start:start + batch_size]])
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                loss = ft.causal_lm_loss(logits, batch["labels"])
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                recent.append(loss.item())
                step += 1
                if step % eval_every == 0 or step == steps:
                    val = ft.evaluate_loss(model, val_dataset, collator)["loss"]
                    history.append({"step": step, "train_loss": sum(recent) / len(recent), "val_loss": val})
                    recent = []
                    if val < best[0]:
                        best = (val, step, copy.deepcopy(model.state_dict()))
                if step >= steps:
                    break
    if restore_best:
        model.load_state_dict(best[2])
    model.eval()
    return TrainingRun(history, best_step=best[1], best_val_loss=best[0], model=model)


def detect_overfitting(history: Sequence[dict[str, float]], *, k: int = 3, tolerance: float = 0.02) -> Diagnosis:
    """Fires when the validation loss rose for the last ``k`` evaluations while the training loss fell.

    "Rose": each of the last ``k`` validation losses is above the one before and the last is more
    than ``tolerance`` (relative) above the best; "fell": the training loss at the end is below its
    value ``k`` evaluations earlier. Noise alone rarely rises ``k`` times in a row.
    """
    rows = list(history)
    name = "overfitting"
    if len(rows) < k + 1:
        return Diagnosis(name, False, f"only {len(rows)} evaluations: need {k + 1} to judge")
    val = [row["val_loss"] for row in rows]
    train = [row["train_loss"] for row in rows]
    best_index = min(range(len(val)), key=val.__getitem__)
    rising = all(later > earlier for earlier, later in zip(val[-k - 1:-1], val[-k:]))
    above = val[-1] > val[best_index] * (1 + tolerance)
    falling = train[-1] < train[-k - 1]
    fired = rising and above and falling
    seen = (f"validation loss {val[best_index]:.3f} at step {rows[best_index]['step']:.0f}, {val[-1]:.3f} at the end "
            f"(rose {k} evaluations in a row: {rising}; more than {tolerance:.0%} above its best: {above}); "
            f"training loss {train[-k - 1]:.3f} -> {train[-1]:.3f} (fell: {falling})")
    return Diagnosis(name, fired, seen,
                     "stop early and keep the best step (Trainer: load_best_model_at_end + EarlyStoppingCallback), "
                     "train on more data, or regularize (weight decay, dropout, fewer epochs)",
                     {"best_step": rows[best_index]["step"], "best_val_loss": val[best_index], "final_val_loss": val[-1]})


def plot_runs(runs: dict[str, TrainingRun], ax=None):
    """Training (dashed) and validation (solid) loss of each run; a circle marks each run's best step."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    for (label, run), color in zip(runs.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        frame = run.frame()
        ax.plot(frame.index, frame["train_loss"], ls="--", color=color, label=f"{label}: train")
        ax.plot(frame.index, frame["val_loss"], color=color, label=f"{label}: validation")
        ax.plot([run.best_step], [run.best_val_loss], "o", color=color, ms=8, mfc="none")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per answer token)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    return ax


# ---------------------------------------------------------------------------------------------
# 2. Catastrophic forgetting


def finetune_copy(base: torch.nn.Module, train_dataset, collator: ft.RightPaddingCollator, *, lr: float, steps: int,
                  method: str = "full", params: dict[str, Any] | None = None, batch_size: int = 8) -> torch.nn.Module:
    """A fine-tuned copy of ``base`` (``base`` itself is untouched): ``steps`` AdamW steps at ``lr``.

    ``method="lora"`` trains LoRA adapters with the profile's rank (``params``) and merges them.
    """
    model = copy.deepcopy(base)
    if method == "lora":
        model = ft.apply_lora(model, params or {})
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    generator = torch.Generator().manual_seed(0)
    model.train()
    with one_thread():
        for _ in range(steps):
            picked = torch.randint(0, len(train_dataset), (batch_size,), generator=generator).tolist()
            batch = collator([train_dataset[i] for i in picked])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            ft.causal_lm_loss(logits, batch["labels"]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    model = ft.merge_lora(model) if method == "lora" else model
    return model.eval()


def detect_forgetting(before: float, after: float, *, threshold: float = 1.25) -> Diagnosis:
    """Fires when general-text perplexity grew by more than ``threshold`` times after fine-tuning."""
    ratio = after / before
    return Diagnosis(
        "catastrophic forgetting", ratio > threshold,
        f"general-text perplexity {before:.1f} -> {after:.1f} (x{ratio:.2f}; threshold x{threshold})",
        "lower the learning rate, train fewer steps, use LoRA (the base weights stay frozen), "
        "or mix general text into the fine-tuning data",
        {"before": before, "after": after, "ratio": ratio})


# ---------------------------------------------------------------------------------------------
# 3. Out of memory


def measure_training_memory(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, int]:
    """What one full fine-tuning step on ``batch`` really holds (on a copy of ``model``), in bytes.

    ``states``: parameters, gradients and AdamW's moments after one step
    (``helpers.models.measured_training_state_bytes``). ``activations``: every tensor autograd
    saved for the backward pass during the forward pass, counted once per storage; that is what
    grows with batch size and sequence length, and what runs out first.
    """
    from helpers.models import measured_training_state_bytes

    model = copy.deepcopy(model)
    model.train()
    seen: set[int] = set()
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen and not isinstance(tensor, torch.nn.Parameter):
            seen.add(storage.data_ptr())
            saved += storage.nbytes()
        return tensor

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with one_thread(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        loss = ft.causal_lm_loss(logits, batch["labels"])
    # The weights are saved too (for the gradients of the inputs); they are counted in the states.
    weights = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in model.parameters()}
    saved -= sum(size for ptr, size in weights.items() if ptr in seen)
    loss.backward()
    optimizer.step()
    return {"states": measured_training_state_bytes(model, optimizer), "activations": saved}


def memory_comparison(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Estimate (``helpers.models.training_memory``) against measurement for one batch, in MB."""
    from helpers.models import count_parameters, training_memory

    measured = measure_training_memory(model, batch)
    batch_size, length = batch["input_ids"].shape
    estimate = training_memory(model.config, count_parameters(model), batch_size=batch_size, sequence_length=length)
    return pd.DataFrame({
        "estimate (MB)": [estimate.states / 1e6, estimate.activations / 1e6],
        "measured (MB)": [measured["states"] / 1e6, measured["activations"] / 1e6],
    }, index=pd.Index(["weights + gradients + AdamW", "activations"], name=f"batch {batch_size} x {length} tokens"))


def diagnose_memory(
    config: Any,
    parameters: int,
    budget_bytes: int,
    *,
    batch_size: int,
    sequence_length: int,
    grad_accumulation: int = 1,
    method: str = "full",
    lora_parameters: int = 0,
) -> Diagnosis:
    """Whether fine-tuning fits ``budget_bytes`` (``training_memory``'s estimate); if not, what would.

    ``details["options"]`` is a table of changes with their estimated memory and saving: smaller
    batches with more gradient accumulation (the same effective batch, so the same training),
    LoRA (``lora_parameters`` trainable), both, and shorter sequences.
    """
    from helpers.models import training_memory

    def estimate(method_: str, batch: int, length: int) -> int:
        return training_memory(config, parameters, method=method_, batch_size=batch, sequence_length=length,
                               lora_parameters=lora_parameters).total

    current = estimate(method, batch_size, sequence_length)
    effective = batch_size * grad_accumulation
    options = []
    methods = [method] + (["lora"] if method == "full" and lora_parameters else [])
    for method_ in methods:
        batch = batch_size
        while batch >= 1:
            if (method_, batch) != (method, batch_size):
                total = estimate(method_, batch, sequence_length)
                accumulation = max(1, effective // batch)
                change = f"{'LoRA, ' if method_ != method else ''}batch {batch} x {accumulation} accumulation steps"
                options.append({"change": change, "estimate (GiB)": total / GiB,
                                "saving (GiB)": (current - total) / GiB, "fits": total <= budget_bytes})
            batch //= 2
    half = sequence_length // 2
    total = estimate(method, batch_size, half)
    options.append({"change": f"sequences of {half} tokens (drops or cuts the long pairs)", "estimate (GiB)": total / GiB,
                    "saving (GiB)": (current - total) / GiB, "fits": total <= budget_bytes})
    table = pd.DataFrame(options).set_index("change")
    fits = current <= budget_bytes
    fitting = table[table["fits"]]
    # The gentlest change that fits: the largest batch (fewest accumulation steps) listed first per method.
    advice = fitting.index[0] if len(fitting) else "nothing listed fits: pick a smaller model"
    return Diagnosis(
        "out of memory", not fits,
        f"{method} fine-tuning, batch {batch_size} x {sequence_length} tokens: estimated {current / GiB:.2f} GiB "
        f"for a budget of {budget_bytes / GiB:.2f} GiB",
        f"{advice}" if not fits else "",
        {"estimate_bytes": current, "options": table})


# ---------------------------------------------------------------------------------------------
# 4. Poor data quality


_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_SENTENCE_PUNCT = re.compile(r"[.,;:!?]")


def text_quality(texts: Sequence[str]) -> dict[str, float]:
    """Stopword share of the words and sentence punctuation per 100 words: both collapse in lemmatized text.

    Ordinary English prose has 35-55% stopwords ("the", "of", "is"...) and several commas and full
    stops per 100 words; the classic pipeline's output has neither.
    """
    from helpers.nltk_offline import english_stopwords

    stop = english_stopwords()[0]
    words = [word.lower() for text in texts for word in _WORD.findall(text)]
    punctuation = sum(len(_SENTENCE_PUNCT.findall(text)) for text in texts)
    count = max(len(words), 1)
    return {"words": len(words), "stopword_ratio": sum(word in stop for word in words) / count,
            "punctuation_per_100_words": 100 * punctuation / count}


def detect_poor_data(texts: Sequence[str], *, min_stopword_ratio: float = 0.2,
                     min_punctuation_per_100_words: float = 2.0) -> Diagnosis:
    """Fires on text a language model should not learn from: stopwords or punctuation nearly gone."""
    quality = text_quality(texts)
    low_stop = quality["stopword_ratio"] < min_stopword_ratio
    low_punct = quality["punctuation_per_100_words"] < min_punctuation_per_100_words
    return Diagnosis(
        "poor data quality", low_stop or low_punct,
        f"stopwords {quality['stopword_ratio']:.0%} of words (English prose: 35-55%), "
        f"{quality['punctuation_per_100_words']:.1f} punctuation marks per 100 words",
        "train on the fluent text of chapter 02 (clean_articles), not the classic NLP pipeline's "
        "lemmatized tokens: a language model learns exactly the text it is given",
        quality)


def classic_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` through ``helpers.clean.classic_nlp_pipeline``: lowercased lemmas, no stopwords, no punctuation."""
    from helpers.clean import classic_nlp_pipeline

    return [" ".join(classic_nlp_pipeline(text)) for text in texts]


def train_on_texts(tokenizer: Any, texts: Sequence[str], params: dict[str, Any], *, steps: int = 60,
                   block_size: int = 64, seed: int = 0) -> tuple[torch.nn.Module, list[float]]:
    """A fresh tiny GPT-2 (the profile's ``tiny_model_config``) pretrained on ``texts``; returns it and its losses."""
    from helpers.models import build_tiny_gpt2, pretrain

    model = build_tiny_gpt2(tokenizer, params["tiny_model_config"], seed=seed)
    losses = pretrain(model, tokenizer, texts, steps=steps, batch_size=8, block_size=block_size,
                      learning_rate=params["pretrain_learning_rate"], seed=seed)
    return model, losses


# ---------------------------------------------------------------------------------------------
# 5. Deployment


def diagnose_model_folder(path: Path | str, dtypes: Sequence[str] = ("fp32", "q8")) -> Diagnosis:
    """``helpers.export.check_model_folder`` as a diagnosis: fires on any error."""
    from helpers.export import check_model_folder, explain

    problems = check_model_folder(path, dtypes)
    errors = [p for p in problems if p.severity == "error"]
    return Diagnosis("model folder layout", bool(errors), explain(problems),
                     "; ".join(p.fix for p in errors), {"problems": [str(p) for p in problems]})


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, target)


def broken_model_folder(model_dir: Path | str, out_dir: Path | str, how: str) -> Path:
    """A copy of a good exported folder, broken one way: ``"onnx_at_root"`` or ``"no_tokenizer"``."""
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    # Hard links, not copies: the breakages only rename or delete entries of the copy, and a real
    # model's ONNX files are a gigabyte (copying them took minutes on the laptop profile).
    shutil.copytree(model_dir, out, copy_function=_link_or_copy)
    if how == "onnx_at_root":  # a common hand-made layout: the graphs beside config.json
        for path in list((out / "onnx").iterdir()):
            path.rename(out / path.name)
        (out / "onnx").rmdir()
    elif how == "no_tokenizer":  # saved the model but forgot tokenizer.save_pretrained
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"):
            (out / name).unlink(missing_ok=True)
    else:
        raise ValueError(f"how must be 'onnx_at_root' or 'no_tokenizer', not {how!r}")
    return out


_WASM_PATHS = re.compile(r"wasmPaths\s*=\s*([^;\n]+)")


def check_worker_source(source: str) -> list[str]:
    """What in the page's worker script would fetch ONNX Runtime's WASM from elsewhere than the site.

    Transformers.js fetches its WASM from a CDN (jsDelivr) unless ``env.backends.onnx.wasm.wasmPaths``
    is set: offline, or behind a firewall, the model then never loads.
    """
    found = _WASM_PATHS.findall(source)
    if not found:
        return ["wasmPaths is never set: ONNX Runtime's WASM would be fetched from a CDN (fails offline)"]
    return [f"wasmPaths = {value.strip()} points at another site (fails offline)"
            for value in found if re.search(r"https?://|cdn|jsdelivr|unpkg", value)]


def _head(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and (for small files) body of ``url``; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read(2_000_000) if not url.endswith(".wasm") else b""
            return response.status, {k.lower(): v for k, v in response.headers.items()}, body
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, b""
    except (urllib.error.URLError, OSError):
        return 0, {}, b""


EXPECTED_TYPES = {".wasm": "application/wasm", ".mjs": "javascript", ".js": "javascript"}


def diagnose_site(url: str) -> Diagnosis:
    """Fetch the served page's files and check what breaks loading in a browser.

    Errors: a file missing; a ``.wasm`` not served as ``application/wasm`` (browsers refuse to
    compile it in streaming mode) or a script not served as JavaScript (module workers refuse to
    run); a worker whose ``wasmPaths`` is a CDN or unset. Warning: no COOP/COEP headers (no
    ``SharedArrayBuffer``, so WASM runs on one thread and the stop button waits).
    """
    from helpers.deploy import VENDOR_FILES

    base = url if url.endswith("/") else url + "/"
    errors, warnings, seen = [], [], {}
    status, headers, _ = _head(base + "index.html")
    if status != 200:
        errors.append(f"index.html: HTTP {status or 'no answer'}")
    if not {"cross-origin-opener-policy", "cross-origin-embedder-policy"} <= set(headers):
        warnings.append("no COOP/COEP headers: not cross-origin isolated, WASM runs on one thread and Stop reloads the model")
    status, headers, body = _head(base + "worker.js")
    if status != 200:
        errors.append(f"worker.js: HTTP {status or 'no answer'}")
    else:
        errors += [f"worker.js: {finding}" for finding in check_worker_source(body.decode("utf-8", "replace"))]
    for name in VENDOR_FILES:
        status, headers, _ = _head(base + "vendor/" + name)
        kind = headers.get("content-type", "")
        seen[name] = kind
        expected = EXPECTED_TYPES[Path(name).suffix]
        if status != 200:
            errors.append(f"vendor/{name}: HTTP {status or 'no answer'} (build the site: helpers.deploy.build_site)")
        elif expected not in kind:
            errors.append(f"vendor/{name}: served as {kind!r}, the browser needs {expected!r}")
    message = "; ".join(errors + warnings) or "the page's files are served as the browser needs them"
    return Diagnosis("site serving", bool(errors), message,
                     "serve the site with helpers.deploy.serve (or give your server the same MIME types "
                     "and headers) and keep wasmPaths pointing at ./vendor/",
                     {"errors": errors, "warnings": warnings, "content_types": seen})


def serve_misconfigured(site_dir: Path | str, *, wasm_type: str = "text/plain",
                        isolation: bool = True) -> tuple[SiteServer, str]:
    """Serve ``site_dir`` like ``helpers.deploy.serve`` but with a wrong MIME type for ``.wasm``.

    A stand-in for a web server whose MIME table lacks ``.wasm``. ``isolation=False`` also drops
    the COOP/COEP headers. Stop it with ``server.shutdown(); server.server_close()``.
    """
    from helpers.deploy import SiteRequestHandler

    class Misconfigured(SiteRequestHandler):
        extensions_map = {**SiteRequestHandler.extensions_map, ".wasm": wasm_type}

        def end_headers(self) -> None:
            if isolation:
                super().end_headers()
            else:  # skip SiteRequestHandler's headers, keep the base class's
                super(SiteRequestHandler, self).end_headers()

    handler = functools.partial(Misconfigured, directory=str(site_dir))
    server = SiteServer(("127.0.0.1", 0), handler)  # quiet when a client hangs up, like the course's
    threading.Thread(target=server.serve_forever, name="misconfigured-site", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


# site/page.json's wasm_only_dtypes, which site/worker.js reads: on ONNX Runtime Web's WebGPU backend
# 8-bit models drift from the exact tokens (Llama models, with Transformers.js 4; all, with 3).
WRONG_ON_WEBGPU = WASM_ONLY_DTYPES


def backend_choice(requested: str = "auto", *, navigator_gpu: bool = False, adapter: bool = False,
                   webgpu_load_fails: bool = False, dtype: str = "auto") -> tuple[str, str]:
    """The backend site/worker.js picks, and why: its ``load`` logic, mirrored in Python.

    ``auto`` takes WebGPU when ``navigator.gpu`` exists and gives an adapter, else WASM; a WebGPU
    load that fails falls back to WASM. An explicit ``wasm`` or ``webgpu`` is taken as asked, except
    that a q8 model always runs on WASM. (The browser tests check the worker itself, on Chromium's
    software WebGPU.)
    """
    if requested == "wasm":
        return "wasm", "asked for WASM"
    if requested == "auto" and not (navigator_gpu and adapter):
        why = "navigator.gpu is undefined" if not navigator_gpu else "requestAdapter() gave no adapter"
        return "wasm", f"{why}: no WebGPU, the page runs on WASM (CPU)"
    if dtype in WRONG_ON_WEBGPU:
        return "wasm", f"{dtype} is kept off WebGPU (a Llama model's tokens drift there; Transformers.js #1317): the page runs it on WASM"
    if webgpu_load_fails:
        return "wasm", "WebGPU failed to load the model: the page fell back to WASM"
    return "webgpu", "WebGPU adapter found" if requested == "auto" else "asked for WebGPU"


def diagnose_webgpu(worker_source: str, *, navigator_gpu: bool, adapter: bool = True) -> Diagnosis:
    """Fires when the page would run without WebGPU; checks the worker really has the fallback."""
    backend, why = backend_choice("auto", navigator_gpu=navigator_gpu, adapter=adapter and navigator_gpu)
    has_fallback = "navigator.gpu" in worker_source and '"wasm"' in worker_source
    message = f"the page chooses {backend}: {why}" + ("" if has_fallback else "; worker.js has NO WASM fallback")
    return Diagnosis("no WebGPU", backend != "webgpu" or not has_fallback, message,
                     "nothing to fix when the fallback exists: WASM is slower (CPU), not broken; enable WebGPU "
                     "(chrome://gpu). On WASM, q8 is a 2.5 to 4 times smaller download, but on the course's machine it did not "
                     "decode faster than fp32 (benchmarks/README.md, chapter 07)",
                     {"backend": backend, "fallback_in_worker": has_fallback})


# ---------------------------------------------------------------------------------------------
# Exercises


# Histories that catch the usual slips: a tie is no improvement (the Trainer's EarlyStoppingCallback
# needs a strictly better loss); a run that never improves stops after `patience` evaluations; one
# that improves to the end never stops early.
EARLY_STOPPING_CASES = (
    [{"step": 10, "val_loss": 3.0}, {"step": 20, "val_loss": 2.5}, {"step": 30, "val_loss": 2.5},
     {"step": 40, "val_loss": 2.6}, {"step": 50, "val_loss": 2.4}],
    [{"step": 5, "val_loss": 1.0}, {"step": 10, "val_loss": 1.5}, {"step": 15, "val_loss": 2.0}, {"step": 20, "val_loss": 0.5}],
    [{"step": 1, "val_loss": 4.0}, {"step": 2, "val_loss": 3.0}, {"step": 3, "val_loss": 2.0}],
)


def early_stopping_reference(history: Sequence[dict[str, float]], patience: int) -> tuple[int, int]:
    """``(kept step, stopped step)``: the best evaluation before training stops, and where it stops."""
    stopped = TrainingRun(list(history), 0, 0.0, None).early_stop_step(patience)
    seen = [row for row in history if row["step"] <= stopped]
    kept = min(seen, key=lambda row: row["val_loss"])["step"]  # min keeps the first of equal losses
    return int(kept), int(stopped)


def check_early_stopping(histories: dict[str, Sequence[dict[str, float]]], early_stopping: Callable | None) -> str:
    """Exercise: ``early_stopping(history, patience) -> (kept step, stopped step)``, run on this chapter's
    histories and on ``EARLY_STOPPING_CASES`` with patience 1 to 4."""
    if early_stopping is None:
        return "not answered yet: define early_stopping(history, patience) and pass it to the check"
    cases = list(histories.items()) + [(f"made-up history {i + 1}", h) for i, h in enumerate(EARLY_STOPPING_CASES)]
    for label, history in cases:
        for patience in (1, 2, 3, 4):
            expected = early_stopping_reference(history, patience)
            try:
                got = early_stopping(list(history), patience)
                got = tuple(int(value) for value in got)
            except NotImplementedError:
                return "not answered yet: write the body of early_stopping(history, patience), then run this cell again"
            except Exception as error:  # the learner's code: say where it broke
                return f"not quite: early_stopping raised {type(error).__name__}: {error} on {label}, patience {patience}"
            if got != expected:
                losses = ", ".join(f"{int(row['step'])}: {row['val_loss']:.3f}" for row in history)
                return (f"not quite: on {label} with patience {patience}, (kept, stopped) should be {expected}, "
                        f"not {got} (validation loss by step: {losses}; an equal loss is not an improvement)")
    return "correct: the same steps as the Trainer's early stopping, on every history"

def check_fitting_batch(config: Any, parameters: int, budget_bytes: int, sequence_length: int,
                        answer: int | None) -> str:
    """Exercise: the largest power-of-two batch size whose full fine-tuning fits ``budget_bytes``."""
    from helpers.models import training_memory

    fitting = [b for b in (2**i for i in range(10))
               if training_memory(config, parameters, batch_size=b, sequence_length=sequence_length).total <= budget_bytes]
    if answer is None:
        return "not answered yet: try troubleshoot.diagnose_memory with smaller batch sizes"
    if not fitting:
        return "no batch size fits this budget: the answer is that full fine-tuning does not fit (use LoRA)"
    return "correct" if int(answer) == max(fitting) else f"not quite: the largest fitting batch is {max(fitting)}"


def check_fixed_folder(path: Path | str | None) -> str:
    """Exercise: a model folder repaired until ``check_model_folder`` finds no error."""
    if path is None:
        return "not answered yet: repair the broken folder and set `answer_3` to its path"
    diagnosis = diagnose_model_folder(path)
    return "correct: the folder is ready for Transformers.js" if not diagnosis.fired else diagnosis.message
