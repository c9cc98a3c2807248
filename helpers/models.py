"""Chapter 04: choosing a base model, and the tiny stand-in model the course builds itself.

Two halves:

- **The candidates.** ``candidate_table()`` computes, for each Hub model the course considers, its
  architecture, its parameter count (instantiated from its config on PyTorch's ``meta`` device, so no
  weights are downloaded or allocated), its download size at several precisions, its KV-cache bytes
  per token, an estimate of the GPU memory that fine-tuning it needs (full and LoRA), whether that
  fits a 16 GB T4, its licence and whether Transformers.js runs it. Configs come from the Hub when it
  is reachable and from the copies shipped in ``data/model_configs/`` when it is not: one code path,
  ``load_candidate_config(name)``.
- **The stand-in.** Offline, the tiny profile cannot download distilgpt2, so it pretrains a tiny GPT-2
  with distilgpt2's conventions (byte-level BPE tokenizer from chapter 03, ``<|endoftext|>`` as bos and
  eos, no pad token) on the training articles, and saves it where a Hub model would be loaded from.
  Every later chapter then runs exactly the code a real model runs. ``build_tiny_llama`` builds a
  Llama-architecture stand-in (SmolLM2's family: grouped-query attention, tied embeddings) so the
  helpers' tests are not GPT-2-only.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from helpers import hub
from helpers.course import chapter_input, output_path, require_input
from helpers.hub import ModelUnavailableError  # noqa: F401 (what load_base_model raises, named here too)
from helpers.profiles import REPO_ROOT

COURSE_TINY_GPT2 = "course-tiny-gpt2"  # the model_name by which a profile asks for the course's stand-in
MODEL_CONFIGS_DIR = REPO_ROOT / "data" / "model_configs"
BASE_DIR_NAME = "base"  # run/04_model/base/: the stand-in, saved as a Hub model folder

CANDIDATES: tuple[str, ...] = (
    "distilbert/distilgpt2",
    "HuggingFaceTB/SmolLM2-135M",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "HuggingFaceTB/SmolLM2-360M",
    "HuggingFaceTB/SmolLM2-360M-Instruct",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "Xenova/LaMini-Flan-T5-783M",
)

# Model types Transformers.js can run, by task: the keys of MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and
# MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES in src/models/registry.js of the version site/package.json
# pins (tests/test_site_browser.py compares them with the installed library). Chapter 04 reads them to
# say which candidates the page can run; chapter 06's export refuses any other decoder.
TRANSFORMERS_JS_CAUSAL_LM = frozenset({
    "bloom", "gpt2", "gpt_oss", "jais", "gptj", "gpt_bigcode", "gpt_neo", "gpt_neox", "codegen", "llama",
    "nanochat", "apertus", "llama4_text", "arcee", "afmoe", "lfm2", "lfm2_moe", "lfm3", "smollm3", "exaone",
    "olmo", "olmo2", "olmo3", "olmo_hybrid", "mobilellm", "granite", "granitemoehybrid", "cohere", "cohere2",
    "gemma", "gemma2", "vaultgemma", "gemma3_text", "gemma3", "helium", "glm", "glm_moe_dsa", "openelm",
    "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_next", "qwen2_vl", "qwen2_5_vl", "qwen3_vl",
    "qwen3_vl_moe", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "gemma3n", "gemma4", "phi", "phi3", "mpt",
    "opt", "mbart", "mistral", "mistral4", "ministral", "ministral3", "ernie4_5", "starcoder2", "deepseek_v3",
    "deepseek_v4", "falcon", "falcon_h1", "nemotron_h", "trocr", "solar_open", "stablelm",
    "modernbert-decoder", "hunyuan_v1_dense", "youtu", "zaya", "hrm_text", "phi3_v",
})
TRANSFORMERS_JS_SEQ2SEQ = frozenset({
    "t5", "longt5", "mt5", "bart", "mbart", "marian", "m2m_100", "blenderbot", "blenderbot-small",
})

T4_USABLE_BYTES = 15 * 2**30  # of a T4's 16 GB, what Colab reports usable (15 GiB) before the CUDA context
BROWSER_BUDGET_BYTES = 300 * 10**6  # the course's download budget for the page: ~300 MB at 8 bits
GB = 10**9
MB = 10**6

# Bytes per parameter of each download precision. 8 and 4 bits add a scale per block of weights,
# and real ONNX files keep some tensors (norms, often embeddings) at higher precision: real files
# are a few percent larger.
DOWNLOAD_BYTES_PER_PARAM = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "q4": 0.5}

# Activation bytes per layer per token per hidden unit in fp16: Korthikanti et al. 2022,
# "Reducing Activation Recomputation in Large Transformer Models", eq. 1 gives sbh(34 + 5as/h); the
# 5as/h term is the stored attention-score matrix, which fused attention (PyTorch SDPA) never stores.
ACTIVATION_BYTES_PER_LAYER_TOKEN_HIDDEN = 34
# Logits per token per vocabulary entry: fp16 logits (2) and the fp32 copy the loss computes on (4).
LOGIT_BYTES_PER_TOKEN_VOCAB = 6


class ModelConfigUnavailableError(OSError):
    """A candidate's config is neither reachable on the Hub nor shipped with the course."""


