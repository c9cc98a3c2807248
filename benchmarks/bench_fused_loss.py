"""The output layer and its loss alone: the logits materialized, or a fused linear + cross-entropy.

    python benchmarks/bench_fused_loss.py --tokens 32768 --hidden 768 --vocab 50257

At the course path's settings a step holds about 32k real tokens, and GPT-2's output layer turns each
768-wide hidden state into 50,257 logits: a [32k x 50k] tensor, 3.3 GB in bf16 and twice that once
the loss upcasts it to fp32, written and read several times forward and backward. A fused loss
computes the same cross-entropy chunk by chunk and never holds the whole tensor. Timed here,
forward and backward (gradients for the hidden states and the weight), bf16, on one GPU:

- ``eager``: ``F.cross_entropy((h @ W.T).float(), labels)``, what ``GPT2LMHeadModel`` does;
- ``compiled``: the same under ``torch.compile``;
- ``liger``: ``liger_kernel``'s ``LigerFusedLinearCrossEntropyLoss``;
- ``cce``: Apple's ``cut_cross_entropy.linear_cross_entropy``;

each checked against ``eager`` (loss and gradients). One JSON line per variant to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent
IGNORE_INDEX = -100


def eager_loss(hidden, weight, labels):
    return F.cross_entropy((hidden @ weight.T).float(), labels, ignore_index=IGNORE_INDEX)


def variants():
    found = {"eager": eager_loss, "compiled": torch.compile(eager_loss)}
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        liger = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX)
        found["liger"] = lambda hidden, weight, labels: liger(weight, hidden, labels)
    except ImportError as error:
        print(f"liger: not installed ({error})", file=sys.stderr)
    try:
        from cut_cross_entropy import linear_cross_entropy

        found["cce"] = lambda hidden, weight, labels: linear_cross_entropy(hidden, weight, labels,
                                                                         ignore_index=IGNORE_INDEX)
    except ImportError as error:
        print(f"cce: not installed ({error})", file=sys.stderr)
    return found


def measure(loss_fn, hidden, weight, labels, repeats: int):
    def step():
        h, w = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
        loss = loss_fn(h, w, labels)
        loss.backward()
        return loss.detach(), h.grad, w.grad

    for _ in range(3):
        result = step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        step()
    end.record()
    torch.cuda.synchronize()
    return result, start.elapsed_time(end) / repeats, (torch.cuda.max_memory_allocated() - base) / 2**30


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=32768)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "bench_fused_loss.jsonl")
    args = parser.parse_args()
    torch.manual_seed(0)
    hidden = torch.randn(args.tokens, args.hidden, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(args.vocab, args.hidden, device="cuda", dtype=torch.bfloat16) * 0.02
    labels = torch.randint(0, args.vocab, (args.tokens,), device="cuda")
    labels[torch.rand(args.tokens, device="cuda") < 0.3] = IGNORE_INDEX  # the prompt's tokens carry no loss
    reference = None
    flops = 3 * 2 * args.tokens * args.hidden * args.vocab  # forward matmul + two backward matmuls
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name, loss_fn in variants().items():
        (loss, grad_h, grad_w), ms, peak = measure(loss_fn, hidden, weight, labels, args.repeats)
        if reference is None:
            reference = (loss, grad_h, grad_w)
        record = {
            "variant": name, "tokens": args.tokens, "hidden": args.hidden, "vocab": args.vocab,
            "ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1), "peak_extra_gib": round(peak, 2),
            "loss": float(loss), "loss_diff": abs(float(loss) - float(reference[0])),
            "grad_hidden_rel_err": float((grad_h.float() - reference[1].float()).norm() / reference[1].float().norm()),
            "grad_weight_rel_err": float((grad_w.float() - reference[2].float()).norm() / reference[2].float().norm()),
            "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        }
        print(json.dumps(record), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
