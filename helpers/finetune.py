"""Chapter 05: fine-tuning the base model on the instruction pairs, and generating with it.

Read top to bottom, this module is the chapter's pipeline:

1. **Tokenizing.** Each pair becomes a prompt and an answer in the model's prompt format
   (``helpers.prompt.training_text``: the model's own chat template when its tokenizer has one, else the
   course's template). The prompt and the answer are tokenized *separately* and their ids
   concatenated, so the boundary between them is exact (byte-level BPE could otherwise merge the
   separator's newline with the response's first characters). Prompt tokens are labelled ``-100``:
   the loss is on the response only, the model is not taught to write questions.
2. **Batching.** No padding to a fixed 512: batches hold examples of similar length (the Trainer's
   length-grouped sampler), padded on the RIGHT to the longest in the batch, pad positions labelled
   ``-100``. With causal attention a real token never looks at a later position, so no example sees
   another's pad: each example's loss in a batch equals its loss run alone (the tests check it).
3. **Training.** A ``transformers.Trainer`` configured from the profile: evaluation loss and
   perplexity every ``finetune_eval_steps``, checkpoints that resume after a crash or a Colab
   disconnect (optimizer, scheduler, RNG and step restored), early stopping that keeps the best
   model, mixed precision chosen from the hardware, full fine-tuning or LoRA (merged back into the
   base before saving, so chapter 06 exports a plain model). ``train_loop`` is the same training in
   plain PyTorch, for readers who want to see what the Trainer does.
4. **Generating.** ``generate`` prompts exactly as training did and decodes with a preset
   ("factual" or "creative") of ``GenerationConfig`` parameters.

Chapter 05 writes these steps out in its cells and calls the pieces below; ``finetune(params, run_dir)``
runs them all in one call, the reference the tests exercise (resuming, early stopping, LoRA).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers import (
    EarlyStoppingCallback,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    get_linear_schedule_with_warmup,
    set_seed,
)

from helpers import prompt as course_prompt
from helpers.colab import choose_precision  # its owner; chapter 05 calls it as ft.choose_precision
from helpers.course import chapter_dir, output_path, parse_overrides
from helpers.models import LORA_TARGETS, base_model_source, load_base_model, save_pretrained_atomically
from helpers.pairs import load_pairs
from helpers.profiles import get_profile
from helpers.prompt import STOP_STRINGS, write_template

if TYPE_CHECKING:
    import datasets
    import pandas

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy (and every Hugging Face model) skips
METHODS = ("full", "lora")
CHAPTER = "05_finetune"

# Where Colab mounts Google Drive (`drive.mount("/content/drive")`); a module constant so tests can move it.

# Decoding settings that chapter 05 compares on the fine-tuned model (a table of answers with their
# diversity and repetition): every GenerationConfig value that matters is spelled out in each.
GENERATION_SETTINGS: dict[str, dict[str, Any]] = {
    "greedy": {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0},
    "greedy, repetition penalty 1.2": {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.2,
                                       "no_repeat_ngram_size": 0},
    "greedy, no repeated 4-grams": {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0,
                                    "no_repeat_ngram_size": 4},
    "beam search 4": {"do_sample": False, "num_beams": 4, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0},
    "temperature 0.7": {"do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0,
                        "no_repeat_ngram_size": 0},
    "temperature 1.2": {"do_sample": True, "temperature": 1.2, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0,
                        "no_repeat_ngram_size": 0},
    "top-k 40": {"do_sample": True, "temperature": 1.0, "top_k": 40, "top_p": 1.0, "repetition_penalty": 1.0,
                 "no_repeat_ngram_size": 0},
    "top-p 0.9": {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 0.9, "repetition_penalty": 1.0,
                  "no_repeat_ngram_size": 0},
    "top-p 0.9, temperature 0.7, no repeated 4-grams": {
        "do_sample": True, "temperature": 0.7, "top_k": 0, "top_p": 0.9, "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 4,
    },
}
# The presets the course (and the page) offers, chosen from that table on the laptop profile's model:
# "factual" decodes greedily but never repeats four tokens in a row (plain greedy loops; a repetition
# penalty also punishes the words of the question, so the answer avoids its own subject: "Explain
# Albedo." -> "Albumography is..."); it is repeatable and streamable (the page shows one sequence as
# it grows, which beam search cannot). "creative" samples from the cooled nucleus, without loops either.
PRESETS: dict[str, dict[str, Any]] = {
    "factual": GENERATION_SETTINGS["greedy, no repeated 4-grams"] | {"max_new_tokens": 128},
    "creative": GENERATION_SETTINGS["top-p 0.9, temperature 0.7, no repeated 4-grams"] | {"max_new_tokens": 128},
}


class FinetuneError(ValueError):
    """Fine-tuning cannot start: its input is empty, too long for the model, or of an unknown kind."""


# ---------------------------------------------------------------------------------------------
# 1. Tokenizing: the template, the exact prompt/response boundary, labels on the response only


def encode_prompt(tokenizer: PreTrainedTokenizerBase, instruction: str) -> list[int]:
    """The token ids of the prompt for ``instruction`` (``helpers.prompt.prompt_text``), as training and ``generate`` use them.

    A chat prompt already holds its special tokens, so none are added; a course-template prompt gets
    the tokenizer's own (none for GPT-2), which is also what a client that tokenizes it gets by default.
    """
    text = course_prompt.prompt_text(tokenizer, instruction)
    return tokenizer(text, add_special_tokens=course_prompt.prompt_adds_special_tokens(tokenizer))["input_ids"]


def tokenize_pair(
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    response: str,
    *,
    max_length: int,
    truncate: bool = False,
    where: str = "",
) -> dict[str, Any]:
    """One training example: ``{"input_ids", "labels", "length"}`` with the prompt labelled ``-100``.

    The texts are ``helpers.prompt.training_text(tokenizer, instruction, response)``: the prompt, and
    the answer ending with the eos token. They are tokenized separately and concatenated, so no token
    spans the boundary. Longer than ``max_length`` tokens: ``FinetuneError`` naming the pair (``where``)
    and what to do, unless ``truncate`` (then the answer is cut; the prompt is never cut).
    """
    for part, text in (("instruction", instruction), ("response", response)):
        found = course_prompt.special_token_text(tokenizer, text)
        if found:  # chapter 03 leaves such pairs out (pairs.drop_special_token_pairs): this one came another way
            raise FinetuneError(
                f"the {part} of {where or 'a pair'} contains the text of the special token {found!r}, which the "
                "tokenizer would read as the token itself. Remove it from the pair, or run chapter 03 again, which leaves such pairs out")
    _, answer = course_prompt.training_text(tokenizer, instruction, response)
    prompt_ids = encode_prompt(tokenizer, instruction)
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not answer_ids or answer_ids[-1] != tokenizer.eos_token_id:
        raise FinetuneError(
            f"the tokenizer did not turn {tokenizer.eos_token!r} into its eos token id {tokenizer.eos_token_id}; "
            "the model would never learn to stop. Is it the tokenizer chapter 03 saved?"
        )
    ids = prompt_ids + answer_ids
    if len(ids) > max_length:
        if not truncate or len(prompt_ids) >= max_length:
            raise FinetuneError(
                f"{where or 'a pair'} is {len(ids)} tokens (prompt {len(prompt_ids)}), longer than the context "
                f"of {max_length} tokens. Raise the profile's finetune_max_length (up to the model's positions), "
                "shorten the responses in chapter 03 (pair_max_response_chars), or set finetune_truncate=True "
                f"to cut the response. Instruction: {instruction!r}"
            )
        ids = ids[:max_length]  # cuts the response only, and its eos with it
    labels = [IGNORE_INDEX] * len(prompt_ids) + ids[len(prompt_ids):]
    return {"input_ids": ids, "labels": labels, "length": len(ids)}


def tokenize_pairs(
    pairs: Iterable[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    truncate: bool = False,
    split: str = "train",
) -> datasets.Dataset:
    """Tokenize the pairs of one split into a ``datasets.Dataset`` (columns input_ids, labels, length).

    Raises ``FinetuneError`` for an empty split, and for a pair longer than ``max_length`` (naming its
    split, index, article and instruction) unless ``truncate``.
    """
    import datasets

    rows = []
    for index, pair in enumerate(pairs):
        where = f"{split} pair {index} (article {pair.get('title', '?')!r}, id {pair.get('article_id', '?')})"
        rows.append(tokenize_pair(tokenizer, pair["instruction"], pair["response"], max_length=max_length,
                                  truncate=truncate, where=where))
    if not rows:
        raise FinetuneError(
            f"the {split} split has no pairs: fine-tuning needs training and validation pairs. "
            "Run chapter 03 again (notebooks/03_pairing.ipynb) and check its split table"
        )
    return datasets.Dataset.from_dict({key: [row[key] for row in rows] for key in ("input_ids", "labels", "length")})


def context_length(model: PreTrainedModel, max_length: int) -> int:
    """The longest example the run accepts: the profile's ``max_length``, capped by the model's positions."""
    positions = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    return min(int(max_length), int(positions)) if positions else int(max_length)


# ---------------------------------------------------------------------------------------------
# 2. Batching: right padding, pads labelled -100, no attention across examples


@dataclass
class RightPaddingCollator:
    """Pad a list of examples on the right to the longest one; pads get label ``-100`` and mask 0.

    ``pad_token_id`` only fills the pad positions (the course's tokenizers have no pad token; the eos id
    does): masked and unlabelled, its value never matters.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None  # 8 lets GPU tensor cores use their fast shapes
    # A few fixed lengths (say 64, 128, 256, 512): each batch is padded to the first that holds it, so
    # torch.compile sees a few shapes instead of a new one nearly every batch (one graph per length).
    pad_to_lengths: tuple[int, ...] | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            longest = math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of
        if self.pad_to_lengths:
            longest = min((length for length in self.pad_to_lengths if length >= longest), default=longest)
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature["input_ids"])
            if len(feature["labels"]) != n:  # torch would broadcast a single label over the row, silently
                raise ValueError(f"example {row} of the batch has {len(feature['labels'])} labels for {n} input ids: "
                                 "labels must match input_ids one for one (tokenize_pair makes them so)")
            input_ids[row, :n] = torch.as_tensor(feature["input_ids"])
            labels[row, :n] = torch.as_tensor(feature["labels"])
            attention_mask[row, :n] = 1
        # With right padding and causal attention, real tokens only attend to earlier, real tokens, so
        # the mask changes nothing for them (the pads' own outputs are unlabelled). CourseTrainer counts
        # the real tokens with it, then trains without it (see there).
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id pads are filled with: the tokenizer's pad token, else its eos token (GPT-2 has no pad)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy over the labelled positions (labels are aligned with the inputs).

    ``reduction``: ``"mean"`` over all labelled tokens, ``"sum"``, or ``"none"`` for the mean of each
    example (a tensor with one loss per row).
    """
    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    losses = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="none",
    ).view(shift_labels.shape)
    if reduction == "sum":
        return losses.sum()
    counts = (shift_labels != IGNORE_INDEX).sum(dim=1)
    if reduction == "none":
        return losses.sum(dim=1) / counts.clamp(min=1)
    if reduction == "mean":
        return losses.sum() / counts.sum().clamp(min=1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def example_losses(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The mean response loss of each example of ``batch`` (one value per row), without gradients."""
    model.eval()
    with torch.no_grad():
        batch = {key: value.to(model.device) for key, value in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    return causal_lm_loss(logits, batch["labels"], reduction="none")


def evaluate_loss(
    model: PreTrainedModel,
    dataset: datasets.Dataset,
    collator: RightPaddingCollator,
    *,
    batch_size: int = 16,
) -> dict[str, float]:
    """Validation loss (mean over every response token) and perplexity ``exp(loss)``, in fp32.

    Examples are batched by length, which wastes the least padding and changes no number.
    """
    order = sorted(range(len(dataset)), key=lambda i: dataset[i]["length"])
    total, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = collator([dataset[i] for i in order[start:start + batch_size]])
            batch = {key: value.to(model.device) for key, value in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
            total += causal_lm_loss(logits, batch["labels"], reduction="sum").item()
            tokens += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    loss = total / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": tokens}


# ---------------------------------------------------------------------------------------------
# 3a. What to train (full or LoRA), in which precision, with checkpoints where


def lora_config(model: PreTrainedModel, params: dict[str, Any]):
    """PEFT's ``LoraConfig`` for ``model``'s architecture with the profile's rank, alpha and dropout.

    The targets are ``helpers.models.LORA_TARGETS`` (every linear layer of attention and MLP), the ones
    chapter 04's memory estimate counts. Raises ``FinetuneError`` listing the known architectures for
    any other ``model_type``.
    """
    from peft import LoraConfig, TaskType

    model_type = model.config.model_type
    if model_type not in LORA_TARGETS:
        raise FinetuneError(
            f"no LoRA target modules known for model_type {model_type!r}; supported: {', '.join(LORA_TARGETS)}. "
            "Add its linear layers' names to helpers.models.LORA_TARGETS, or use finetune_method='full'"
        )
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=params["lora_r"],
        lora_alpha=params["lora_alpha"],
        lora_dropout=params["lora_dropout"],
        bias="none",
        **LORA_TARGETS[model_type],
    )


def apply_lora(model: PreTrainedModel, params: dict[str, Any]):
    """Wrap ``model`` in LoRA adapters (in place, PEFT's way): only the adapters are trainable."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, params))


def merge_lora(model: torch.nn.Module) -> PreTrainedModel:
    """Fold LoRA adapters into the base weights and return the plain model (a plain model is returned as is).

    The result is an ordinary ``PreTrainedModel``: ``save_pretrained`` writes no adapter files, so
    chapter 06 exports it like any other model.
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


MERGE_TOLERANCE = 1e-4  # largest accepted |merged - adapter| logit difference, computed in float64


def merge_lora_checked(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[PreTrainedModel, float]:
    """``merge_lora`` that proves the merge changed nothing: ``(merged model, max |logit difference|)``.

    The logits of ``batch`` are computed with the adapters beside the frozen weights (W x + B A x), then
    with the merged weights ((W + B A) x); they must agree within ``MERGE_TOLERANCE``, else
    ``FinetuneError``. Both run in float64 and the merge too, so that the check measures the merge
    and not float32 rounding: in float32 the two computation orders alone differ by about 1e-4 on
    SmolLM2's logits (30 layers of rounding), as much as the tolerance. The merged model is returned
    in the model's own precision. A plain model gives a difference of 0.
    """
    dtype = next(model.parameters()).dtype
    model.eval().double()
    inputs = {"input_ids": batch["input_ids"].to(model.device), "attention_mask": batch["attention_mask"].to(model.device)}
    with torch.no_grad():
        before = model(**inputs).logits
        merged = merge_lora(model)
        after = merged(**inputs).logits
    merged.to(dtype)
    real = inputs["attention_mask"].bool()
    difference = float((before - after).abs()[real].max())
    if not difference <= MERGE_TOLERANCE:  # NaN fails too
        raise FinetuneError(f"merging the LoRA adapters changed the logits by up to {difference:.2e} "
                            f"(more than {MERGE_TOLERANCE}): the merged model is not the trained one")
    return merged, difference


def count_trainable(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameters of ``model``, a tied matrix counted once."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def trainable_parameter_table(model: PreTrainedModel, params: dict[str, Any]) -> pandas.DataFrame:
    """Trainable parameters of full fine-tuning vs LoRA on ``model`` (LoRA is applied to a copy)."""
    import pandas as pd

    rows = {}
    for method in METHODS:
        candidate = apply_lora(copy.deepcopy(model), params) if method == "lora" else model
        trainable, total = count_trainable(candidate)
        rows[method] = {"trainable": trainable, "total": total, "trainable %": round(100 * trainable / total, 3)}
    return pd.DataFrame(rows).T


def checkpoint_dir_for(params: dict[str, Any], run_dir: Path | str) -> Path:
    """Where the Trainer keeps its checkpoints: the profile's ``checkpoint_dir`` when set, else the run
    folder's ``05_finetune/checkpoints`` (on Colab the run folder is on Google Drive, so they outlive a
    disconnected runtime)."""
    setting = params.get("checkpoint_dir")
    return Path(run_dir) / CHAPTER / "checkpoints" if setting is None else Path(setting).expanduser()


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_checkpoint(folder: Path | str) -> Path | None:
    """The checkpoint with the highest step in ``folder`` that is complete, or ``None``.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint without it was cut short by the
    crash and is skipped (``transformers.trainer_utils.get_last_checkpoint`` would pick it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    complete = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _CHECKPOINT.match(path.name)) and (path / "trainer_state.json").exists()
    ]
    return max(complete)[1] if complete else None


# ---------------------------------------------------------------------------------------------
# 3b. The Trainer


class CourseTrainer(Trainer):
    """The Trainer with the course's two changes: perplexity logged beside every loss, and training
    steps that count real tokens and then run without the attention mask (and one warning kept out of
    the output, below).

    With right padding and causal attention the mask changes no real token's output (each example's
    loss equals its loss alone, mask or not: tests/test_finetune.py), and without it PyTorch's SDPA
    runs its flash kernel: 5 to 17% more tokens per second on an H200 (benchmarks/README.md). The
    mask is still what counts the real (non-pad) tokens, on the host, before the batch moves to the
    GPU; the count lives in ``state.num_input_tokens_seen``, so it is saved with every checkpoint.
    On several processes (``torchrun``) each counts its own batches, and they add their counts up
    only at the steps that log, save or stop: one small all-reduce there, not a wait at every step.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_not_added_up = 0  # this process's real tokens since the processes last added theirs up
        self.add_callback(_AddUpTokens(self))

    def _rotate_checkpoints(self, *args: Any, **kwargs: Any) -> None:
        # Checkpoints saved less than a second apart (a small model on a GPU) make the Trainer warn that
        # file times "may not be reliable" and order them by step number instead: the right order for
        # this folder, where every checkpoint comes from this run (a fresh run removes the old ones).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="mtime may not be reliable on this filesystem")
            return super()._rotate_checkpoints(*args, **kwargs)

    def training_step(self, model, inputs, num_items_in_batch=None):
        mask = inputs.pop("attention_mask", None)
        if mask is not None:
            if self.args.world_size > 1:
                self.tokens_not_added_up += int(mask.sum())
            else:
                self.state.num_input_tokens_seen += int(mask.sum())
        return super().training_step(model, inputs, num_items_in_batch)

    def add_up_tokens(self) -> None:
        """Every process's uncounted real tokens into ``state.num_input_tokens_seen`` (on every process).

        A collective: every process must call it at the same step.
        """
        if self.args.world_size > 1:
            pending = torch.tensor(self.tokens_not_added_up, device=self.args.device, dtype=torch.long)
            self.state.num_input_tokens_seen += int(self.accelerator.reduce(pending, reduction="sum"))
            self.tokens_not_added_up = 0

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        for key in ("loss", "eval_loss"):
            if key in logs:
                logs[key.replace("loss", "perplexity")] = math.exp(min(logs[key], 50.0))
        super().log(logs, start_time)


class _AddUpTokens(TrainerCallback):
    """Adds the processes' token counts up at the steps where the count is logged or saved (or training stops)."""

    def __init__(self, trainer: CourseTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        # Runs after the Trainer's own callback has decided these flags, the same way on every process.
        if control.should_log or control.should_save or control.should_evaluate or control.should_training_stop:
            self.trainer.add_up_tokens()


def training_arguments(
    params: dict[str, Any], output_dir: Path | str, *, learning_rate: float, precision: str, **overrides: Any
) -> TrainingArguments:
    """``TrainingArguments`` from the profile: one place where every Trainer setting is chosen.

    ``overrides`` replace single settings (the GPU benchmark turns evaluation and saving off).
    """
    steps = params["finetune_eval_steps"]
    on_gpu = torch.cuda.is_available()
    settings = dict(
        output_dir=str(output_dir),
        num_train_epochs=params["finetune_epochs"],
        learning_rate=learning_rate,
        per_device_train_batch_size=params["finetune_batch_size"],
        per_device_eval_batch_size=params["finetune_batch_size"],
        gradient_accumulation_steps=params["finetune_grad_accumulation"],
        lr_scheduler_type="linear",
        warmup_ratio=params["finetune_warmup_ratio"],
        weight_decay=params["finetune_weight_decay"],
        max_grad_norm=params["finetune_max_grad_norm"],
        # Evaluate and save at the same steps: the best model is then always a checkpoint to load back.
        eval_strategy="steps",
        eval_steps=steps,
        save_strategy="steps",
        save_steps=steps,
        save_total_limit=params["finetune_save_total_limit"],
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        # The early-stopping counter is saved with each checkpoint and restored on resume.
        restore_callback_states_from_checkpoint=True,
        logging_strategy="steps",
        logging_steps=params["finetune_logging_steps"],
        # The NaN/inf filter tests the loss on the host at every step, which makes the CPU wait for the
        # GPU each step; a NaN loss still shows in the logged loss and the evaluations.
        logging_nan_inf_filter=False,
        seed=params["finetune_seed"],
        data_seed=params["finetune_seed"],
        # Batches of similar lengths (shuffled in groups of 50 batches): little padding, still random.
        group_by_length=True,
        length_column_name="length",
        remove_unused_columns=False,  # keep "length" for the sampler; the collator takes what the model needs
        prediction_loss_only=True,  # evaluation keeps no logits: a vocabulary-wide tensor per token
        include_num_input_tokens_seen="no",  # CourseTrainer counts them, without a GPU sync per step
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        report_to="none",
        # On a GPU, two worker processes build the next batches while the GPU trains: collating on the
        # main process left an H200 idle a third of each step (benchmarks/README.md). On a CPU the
        # workers would only take cores from the training itself.
        dataloader_num_workers=2 if on_gpu else 0,
        dataloader_persistent_workers=on_gpu,
        dataloader_pin_memory=on_gpu,  # pinned memory only speeds copies to a GPU
        # One fused kernel for the whole AdamW update instead of one per tensor (CUDA only).
        optim="adamw_torch_fused" if on_gpu else "adamw_torch",
        torch_compile=params["finetune_torch_compile"] and on_gpu,
        max_steps=params["finetune_max_steps"] or -1,  # -1: the epochs decide
    )
    if not on_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Several processes without a GPU (torchrun on CPUs, as the tests do) train as one, over gloo,
        # only when told to use the CPU; without it each would train alone and save the same files.
        settings["use_cpu"] = True
    return TrainingArguments(**(settings | overrides))


def resume_checkpoint(folder: Path | str, resume: bool) -> Path | None:
    """The checkpoint training starts from: the last complete one in ``folder`` when ``resume``, else ``None``.

    ``resume`` with no checkpoint yet gives ``None`` too (training starts from scratch). Without
    ``resume``, the old checkpoints in ``folder`` are removed first: a fresh run must not mix with an
    earlier run's (the Trainer's rotation and resuming go by step number).
    """
    folder = Path(folder)
    if resume:
        return last_checkpoint(folder)
    for old in folder.glob("checkpoint-*"):
        shutil.rmtree(old, ignore_errors=True)
    return None


def tokens_seen(checkpoint: Path | str | None) -> int:
    """Real tokens trained on up to ``checkpoint`` (its ``trainer_state.json``); 0 for ``None`` (a fresh run)."""
    if checkpoint is None:
        return 0
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state.get("num_input_tokens_seen", 0))


def evaluation_sample(validation: datasets.Dataset, params: dict[str, Any]) -> datasets.Dataset:
    """The validation examples the Trainer scores at each evaluation: at most ``finetune_eval_pairs``.

    Evaluations run often, so a long validation split is sampled, once, with the run's seed: every
    evaluation scores the same examples and their losses are comparable.
    """
    limit = params["finetune_eval_pairs"]
    if limit and len(validation) > limit:
        return validation.shuffle(seed=params["finetune_seed"]).select(range(limit))
    return validation


def merge_probe(validation: datasets.Dataset, collator: RightPaddingCollator) -> dict[str, torch.Tensor]:
    """The batch ``merge_lora_checked`` compares logits on: the first four validation examples."""
    return collator([validation[i] for i in range(min(4, len(validation)))])


def finetune_metrics(
    params: dict[str, Any],
    state: Any,
    *,
    method: str,
    precision: str,
    max_length: int,
    data: dict[str, datasets.Dataset],
    before: dict[str, float],
    after: dict[str, float],
    trainable: int,
    total: int,
    train_seconds: float,
    resume_from: Path | None,
    tokens_before: int,
    merge_difference: float,
) -> dict[str, Any]:
    """The chapter's metrics (``finetune_metrics.json``, and ``summary.json`` through ``course.record_chapter``).

    ``state`` is the Trainer's ``TrainerState`` after training; ``before``/``after`` are
    ``evaluate_loss`` results on the whole validation split; ``trainable``/``total`` were counted on
    the model as trained (with its adapters). ``tokens_trained`` counts real tokens over the whole run,
    checkpoints before a resume included; ``tokens_per_second`` only this session's
    (``tokens_before`` were trained before it).
    """
    tokens_session = state.num_input_tokens_seen - tokens_before
    return {
        "method": method,
        "base_model": params["model_name"],
        "base_model_source": base_model_source(params),
        "precision": precision,
        "max_length": max_length,
        "train_pairs": len(data["train"]),
        "validation_pairs": len(data["validation"]),
        "val_loss_before": round(before["loss"], 4),
        "val_perplexity_before": round(before["perplexity"], 3),
        "val_loss_after": round(after["loss"], 4),
        "val_perplexity_after": round(after["perplexity"], 3),
        "trainable_parameters": trainable,
        "total_parameters": total,
        "tokens_trained": int(state.num_input_tokens_seen),
        "tokens_per_second": round(tokens_session / train_seconds, 1) if train_seconds > 0 else None,
        "train_seconds": round(train_seconds, 2),
        "global_step": state.global_step,
        "best_step": state.best_global_step,
        "best_eval_loss": round(state.best_metric, 4) if state.best_metric is not None else None,
        "resumed_from": resume_from.name if resume_from else None,
        "merge_max_logit_diff": merge_difference if method == "lora" else None,
    }


def save_outputs(
    run_dir: Path | str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    metrics: dict[str, Any],
    log_history: Sequence[dict[str, Any]],
) -> Path:
    """Write what chapter 05 leaves for chapter 06, and return the model folder ``run/05_finetune/model``.

    The folder is written atomically (``save_finetuned``: the plain model, its tokenizer, the "factual"
    generation config and ``finetune_metrics.json``), then ``prompt_template.json`` goes into it; the
    Trainer's ``log_history`` goes to ``run/05_finetune/log_history.json``.
    """
    out = chapter_dir(run_dir, CHAPTER)
    model_dir = output_path(run_dir, "finetuned_model")
    save_finetuned(model, tokenizer, model_dir, extra_json={output_path(run_dir, "finetune_metrics").name: metrics})
    write_template(model_dir / "prompt_template.json", tokenizer, trained_max_length=metrics.get("max_length"))
    (out / "log_history.json").write_text(json.dumps(list(log_history), indent=1) + "\n", encoding="utf-8")
    return model_dir


@dataclass
class FinetuneResult:
    """What ``finetune`` returns: the saved model folder, the metrics and the Trainer's log history."""

    model_dir: Path
    checkpoint_dir: Path
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]
    model: PreTrainedModel = field(repr=False)
    tokenizer: PreTrainedTokenizerBase = field(repr=False)


def load_course_tokenizer(params: dict[str, Any], run_dir: Path | str) -> PreTrainedTokenizerBase:
    """Chapter 03's tokenizer: its folder ``run/03_pairs/tokenizer`` when there is one, else the Hub name."""
    from helpers.tokenizer import load_tokenizer

    folder = output_path(run_dir, "tokenizer")
    return load_tokenizer(folder if folder.exists() else params["tokenizer_name"])


def finetune(
    params: dict[str, Any],
    run_dir: Path | str,
    *,
    method: str | None = None,
    resume: bool | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> FinetuneResult | None:
    """Fine-tune the profile's base model on chapter 03's pairs and save it to ``run/05_finetune/model``.

    The reference for what chapter 05 writes out cell by cell (the tests run this one). Reads
    ``run/03_pairs/`` (the DatasetDict and tokenizer) and chapter 04's base model
    (``helpers.models.load_base_model``). ``method`` is ``"full"`` or ``"lora"`` (default: the profile's
    ``finetune_method``). ``resume=True`` (default: the profile's ``finetune_resume``) continues from the last complete checkpoint in
    ``checkpoint_dir_for(params, run_dir)/<method>`` (from scratch when there is none); without it,
    old checkpoints there are removed first. ``callbacks`` are extra ``TrainerCallback``s.

    Validation loss and perplexity are measured before and after, on the whole validation split;
    the saved model is the best one (lowest evaluation loss), merged if LoRA, with its tokenizer,
    ``generation_config.json`` (the "factual" preset) and ``prompt_template.json``.

    On several GPUs (``torchrun --nproc_per_node N -m helpers.finetune ...``) every process trains on
    batches of its own, their gradients averaged at each step; the first one measures, saves and
    returns the result, the others ``None``.
    """
    method = method or params["finetune_method"]
    if method not in METHODS:
        raise FinetuneError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    run_dir = Path(run_dir)
    set_seed(params["finetune_seed"])
    try:
        splits = load_pairs(output_path(run_dir, "pairs"))
    except (ValueError, IndexError) as error:  # datasets cannot read back a split saved with no rows
        raise FinetuneError(
            f"could not read chapter 03's dataset in {run_dir / '03_pairs' / 'dataset'} ({error}). "
            "An empty split saves as a dataset that cannot be read: run notebooks/03_pairing.ipynb again "
            "and check that every split has pairs"
        ) from error
    tokenizer = load_course_tokenizer(params, run_dir)
    model = load_base_model(params, run_dir)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        raise FinetuneError(
            f"the base model has {model.get_input_embeddings().num_embeddings} token embeddings but the tokenizer "
            f"{len(tokenizer)} tokens: chapters 03 and 04 used different tokenizers; run 04 again after 03"
        )
    max_length = context_length(model, params["finetune_max_length"])
    data = {
        split: tokenize_pairs(splits[split] if split in splits else [], tokenizer, max_length=max_length,
                              truncate=params["finetune_truncate"], split=split)
        for split in ("train", "validation")
    }
    precision = choose_precision()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    collator = RightPaddingCollator(pad_token_id(tokenizer), pad_to_multiple_of=8 if device.type == "cuda" else None)
    batch_size = params["finetune_batch_size"]
    before = evaluate_loss(model.to(device), data["validation"], collator, batch_size=batch_size)

    if method == "lora":
        model = apply_lora(model, params)
    learning_rate = params["lora_learning_rate" if method == "lora" else "finetune_learning_rate"]
    trainable, total = count_trainable(model)

    checkpoints = checkpoint_dir_for(params, run_dir) / method
    resume_from = resume_checkpoint(checkpoints, params["finetune_resume"] if resume is None else resume)
    tokens_before = tokens_seen(resume_from)
    trainer = CourseTrainer(
        model=model,
        args=training_arguments(params, checkpoints, learning_rate=learning_rate, precision=precision),
        train_dataset=data["train"],
        eval_dataset=evaluation_sample(data["validation"], params),
        data_collator=collator,
        callbacks=[EarlyStoppingCallback(params["finetune_early_stopping_patience"]), *callbacks],
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():
        return None  # under torchrun, the first process measures and saves; the others only trained

    # The best checkpoint's weights (load_best_model_at_end), LoRA merged in and checked on validation pairs.
    final, merge_difference = merge_lora_checked(trainer.model, merge_probe(data["validation"], collator))
    after = evaluate_loss(final, data["validation"], collator, batch_size=batch_size)
    metrics = finetune_metrics(
        params, trainer.state, method=method, precision=precision, max_length=max_length, data=data,
        before=before, after=after, trainable=trainable, total=total, train_seconds=train_seconds,
        resume_from=resume_from, tokens_before=tokens_before, merge_difference=merge_difference,
    )
    model_dir = save_outputs(run_dir, final, tokenizer, metrics, trainer.state.log_history)
    return FinetuneResult(model_dir, checkpoints, metrics, list(trainer.state.log_history), final, tokenizer)


def save_finetuned(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path | str,
    *,
    extra_json: dict[str, Any] | None = None,
) -> Path:
    """Save a plain model, its tokenizer and a generation config (the "factual" preset) at ``out_dir``, atomically.

    Written into a temporary folder beside ``out_dir`` that replaces it only when complete, so a crash
    leaves the previous model (or none), never half of one.
    """
    saved_config = generation_config(tokenizer, "factual")
    # Stop strings only work when generate() is handed the tokenizer; loaders that don't
    # (pipeline(), the export's checks, Transformers.js) would fail or ignore them. The course's
    # generate() and the page add them at generation time instead.
    saved_config.stop_strings = None
    return save_pretrained_atomically(model, tokenizer, out_dir, extra_json=extra_json, generation_config=saved_config)


# ---------------------------------------------------------------------------------------------
# 3c. The same training in plain PyTorch


def backward_accumulated(
    model: torch.nn.Module,
    micro_batches: Sequence[dict[str, torch.Tensor]],
    *,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[float, int]:
    """Accumulate the gradient of the mean token loss over ``micro_batches``; return ``(loss, tokens)``.

    Each micro-batch's summed loss is divided by the token count of *all* of them, so the gradient is
    exactly that of one batch holding them all. (Averaging per-micro-batch means would weight a short
    micro-batch's tokens more.)
    """
    device = next(model.parameters()).device
    tokens = sum(int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) for batch in micro_batches)
    total = 0.0
    for batch in micro_batches:
        batch = {key: value.to(device) for key, value in batch.items()}
        autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        loss_sum = causal_lm_loss(logits, batch["labels"], reduction="sum")
        loss = loss_sum / max(tokens, 1)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss_sum.item()
    return total / max(tokens, 1), tokens


def train_loop(
    model: torch.nn.Module,
    train_loader: Iterable[dict[str, torch.Tensor]],
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    grad_accumulation: int = 1,
    precision: str = "fp32",
    warmup_ratio: float = 0.05,
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
) -> list[dict[str, float]]:
    """Train ``model`` on ``train_loader``'s batches: what the Trainer does, in plain PyTorch.

    AdamW; a learning rate that warms up linearly, then decays linearly to 0; mixed precision by
    autocast (``precision`` "bf16" or "fp16", with a GradScaler for fp16, whose narrow range would
    underflow small gradients); ``grad_accumulation`` batches per optimizer step; gradients clipped to
    norm ``max_grad_norm``. Returns one ``{"step", "epoch", "loss", "lr", "tokens"}`` per optimizer step.
    """
    device = next(model.parameters()).device
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train_loader) / grad_accumulation)
    total_steps = steps_per_epoch * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(warmup_ratio * total_steps), total_steps)
    # Disabled (all its calls pass through) unless fp16: bf16 has fp32's range and needs no scaling.
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    history, step = [], 0
    model.train()
    for epoch in range(epochs):
        batches = iter(train_loader)
        while group := [batch for _, batch in zip(range(grad_accumulation), batches)]:
            loss, tokens = backward_accumulated(model, group, autocast_dtype=autocast_dtype, scaler=scaler)
            scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
            scaler.step(optimizer)  # skips the step when fp16 gradients overflowed
            scaler.update()
            lr_now = scheduler.get_last_lr()[0]
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            history.append({"step": step, "epoch": epoch, "loss": loss, "lr": lr_now, "tokens": tokens})
    model.eval()
    return history


