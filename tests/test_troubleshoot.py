"""Chapter 08's diagnoses: each fires on its failure, reproduced small, and stays quiet on the healthy case."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from helpers import deploy, models
from helpers import finetune as ft
from helpers import troubleshoot as ts
from helpers.profiles import REPO_ROOT, get_profile


def _history(val: list[float], train: list[float]) -> list[dict[str, float]]:
    return [{"step": 5 * (i + 1), "train_loss": t, "val_loss": v} for i, (v, t) in enumerate(zip(val, train))]


def test_overfitting_fires_on_diverging_losses_only():
    falling = [5.0, 4.5, 4.0, 3.5, 3.0, 2.5]
    assert ts.detect_overfitting(_history([5.0, 4.8, 4.9, 5.1, 5.3, 5.6], falling)).fired
    healthy = ts.detect_overfitting(_history([5.0, 4.8, 4.6, 4.5, 4.45, 4.4], falling))
    assert not healthy.fired
    noisy = ts.detect_overfitting(_history([5.0, 4.8, 4.9, 4.7, 4.8, 4.6], falling))
    assert not noisy.fired
    assert not ts.detect_overfitting(_history([5.0, 5.1], [5.0, 4.0])).fired  # too few evaluations


def test_tiny_overfit_run_keeps_the_best_weights(course_tokenizer, pair_splits):
    model = models.build_tiny_gpt2(course_tokenizer, {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 128})
    collator = ft.RightPaddingCollator(ft.pad_token_id(course_tokenizer))
    train = ts.pair_dataset(pair_splits["train"][:4], course_tokenizer, 96)
    val = ts.pair_dataset(pair_splits["validation"][:8], course_tokenizer, 96)
    run = ts.train_with_evals(model, train, val, collator, steps=12, lr=3e-3, eval_every=3, batch_size=4)
    assert [row["step"] for row in run.history] == [3, 6, 9, 12]
    assert run.best_val_loss == min(row["val_loss"] for row in run.history)
    restored = ft.evaluate_loss(run.model, val, collator)["loss"]
    assert restored == pytest.approx(run.best_val_loss, rel=1e-4)
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    assert run.early_stop_step(patience=100) == 12


def test_forgetting_fires_above_the_threshold_only():
    assert ts.detect_forgetting(300.0, 900.0).fired
    assert not ts.detect_forgetting(300.0, 320.0).fired
    assert not ts.detect_forgetting(300.0, 250.0).fired


def test_aggressive_finetune_raises_general_perplexity(course_tokenizer, pair_splits, clean_articles):
    model = models.build_tiny_gpt2(course_tokenizer, {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 128})
    texts = [ts.article_text(article) for article in clean_articles]
    models.pretrain(model, course_tokenizer, texts[:-3], steps=30, batch_size=8, block_size=64, learning_rate=3e-3)
    general = texts[-3:]
    before = ts.text_perplexity(model, course_tokenizer, general, block_size=64, max_blocks=16)
    collator = ft.RightPaddingCollator(ft.pad_token_id(course_tokenizer))
    train = ts.pair_dataset(pair_splits["train"][:32], course_tokenizer, 96)
    wrecked = ts.finetune_copy(model, train, collator, lr=5e-2, steps=10, batch_size=4)
    after = ts.text_perplexity(wrecked, course_tokenizer, general, block_size=64, max_blocks=16)
    assert ts.detect_forgetting(before, after).fired
    # finetune_copy trains a copy: the base model is unchanged
    assert ts.text_perplexity(model, course_tokenizer, general, block_size=64, max_blocks=16) == pytest.approx(before)


def test_measured_states_match_the_estimate(course_tokenizer, pair_splits):
    model = models.build_tiny_gpt2(course_tokenizer, {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 128})
    collator = ft.RightPaddingCollator(ft.pad_token_id(course_tokenizer))
    data = ts.pair_dataset(pair_splits["train"][:4], course_tokenizer, 96)
    batch = collator([data[i] for i in range(4)])
    measured = ts.measure_training_memory(model, batch)
    estimate = models.training_memory(model.config, models.count_parameters(model), batch_size=4,
                                      sequence_length=batch["input_ids"].shape[1])
    # AdamW adds one 4-byte step counter per parameter tensor beyond the 16 bytes per weight
    assert measured["states"] == pytest.approx(estimate.states, rel=1e-3)
    assert measured["activations"] > 0
    doubled = ts.measure_training_memory(model, collator([data[i] for i in range(4)] * 2))
    assert doubled["activations"] > 1.5 * measured["activations"]  # activations grow with the batch


def test_memory_diagnosis_fires_and_proposes_what_fits():
    config, _ = models.load_candidate_config("HuggingFaceTB/SmolLM2-360M", offline=True)
    meta = models.meta_model(config)
    n = models.count_parameters(meta)
    lora = models.lora_parameter_count(meta, 16, models.lora_target_modules("llama"))
    too_big = ts.diagnose_memory(config, n, models.T4_USABLE_BYTES, batch_size=32, sequence_length=512, lora_parameters=lora)
    assert too_big.fired
    options = too_big.details["options"]
    assert options["fits"].any() and (options["saving (GiB)"] > 0).all()
    assert "accumulation" in too_big.fix
    assert not ts.diagnose_memory(config, n, models.T4_USABLE_BYTES, batch_size=4, sequence_length=512).fired
    assert ts.check_fitting_batch(config, n, models.T4_USABLE_BYTES, 512, 8) == "correct"
    assert ts.check_fitting_batch(config, n, models.T4_USABLE_BYTES, 512, 16).startswith("not quite")


def test_poor_data_fires_on_the_classic_pipeline_only(clean_articles):
    texts = [ts.article_text(article) for article in clean_articles[:10]]
    assert not ts.detect_poor_data(texts).fired
    classic = ts.detect_poor_data(ts.classic_texts(texts))
    assert classic.fired and classic.details["stopword_ratio"] < 0.05


@pytest.mark.parametrize("how", ["onnx_at_root", "no_tokenizer"])
def test_broken_model_folders_are_diagnosed(exported_gpt2, tmp_path, how):
    assert not ts.diagnose_model_folder(exported_gpt2).fired
    broken = ts.broken_model_folder(exported_gpt2, tmp_path / how, how)
    diagnosis = ts.diagnose_model_folder(broken)
    assert diagnosis.fired
    assert ("onnx/" in diagnosis.message) if how == "onnx_at_root" else ("tokenizer.json" in diagnosis.message)
    assert ts.check_fixed_folder(broken) != "correct: the folder is ready for Transformers.js"
    assert ts.check_fixed_folder(exported_gpt2).startswith("correct")


@pytest.fixture
def site_copy(tmp_path):
    """The course's page (its real HTML and scripts) with stand-in vendor files of the right names."""
    site = tmp_path / "site"
    site.mkdir()
    for name in ("index.html", "app.js", "worker.js", "style.css"):
        shutil.copy(REPO_ROOT / "site" / name, site / name)
    (site / "vendor").mkdir()
    for name in deploy.VENDOR_FILES:
        (site / "vendor" / name).write_bytes(b"\0asm\1\0\0\0" if name.endswith(".wasm") else b"export {};\n")
    return site


