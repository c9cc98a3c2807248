"""One short CourseTrainer run for tests/test_finetune.py's data-parallel test, alone or under torchrun.

    python tests/ddp_train.py FOLDER BATCH OUT.json                                  # one process
    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_train.py FOLDER BATCH OUT.json

FOLDER holds ``model/``, ``tokenizer/`` and ``data/`` (a tokenized dataset); BATCH is the batch of each
process. The run is the course's own path (``training_arguments``, ``RightPaddingCollator``,
``CourseTrainer``); the first process writes the logged losses, the real tokens counted and the
final weights' checksums to OUT.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import finetune as ft  # noqa: E402
from helpers.profiles import get_profile  # noqa: E402


def main(folder: Path, batch_size: int, out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    model = AutoModelForCausalLM.from_pretrained(folder / "model")
    data = datasets.load_from_disk(str(folder / "data"))
    params = get_profile("tiny") | {"finetune_batch_size": batch_size, "finetune_max_steps": 4,
                                    "finetune_logging_steps": 1, "finetune_warmup_ratio": 0.0}
    args = ft.training_arguments(params, folder / f"checkpoints-{out.stem}", learning_rate=3e-3, precision="fp32",
                                 eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                                 disable_tqdm=True)
    trainer = ft.CourseTrainer(model=model, args=args, train_dataset=data,
                               data_collator=ft.RightPaddingCollator(ft.pad_token_id(tokenizer)))
    trainer.train()
    if trainer.is_world_process_zero():
        out.write_text(json.dumps({
            "world_size": args.world_size,
            "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
            "tokens": trainer.state.num_input_tokens_seen,
            "weights": {name: float(tensor.double().sum()) for name, tensor in model.state_dict().items()},
        }))
    ft.leave_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
