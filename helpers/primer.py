"""Chapter 00: a transformers primer, on the course's own tokenizer and model.

What a learner needs before chapter 01: how text becomes tokens, what ``pipeline`` does, the classic
pipeline tasks, attention written out in a few lines, positional encodings, a real attention map,
and the three architecture families, tied to chapter 04's candidates.

Chapter 00 runs first, so in a fresh run folder there is no course model yet. ``primer_model``
then builds what the chapter needs in seconds and says so: the course tokenizer trained on the
shipped tiny corpus, and an untrained tiny GPT-2, saved together to ``00_primer/model``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from helpers.profiles import REPO_ROOT

CHAPTER = "00_primer"
UNTRAINED_NOTE = "its outputs are noise: run the course once (python -m helpers.course) to see a trained model here"
TINY_DUMP = REPO_ROOT / "data" / "tiny" / "enwiki-tiny.xml.bz2"

# The classic pipeline tasks, each with a small Hub model (a few hundred MB at most) and an input.
# "{mask}" is replaced by the model's own mask token, which differs between BERT and RoBERTa.
# Every model is loaded at the commit pinned in helpers.hub.PINNED_REVISIONS (see pipeline_model_folder).
PIPELINE_TASKS: dict[str, dict[str, Any]] = {
    "sentiment-analysis": {"model": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
                           "inputs": "The new museum is wonderful."},
    "zero-shot-classification": {"model": "typeform/distilbert-base-uncased-mnli",
                                 "inputs": "The volcano erupted and covered the town in ash.",
                                 "candidate_labels": ["geology", "sport", "music"]},
    "fill-mask": {"model": "distilbert/distilbert-base-uncased", "inputs": "Paris is the {mask} of France."},
    "ner": {"model": "dslim/distilbert-NER", "inputs": "Marie Curie worked in Paris.",
            "aggregation_strategy": "simple"},
    "question-answering": {"model": "distilbert/distilbert-base-cased-distilled-squad",
                           "question": "Where did Marie Curie work?",
                           "context": "Marie Curie was a physicist. She worked in Paris."},
    "summarization": {"model": "google-t5/t5-small",
                      "inputs": "The Moon is Earth's only natural satellite. It orbits Earth every 27 days. "
                                "Its gravity causes the tides. People first walked on it in 1969.",
                      "max_length": 24, "min_length": 5},
    "translation_en_to_fr": {"model": "google-t5/t5-small", "inputs": "The house is small."},
}


def is_offline(params: dict[str, Any]) -> bool:
    """Whether the Hub must not be touched: the profile says so, ``HF_HUB_OFFLINE`` is set, or it is unreachable."""
    from helpers.hub import hub_unreachable

    return bool(params.get("hub_offline")) or hub_unreachable()


# ---------------------------------------------------------------------------------------------
# The course's tokenizer and model, whatever the run folder holds


@dataclass
class PrimerModel:
    """The model and tokenizer chapter 00 shows, where they came from, and the folders that hold them.

    ``label`` is the short name the chapter prints beside every output the model makes, so that an
    untrained model's noise is never mistaken for a trained model's text. ``model_folder`` and
    ``tokenizer_folder`` are local folders ``from_pretrained`` (and ``pipeline``) can load.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_source: str
    tokenizer_source: str
    trained: bool
    label: str
    model_folder: Path
    tokenizer_folder: Path

    def describe(self) -> str:
        lines = [f"model:     {self.label}", f"  from:    {self.model_source}", f"tokenizer: {self.tokenizer_source}"]
        return "\n".join(lines + ([] if self.trained else [f"note:      {UNTRAINED_NOTE}"]))


def corpus_texts(limit: int | None = None) -> list[str]:
    """The shipped tiny corpus as plain article texts (title, then section texts), parsed from the dump."""
    from helpers import dump

    texts = []
    for article in dump.iter_articles(TINY_DUMP, progress=False):
        parts = [article["title"]] + [section["text"] for section in article["sections"] if section["text"]]
        texts.append("\n\n".join(parts))
        if limit is not None and len(texts) >= limit:
            break
    return texts