# ---------------------------------------------------------------------------------------------
# Configs: the Hub when reachable, the shipped copies when not


def shipped_config_dir(name: str) -> Path:
    """The folder of ``name``'s shipped config: ``data/model_configs/<org>--<name>/``."""
    return MODEL_CONFIGS_DIR / name.replace("/", "--")


def model_info(name: str) -> dict[str, Any]:
    """The shipped metadata of candidate ``name``: hub id, model_type, licence, published size, provenance."""
    path = shipped_config_dir(name) / "model_info.json"
    if not path.exists():
        raise ModelConfigUnavailableError(_unknown_candidate_message(name, f"{path} does not exist"))
    return json.loads(path.read_text(encoding="utf-8"))


def _unknown_candidate_message(name: str, reason: str) -> str:
    known = sorted(p.name.replace("--", "/") for p in MODEL_CONFIGS_DIR.glob("*--*") if (p / "config.json").exists())
    return (
        f"no config for {name!r}: {reason}. The Hub is unreachable (or offline mode is on) and the course "
        f"ships configs only for: {', '.join(known)}. Use one of those names, or go online (on Colab) "
        f"to read any Hub model's config"
    )


def load_candidate_config(name: str, *, offline: bool = False) -> tuple[PretrainedConfig, str]:
    """Return ``(config, source)`` for Hub model ``name``; ``source`` is ``"hub"`` or ``"shipped"``.

    Tries ``AutoConfig.from_pretrained(name)`` (the Hub, or its local cache). When that fails (offline,
    or ``offline=True``, or the Hub's offline switch is on, which skips the network and its retries),
    reads the copy the course ships in ``data/model_configs/<org>--<name>/config.json``. An unknown
    name with no Hub raises ``ModelConfigUnavailableError`` listing the candidates that are shipped.
    ``offline`` is the profile's ``hub_offline``; the environment's switch counts too.
    """
    offline = offline or hub.hub_unreachable()
    revision = hub.PINNED_REVISIONS.get(name)  # None (the latest) for a candidate only ever tabled, never loaded
    try:
        # The raw config.json first: a key transformers 4.57 would act on is refused before it can (CVE-2026-4372).
        data, _ = PretrainedConfig.get_config_dict(name, revision=revision, local_files_only=offline)
        hub.refuse_unsafe_keys(data, f"{name}'s config.json")
        return AutoConfig.from_pretrained(name, revision=revision, local_files_only=offline), "hub"
    except hub.UnsafeConfigError:
        raise
    except (OSError, ValueError) as error:  # huggingface_hub's errors are OSErrors; offline is one too
        hub_error = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    folder = shipped_config_dir(name)
    if not (folder / "config.json").exists():
        raise ModelConfigUnavailableError(_unknown_candidate_message(name, f"the Hub said {hub_error}"))
    data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    # Old config files (distilgpt2's vendored copy) predate "model_type"; the metadata names it.
    model_type = data.pop("model_type", None) or model_info(name)["model_type"]
    return AutoConfig.for_model(model_type, **data), "shipped"


# ---------------------------------------------------------------------------------------------
# What a config implies: parameters, sizes, KV cache, training memory


def is_encoder_decoder(config: PretrainedConfig) -> bool:
    """Whether ``config`` describes an encoder-decoder (T5) rather than a decoder-only model."""
    return bool(getattr(config, "is_encoder_decoder", False))


