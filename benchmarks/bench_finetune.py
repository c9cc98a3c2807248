"""Fine-tuning throughput on a GPU: the course's path against the recipe most tutorials use.

Both train distilgpt2's architecture (GPT2LMHeadModel, 6 layers, 768 wide, GPT-2's 50,257-token
vocabulary) from random weights — the Hub is unreachable on the benchmark machine, and speed does
not depend on the weights — on chapter 03's real instruction pairs, repeated to fill the run.
``--architecture smollm2-135m`` trains SmolLM2-135M's architecture instead (the laptop and full
profiles' model: LlamaForCausalLM, 30 layers, 576 wide, grouped-query attention, 49,152 tokens).

- ``tutorial``: ``padding="max_length"`` to 512, batch 4, fp32, a plain ``Trainer`` with
  ``DataCollatorForLanguageModeling`` (what most fine-tuning tutorials do).
- ``course``: ``helpers.finetune``'s own path: ``tokenize_pairs`` (loss on the response only),
  ``RightPaddingCollator`` with the Trainer's length-grouped batches, ``CourseTrainer`` (trains
  without the attention mask, so SDPA runs its flash kernel) and ``training_arguments`` from the
  profile with the precision ``choose_precision`` picks (bf16 on an H200), at a larger batch.

Throughput is *real* tokens per second: tokens that are not padding, counted by a wrapper around
each collator, over the timed steps (the first ``--warmup`` steps are left out: CUDA start-up and
``torch.compile``). Model FLOPs count 6·N per real token (N: the weights that multiply, i.e. all but
the position embeddings; the tied embedding matrix is the output layer's matmul) plus attention,
12·layers·width·length per token (fwd + bwd, as in the PaLM paper's appendix B), and are set against
the H200's dense bf16 peak (989 TFLOP/s by the datasheet) and against a bf16 matmul measured here.

Run on a GPU machine (one process per GPU under torchrun for data parallelism)::

    python benchmarks/bench_finetune.py --pairs runs/colab/03_pairs --variants tutorial,course
    torchrun --nproc_per_node 2 benchmarks/bench_finetune.py --pairs ... --variants course

Each run writes one JSON line per variant to ``--out`` (rank 0) and prints a table.

``--pretrained FOLDER`` fine-tunes a pretrained model with its own tokenizer instead (on a machine
without the Hub: ``helpers.hub``'s stand-in for SmolLM2-135M-Instruct, built from its GGUF), and
``--validation`` trains on ``train.jsonl`` alone and reports the validation loss of
``validation.jsonl`` (``finetune.evaluate_loss``: the model's own forward, the loss over fp32 logits) before
training, every ``--eval-every`` steps and after: how a fused loss's shortcuts change what a
fine-tuning run learns, not only its speed::

    python benchmarks/bench_finetune.py --pretrained ~/.cache/corpus-to-client/standins/HuggingFaceTB--SmolLM2-135M-Instruct \\
        --validation --eval-every 20 --variants course --batch-size 16 --examples 1014 --warmup 2 --steps 60 \\
        --learning-rate 5e-5 --seed 0 --fused-loss cce

Its throughput is not a measurement: the evaluations fall inside the timed steps.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import finetune  # noqa: E402
from helpers.pairs import read_pairs_jsonl  # noqa: E402
from helpers.profiles import REPO_ROOT, get_profile  # noqa: E402
from helpers.prompt import format_training_text  # noqa: E402
from helpers.tokenizer import train_course_tokenizer  # noqa: E402

ARCHITECTURES = {  # --architecture: the config a model is built from, with random weights
    "distilgpt2": REPO_ROOT / "data" / "model_configs" / "distilbert--distilgpt2" / "config.json",
    "smollm2-135m": REPO_ROOT / "data" / "model_configs" / "HuggingFaceTB--SmolLM2-135M" / "config.json",
}
H200_BF16_DENSE_PEAK = 989.4e12  # FLOP/s, NVIDIA's datasheet (SXM), without sparsity


class CountingCollator:
    """Wraps a collator and adds up the real (non-pad) tokens of every batch it builds."""

    def __init__(self, inner):
        self.inner, self.real_tokens = inner, 0

    def __call__(self, features):
        batch = self.inner(features)
        self.real_tokens += int(batch["attention_mask"].sum())
        return batch


class StepProfiler:
    """Trainer callback: a torch.profiler trace over a few steps after the warm-up; prints the top kernels
    and how much of those steps' wall time the GPU spent running kernels at all."""

    def __init__(self, start: int, steps: int):
        from transformers import TrainerCallback

        outer = self
        self.profiler, self.started = None, 0.0

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == start:
                    torch.cuda.synchronize()
                    outer.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
                    outer.profiler.__enter__()
                    outer.started = time.perf_counter()
                elif state.global_step == start + steps and outer.profiler is not None:
                    torch.cuda.synchronize()
                    wall = time.perf_counter() - outer.started
                    outer.profiler.__exit__(None, None, None)
                    averages = outer.profiler.key_averages()
                    print(averages.table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))
                    busy = sum(event.self_device_time_total for event in averages) / 1e6
                    print(f"GPU busy {busy * 1e3 / steps:.1f} ms of each {wall * 1e3 / steps:.1f} ms step "
                          f"({busy / wall:.0%}), over {steps} profiled steps")

        self.callback = _Callback()


