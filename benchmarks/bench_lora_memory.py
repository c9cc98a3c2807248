"""Peak memory of LoRA training steps on the CPU: what sized the laptop profile's batches.

Loads the profile's base model (SmolLM2-135M-Instruct on the laptop profile: the Hub's, or the
offline stand-in), applies the course's LoRA (``helpers.finetune.apply_lora``) and runs ``--steps``
optimizer steps of AdamW on the longest training pairs of a run's chapter 03 (the worst case for
activations), while a thread samples the process's resident memory every 50 ms. Prints the peak,
the memory left after the steps, the time, and the memory after ``malloc_trim`` (glibc keeps freed
memory in its heap; trimming shows how much of "left" is really in use).

    python benchmarks/bench_lora_memory.py --run runs/laptop --batch-size 4
    python benchmarks/bench_lora_memory.py --run runs/laptop --batch-size 2
    python benchmarks/bench_lora_memory.py --run runs/laptop --batch-size 4 --checkpointing
    MALLOC_MMAP_THRESHOLD_=131072 python benchmarks/bench_lora_memory.py --run runs/laptop --batch-size 4

Numbers and the machine in benchmarks/README.md ("The laptop profile, 00-08").
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import threading
import time

import psutil
import torch

from helpers import finetune as ft
from helpers import models, pairs, profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run folder with 03_pairs/ (e.g. runs/laptop)")
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (recompute activations)")
    args = parser.parse_args()

    process, peak = psutil.Process(), [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    params = profiles.get_profile(args.profile)
    tokenizer = ft.load_course_tokenizer(params, args.run)
    model = models.load_base_model(params, args.run)
    splits = pairs.load_pairs(f"{args.run}/03_pairs")
    data = ft.tokenize_pairs(splits["train"], tokenizer, max_length=params["finetune_max_length"], truncate=True)
    longest = sorted(range(len(data)), key=lambda i: -data[i]["length"])
    collator = ft.RightPaddingCollator(ft.pad_token_id(tokenizer))
    model = ft.apply_lora(model, params)
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params["lora_learning_rate"])
    loaded = process.memory_info().rss
    model.train()
    started = time.perf_counter()
    tokens = 0
    for step in range(args.steps):
        batch = collator([data[i] for i in longest[step * args.batch_size:(step + 1) * args.batch_size]])
        tokens += int(batch["attention_mask"].sum())
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - started
    left = process.memory_info().rss
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    gib = 2**30
    print(json.dumps({
        "batch_size": args.batch_size, "checkpointing": args.checkpointing, "steps": args.steps,
        "longest_pair_tokens": int(data[longest[0]]["length"]), "tokens": tokens,
        "loaded_gib": round(loaded / gib, 2), "peak_gib": round(peak[0] / gib, 2), "left_gib": round(left / gib, 2),
        "after_trim_gib": round(process.memory_info().rss / gib, 2), "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1),
    }))


if __name__ == "__main__":
    main()