def meta_model(config: PretrainedConfig) -> PreTrainedModel:
    """The model ``config`` describes, built on the ``meta`` device: shapes only, no memory, no download."""
    auto = AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Parameters of ``model``, each tensor counted once.

    ``model.parameters()`` yields a shared tensor once, so a language-model head tied to the input
    embedding (distilgpt2, SmolLM2) is not counted twice: it is one matrix in memory and on disk.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# The course's LoRA targets per architecture (config.model_type): every linear layer of attention and
# MLP, which fine-tunes better than PEFT's default (attention's query and value only) for little more
# memory. Chapter 05 trains these (helpers.finetune.lora_config); chapters 04 and 08 estimate memory
# for these. GPT-2 stores its linear layers as Conv1D with the weight transposed, hence fan_in_fan_out.
# T5 (a chapter 04 candidate, never fine-tuned by the course) names its gated MLP's layers wi_0, wi_1.
LORA_TARGETS: dict[str, dict[str, Any]] = {
    "gpt2": {"target_modules": ["c_attn", "c_proj", "c_fc"], "fan_in_fan_out": True},
    "llama": {
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "fan_in_fan_out": False,
    },
    "t5": {"target_modules": ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"], "fan_in_fan_out": False},
}


def lora_target_modules(model_type: str) -> list[str]:
    """The course's LoRA target modules for ``model_type``: every linear layer of attention and MLP (``LORA_TARGETS``).

    Raises ``ValueError`` listing the known architectures for any other ``model_type``.
    """
    if model_type not in LORA_TARGETS:
        raise ValueError(
            f"no LoRA target modules known for model_type {model_type!r}; known: {', '.join(LORA_TARGETS)}. "
            "Add its linear layers' names to helpers.models.LORA_TARGETS"
        )
    return list(LORA_TARGETS[model_type]["target_modules"])


def lora_parameter_count(model: torch.nn.Module, r: int, target_modules: Sequence[str]) -> int:
    """Trainable parameters LoRA of rank ``r`` adds to ``model``: ``r * (in + out)`` per targeted matrix.

    A module is targeted when the last part of its name is in ``target_modules`` (PEFT's rule for a
    list of names). Works on a meta-device model.
    """
    from transformers.pytorch_utils import Conv1D

    total = 0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in target_modules:
            continue
        if isinstance(module, torch.nn.Linear):
            total += r * (module.in_features + module.out_features)
        elif isinstance(module, Conv1D):  # GPT-2's linear layers store the weight as (in, out)
            total += r * (module.weight.shape[0] + module.weight.shape[1])
    return total


def kv_cache_bytes_per_token(config: PretrainedConfig, bytes_per_value: int = 2) -> int:
    """Bytes of KV cache one generated token adds: 2 (K and V) x layers x kv_heads x head_dim x bytes.

    Grouped-query attention (SmolLM2: 3 key/value heads for 9 query heads) divides it by the group
    size. For an encoder-decoder (T5) this is the decoder's self-attention cache; its cross-attention
    cache is a fixed cost per input token, not per generated one.
    """
    if is_encoder_decoder(config):
        layers = config.num_decoder_layers
        kv_heads, head_dim = config.num_heads, config.d_kv
    else:
        layers = config.num_hidden_layers
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * layers * kv_heads * head_dim * bytes_per_value


@dataclass(frozen=True)
class MemoryEstimate:
    """Training memory in bytes, by what holds it. ``states`` is everything but the activations."""

    method: str
    weights: int
    gradients: int
    optimizer: int
    activations: int
    trainable_parameters: int

    @property
    def states(self) -> int:
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> int:
        return self.states + self.activations


def training_memory(
    config: PretrainedConfig,
    parameters: int,
    *,
    method: str = "full",
    batch_size: int = 16,
    sequence_length: int = 512,
    lora_parameters: int = 0,
) -> MemoryEstimate:
    """Estimate the GPU memory of fine-tuning with fp16 mixed precision (torch AMP) and AdamW.

    The formula, with N parameters, T trainable ones, b sequences of s tokens, L layers, width h and
    vocabulary V:

    - weights: 4N bytes. AMP keeps the master weights in fp32 and casts them to fp16 per operation.
      LoRA adds its T adapter weights: 4(N + T).
    - gradients: 4T bytes (fp32, one per trainable weight; T = N for full fine-tuning).
    - optimizer: 8T bytes (AdamW's two fp32 moments per trainable weight).
    - activations: 34·L·b·s·h bytes (fp16, Korthikanti et al. 2022, with fused attention) plus
      6·b·s·V for the logits (fp16, and the fp32 copy the loss is computed on). LoRA saves none of
      these: the backward pass still goes through every layer.

    So full fine-tuning costs 16 bytes per parameter before activations. Not counted: the CUDA
    context and allocator fragmentation (about 1 GB), which is why fitting is judged against
    ``T4_USABLE_BYTES``.
    """
    if method not in {"full", "lora"}:
        raise ValueError(f"method must be 'full' or 'lora', not {method!r}")
    trainable = parameters if method == "full" else lora_parameters
    if is_encoder_decoder(config):
        layers = config.num_layers + config.num_decoder_layers
    else:
        layers = config.num_hidden_layers
    tokens = batch_size * sequence_length
    activations = (
        ACTIVATION_BYTES_PER_LAYER_TOKEN_HIDDEN * layers * tokens * config.hidden_size
        + LOGIT_BYTES_PER_TOKEN_VOCAB * tokens * config.vocab_size
    )
    weights = 4 * parameters + (4 * lora_parameters if method == "lora" else 0)
    return MemoryEstimate(method, weights, 4 * trainable, 8 * trainable, activations, trainable)


def measured_training_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes actually held by ``model``'s parameters, their gradients and ``optimizer``'s state tensors.

    What ``training_memory(...).states`` estimates; measure after at least one optimizer step (AdamW
    creates its moments lazily). Shared tensors are counted once.
    """
    seen: set[int] = set()
    total = 0

    def add(tensor: torch.Tensor | None) -> None:
        nonlocal total
        if isinstance(tensor, torch.Tensor) and id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()

    for parameter in model.parameters():
        add(parameter)
        add(parameter.grad)
    for state in optimizer.state.values():
        for value in state.values():
            add(value)
    return total


@dataclass
class Candidate:
    """One row of the candidate table (see ``candidate_table``)."""

    name: str
    config_source: str
    architecture: str
    model_type: str
    architectures: str
    parameters: int
    download_bytes: dict[str, int]
    published_download_bytes: int | None
    kv_cache_bytes_per_token: int
    full: MemoryEstimate
    lora: MemoryEstimate
    licence: str
    transformers_js: bool

    def row(self) -> dict[str, Any]:
        """The row as table columns (sizes in MB, memory in GB)."""
        return {
            "model": self.name,
            "architecture": self.architecture,
            "model_type": self.model_type,
            "architectures": self.architectures,
            "parameters (M)": self.parameters / 1e6,
            **{f"{precision} (MB)": size / MB for precision, size in self.download_bytes.items()},
            "published (MB)": None if self.published_download_bytes is None else self.published_download_bytes / MB,
            "KV cache (KiB/token)": self.kv_cache_bytes_per_token / 1024,
            "full FT (GB)": self.full.total / GB,
            "LoRA (GB)": self.lora.total / GB,
            "T4 full": self.full.total <= T4_USABLE_BYTES,
            "T4 LoRA": self.lora.total <= T4_USABLE_BYTES,
            "browser (q8)": self.download_bytes["int8"] <= BROWSER_BUDGET_BYTES and self.transformers_js,
            "licence": self.licence,
            "Transformers.js": self.transformers_js,
            "config from": self.config_source,
        }


def describe_candidate(
    name: str,
    *,
    batch_size: int = 16,
    sequence_length: int = 512,
    lora_r: int = 16,
    offline: bool = False,
) -> Candidate:
    """Everything the table says about Hub model ``name``, computed from its config."""
    config, source = load_candidate_config(name, offline=offline)
    model = meta_model(config)
    parameters = count_parameters(model)
    lora = lora_parameter_count(model, lora_r, lora_target_modules(config.model_type))
    info = model_info(name) if shipped_config_dir(name).exists() else {}
    supported = TRANSFORMERS_JS_SEQ2SEQ if is_encoder_decoder(config) else TRANSFORMERS_JS_CAUSAL_LM
    memory = {"batch_size": batch_size, "sequence_length": sequence_length}
    return Candidate(
        name=name,
        config_source=source,
        architecture="encoder-decoder" if is_encoder_decoder(config) else "decoder-only",
        model_type=config.model_type,
        architectures=", ".join(config.architectures or [type(model).__name__]),
        parameters=parameters,
        download_bytes={k: int(parameters * v) for k, v in DOWNLOAD_BYTES_PER_PARAM.items()},
        published_download_bytes=info.get("published_download_bytes"),
        kv_cache_bytes_per_token=kv_cache_bytes_per_token(config),
        full=training_memory(config, parameters, method="full", **memory),
        lora=training_memory(config, parameters, method="lora", lora_parameters=lora, **memory),
        licence=info.get("licence", "see the model card"),
        transformers_js=config.model_type in supported,
    )


def candidate_table(
    names: Iterable[str] = CANDIDATES,
    *,
    batch_size: int = 16,
    sequence_length: int = 512,
    lora_r: int = 16,
    offline: bool = False,
):
    """The candidates as a ``pandas.DataFrame``, one row per model (see ``Candidate.row``)."""
    import pandas as pd

    settings = {"batch_size": batch_size, "sequence_length": sequence_length, "lora_r": lora_r, "offline": offline}
    rows = [describe_candidate(name, **settings).row() for name in names]
    return pd.DataFrame(rows).set_index("model")


def plot_size_vs_memory(table, *, browser_budget_bytes: int = BROWSER_BUDGET_BYTES, ax=None):
    """Scatter download size at 8 bits against fine-tuning memory (full and LoRA), with the budgets drawn.

    Left of the vertical line fits the page's download budget; below the horizontal one fits a T4.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 5.5))
    size = table["int8 (MB)"]
    ax.scatter(size, table["full FT (GB)"], marker="o", label="full fine-tuning", zorder=3)
    ax.scatter(size, table["LoRA (GB)"], marker="^", label="LoRA", zorder=3)
    # A base model and its -Instruct variant sit on the same point: one label for both.
    labels: dict[tuple[float, float], list[str]] = {}
    for name, row in table.iterrows():
        labels.setdefault((row["int8 (MB)"], row["full FT (GB)"]), []).append(name.split("/")[-1])
        ax.vlines(row["int8 (MB)"], row["LoRA (GB)"], row["full FT (GB)"], color="0.7", lw=1, zorder=2)
    for (x, y), names in labels.items():
        text = names[0] + "".join(f" / {n[len(names[0]):] or n}" for n in names[1:])
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(browser_budget_bytes / MB, color="tab:green", ls="--",
               label=f"browser budget: {browser_budget_bytes / MB:.0f} MB at 8 bits")
    ax.axhline(T4_USABLE_BYTES / GB, color="tab:red", ls="--",
               label=f"T4: {T4_USABLE_BYTES / 2**30:.0f} GiB ({T4_USABLE_BYTES / GB:.1f} GB) usable on Colab")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("download size at 8 bits (MB, log scale)")
    ax.set_ylabel("fine-tuning memory, fp16 AMP + AdamW (GB, log scale)")
    ax.set_title("What fits: the browser's download and the T4's memory")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain if axis is ax.yaxis else FuncFormatter(lambda v, _: ""))
    return ax