def primer_model(params: dict[str, Any], run_dir: Path | str) -> PrimerModel:
    """The course's model and tokenizer for the primer: the most finished ones the run folder has.

    In order: ``05_finetune/model`` (model and its tokenizer), ``04_model/base`` with
    ``03_pairs/tokenizer``; else the profile's Hub model and its tokenizer (``helpers.hub``: the Hub at
    the pinned revision, or the model's offline stand-in); else (a fresh offline run: chapter 00 runs
    first) the course tokenizer trained on the shipped corpus and an untrained tiny GPT-2, both saved
    to ``00_primer/model`` and labelled as untrained.
    """
    from helpers import hub, models
    from helpers.course import output_path
    from helpers.tokenizer import COURSE_TOKENIZER, load_tokenizer, train_course_tokenizer

    run = Path(run_dir)
    finetuned, base, tok_dir = (output_path(run, name) for name in ("finetuned_model", "base_model", "tokenizer"))
    if (finetuned / "config.json").exists():
        return PrimerModel(AutoModelForCausalLM.from_pretrained(finetuned).eval(), load_tokenizer(finetuned),
                           str(finetuned), str(finetuned), trained=True,
                           label="the course's fine-tuned model (05_finetune/model)",
                           model_folder=finetuned, tokenizer_folder=finetuned)
    if (base / "config.json").exists() and tok_dir.exists():
        return PrimerModel(AutoModelForCausalLM.from_pretrained(base).eval(), load_tokenizer(tok_dir),
                           str(base), str(tok_dir), trained=True,
                           label="the course's base model (04_model/base), not fine-tuned yet",
                           model_folder=base, tokenizer_folder=tok_dir)
    offline = is_offline(params)
    name = params["model_name"]
    if name != models.COURSE_TINY_GPT2:
        # The Hub at the pinned revision, or the model's offline stand-in (helpers.hub); neither: the fallback below.
        try:
            folder, source = hub.pretrained_source(name, offline=offline)
        except hub.ModelUnavailableError:
            pass
        else:
            model, tokenizer = AutoModelForCausalLM.from_pretrained(str(folder)), load_tokenizer(folder)
            described = hub.describe_source(name, source)
            how = "offline stand-in" if source == hub.SOURCE_STANDIN else "from the Hub"
            return PrimerModel(model.eval(), tokenizer, described, "the model's own, from the same folder", trained=True,
                               label=f"{name} (pretrained, {how})", model_folder=Path(folder),
                               tokenizer_folder=Path(folder))
    out_dir = output_path(run, "primer_model")
    out_dir.mkdir(parents=True, exist_ok=True)
    if params["tokenizer_name"] != COURSE_TOKENIZER and not offline:
        tokenizer, tokenizer_source = load_tokenizer(params["tokenizer_name"]), params["tokenizer_name"]
    else:
        vocab = int(params["tokenizer_vocab_size"] or 2048)
        tokenizer = train_course_tokenizer(corpus_texts(), out_dir, vocab_size=vocab)
        tokenizer_source = "the course's byte-level BPE, trained here on the shipped tiny corpus"
    model = models.build_tiny_gpt2(tokenizer, params["tiny_model_config"]).eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return PrimerModel(model, tokenizer, f"{out_dir}: a freshly initialised tiny GPT-2, saved here",
                       f"{out_dir}: {tokenizer_source}", trained=False,
                       label="an untrained tiny GPT-2 (random weights)", model_folder=out_dir, tokenizer_folder=out_dir)