# ---------------------------------------------------------------------------------------------
# 4. Generating


def generation_config(tokenizer: PreTrainedTokenizerBase, preset: str = "factual", **overrides: Any) -> GenerationConfig:
    """A ``GenerationConfig`` from a preset of ``PRESETS`` and ``overrides``, with the tokenizer's ids.

    - ``max_new_tokens``: the most tokens the answer may have.
    - ``do_sample``: False picks the most probable tokens (greedy, or beam search with ``num_beams``
      > 1, which keeps that many candidate answers and returns the most probable); True samples.
    - ``temperature``: divides the logits before sampling; below 1 sharpens, above 1 flattens.
    - ``top_k``: sample among the k most probable tokens only; ``top_p``: among the smallest set
      whose probabilities add up to p (the nucleus).
    - ``repetition_penalty``: divides the score of tokens already in the text (above 1: repeats less).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; presets are {', '.join(PRESETS)}")
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos
    return GenerationConfig(
        **(PRESETS[preset] | overrides),
        eos_token_id=eos,
        bos_token_id=bos,
        pad_token_id=pad_token_id(tokenizer),
        stop_strings=list(STOP_STRINGS),
    )


def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    preset: str = "factual",
    *,
    seed: int | None = None,
    batch_size: int = 8,
    **overrides: Any,
) -> list[str]:
    """The model's answers to ``instructions``, generated ``batch_size`` at a time (left padding).

    Prompted as training did (``encode_prompt``), decoded with ``preset`` and ``overrides``, each
    answer cut at the eos token or a ``STOP_STRINGS`` header (``helpers.prompt.answer_from``). Prompts
    are padded on the LEFT, so every row's next token follows its own last prompt token; the attention
    mask hides the pads and generate() derives positions from it. On a CPU a batch of 8 generates about
    five times as many tokens per second as one prompt at a time (measured: 58 vs 12 tokens/s).
    ``seed`` makes sampling repeatable.
    """
    config = generation_config(tokenizer, preset, **overrides)
    pad = pad_token_id(tokenizer)
    if seed is not None:
        set_seed(seed)
    model.eval()
    answers = []
    for start in range(0, len(instructions), batch_size):
        prompts = [encode_prompt(tokenizer, instruction) for instruction in instructions[start:start + batch_size]]
        width = max(len(ids) for ids in prompts)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompts], device=model.device)
        attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=model.device)
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                # The preset exactly: by default generate() would replace a value left at the library's
                # default (num_beams=1) by the model's own saved generation config.
                use_model_defaults=False,
                tokenizer=tokenizer,  # generate needs it to watch for stop_strings
            )
        for row in output[:, width:]:
            answers.append(course_prompt.answer_from(tokenizer, tokenizer.decode(row, skip_special_tokens=False)))
    return answers


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    instruction: str,
    preset: str = "factual",
    *,
    seed: int | None = None,
    **overrides: Any,
) -> str:
    """The model's answer to ``instruction``: prompted with the training template, decoded with ``preset``.

    ``overrides`` replace the preset's ``GenerationConfig`` parameters (``temperature=0.7``...);
    ``seed`` makes sampling repeatable. The answer stops at the eos token or a ``STOP_STRINGS``
    header and excludes the prompt; it is prompted in the model's format (``helpers.prompt.prompt_text``).
    """
    return generate_batch(model, tokenizer, [instruction], preset, seed=seed, **overrides)[0]


def generation_table(
    models: dict[str, PreTrainedModel],
    tokenizer: PreTrainedTokenizerBase,
    instructions: Sequence[str],
    presets: Sequence[str] = ("factual", "creative"),
    *,
    seed: int = 0,
    **overrides: Any,
) -> pandas.DataFrame:
    """Answers of each model (columns: ``"<model> · <preset>"``) to each instruction (rows), side by side.

    Sampling is seeded with ``seed`` for every answer, so the table is the same on every run.
    """
    import pandas as pd

    table = {
        f"{name} · {preset}": generate_batch(model, tokenizer, list(instructions), preset, seed=seed, **overrides)
        for name, model in models.items()
        for preset in presets
    }
    return pd.DataFrame(table, index=pd.Index(list(instructions), name="instruction"))


# ---------------------------------------------------------------------------------------------
# Showing


def plot_loss_curves(log_history: Sequence[dict[str, Any]], *, before: float | None = None, ax=None):
    """Training and validation loss per step from the Trainer's ``log_history``.

    ``before``: the validation loss of the base model, drawn at step 0. The best evaluation (the model
    kept) is marked.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4))
    train = [(entry["step"], entry["loss"]) for entry in log_history if "loss" in entry]
    evals = [(entry["step"], entry["eval_loss"]) for entry in log_history if "eval_loss" in entry]
    if before is not None:
        evals = [(0, before), *evals]
    if train:
        ax.plot(*zip(*train), label="training loss (batches)", alpha=0.8)
    if evals:
        ax.plot(*zip(*evals), marker="o", label="validation loss")
        best_step, best_loss = min(evals, key=lambda point: point[1])
        ax.scatter([best_step], [best_loss], s=120, facecolors="none", edgecolors="tab:red", zorder=3,
                   label=f"best: step {best_step}, {best_loss:.3f}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per response token)")
    ax.set_title("Fine-tuning: training vs validation loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return ax


def leave_process_group() -> None:
    """Under ``torchrun``: wait for every process, then close the process group the Trainer opened.

    A process that exits with the group still open can abort on the way out ("terminate called without an
    active exception", seen in CI from gloo's threads), and torchrun then reports the whole run as failed.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helpers.finetune --profile full --run-dir runs/full``: chapter 05's training as a script.

    The script to launch on several GPUs, where a notebook cannot go (compiling off: compiled
    training on two GPUs measured slower than on one, benchmarks/README.md):
    ``torchrun --nproc_per_node 2 -m helpers.finetune --profile full --run-dir runs/full --set finetune_torch_compile=false``.
    """
    parser = argparse.ArgumentParser(prog="python -m helpers.finetune", description=main.__doc__.split("\n")[0])
    parser.add_argument("--profile", required=True, help="tiny, laptop, colab or full")
    parser.add_argument("--run-dir", type=Path, required=True, help="the run folder chapters 03 and 04 filled")
    parser.add_argument("--method", choices=METHODS, help="default: the profile's finetune_method")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="replace a profile value, e.g. --set finetune_batch_size=64")
    args = parser.parse_args(argv)
    params = get_profile(args.profile, parse_overrides(args.overrides))
    result = finetune(params, args.run_dir, method=args.method, resume=args.resume or None)
    leave_process_group()
    if result is not None:
        print(json.dumps({key: result.metrics[key] for key in ("train_seconds", "tokens_trained") if key in result.metrics}))
        print(f"saved {result.model_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