# ---------------------------------------------------------------------------------------------
# The stand-ins: a tiny GPT-2 (the tiny profile's base model) and a tiny Llama (for the tests)


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no eos token; the course's models need one")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return {"bos_token_id": bos, "eos_token_id": tokenizer.eos_token_id}


def build_tiny_gpt2(tokenizer: PreTrainedTokenizerBase, config: dict[str, Any], *, seed: int = 0) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 with distilgpt2's conventions and the dimensions in ``config``.

    ``config`` is the profile's ``tiny_model_config`` (``n_layer``, ``n_head``, ``n_embd``,
    ``n_positions``). The vocabulary is the tokenizer's; bos and eos are its ``<|endoftext|>``; there is
    no pad token (generation passes ``pad_token_id = eos`` itself); the head is tied to the embedding.
    The initial weights come from ``torch.manual_seed(seed)``, which also reseeds torch's global RNG.
    """
    torch.manual_seed(seed)
    gpt2 = GPT2Config(vocab_size=len(tokenizer), **_special_ids(tokenizer), **config)
    return with_named_loss(GPT2LMHeadModel(gpt2))


def with_named_loss(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` with its loss named: the causal-LM loss, when transformers could not tell it from the class name.

    transformers picks a model's loss from its class name (``model.loss_type``); ``GPT2LMHeadModel``
    does not say "ForCausalLM", so the first loss computed logs "`loss_type=None` ... unrecognized" and
    uses the causal-LM loss anyway. Naming it is the same loss without the notice. The config carries
    the name too, so that a saved model keeps it.
    """
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"
    if getattr(model.config, "loss_type", None) is None:
        model.config.loss_type = "ForCausalLM"
    return model