def _diagnose_and_stop(server, url) -> ts.Diagnosis:
    try:
        return ts.diagnose_site(url)
    finally:
        server.shutdown()
        server.server_close()


def test_healthy_site_passes(site_copy):
    server, url = deploy.serve(site_copy)
    diagnosis = _diagnose_and_stop(server, url)
    assert not diagnosis.fired, diagnosis.message
    assert all(diagnosis.details["content_types"][name] == "application/wasm" for name in deploy.VENDOR_FILES if name.endswith(".wasm"))


def test_wrong_wasm_mime_type_and_missing_isolation_are_detected(site_copy):
    server, url = ts.serve_misconfigured(site_copy, wasm_type="text/plain", isolation=False)
    diagnosis = _diagnose_and_stop(server, url)
    assert diagnosis.fired
    assert any("text/plain" in error and ".wasm" in error for error in diagnosis.details["errors"])
    assert any("COOP" in warning for warning in diagnosis.details["warnings"])


def test_cdn_wasm_paths_are_detected(site_copy):
    assert ts.check_worker_source((REPO_ROOT / "site" / "worker.js").read_text()) == []
    worker = site_copy / "worker.js"
    source = worker.read_text()
    cdn = 'env.backends.onnx.wasm.wasmPaths = "https://cdn.jsdelivr.net/npm/onnxruntime-web/dist/";'
    worker.write_text("\n".join(cdn if "wasmPaths =" in line else line for line in source.splitlines()))
    server, url = deploy.serve(site_copy)
    diagnosis = _diagnose_and_stop(server, url)
    assert diagnosis.fired and "wasmPaths" in diagnosis.message
    assert ts.check_worker_source("import x from './y.js';")  # never set: the CDN default