class StepTimer:
    """Trainer callback: host time, real tokens and compiled graphs at the end of the warm-up and of the run.

    The GPU is synchronized at those two steps only: a synchronization at every step would leave the
    GPU idle while the host prepares the next batch, which is not how training runs. Real tokens
    come from ``count()``: the Trainer state's count (``CourseTrainer`` counts on the main process,
    so DataLoader workers may build the batches) or a counting collator. A graph compiled between
    the two (a new batch shape) puts seconds of compilation into the timed steps: the record says so.
    """

    def __init__(self, warmup: int, last: int, count):
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step not in (warmup, last):
                    return
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                outer.times.append(time.perf_counter())
                outer.tokens.append(count(state))
                outer.graphs.append(compiled_graphs())

        self.callback, self.times, self.tokens, self.graphs = _Callback(), [], [], []


def compiled_graphs() -> int:
    """Graphs torch.compile has compiled so far in this process."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def fused_loss_trainer(kind: str):
    """CourseTrainer whose loss is the output layer and cross-entropy in one fused kernel."""
    if kind in ("cce", "cce-exact"):
        from cut_cross_entropy import linear_cross_entropy

        # cut-cross-entropy skips the gradient of vocabulary entries whose softmax is below a threshold
        # ("high" by default); cce-exact turns that filter off, to tell its effect on the loss from the kernel's.
        filter_eps = None if kind == "cce-exact" else "high"

        def fused(hidden, weight, labels, reduction):
            return linear_cross_entropy(hidden, weight, labels, ignore_index=finetune.IGNORE_INDEX, shift=True,
                                        reduction=reduction, filter_eps=filter_eps)
    else:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        def fused(hidden, weight, labels, reduction):
            loss_fn = LigerFusedLinearCrossEntropyLoss(ignore_index=finetune.IGNORE_INDEX, reduction=reduction)
            return loss_fn(weight, hidden[:, :-1].reshape(-1, hidden.shape[-1]), labels[:, 1:].reshape(-1))

    class FusedLossTrainer(finetune.CourseTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            body = getattr(model, model.base_model_prefix)
            # Mixed precision comes from accelerate wrapping the model's forward in autocast, and this
            # calls the body alone: it takes the autocast itself, or its matmuls run in fp32 (they did,
            # until a profile showed fp32 GEMMs: the fused-loss rows measured before 2026-12-03).
            # The fused kernels take half-precision inputs (the fp32 master weight is cast; its
            # gradient flows back through the cast).
            dtype = torch.float16 if self.args.fp16 else torch.bfloat16
            with torch.autocast(inputs["input_ids"].device.type, dtype=dtype, enabled=self.args.bf16 or self.args.fp16):
                hidden = body(input_ids=inputs["input_ids"]).last_hidden_state
            hidden = hidden.to(dtype)
            weight = model.get_output_embeddings().weight.to(dtype)
            if num_items_in_batch is None:
                return fused(hidden, weight, inputs["labels"], "mean")
            return fused(hidden, weight, inputs["labels"], "sum") / num_items_in_batch

    return FusedLossTrainer


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def load_texts(pairs_dir: Path, splits: tuple[str, ...] = ("train", "validation")) -> list[dict[str, str]]:
    pairs = [pair for split in splits for pair in read_pairs_jsonl(pairs_dir / f"{split}.jsonl")]
    return [{"instruction": p["instruction"], "response": p["response"]} for p in pairs]


class ValidationLoss:
    """Trainer callback: the validation loss before the first step, every ``every`` steps and after the last.

    ``finetune.evaluate_loss`` on the model the Trainer prepared: each point, the first included, under
    the same mixed precision as training's forward. ``training_step`` puts the model back in training
    mode at the next step.
    """

    def __init__(self, dataset, collator, every: int):
        from transformers import TrainerCallback

        outer = self
        self.curve: list[tuple[int, float]] = []

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, model=None, **kwargs):
                outer.curve.append((0, finetune.evaluate_loss(model, dataset, collator)["loss"]))

            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step % every == 0 or state.global_step == state.max_steps:
                    outer.curve.append((state.global_step, finetune.evaluate_loss(model, dataset, collator)["loss"]))

        self.callback = _Callback()


def architecture_class(architecture: str):
    """The model class the config names (GPT2LMHeadModel, LlamaForCausalLM)."""
    import transformers

    return getattr(transformers, json.loads(ARCHITECTURES[architecture].read_text())["architectures"][0])


def architecture_config(architecture: str):
    return architecture_class(architecture).config_class.from_json_file(str(ARCHITECTURES[architecture]))


def build_tokenizer(pairs: list[dict[str, str]], out_dir: Path, vocab_size: int):
    """A byte-level BPE with GPT-2's conventions and the model's vocabulary size, trained on the pairs themselves.

    The models' own tokenizers cannot be downloaded on the benchmark machine; this one gives
    realistic token counts for the same texts (reported as characters per token).
    """
    texts = [format_training_text(p["instruction"], p["response"], "<|endoftext|>") for p in pairs]
    return train_course_tokenizer(texts, out_dir, vocab_size=vocab_size)


def build_model(architecture: str, vocab_size: int, dtype=torch.float32, dropout: bool = True):
    config = architecture_config(architecture)
    config.vocab_size = max(config.vocab_size, vocab_size)
    if not dropout:  # GPT-2's three dropouts; Llama's attention dropout is 0 already
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "attention_dropout"):
            if hasattr(config, name):
                setattr(config, name, 0.0)
    torch.manual_seed(0)
    return architecture_class(architecture)(config).to(dtype)


def flops_per_token(config, lengths: list[int], n_multiplying: int) -> float:
    """6·N, plus attention at 12·layers·width·length, averaged over the tokens of examples of these lengths.

    A token of an example of length L attends over L positions; averaged over tokens (not examples)
    that is E[L²] / E[L].
    """
    attention_span = sum(n * n for n in lengths) / sum(lengths)
    return 6 * n_multiplying + 12 * config.num_hidden_layers * config.hidden_size * attention_span


def repeated(pairs: list[dict[str, str]], n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = [pairs[i % len(pairs)] for i in range(n)]
    rng.shuffle(out)
    return out


def run_variant(name: str, pairs, tokenizer, args, validation_pairs=None) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    if args.pretrained:
        model = AutoModelForCausalLM.from_pretrained(str(args.pretrained), dtype=torch.float32)
    else:
        model = build_model(args.architecture, len(tokenizer), dropout=not (name != "tutorial" and args.no_dropout))
    n_multiplying = sum(p.numel() for n_, p in model.named_parameters() if "wpe" not in n_)  # wpe: GPT-2's positions
    out_dir = Path(args.work) / f"{name}-rank{rank()}"
    steps = args.steps + args.warmup  # the timed window ends here; a profile takes the steps after it
    if name == "tutorial":
        # What most tutorials do: a pad token borrowed from eos, every example padded to 512, the
        # labels a copy of the inputs (the collator masks pads), fp32, batch 4, the default optimizer.
        import datasets
        from transformers import AutoTokenizer

        tutorial_tokenizer = AutoTokenizer.from_pretrained(Path(args.work) / f"tokenizer-{args.architecture}")
        tutorial_tokenizer.pad_token = tutorial_tokenizer.eos_token
        texts = [format_training_text(p["instruction"], p["response"], tutorial_tokenizer.eos_token) for p in pairs]
        encoded = tutorial_tokenizer(texts, padding="max_length", max_length=512, truncation=True)
        data = datasets.Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
        collator = CountingCollator(DataCollatorForLanguageModeling(tutorial_tokenizer, mlm=False))
        timer = StepTimer(args.warmup, steps, lambda state: collator.real_tokens)
        lengths = [sum(mask) for mask in encoded["attention_mask"]]
        training_args = TrainingArguments(
            output_dir=str(out_dir), per_device_train_batch_size=4, max_steps=steps + args.profile_steps, learning_rate=5e-5,
            save_strategy="no", report_to="none", logging_steps=10**9, disable_tqdm=True,
        )
        precision = "fp32"
    else:
        params = get_profile(args.profile)
        max_length = finetune.context_length(model, params["finetune_max_length"])
        data = finetune.tokenize_pairs(pairs, tokenizer, max_length=max_length, truncate=True)
        collator = finetune.RightPaddingCollator(
            finetune.pad_token_id(tokenizer), pad_to_multiple_of=8,
            pad_to_lengths=tuple(int(b) for b in args.buckets.split(",")) if args.buckets else None,
        )
        # CourseTrainer's count covers every process once they add it up (a collective, at the same
        # step on each): per process, as the tutorial's counting collator gives it.
        timer = StepTimer(args.warmup, steps, lambda state: (trainer.add_up_tokens(), state.num_input_tokens_seen)[1]
                          // world_size())
        lengths = list(data["length"])
        precision = args.precision or finetune.choose_precision()
        # A fused loss bypasses the model's forward: the body alone is compiled, below.
        params |= {"finetune_batch_size": args.batch_size, "finetune_torch_compile": args.compile and not args.fused_loss,
                   "finetune_seed": args.seed}
        if args.compile and args.fused_loss:
            body = getattr(model, model.base_model_prefix)
            setattr(model, model.base_model_prefix, torch.compile(body, mode=args.compile_mode))
        training_args = finetune.training_arguments(
            params, out_dir, learning_rate=args.learning_rate or params["finetune_learning_rate"], precision=precision,
            max_steps=steps + args.profile_steps, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
            logging_steps=10**9, disable_tqdm=True,
            **({} if args.workers is None else {"dataloader_num_workers": args.workers}),
            **({"torch_compile_mode": args.compile_mode} if args.compile_mode and not args.fused_loss else {}),
        )
    trainer_class = Trainer if name == "tutorial" else (fused_loss_trainer(args.fused_loss) if args.fused_loss
                                                         else finetune.CourseTrainer)
    callbacks = [timer.callback]
    if args.profile_steps:
        callbacks.append(StepProfiler(steps, args.profile_steps).callback)
    validation = None
    if validation_pairs is not None:
        validation_data = finetune.tokenize_pairs(validation_pairs, tokenizer, max_length=max_length, truncate=True,
                                                  split="validation")
        validation = ValidationLoss(validation_data, collator, args.eval_every)
        callbacks.append(validation.callback)
    trainer = trainer_class(model=model, args=training_args, train_dataset=data, data_collator=collator,
                            callbacks=callbacks)
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    train_output = trainer.train()
    wall = time.perf_counter() - started
    peak_memory = torch.cuda.max_memory_allocated() if on_gpu else 0

    seconds = timer.times[-1] - timer.times[0]
    real_tokens = timer.tokens[-1] - timer.tokens[0]
    flops = real_tokens * flops_per_token(model.config, lengths, n_multiplying)
    return {
        "variant": name,
        "architecture": str(args.pretrained.name) if args.pretrained else args.architecture,
        "pretrained": bool(args.pretrained),
        "learning_rate": training_args.learning_rate,
        "seed": args.seed,
        **({"validation_loss": [[step, round(loss, 4)] for step, loss in validation.curve]} if validation else {}),
        "parameters": sum(p.numel() for p in model.parameters()),
        "rank": rank(),
        "world_size": world_size(),
        "precision": precision,
        "batch_size": training_args.per_device_train_batch_size,
        "compile": bool(training_args.torch_compile) or bool(args.compile and args.fused_loss),
        "dropout": not (name != "tutorial" and args.no_dropout),
        "fused_loss": args.fused_loss if name != "tutorial" else None,
        "buckets": args.buckets if name != "tutorial" else "",
        "static_shapes": bool(args.static_shapes),
        "compile_mode": args.compile_mode or "default",
        "attention_mask": name == "tutorial",
        "timed_steps": args.steps,
        "graphs_compiled_while_timed": timer.graphs[-1] - timer.graphs[0],  # > 0: compilation inside the timing
        "seconds": round(seconds, 3),
        "wall_seconds_with_warmup": round(wall, 2),
        "real_tokens": real_tokens,
        "real_tokens_per_s": round(real_tokens / seconds, 1),
        "mean_real_length": round(sum(lengths) / len(lengths), 1),
        "dataloader_workers": training_args.dataloader_num_workers,
        "model_tflops_per_s": round(flops / seconds / 1e12, 2),
        "peak_memory_gib": round(peak_memory / 2**30, 2),
        "train_loss": round(train_output.training_loss, 4),  # the mean over every step: equal across variants within noise
    }


def measured_bf16_matmul_peak() -> float:
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * 8192**3 * 20 / (start.elapsed_time(end) / 1e3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=REPO_ROOT / "runs" / "tiny" / "03_pairs")
    parser.add_argument("--variants", default="tutorial,course")
    parser.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="distilgpt2",
                        help="the model trained, from its config with random weights")
    parser.add_argument("--profile", default="colab", help="the profile whose fine-tuning settings the course variant uses")
    parser.add_argument("--examples", type=int, default=40_000)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64, help="the course variant's batch size per GPU")
    parser.add_argument("--precision", choices=["bf16", "fp16", "fp32"], help="default: choose_precision()")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (course variant)")
    parser.add_argument("--whole-graph-ddp", action="store_true", help="with --compile under torchrun: no DDPOptimizer graph splits")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default: the course's choice)")
    parser.add_argument("--profile-steps", type=int, default=0, help="print a CUDA kernel profile of this many steps")
    parser.add_argument("--no-dropout", action="store_true", help="course variant: dropout 0 (fine-tuning without it)")
    parser.add_argument("--fused-loss", choices=["cce", "cce-exact", "liger"], default=None,
                        help="course variant: the output layer and cross-entropy fused (the logits never materialized); "
                             "the transformer body is compiled on its own with --compile")
    parser.add_argument("--buckets", default="", help="course variant: pad each batch to the next of these lengths, "
                                                       "e.g. 64,128,192,256,384,512 (few shapes for torch.compile)")
    parser.add_argument("--static-shapes", action="store_true",
                        help="with --compile: one static graph per shape instead of dynamic shapes")
    parser.add_argument("--compile-mode", default=None, choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                        help="torch.compile's mode (reduce-overhead: CUDA graphs, worth it with --buckets --static-shapes)")
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="a pretrained model's folder (with its tokenizer) fine-tuned instead of --architecture's random weights")
    parser.add_argument("--validation", action="store_true",
                        help="train on train.jsonl alone; report validation.jsonl's loss before, every --eval-every steps, after")
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the profile's")
    parser.add_argument("--seed", type=int, default=0, help="the examples' order and the Trainer's seed")
    parser.add_argument("--label", default="", help="a name for this configuration in the output")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_finetune"))
    parser.add_argument("--smoke-cpu", action="store_true", help="run a few steps on the CPU to check the script")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "bench_finetune.jsonl")
    args = parser.parse_args()
    if args.validation and "tutorial" in args.variants.split(","):
        parser.error("--validation measures the course variant (--variants course)")
    if not torch.cuda.is_available() and not args.smoke_cpu:
        print("bench_finetune needs a CUDA GPU (--smoke-cpu checks the script on a CPU)", file=sys.stderr)
        return 2
    if world_size() > 1:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if args.whole_graph_ddp:
            # Compile the model as one graph and let DDP all-reduce after backward, instead of
            # Dynamo's DDPOptimizer splitting the graph at every gradient bucket.
            torch._dynamo.config.optimize_ddp = False
    if args.static_shapes:
        torch._dynamo.config.automatic_dynamic_shapes = False  # a graph per bucket, each with fixed shapes
        torch._dynamo.config.cache_size_limit = 64
    if args.examples < (args.steps + args.warmup + args.profile_steps + 1) * args.batch_size * world_size():
        # An epoch ends in a smaller batch: a new shape, and torch.compile compiles again inside the
        # timed steps (this once turned 480k tokens/s into 36k).
        parser.error(f"--examples {args.examples} is less than one epoch of the {args.steps + args.warmup} steps "
                     f"at batch {args.batch_size} x {world_size()} GPUs: the timed steps would include the epoch's "
                     "last, smaller batch")
    args.work.mkdir(parents=True, exist_ok=True)

    pairs = load_texts(args.pairs, ("train",) if args.validation else ("train", "validation"))
    validation_pairs = load_texts(args.pairs, ("validation",)) if args.validation else None
    if args.pretrained:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(args.pretrained))
    else:
        tokenizer = build_tokenizer(pairs, args.work / f"tokenizer-{args.architecture}",
                                    architecture_config(args.architecture).vocab_size)
    sample = [format_training_text(p["instruction"], p["response"], tokenizer.eos_token) for p in pairs]
    chars_per_token = sum(map(len, sample)) / sum(len(tokenizer(t)["input_ids"]) for t in sample)
    data = repeated(pairs, args.examples, seed=args.seed)
    results = []
    for name in args.variants.split(","):
        result = run_variant(name, data, tokenizer, args, validation_pairs)
        result |= {"label": args.label, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__,
                   "chars_per_token": round(chars_per_token, 2)}
        results.append(result)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if rank() == 0:
        peak = measured_bf16_matmul_peak() if torch.cuda.is_available() else float("nan")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as handle:
            for result in results:
                result["mfu_datasheet"] = round(result["model_tflops_per_s"] * 1e12 * result["world_size"] / H200_BF16_DENSE_PEAK, 4)
                result["mfu_measured_matmul"] = round(result["model_tflops_per_s"] * 1e12 * result["world_size"] / peak, 4)
                result["measured_bf16_matmul_tflops"] = round(peak / 1e12, 1)
                handle.write(json.dumps(result) + "\n")
        print(f"{'label':24s} {'variant':9s} {'prec':5s} {'batch':>5s} {'gpus':>4s} {'tok/s (all GPUs)':>16s} "
              f"{'TFLOP/s/GPU':>11s} {'MFU':>6s} {'peak GiB':>8s}")
        for r in results:
            print(f"{args.label:24s} {r['variant']:9s} {r['precision']:5s} {r['batch_size']:5d} {r['world_size']:4d} "
                  f"{r['real_tokens_per_s'] * r['world_size']:16,.0f} {r['model_tflops_per_s']:11.1f} "
                  f"{r['mfu_datasheet']:6.1%} {r['peak_memory_gib']:8.2f}"
                  + (f"  ({r['graphs_compiled_while_timed']} graphs compiled in the timed steps: not a steady state)"
                     if r["graphs_compiled_while_timed"] else ""))
            if "validation_loss" in r:
                print(f"{'':24s} validation loss (step, loss): {r['validation_loss']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