def build_tiny_llama(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A randomly initialised Llama (SmolLM2's architecture) with tiny dimensions, for tests.

    Like SmolLM2: grouped-query attention (``num_key_value_heads`` < ``num_attention_heads``), tied
    embeddings, SwiGLU MLP, RMSNorm, rotary positions, no biases. Its module names (``q_proj``,
    ``v_proj``...) are the ones LoRA targets on a real SmolLM2, so fine-tuning, merging and export code
    tested on it is not GPT-2-only.
    """
    torch.manual_seed(seed)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        **_special_ids(tokenizer),
    )
    return LlamaForCausalLM(llama)


def pretraining_texts(articles: Iterable[dict[str, Any]], train_pairs: Iterable[dict[str, Any]]) -> list[str]:
    """The text of the articles chapter 03 put in its training split, one string per article.

    Only training articles: pretraining on validation or test articles would leak them into every
    later score. Each text is the title, then each section's heading and text.
    """
    train_ids = {pair["article_id"] for pair in train_pairs}
    if not train_ids:
        raise ValueError("no training pairs: chapter 03's train split is empty, so no article is known to train on")
    texts = []
    for article in articles:
        if article["id"] not in train_ids:
            continue
        parts = [article["title"]]
        for section in article["sections"]:
            parts.extend(p for p in (section["heading"], section["text"]) if p)
        texts.append("\n\n".join(parts))
    if not texts:
        raise ValueError("no cleaned article is in chapter 03's train split: are 02 and 03 from the same run?")
    return texts


def token_stream(texts: Iterable[str], tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """All ``texts`` as one stream of token ids, each followed by the tokenizer's eos token."""
    ids: list[int] = []
    for text in texts:
        # verbose=False: whole articles are longer than the model's context, on purpose (cut into blocks later)
        ids.extend(tokenizer(text, verbose=False)["input_ids"])
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.long)


def pretrain(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    *,
    steps: int,
    batch_size: int,
    block_size: int,
    learning_rate: float,
    seed: int = 0,
    warmup_fraction: float = 0.1,
    num_threads: int | None = 1,
) -> list[float]:
    """Train ``model`` as a language model on ``texts`` for ``steps`` steps; return the loss of each step.

    Plain PyTorch: each step takes ``batch_size`` windows of ``block_size`` tokens at random offsets
    in the token stream, and AdamW follows a linear warm-up then a cosine decay to a tenth of
    ``learning_rate``. Seeded: on the same machine the losses are the same every run.

    ``num_threads`` (default 1) limits PyTorch's CPU threads while training: the stand-in's matrices
    are too small for threads to pay off, and on a shared two-core machine two threads competing
    with other processes ran four times slower than one (measured). ``None`` leaves the setting alone.
    """
    stream = token_stream(texts, tokenizer)
    if len(stream) <= block_size + 1:
        raise ValueError(f"{len(stream)} tokens of text is too little for blocks of {block_size} tokens")
    if block_size > model.config.max_position_embeddings:
        positions = model.config.max_position_embeddings
        raise ValueError(f"block_size {block_size} exceeds the model's {positions} positions")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, int(steps * warmup_fraction))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    offsets = torch.arange(block_size)
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    model.train()
    losses = []
    try:
        for _ in range(steps):
            starts = torch.randint(0, len(stream) - block_size, (batch_size,), generator=generator)
            batch = stream[starts[:, None] + offsets]
            loss = model(input_ids=batch, labels=batch).loss  # the model shifts labels by one itself
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
        model.eval()
    return losses


