"""Profiles: the course's parameter sets. One code path; a profile only changes the numbers.

- ``tiny``: offline, CPU, minutes. The shipped corpus and a tokenizer/model the course builds itself.
  This is what CI and the nightly run: the mechanics, not a model worth talking to.
- ``laptop``: a real pretrained instruct model, SmolLM2-135M-Instruct, fine-tuned with LoRA on the
  shipped corpus on a laptop CPU, in 9 to 12 minutes on two cores (benchmarks/README.md). From the Hub when it is reachable,
  else from its offline stand-in (``helpers.hub``). The profile for self-study.
- ``colab``: a Colab T4. Downloads Simple English Wikipedia's multistream dump and uses Hub models.
- ``full``: the same as colab without the sampling caps, for a long run on a bigger GPU.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# The rules the page shares with Python, in one file both read: site/page.json (the dtype -> file
# table, the backends' default dtypes, the model the page loads by default). Read here, once;
# helpers.export and helpers.deploy use them, site/app.js and site/worker.js fetch the same file.
PAGE_RULES_PATH = REPO_ROOT / "site" / "page.json"
PAGE_RULES: dict[str, Any] = json.loads(PAGE_RULES_PATH.read_text(encoding="utf-8"))
DEFAULT_DEPLOY_NAME: str = PAGE_RULES["default_model"]

SIMPLEWIKI = "https://dumps.wikimedia.org/simplewiki/latest/"
SIMPLEWIKI_DUMP = SIMPLEWIKI + "simplewiki-latest-pages-articles-multistream.xml.bz2"
SIMPLEWIKI_INDEX = SIMPLEWIKI + "simplewiki-latest-pages-articles-multistream-index.txt.bz2"

# What every profile shares; each profile below overrides values, never adds keys
# (tests/test_profiles.py checks), so one code path serves all three.
_COMMON: dict[str, Any] = {
    # 01 dump parsing
    "dump_source": SIMPLEWIKI_DUMP,
    "dump_index_source": SIMPLEWIKI_INDEX,
    "max_articles": None,
    # Download only the dump's first pages (its first bz2 streams, found with the multistream index):
    # None downloads the whole dump. Set with max_articles, with a margin for the pages that are not
    # articles (redirects, templates, categories...: 86 of the 118 pages in data/tiny/).
    "dump_sample_pages": None,
    "keep_tables": False,
    # Processes that parse a multistream dump (cut at its bz2 streams, found with its index): None is
    # every core when the index is there, else one. The output is the same bytes whatever the number.
    "dump_processes": None,
    # 02 cleaning
    "min_section_chars": 120,
    # 03 pairing
    "pair_seed": 0,
    "pair_max_paragraphs": 2,
    "pair_max_response_chars": 700,
    "split_fractions": {"train": 0.9, "validation": 0.05, "test": 0.05},
    "tokenizer_name": "distilbert/distilgpt2",
    "tokenizer_vocab_size": None,
    # 04 model choice: a Hub name, or "course-tiny-gpt2" for the stand-in the course pretrains itself
    "hub_offline": False,  # True: read model configs from data/model_configs/ without trying the Hub
    "model_name": "distilbert/distilgpt2",
    "tiny_model_config": {"n_layer": 2, "n_head": 4, "n_embd": 128, "n_positions": 512},
    "pretrain_steps": 0,
    "pretrain_seed": 0,
    "pretrain_batch_size": 16,
    "pretrain_block_size": 128,
    "pretrain_learning_rate": 3e-3,
    # 05 fine-tuning
    "finetune_method": "full",  # "full" or "lora"
    "finetune_seed": 0,
    "finetune_epochs": 3,
    "finetune_learning_rate": 5e-5,
    "finetune_batch_size": 16,
    "finetune_grad_accumulation": 1,
    "finetune_max_length": 512,
    "finetune_eval_steps": 50,
    "finetune_early_stopping_patience": 3,
    "finetune_logging_steps": 10,
    "finetune_warmup_ratio": 0.05,
    "finetune_weight_decay": 0.0,
    "finetune_max_grad_norm": 1.0,
    "finetune_save_total_limit": 2,  # checkpoints kept besides the best: each holds the optimizer state too
    # True: continue from the last complete checkpoint (after a disconnect or a crash); False: start over,
    # removing this method's old checkpoints. A profile value, so the runner (--set finetune_resume=true)
    # and papermill (-p finetune_resume True) reach it.
    "finetune_resume": False,
    "finetune_truncate": False,  # True cuts pairs longer than the context instead of stopping with an error
    "finetune_torch_compile": False,  # torch.compile the model on a GPU: faster steps after a minute of compiling
    "finetune_eval_pairs": 512,  # validation pairs of the evaluations during training (before/after use all)
    "finetune_max_steps": None,  # None: finetune_epochs decide; a number stops training after that many steps
    # 05's evaluation on the test split (articles never trained on): response perplexity on every test pair,
    # ROUGE-L of greedy answers on the first eval_generated_pairs of them, eval_answers shown side by side
    "eval_generated_pairs": 64,
    "eval_answers": 5,
    "eval_max_new_tokens": 128,
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "lora_learning_rate": 2e-4,  # adapters start at zero and are few: they need a larger step than full tuning
    # None: the run folder's 05_finetune/checkpoints (on Colab the run folder is on Drive, so a
    # disconnect costs minutes, not the run); or any folder path.
    "checkpoint_dir": None,
    # 06 ONNX export: the dtypes made (file names as Transformers.js requests them), and the checks
    "export_dtypes": ["fp32", "q8", "fp16", "q4"],
    "export_opset": None,  # None: optimum's default for the architecture
    "export_atol": 1e-4,  # largest accepted |ONNX fp32 - PyTorch| logit difference
    "export_eval_pairs": 64,  # validation pairs for each variant's perplexity
    "export_check_prompts": 4,  # prompts for the logit and greedy comparisons
    "export_greedy_tokens": 24,
    # 08 troubleshooting: "course-tiny-gpt2" reproduces the failures on the tiny profile's stand-in, built in the
    # chapter: the reproductions train on the CPU in one thread (the fastest for tiny matrices), where each run of
    # an 82M or 135M model would take minutes; None, on the profile's base model
    "troubleshoot_model": "course-tiny-gpt2",
    # 07 browser deploy: the model's folder name under site/models/ (the page's ?model=)
    "deploy_name": DEFAULT_DEPLOY_NAME,
}

PROFILES: dict[str, dict[str, Any]] = {
    "tiny": _COMMON
    | {
        "description": "offline CPU run on the shipped corpus (CI and nightly default)",
        "dump_source": "data/tiny/enwiki-tiny.xml.bz2",
        "dump_index_source": None,
        "split_fractions": {"train": 0.8, "validation": 0.1, "test": 0.1},
        "tokenizer_name": "course-bpe",
        "tokenizer_vocab_size": 2048,
        "model_name": "course-tiny-gpt2",
        "hub_offline": True,
        "pretrain_steps": 300,
        "pretrain_batch_size": 8,
        "finetune_epochs": 4,
        "finetune_learning_rate": 1e-3,
        "finetune_eval_steps": 10,
        "finetune_logging_steps": 5,
        "lora_learning_rate": 3e-3,
    },
    "laptop": _COMMON
    | {
        "description": "a real pretrained instruct model (SmolLM2-135M-Instruct) fine-tuned with LoRA on a laptop CPU",
        "dump_source": "data/tiny/enwiki-tiny.xml.bz2",
        "dump_index_source": None,
        "split_fractions": {"train": 0.8, "validation": 0.1, "test": 0.1},
        "tokenizer_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "model_name": "HuggingFaceTB/SmolLM2-135M-Instruct",
        # Sized for at most 15 minutes end to end on two CPU cores, where a LoRA step on 8 pairs takes about
        # 10 s, and for well under 6 GB of memory: the activations that 30 layers keep for the backward
        # pass take about 3 MB per token, so batches of 2 pairs accumulated by 4 (8 per optimizer step,
        # as fast per token as batches of 4; benchmarks/README.md has the measurement).
        "finetune_method": "lora",
        "finetune_epochs": 1,
        "finetune_max_steps": 20,
        "finetune_batch_size": 2,
        "finetune_grad_accumulation": 4,
        "finetune_max_length": 384,
        "finetune_eval_steps": 10,
        "finetune_logging_steps": 2,
        "finetune_eval_pairs": 16,
        "lora_learning_rate": 1e-3,
        "eval_generated_pairs": 8,
        "eval_max_new_tokens": 80,
        "export_eval_pairs": 16,
        "export_check_prompts": 2,
    },
    "colab": _COMMON
    | {
        "description": "a Colab T4: Simple English Wikipedia's multistream dump, Hub models",
        # Sized for a workshop session on a free T4: about 5,000 articles make some 20k pairs,
        # two epochs of which train in well under an hour (chapter 05 states its estimate).
        "max_articles": 5_000,
        "dump_sample_pages": 25_000,  # chapter 01 says when they held fewer than max_articles articles
        "finetune_epochs": 2,
        # Each evaluation saves a checkpoint of about 1 GB (distilgpt2 in fp32 with AdamW's two moments) to
        # Drive. About 2,000 steps in all: every 500 makes 4, of which 2 rotate out into Drive's trash,
        # where they still count against a free account's 15 GB (chapter 05 then deletes them for good).
        "finetune_eval_steps": 500,
    },
    "full": _COMMON
    | {
        "description": "the whole Simple English Wikipedia dump on a larger GPU",
        "model_name": "HuggingFaceTB/SmolLM2-135M",
        "tokenizer_name": "HuggingFaceTB/SmolLM2-135M",
        "finetune_batch_size": 32,
        "finetune_eval_steps": 200,
        "finetune_torch_compile": True,
    },
}


class UnknownProfileError(ValueError):
    """Raised for a profile name the course does not define."""


def get_profile(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return a copy of the parameters of profile ``name``, with ``overrides`` replacing some values.

    Raises ``UnknownProfileError`` naming the valid choices when ``name`` is not a profile, and
    ``KeyError`` naming the valid keys for an override of a key no profile has (a typo would
    otherwise be ignored silently).
    """
    if name not in PROFILES:
        choices = ", ".join(f"{key} ({value['description']})" for key, value in PROFILES.items())
        raise UnknownProfileError(f"unknown profile {name!r}; choose one of: {choices}")
    unknown = sorted(set(overrides or {}) - set(_COMMON))
    if unknown:
        raise KeyError(f"no profile has the key(s) {', '.join(unknown)}; the keys are: {', '.join(sorted(_COMMON))}")
    for key, value in (overrides or {}).items():
        check_override_type(key, value)
    return copy.deepcopy(PROFILES[name]) | copy.deepcopy(dict(overrides or {})) | {"profile": name}


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def check_override_type(key: str, value: Any) -> None:
    """Refuse an override whose type no profile uses for ``key`` (``TypeError`` naming what is expected).

    The types allowed are those of the key's values across the profiles (``None`` included where a
    profile has it); an int is accepted where a float is expected (``finetune_learning_rate=1``).
    """
    allowed = {_type_name(profile[key]) for profile in PROFILES.values() if key in profile}
    given = _type_name(value)
    if given in allowed or (given == "int" and "float" in allowed) or (given == "tuple" and "list" in allowed):
        return
    raise TypeError(f"override {key}={value!r} is a {given}; the profiles give {key} a "
                    f"{' or '.join(sorted(allowed))} (e.g. {key}={PROFILES['tiny'].get(key)!r})")


def default_profile(profile: str | None) -> str:
    """A notebook's profile: ``profile`` when set, else ``"colab"`` on Google Colab and ``"tiny"`` elsewhere."""
    if profile is not None:
        return profile
    return "colab" if "google.colab" in sys.modules else "tiny"


def injected_overrides(namespace: dict[str, Any]) -> dict[str, Any]:
    """Profile values a runner set as notebook variables (``papermill -p max_articles 3``), as overrides.

    papermill injects each ``-p`` parameter as a variable after the parameters cell; a chapter's
    set-up cell passes ``globals()`` here, so a profile key given that way reaches ``params``.
    """
    return {key: namespace[key] for key in _COMMON if key in namespace}


def resolve_source(source: str, root: Path = REPO_ROOT) -> str | Path:
    """A profile's input: a URL stays a string; a local path is made absolute and must exist."""
    if source.startswith(("http://", "https://")):
        return source
    path = Path(source)
    path = path if path.is_absolute() else root / path
    if not path.exists():
        raise FileNotFoundError(
            f"input {path} does not exist; the tiny profile reads the corpus shipped in data/tiny/ "
            "(restore it with `git checkout data/`), other profiles download their dump"
        )
    return path