def token_table(tokenizer: PreTrainedTokenizerBase, text: str) -> pd.DataFrame:
    """Each token of ``text``: its id, its vocabulary string (Ġ marks a leading space) and its text."""
    encoded = tokenizer(text, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    return pd.DataFrame({
        "id": ids,
        "token": tokenizer.convert_ids_to_tokens(ids),
        "text": [text[start:end] for start, end in offsets],
    })


def generate_text(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, *,
                  max_new_tokens: int = 20) -> str:
    """Greedy continuation of ``prompt`` through ``transformers.pipeline("text-generation")``.

    The pipeline is given the model and tokenizer objects, so it never looks at the Hub.
    """
    from transformers import GenerationConfig, pipeline
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the pipeline logs "Device set to use cpu" at warning level
    try:
        generator = pipeline("text-generation", model=model, tokenizer=tokenizer, device=model.device)
    finally:
        transformers_logging.set_verbosity(verbosity)
    # Our own settings, not the model's saved preset (chapter 05 saves beam search): plain greedy.
    settings = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    result = generator(prompt, generation_config=settings, use_model_defaults=False, return_full_text=False)
    return result[0]["generated_text"]


# ---------------------------------------------------------------------------------------------
# The classic pipeline tasks (Hub models)


def _short(output: Any, limit: int = 120) -> str:
    """One line of a pipeline's output: labels and scores rounded, long lists cut."""
    if isinstance(output, list) and output and isinstance(output[0], dict):
        output = output[:3]
    if isinstance(output, dict) and "labels" in output:  # zero-shot: labels sorted by score
        output = dict(zip(output["labels"], (round(s, 3) for s in output["scores"])))
    text = str(output)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pipeline_model_folder(name: str) -> Path:
    """The local folder ``pipeline`` loads for a tour model: the Hub files at the pinned commit, config checked.

    ``name`` must be pinned in ``helpers.hub.PINNED_REVISIONS`` (else ``ValueError``, before any download), or
    be a local folder. ``hub.pretrained_source`` downloads it with ``snapshot_download`` at that commit and
    refuses a config holding a key of ``hub.UNSAFE_CONFIG_KEYS`` (``hub.UnsafeConfigError``, CVE-2026-4372); a
    local folder's config is refused the same way. No stand-in exists for these models: an unreachable Hub
    raises ``hub.ModelUnavailableError``.
    """
    from helpers import hub

    if not Path(name).is_dir() and name not in hub.PINNED_REVISIONS:
        raise ValueError(f"{name!r} has no pinned revision in helpers.hub.PINNED_REVISIONS; the course loads a Hub "
                         "model only at a pinned commit (CVE-2026-4372)")
    folder, _ = hub.pretrained_source(name)
    hub.refuse_unsafe_config(folder)  # pretrained_source checked a download already; a local folder it returns as is
    if not Path(name).is_dir() and not any(folder.glob("*.safetensors")):
        # A commit from before the Hub converted the model's weights has only PyTorch's pickle format, which
        # transformers loads with torch.load(weights_only=True): the same commit's files, no code run.
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(name, revision=hub.PINNED_REVISIONS[name], allow_patterns=["*.bin"]))
    return folder