STAND_IN_CARD = """\
# course-tiny-gpt2: a stand-in, not a real language model

This is the *Corpus to Client* course's tiny profile base model. The course builds it itself because
the tiny profile runs offline and cannot download `distilbert/distilgpt2`. It has distilgpt2's
architecture and conventions (GPT-2, byte-level BPE tokenizer, `<|endoftext|>` as beginning and end
of text, no padding token) at a tiny size, so every later chapter runs exactly the code a real Hub
model runs. It knows very little: {parameters:,} parameters pretrained for {steps} CPU steps on
{articles} Wikipedia articles (the training split of chapter 03). Expect fluent-looking fragments
at best. Do not use it for anything but running the course.

- architecture: GPT2LMHeadModel, {config}
- tokenizer: the course's byte-level BPE, {vocab} tokens (chapter 03)
- pretraining: {steps} steps x {batch_size} blocks of {block_size} tokens, AdamW, lr {learning_rate},
  warm-up then cosine; loss {first_loss:.3f} -> {last_loss:.3f}
- data: Wikipedia text, CC BY-SA 3.0 (see the course's data/README.md); so is this model

Load it with `transformers.AutoModelForCausalLM.from_pretrained(<this folder>)`.
"""


def save_pretrained_atomically(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path | str,
    *,
    readme: str | None = None,
    extra_json: dict[str, Any] | None = None,
    generation_config: GenerationConfig | None = None,
) -> Path:
    """Save ``model`` and ``tokenizer`` as a Hub model folder at ``out_dir``, whole or not at all.

    Everything is written to a temporary folder beside ``out_dir``, which replaces ``out_dir`` only
    once complete (``course.atomic_directory``): a run killed midway leaves the previous model (or
    nothing), never half a model. The folder gets ``generation_config`` when given, else one with
    bos/eos and ``pad_token_id = eos`` (generation needs a pad id; the tokenizer keeps none, like
    distilgpt2's). ``extra_json`` maps file names to data written beside it.
    """
    from helpers.course import atomic_directory
    from helpers.tokenizer import save_tokenizer

    if generation_config is None:
        ids = _special_ids(tokenizer)
        generation_config = GenerationConfig(**ids, pad_token_id=ids["eos_token_id"])
    with atomic_directory(out_dir) as staging:
        model.generation_config = generation_config
        model.save_pretrained(staging)
        save_tokenizer(tokenizer, staging)
        if readme is not None:
            (staging / "README.md").write_text(readme, encoding="utf-8")
        for name, data in (extra_json or {}).items():
            (staging / name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)