def test_backend_choice_mirrors_the_worker():
    assert ts.backend_choice("auto", navigator_gpu=False)[0] == "wasm"
    assert ts.backend_choice("auto", navigator_gpu=True, adapter=False)[0] == "wasm"
    assert ts.backend_choice("auto", navigator_gpu=True, adapter=True)[0] == "webgpu"
    assert ts.backend_choice("webgpu", webgpu_load_fails=True)[0] == "wasm"
    assert ts.backend_choice("auto", navigator_gpu=True, adapter=True, dtype="q8")[0] == "wasm"
    assert ts.backend_choice("auto", navigator_gpu=True, adapter=True, dtype="q4")[0] == "webgpu"
    # One owner: site/page.json lists the dtypes kept off WebGPU; the worker reads that list, Python too.
    assert ts.WRONG_ON_WEBGPU == set(json.loads((REPO_ROOT / "site" / "page.json").read_text())["wasm_only_dtypes"])
    assert "rules.wasm_only_dtypes.includes(dtype)" in (REPO_ROOT / "site" / "worker.js").read_text()
    worker = (REPO_ROOT / "site" / "worker.js").read_text()
    assert ts.diagnose_webgpu(worker, navigator_gpu=False).fired
    assert not ts.diagnose_webgpu(worker, navigator_gpu=True).fired
    assert ts.diagnose_webgpu("no fallback here", navigator_gpu=True).fired


def test_early_stopping_exercise_knows_the_trainers_rule():
    # by hand: losses 3.0, 2.5, 2.5, 2.6, 2.4 at steps 10-50; the tie at 30 is no improvement
    history = [{"step": 10 * (i + 1), "val_loss": loss} for i, loss in enumerate((3.0, 2.5, 2.5, 2.6, 2.4))]
    assert [ts.early_stopping_reference(history, patience) for patience in (1, 2, 3)] == [(20, 30), (20, 40), (50, 50)]

    def written_by_hand(improves):
        def early_stopping(history, patience):
            best, kept, waited = float("inf"), None, 0
            for row in history:
                if improves(row["val_loss"], best):
                    best, kept, waited = row["val_loss"], row["step"], 0
                else:
                    waited += 1
                    if waited == patience:
                        return kept, row["step"]
            return kept, history[-1]["step"]
        return early_stopping

    by_hand = written_by_hand(lambda loss, best: loss < best)
    ties_improve = written_by_hand(lambda loss, best: loss <= best)  # the usual slip

    histories = {"a real-looking run": [{"step": s, "val_loss": v} for s, v in ((2, 2.0), (4, 1.8), (6, 1.9), (8, 2.1), (10, 1.7))]}
    assert ts.check_early_stopping(histories, None).startswith("not answered yet")

    def unwritten(history, patience):
        raise NotImplementedError

    assert ts.check_early_stopping(histories, unwritten).startswith("not answered yet")
    assert ts.check_early_stopping(histories, by_hand).startswith("correct")
    verdict = ts.check_early_stopping(histories, ties_improve)
    assert verdict.startswith("not quite: on made-up history 1 with patience 1, (kept, stopped) should be (20, 30), not (30, 40)")
    assert "raised ZeroDivisionError" in ts.check_early_stopping(histories, lambda history, patience: 1 / 0)