def pipeline_tasks_table(params: dict[str, Any], tasks: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Run each classic task with its small Hub model; one row per task (model, input, output, status).

    Offline (the profile's ``hub_offline`` or ``HF_HUB_OFFLINE``) nothing touches the network: every
    row says "skipped: Hub unreachable". Online, each model is downloaded at its pinned commit and its
    config checked (``pipeline_model_folder``), then ``pipeline`` loads that local folder. A task that
    fails (a download error...) says why in its row instead of stopping the notebook; a model whose
    config is refused says "refused".
    """
    from transformers import pipeline

    from helpers import hub

    tasks = PIPELINE_TASKS if tasks is None else tasks
    offline = is_offline(params)
    rows = []
    for task, spec in tasks.items():
        kwargs = {key: value for key, value in spec.items() if key != "model"}
        shown = kwargs.get("inputs", kwargs.get("question", ""))
        row = {"task": task, "model": spec["model"], "input": shown, "output": "", "status": ""}
        if offline:
            row["status"] = "skipped: Hub unreachable (an offline profile, HF_HUB_OFFLINE, or no connection)"
        else:
            try:
                runner = pipeline(task, model=str(pipeline_model_folder(spec["model"])))
                if isinstance(kwargs.get("inputs"), str) and "{mask}" in kwargs["inputs"]:
                    kwargs["inputs"] = kwargs["inputs"].format(mask=runner.tokenizer.mask_token)
                    row["input"] = kwargs["inputs"]
                if task == "question-answering":
                    output = runner(question=kwargs["question"], context=kwargs["context"])
                else:
                    output = runner(kwargs.pop("inputs"), **kwargs)
                row.update(output=_short(output), status="ok")
            except hub.UnsafeConfigError as error:  # never loaded: the table says so
                keys = ", ".join(key for key in hub.UNSAFE_CONFIG_KEYS if key in str(error))
                row["status"] = f"refused: its config.json sets {keys} (CVE-2026-4372)"
            except Exception as error:  # a download or model error: reported in the table, not raised
                row["status"] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:100]}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("task")


# ---------------------------------------------------------------------------------------------
# Attention and positions, written out


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d + mask) V, for tensors shaped (..., tokens, d); returns (output, weights).

    ``mask``: boolean (True = may attend) or additive floats, broadcast to (..., q_tokens, k_tokens).
    ``is_causal``: each query sees only keys at its position or before. The same contract as
    ``torch.nn.functional.scaled_dot_product_attention``, which fuses these steps.
    """
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])
    if is_causal:
        q_len, k_len = scores.shape[-2:]
        mask_causal = torch.ones(q_len, k_len, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~mask_causal, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = scores.softmax(dim=-1)
    return weights @ value, weights


def sinusoidal_positions(n_positions: int, d_model: int) -> np.ndarray:
    """The original transformer's positional encodings (Vaswani et al. 2017), shape (positions, d_model).

    PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)): each pair of
    columns is a rotation at its own frequency, so PE[p]·PE[p+k] depends on the offset k only.
    """
    if d_model % 2:
        raise ValueError(f"d_model must be even (sin and cos pairs), not {d_model}")
    positions = np.arange(n_positions)[:, None]
    frequencies = 1.0 / 10000 ** (np.arange(0, d_model, 2) / d_model)
    encoding = np.zeros((n_positions, d_model))
    encoding[:, 0::2] = np.sin(positions * frequencies)
    encoding[:, 1::2] = np.cos(positions * frequencies)
    return encoding


def plot_positions(encoding: np.ndarray, ax=None):
    """The encoding matrix as an image: positions down, dimensions across (fast waves left, slow right)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    image = ax.imshow(encoding, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xlabel("dimension")
    ax.set_ylabel("position")
    ax.set_title("Sinusoidal positional encodings")
    ax.figure.colorbar(image, ax=ax)
    return ax


def attention_maps(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[list[str], np.ndarray]:
    """The attention weights of ``model`` on ``text``: (tokens, array shaped layers × heads × tokens × tokens).

    Fused attention (SDPA) never materialises the weights, so the model is switched to the "eager"
    implementation, which computes them explicitly, and switched back afterwards.
    """
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        inputs = tokenizer(text, return_tensors="pt").to(model.device)
        with torch.no_grad():
            attentions = model(**inputs, output_attentions=True).attentions
    finally:
        model.set_attn_implementation(previous)
    tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    return tokens, torch.stack(attentions)[:, 0].float().cpu().numpy()


def plot_attention(tokens: list[str], maps: np.ndarray, *, layer: int = -1, head: int | None = None, ax=None):
    """Heatmap of one layer's attention (one head, or the mean over heads): rows attend to columns."""
    import matplotlib.pyplot as plt

    weights = maps[layer].mean(axis=0) if head is None else maps[layer, head]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(weights, cmap="viridis", vmin=0)
    labels = [token.replace("Ġ", "·") for token in tokens]
    ax.set_xticks(range(len(tokens)), labels, rotation=90)
    ax.set_yticks(range(len(tokens)), labels)
    layer_name = layer if layer >= 0 else maps.shape[0] + layer
    ax.set_title(f"layer {layer_name}, {'mean of heads' if head is None else f'head {head}'}")
    ax.set_xlabel("attends to (key)")
    ax.set_ylabel("token (query)")
    ax.figure.colorbar(image, ax=ax)
    return ax


# ---------------------------------------------------------------------------------------------
# One transformer block, taken apart


@dataclass
class BlockParts:
    """One decoder block of a causal LM, as the modules it runs: norm, attention, norm, MLP.

    Both architectures the course uses are *pre-norm*: each sub-layer reads a normalised copy of the
    hidden states and adds its result back to them (the residual). ``attend`` runs the attention
    module alone, with what it needs besides the hidden states (Llama: the rotary position angles).
    """

    block: torch.nn.Module
    norm_1: torch.nn.Module  # before attention
    attention: torch.nn.Module
    norm_2: torch.nn.Module  # before the MLP
    mlp: torch.nn.Module
    architecture: str
    rotary: torch.nn.Module | None = None  # Llama's rotary embedding (RoPE), shared by all layers

    def attend(self, hidden: torch.Tensor) -> torch.Tensor:
        """The attention sub-layer's output for ``hidden`` (batch, tokens, width): causal, no padding."""
        if self.rotary is None:  # GPT-2: positions were added to the embeddings already
            return self.attention(hidden)[0]
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        return self.attention(hidden, position_embeddings=self.rotary(hidden, positions), attention_mask=None)[0]


def block_parts(model: PreTrainedModel, layer: int = 0) -> BlockParts:
    """The parts of decoder block ``layer`` of a GPT-2 or a Llama-style model (SmolLM2, Qwen2, Mistral)."""
    if model.config.model_type == "gpt2":
        block = model.transformer.h[layer]
        return BlockParts(block, block.ln_1, block.attn, block.ln_2, block.mlp,
                          "GPT-2: LayerNorm, GELU MLP, learned positions")
    decoder = getattr(model, "model", None)
    if decoder is not None and hasattr(decoder, "layers") and hasattr(decoder, "rotary_emb"):
        block = decoder.layers[layer]
        return BlockParts(block, block.input_layernorm, block.self_attn, block.post_attention_layernorm, block.mlp,
                          f"{type(model).__name__.removesuffix('ForCausalLM')}: RMSNorm, SwiGLU MLP, rotary positions",
                          rotary=decoder.rotary_emb)
    raise ValueError(f"block_parts knows GPT-2 and Llama-style models, not {model.config.model_type!r}")


def block_input_output(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, text: str,
                       layer: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states entering and leaving block ``layer`` on ``text``, from one ordinary forward pass.

    ``hidden_states[i]`` is block i's input; the last entry has the final norm applied, so the last
    block's output is not in the list: ``layer`` must not be the last.
    """
    if layer >= model.config.num_hidden_layers - 1:
        raise ValueError(f"layer {layer}: the last block's output is only seen after the final norm")
    inputs = tokenizer(text, return_tensors="pt").to(model.device)
    with torch.no_grad():
        hidden_states = model(**inputs, output_hidden_states=True).hidden_states
    return hidden_states[layer], hidden_states[layer + 1]


# ---------------------------------------------------------------------------------------------
# Architecture families


FAMILY_USES = {
    "encoder-only": "understands text: classification, NER, extractive QA, embeddings; cannot write text",
    "encoder-decoder": "reads an input, writes an output: translation, summarization",
    "decoder-only": "continues text (an -Instruct one answers instructions and chats)",
}


def family_of(config: Any) -> str:
    """"encoder-decoder", "decoder-only" or "encoder-only", from a model config."""
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if any(word in architectures for word in ("CausalLM", "LMHeadModel")) or getattr(config, "is_decoder", False):
        return "decoder-only"
    return "encoder-only"


def architecture_families(names: tuple[str, ...] | None = None, *, offline: bool = True) -> pd.DataFrame:
    """Chapter 04's candidates by family: layers, width, parameters, Transformers.js support.

    Read from the candidates' configs (the shipped copies offline). BERT-style encoder-only models
    are in no candidate list (they cannot generate), so they get one descriptive row without numbers.
    """
    from helpers import models

    rows = []
    for name in names or models.CANDIDATES:
        config, source = models.load_candidate_config(name, offline=offline)
        family = family_of(config)
        layers = (f"{config.num_layers} enc + {config.num_decoder_layers} dec" if family == "encoder-decoder"
                  else str(config.num_hidden_layers))
        rows.append({"model": name, "family": family, "model_type": config.model_type, "layers": layers,
                     "hidden size": config.hidden_size,
                     "parameters (M)": round(models.count_parameters(models.meta_model(config)) / 1e6, 1),
                     "use": FAMILY_USES[family], "config from": source})
    rows.append({"model": "google-bert/bert-base-uncased (not a candidate)", "family": "encoder-only",
                 "model_type": "bert", "layers": "12", "hidden size": 768, "parameters (M)": 110.0,
                 "use": FAMILY_USES["encoder-only"], "config from": "described, not loaded"})
    return pd.DataFrame(rows).set_index("model")


# ---------------------------------------------------------------------------------------------
# Exercises


def check_token_count(tokenizer: PreTrainedTokenizerBase, text: str, answer: int | None) -> str:
    """Exercise: how many tokens does the course tokenizer make of ``text``? Returns the verdict."""
    expected = len(tokenizer(text)["input_ids"])
    if answer is None:
        return "not answered yet: set the answer to the number of tokens, an int (tip: primer.token_table)"
    return "correct" if int(answer) == expected else f"not quite: {answer} given, the tokenizer makes {expected}"


def check_sliding_window_mask(sliding_window_mask: Callable[[int, int], torch.Tensor] | None) -> str:
    """Exercise: ``sliding_window_mask(n, window)``, n×n booleans, True where token i may attend to token j.

    Causal, and each token sees at most ``window`` tokens: itself and the ``window - 1`` before it
    (Mistral's sliding-window attention). The expected masks are written out cell by cell here; a
    window as long as the text must also make PyTorch's ``scaled_dot_product_attention`` give what
    its own ``is_causal=True`` gives.
    """
    todo = ("not answered yet: define sliding_window_mask(n_tokens, window) returning an n×n torch.bool "
            "tensor, True where token i may see token j")
    if sliding_window_mask is None:
        return todo
    for n, window in ((1, 1), (6, 2), (7, 3), (5, 5), (4, 10)):
        try:
            answer = sliding_window_mask(n, window)
        except NotImplementedError:
            return todo
        except Exception as error:  # the learner's code: say what went wrong instead of stopping the notebook
            return f"not quite: sliding_window_mask({n}, {window}) raised {type(error).__name__}: {error}"
        call = f"sliding_window_mask({n}, {window})"
        if not isinstance(answer, torch.Tensor) or answer.dtype != torch.bool:
            return f"not quite: {call} returned {type(answer).__name__} {getattr(answer, 'dtype', '')}, not a torch.bool tensor"
        if answer.shape != (n, n):
            return f"not quite: {call} has shape {tuple(answer.shape)}, not {(n, n)}"
        expected = torch.tensor([[i - window < j <= i for j in range(n)] for i in range(n)])
        if not torch.equal(answer, expected):
            i, j = (answer != expected).nonzero()[0].tolist()
            return (f"not quite: {call}[{i}, {j}] is {bool(answer[i, j])}; token {i} may see tokens "
                    f"{max(0, i - window + 1)}..{i} (itself and the {window - 1} before it), never later ones")
        if window >= n:
            generator = torch.Generator().manual_seed(n)
            q, k, v = (torch.randn(1, 2, n, 8, generator=generator) for _ in range(3))
            with_mask = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=answer)
            causal = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            if not torch.allclose(with_mask, causal, atol=1e-6):
                return f"not quite: {call} gives other attention outputs than is_causal=True"
    return "correct: right for windows of 1 to 10 tokens, and a window as long as the text is the causal mask"


NORM_ATTRIBUTES = ("weight", "bias", "eps", "variance_epsilon")


def check_norm_by_hand(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                       norm_by_hand: Callable[[torch.Tensor, Any], torch.Tensor] | None,
                       text: str = "The Moon orbits the Earth once a month.") -> str:
    """Exercise: ``norm_by_hand(x, norm)`` computes what the norm module ``norm`` computes, by hand.

    Run on the real hidden states entering block 0 of the course model, with that block's first norm
    (GPT-2: ``LayerNorm``; Llama/SmolLM2: ``RMSNorm``); the expected value is the module's own output.
    The answer gets the norm's parameters (``weight``, ``bias``, ``eps`` or ``variance_epsilon``), not
    the module itself, so that calling ``norm(x)`` is not an answer.
    """
    if norm_by_hand is None:
        return "not answered yet: define norm_by_hand(x, norm) and set the answer to it"
    norm = block_parts(model, 0).norm_1
    kind = type(norm).__name__
    parameters_only = SimpleNamespace(**{name: getattr(norm, name) for name in NORM_ATTRIBUTES if hasattr(norm, name)})
    hidden, _ = block_input_output(model, tokenizer, text, 0)
    with torch.no_grad():
        expected = norm(hidden)
        try:
            answer = norm_by_hand(hidden.clone(), parameters_only)
        except NotImplementedError:
            return "not answered yet: norm_by_hand still raises NotImplementedError; write its body"
        except Exception as error:  # the learner's code: say what went wrong instead of stopping the notebook
            if isinstance(error, TypeError) and "not callable" in str(error):
                return f"not quite: compute the {kind} from norm.weight and friends rather than calling norm(x)"
            return f"not quite: norm_by_hand raised {type(error).__name__}: {error}"
    if not isinstance(answer, torch.Tensor) or answer.shape != expected.shape:
        return f"not quite: expected a tensor shaped {tuple(expected.shape)}, got {getattr(answer, 'shape', type(answer).__name__)}"
    error = (answer - expected).abs().max().item()
    if not error <= 1e-4 * max(1.0, expected.abs().max().item()):  # "not <=" also catches NaN
        return f"not quite: off by up to {error:.3g} from the model's {kind} (its formula is in the chapter's prose)"
    return f"correct: matches the model's {kind} to {error:.1e} on {hidden.shape[1]} real hidden states"


def check_family(name: str, answer: str | None, *, offline: bool = True) -> str:
    """Exercise: which family ("encoder-only", "encoder-decoder", "decoder-only") is candidate ``name``?"""
    from helpers import models

    expected = family_of(models.load_candidate_config(name, offline=offline)[0])
    if answer is None:
        return f"not answered yet: one of {', '.join(FAMILY_USES)}"
    return "correct" if answer.strip().lower() == expected else f"not quite: {name} is {expected}"


def primer_metrics(primer: PrimerModel, pipeline_table: pd.DataFrame, attention_error: float,
                   block_error: float | None = None) -> dict[str, Any]:
    """What chapter 00 records in summary.json."""
    return {
        "model": primer.label,
        "model_source": primer.model_source,
        "model_trained": primer.trained,
        "vocab_size": len(primer.tokenizer),
        "pipeline_tasks_run": int((pipeline_table["status"] == "ok").sum()),
        "pipeline_tasks_skipped": int(pipeline_table["status"].str.startswith("skipped").sum()),
        "attention_max_abs_diff": float(attention_error),
        "block_by_hand_max_abs_diff": None if block_error is None else float(block_error),
        "hub_offline_env": os.environ.get("HF_HUB_OFFLINE", ""),
    }