@dataclass
class BaseModelReport:
    """What ``prepare_base_model`` did: the model's name or folder, its size, where it came from, its pretraining."""

    name_or_path: str
    parameters: int | None
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    pretraining_articles: int = 0
    pretraining_tokens: int = 0
    source: str = "course"  # "course" (built here), "hub", or "gguf-standin" (helpers.hub)
    source_note: str = ""

    def metrics(self) -> dict[str, Any]:
        """The numbers chapter 04 records in ``summary.json``."""
        return {
            "base_model": self.name_or_path,
            "base_model_source": self.source,
            "parameters": self.parameters,
            "pretrain_steps": len(self.losses),
            "pretrain_first_loss": round(self.losses[0], 4) if self.losses else None,
            "pretrain_last_loss": round(self.losses[-1], 4) if self.losses else None,
            "pretrain_seconds": round(self.seconds, 2),
            "pretrain_articles": self.pretraining_articles,
            "pretrain_tokens": self.pretraining_tokens,
        }


def base_model_path_or_name(params: dict[str, Any], run_dir: Path | str) -> str:
    """What the profile's base model is loaded from: ``run/04_model/base`` or a Hub name (``helpers.hub`` resolves it)."""
    if params["model_name"] == COURSE_TINY_GPT2:
        return str(output_path(run_dir, "base_model"))
    return params["model_name"]


