"""Drift: the keyword arguments the helpers and notebooks pass to library calls exist in the pinned versions.

The code is parsed with ast; calls whose target is one of the explicit-signature library callables
below (by its last name: ``TrainingArguments(...)``, ``ft.x.main_export(...)``) have every keyword
checked against ``inspect.signature``. Targets that take ``**kwargs`` (``from_pretrained``,
``GenerationConfig``, optimum's ``main_export``: ``**kwargs_shapes``) accept any keyword, so they are
skipped at check time (listed anyway: if a release drops the ``**``, they get checked).
"""
from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
from transformers import Trainer

from helpers import finetune as ft
from helpers.profiles import REPO_ROOT

# last name of the call -> "module:attribute" of the callable it resolves to in the pinned libraries
TARGETS = {
    "TrainingArguments": "transformers:TrainingArguments",
    "Trainer": "transformers:Trainer",
    "EarlyStoppingCallback": "transformers:EarlyStoppingCallback",
    "DataCollatorForLanguageModeling": "transformers:DataCollatorForLanguageModeling",
    "GPT2Config": "transformers:GPT2Config",
    "LlamaConfig": "transformers:LlamaConfig",
    "LoraConfig": "peft:LoraConfig",
    "get_peft_model": "peft:get_peft_model",
    "main_export": "optimum.exporters.onnx:main_export",
    "quantize_dynamic": "onnxruntime.quantization:quantize_dynamic",
    "SessionOptions": "onnxruntime:SessionOptions",
    "load_from_disk": "datasets:load_from_disk",
    "train_new_from_iterator": "transformers:PreTrainedTokenizerFast.train_new_from_iterator",
    "PunktTrainer": "nltk.tokenize.punkt:PunktTrainer",
    "clip_grad_norm_": "torch.nn.utils:clip_grad_norm_",
    "AdamW": "torch.optim:AdamW",
    "get_linear_schedule_with_warmup": "transformers:get_linear_schedule_with_warmup",
    "DataLoader": "torch.utils.data:DataLoader",
    "cross_entropy": "torch.nn.functional:cross_entropy",
}


def _resolve(spec: str):
    module, _, attribute = spec.partition(":")
    target = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def _python_of(path: Path) -> str:
    if path.suffix == ".py":
        return path.read_text(encoding="utf-8")
    import jupytext

    cells = [c.source for c in jupytext.read(path).cells if c.cell_type == "code"]
    # IPython's `!shell` and `%magic` lines become `pass` at the same indentation
    lines = [re.sub(r"^(\s*)[!%].*$", r"\1pass", line) for cell in cells for line in cell.splitlines()]
    return "\n".join(lines)


def unknown_keywords(source: str, where: str = "<code>") -> list[str]:
    """``where:line name(keyword=)`` for every keyword a resolved target's signature rejects."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in TARGETS:
            continue
        try:
            signature = inspect.signature(_resolve(TARGETS[name]))
        except (ValueError, TypeError):
            continue  # a C extension without a signature
        params = signature.parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        for keyword in node.keywords:
            if keyword.arg is not None and keyword.arg not in params:
                problems.append(f"{where}:{node.lineno} {name}({keyword.arg}=) is not a parameter of {TARGETS[name]}")
    return problems


SOURCES = sorted([*(REPO_ROOT / "helpers").glob("*.py"), *(REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.md"),
                  *(REPO_ROOT / "benchmarks").glob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_keywords_passed_to_library_calls_exist_in_the_pinned_versions(path):
    assert unknown_keywords(_python_of(path), path.name) == []


def test_every_target_resolves_in_the_pinned_libraries():
    for name, spec in TARGETS.items():
        assert callable(_resolve(spec)), name


def test_the_check_is_not_vacuous():
    checked = sum(1 for path in SOURCES for node in ast.walk(ast.parse(_python_of(path)))
                  if isinstance(node, ast.Call)
                  and (node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)) in TARGETS
                  and node.keywords)
    assert checked >= 5, f"only {checked} calls with keywords were checked"


@pytest.mark.parametrize("planted", [
    'TrainingArguments(output_dir="x", evaluation_strategy="steps")',  # renamed to eval_strategy in 4.46
    "peft.LoraConfig(r=8, lora_alpah=16)",
    "quantize_dynamic('a.onnx', 'b.onnx', weight_typ=None)",
    "torch.utils.data.DataLoader(ds, batch_size=2, colate_fn=None)",
])
def test_a_planted_unknown_keyword_is_caught(planted):
    assert unknown_keywords(planted)


def test_course_trainer_overrides_methods_the_pinned_trainer_calls():
    """An override of a method the Trainer renamed would be dead code that no error reports."""
    overrides = {"_rotate_checkpoints", "training_step", "log"}
    own = {name for name, value in vars(ft.CourseTrainer).items() if callable(value) and not name.startswith("__")}
    assert own - {"add_up_tokens"} == overrides, "a new override: add it here"
    for name in overrides:
        assert callable(getattr(Trainer, name, None)), f"transformers' Trainer has no {name} any more"
        assert re.search(rf"self\.{name}\(", inspect.getsource(Trainer)), f"the Trainer no longer calls {name}"