def prepare_base_model(params: dict[str, Any], run_dir: Path | str) -> BaseModelReport:
    """Chapter 04's step: make the profile's base model loadable, through one code path.

    For ``model_name == "course-tiny-gpt2"`` (the tiny profile): read chapter 03's tokenizer and train
    split and chapter 02's cleaned articles, build the tiny GPT-2, pretrain it for
    ``params["pretrain_steps"]`` steps on the training articles and save it to
    ``run/04_model/base/``. For a Hub model: download it at its pinned revision, or build its offline
    stand-in (``helpers.hub.pretrained_source``); the report says which, with the parameter count.
    """
    from helpers.dump import read_jsonl
    from helpers.tokenizer import load_tokenizer

    name = params["model_name"]
    if name != COURSE_TINY_GPT2:
        started = time.perf_counter()
        folder, source = hub.pretrained_source(name, offline=params["hub_offline"])
        config = AutoConfig.from_pretrained(str(folder))
        return BaseModelReport(name, count_parameters(meta_model(config)), seconds=time.perf_counter() - started,
                               source=source, source_note=hub.describe_source(name, source))
    run_dir = Path(run_dir)
    articles = read_jsonl(chapter_input(run_dir, "clean_articles"))
    train_pairs = read_jsonl(chapter_input(run_dir, "train_pairs"))
    tokenizer = load_tokenizer(chapter_input(run_dir, "tokenizer"))
    texts = pretraining_texts(articles, train_pairs)
    started = time.perf_counter()
    model = build_tiny_gpt2(tokenizer, params["tiny_model_config"], seed=params["pretrain_seed"])
    settings = {
        "steps": params["pretrain_steps"],
        "batch_size": params["pretrain_batch_size"],
        "block_size": params["pretrain_block_size"],
        "learning_rate": params["pretrain_learning_rate"],
    }
    losses = pretrain(model, tokenizer, texts, seed=params["pretrain_seed"], **settings)
    seconds = time.perf_counter() - started
    parameters = count_parameters(model)
    tokens = len(token_stream(texts, tokenizer))
    readme = STAND_IN_CARD.format(
        parameters=parameters, articles=len(texts), config=params["tiny_model_config"], vocab=len(tokenizer),
        first_loss=losses[0] if losses else float("nan"), last_loss=losses[-1] if losses else float("nan"), **settings,
    )
    record = {"stand_in": True, **settings, "seed": params["pretrain_seed"], "articles": len(texts),
              "tokens": tokens, "seconds": round(seconds, 2), "losses": losses}
    out = output_path(run_dir, "base_model")
    save_pretrained_atomically(model, tokenizer, out, readme=readme, extra_json={"pretraining.json": record})
    note = f"{COURSE_TINY_GPT2}: built and pretrained by this chapter"
    return BaseModelReport(str(out), parameters, losses, seconds, len(texts), tokens, source_note=note)


def base_model_source(params: dict[str, Any]) -> str:
    """Where the profile's base model comes from: ``"course"`` (chapter 04 builds it), ``"hub"`` or
    ``"gguf-standin"`` (``helpers.hub.pretrained_source``: the Hub's cache or the stand-in's folder, so cheap
    once chapter 04 ran). Chapter 05 records it; chapter 06's model card says which weights were fine-tuned."""
    if params["model_name"] == COURSE_TINY_GPT2:
        return "course"
    return hub.pretrained_source(params["model_name"], offline=params["hub_offline"])[1]


def load_base_model(params: dict[str, Any], run_dir: Path | str) -> PreTrainedModel:
    """The profile's base model, loaded with ``AutoModelForCausalLM.from_pretrained``.

    ``course-tiny-gpt2`` loads from ``run/04_model/base/`` (raising, naming chapter 04, when it has not
    been built); any other name from the folder ``helpers.hub.pretrained_source`` gives (the Hub at the
    pinned revision, or the offline stand-in), raising ``ModelUnavailableError`` when there is neither.
    """

    where = base_model_path_or_name(params, run_dir)
    if params["model_name"] == COURSE_TINY_GPT2:
        require_input(Path(where) / "config.json", produced_by="04_model")
        return with_named_loss(AutoModelForCausalLM.from_pretrained(where))
    folder, _ = hub.pretrained_source(where, offline=params["hub_offline"])
    return with_named_loss(AutoModelForCausalLM.from_pretrained(str(folder)))


def greedy_samples(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 30,
) -> list[dict[str, str]]:
    """Greedy continuations of ``prompts`` (one at a time, so no padding is needed)."""
    model.eval()
    samples = []
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.eos_token_id)
        continuation = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=False)
        samples.append({"prompt": prompt, "continuation": continuation})
    return samples


def plot_pretraining_loss(losses: Sequence[float], *, vocab_size: int | None = None, ax=None):
    """The pretraining loss per step, with a moving average (batches are random, so steps are noisy).

    With ``vocab_size``, also draws ln(vocab_size): the loss of a model guessing uniformly.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    if not losses:
        ax.text(0.5, 0.5, "no pretraining here: the base model is already pretrained", ha="center", va="center")
        return ax
    ax.plot(range(1, len(losses) + 1), losses, alpha=0.35, label="loss per step")
    window = max(1, len(losses) // 20)
    windows = [losses[max(0, i - window + 1): i + 1] for i in range(len(losses))]
    smooth = [sum(w) / len(w) for w in windows]
    ax.plot(range(1, len(losses) + 1), smooth, label=f"moving average ({window} steps)")
    if vocab_size:
        ax.axhline(math.log(vocab_size), color="0.5", ls=":", label=f"uniform guess, ln {vocab_size}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title("Pretraining the stand-in")
    ax.legend()
    ax.grid(True, alpha=0.3)
    return ax
