"""Chapter 06: ONNX export in Transformers.js's layout, its validation and the layout checker.

Runs on tiny random GPT-2 and Llama models over the course's real tokenizer (conftest.py), and on
chapter 03's real validation pairs.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import numpy as np
import pytest

from helpers import course, export, hub, prompt
from helpers.pairs import save_pairs
from helpers.profiles import get_profile


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "model"))


def test_export_writes_the_layout_transformers_js_requests(exported_gpt2):
    names = {str(p.relative_to(exported_gpt2)) for p in exported_gpt2.rglob("*") if p.is_file()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "prompt_template.json", "onnx/model.onnx",
            "onnx/model_quantized.onnx", "onnx/model_fp16.onnx"} <= names
    assert not any(name.endswith(".onnx") and "/" not in name for name in names), "no ONNX at the root"
    config = json.loads((exported_gpt2 / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    assert "transformers.js_config" not in config  # small: weights inside the .onnx, nothing to declare
    assert json.loads((exported_gpt2 / "prompt_template.json").read_text()) == prompt.template_json()
    assert export.check_model_folder(exported_gpt2, ["fp32", "q8", "fp16"]) == []


def test_dtype_file_names_follow_transformers_js():
    assert [export.onnx_filename(d) for d in ("fp32", "q8", "fp16", "q4")] == [
        "model.onnx", "model_quantized.onnx", "model_fp16.onnx", "model_q4.onnx"]
    with pytest.raises(ValueError, match="unknown dtype"):
        export.onnx_filename("int3")


def test_q4_quantizes_llama_matmuls_and_is_skipped_for_gpt2_gemm(exported_gpt2, exported_llama):
    import onnx

    q4 = onnx.load(str(exported_llama / "onnx" / "model_q4.onnx"))
    assert any(node.op_type == "MatMulNBits" for node in q4.graph.node)
    # GPT-2's Conv1D layers export as Gemm, which the 4-bit quantizer leaves: no fake q4 file.
    assert not (exported_gpt2 / "onnx" / "model_q4.onnx").exists()
    assert [p.message for p in export.check_model_folder(exported_gpt2, ["q4"])] == [
        "missing: Transformers.js requests this file for dtype 'q4'"]


def test_q8_keeps_the_llama_mlp_output_projections_in_float(exported_gpt2, exported_llama):
    import onnx

    layers = json.loads((exported_llama / "config.json").read_text())["num_hidden_layers"]
    q8 = onnx.load(str(exported_llama / "onnx" / "model_quantized.onnx"), load_external_data=False)
    kept = export.q8_float_nodes(q8)
    assert len(kept) == layers and all("/down_proj/" in name for name in kept)
    # every other linear layer is quantized: q, k, v, o, gate, up in each layer, and the output layer
    assert sum(node.op_type == "MatMulInteger" for node in q8.graph.node) == 6 * layers + 1
    gpt2_q8 = onnx.load(str(exported_gpt2 / "onnx" / "model_quantized.onnx"), load_external_data=False)
    assert export.q8_float_nodes(gpt2_q8) == []


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_onnx_matches_pytorch_and_quantized_variants_are_measured(which, request, pair_splits):
    model_dir = request.getfixturevalue(f"tiny_{which}_dir")
    exported = request.getfixturevalue(f"exported_{which}")
    prompts = [pair["instruction"] for pair in pair_splits["validation"][:3]]
    validation = export.validate_export(model_dir, exported, prompts=prompts, pairs=pair_splits["validation"][:16],
                                        max_new_tokens=16)
    assert validation.max_logit_diff < 1e-4
    assert validation.greedy_match and validation.greedy_tokens == 3 * 16
    table = validation.table()
    assert table.loc["fp32", "size_ratio"] == 1.0 and table.loc["fp32", "ppl_delta"] == 0
    assert table.loc["q8", "size_ratio"] < 0.6  # int8 weights: about a quarter of the float32 bytes, plus the graph
    assert table.loc["fp16", "size_ratio"] < 0.75
    assert np.isfinite(table["perplexity"]).all() and (table["perplexity"] > 1).all()
    # quantization moves perplexity, but a working variant stays close to fp32 on this model
    assert (table["ppl_delta_pct"].abs() < 10).all(), table
    if which == "llama":
        assert table.loc["q4", "size_ratio"] < table.loc["fp16", "size_ratio"]


def test_reference_generation_decodes_the_page_prompt_greedily(exported_llama):
    result = export.reference_generation(exported_llama, "  Explain Albedo. ", max_new_tokens=12)
    assert result["prompt"] == prompt.format_prompt("Explain Albedo.")
    assert 1 <= len(result["token_ids"]) <= 12
    session = export.onnx_session(exported_llama / "onnx" / "model.onnx")
    # the cached decoder gives what a full recomputation of the growing sequence gives
    ids = list(result["prompt_ids"])
    for token in result["token_ids"][:4]:
        logits, _ = export.onnx_forward(session, ids)
        assert int(np.argmax(logits[0, -1])) == token
        ids.append(token)


def test_session_threads_and_token_callback(exported_llama):
    path = exported_llama / "onnx" / "model.onnx"
    session = export.onnx_session(path, threads=1)
    assert session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ValueError):
        export.onnx_session(path, threads=0)
    seen: list[int] = []
    ids = export.greedy_generate(session, [5, 17, 99], max_new_tokens=10, eos_token_id=None, on_token=seen.append)
    assert seen == ids and len(ids) == 10  # no eos: exactly max_new_tokens
    assert ids == export.greedy_generate(export.onnx_session(path, threads=2), [5, 17, 99], max_new_tokens=10)


def test_external_data_is_named_and_declared_for_transformers_js(tiny_llama_dir, exported_llama, tmp_path):
    out = export.export_onnx(tiny_llama_dir, tmp_path / "model", dtypes=("fp32", "q8"), external_data=True)
    assert (out / "onnx" / "model.onnx_data").exists() and (out / "onnx" / "model_quantized.onnx_data").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["transformers.js_config"]["use_external_data_format"] == {"model.onnx": 1, "model_quantized.onnx": 1}
    assert export.check_model_folder(out) == []
    ids = [5, 17, 99, 4]
    inline, _ = export.onnx_forward(export.onnx_session(exported_llama / "onnx" / "model.onnx"), ids)
    external, _ = export.onnx_forward(export.onnx_session(out / "onnx" / "model.onnx"), ids)
    np.testing.assert_array_equal(inline, external)

    # the same folder with its declaration removed, then with a data file missing
    undeclared = _copy(out, tmp_path / "undeclared")
    config.pop("transformers.js_config")
    (undeclared / "config.json").write_text(json.dumps(config))
    problems = export.check_model_folder(undeclared)
    assert {p.file for p in problems} == {"config.json"}
    assert "does not declare" in problems[0].message and "use_external_data_format" in problems[0].fix
    lost = _copy(out, tmp_path / "lost")
    (lost / "onnx" / "model.onnx_data").unlink()
    assert [p.file for p in export.check_model_folder(lost)] == ["onnx/model.onnx_data"]


def _remove(path: Path) -> None:
    path.unlink()


BREAKAGES = {
    "tokenizer missing": (lambda m: _remove(m / "tokenizer.json"), "tokenizer.json", "missing"),
    "onnx at the root": (lambda m: [shutil.move(str(p), m / p.name) for p in list((m / "onnx").iterdir())]
                         and (m / "onnx").rmdir(), "model.onnx", "at the root"),
    "q8 file missing": (lambda m: _remove(m / "onnx" / "model_quantized.onnx"), "onnx/model_quantized.onnx", "dtype 'q8'"),
    "unsupported architecture": (lambda m: (m / "config.json").write_text(json.dumps(
        json.loads((m / "config.json").read_text()) | {"model_type": "t5"})), "config.json", "'t5' is not an architecture"),
    "prompt template missing": (lambda m: _remove(m / "prompt_template.json"), "prompt_template.json", "missing"),
    "prompt template older than version 3": (lambda m: (m / "prompt_template.json").write_text(json.dumps(
        {k: v for k, v in json.loads((m / "prompt_template.json").read_text()).items() if k != "add_special_tokens"})),
        "prompt_template.json", "no add_special_tokens"),
    "config is an HTML page": (lambda m: (m / "config.json").write_text("<!DOCTYPE html><html></html>"),
                               "config.json", "not valid JSON"),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_layout_checker_diagnoses_each_broken_folder(breakage, exported_gpt2, tmp_path):
    model = _copy(exported_gpt2, tmp_path)
    damage, file, words = BREAKAGES[breakage]
    damage(model)
    errors = [p for p in export.check_model_folder(model) if p.severity == "error"]
    assert any(file in p.file and words in p.message for p in errors), export.explain(errors)
    assert "fix:" in export.explain(errors)
    with pytest.raises(export.ModelFolderError, match=file.split("/")[-1].replace(".", r"\.")):
        export.require_good_folder(model)


def test_explain_says_when_all_is_well(exported_gpt2):
    assert export.explain(export.check_model_folder(exported_gpt2)) == "The model folder is ready for Transformers.js."
    assert "is not a folder" in export.explain(export.check_model_folder(exported_gpt2 / "nope"))


def test_export_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(export.ExportError, match="no config.json"):
        export.export_onnx(tmp_path, tmp_path / "out")


def test_export_model_reads_chapter_05_and_writes_chapter_06(tmp_path, tiny_gpt2_dir, pair_splits):
    params = get_profile("tiny") | {"export_eval_pairs": 12, "export_check_prompts": 2, "export_greedy_tokens": 8}
    with pytest.raises(course.MissingInputError, match="05_finetune"):
        export.export_model(params, tmp_path)
    shutil.copytree(tiny_gpt2_dir, tmp_path / "05_finetune" / "model")
    # what chapter 05 records beside its model; the card reads it, not the profile
    record = {"method": "full", "base_model": "a-recorded-base", "train_pairs": 123, "val_loss_after": 4.5678}
    (tmp_path / "05_finetune" / "model" / "finetune_metrics.json").write_text(json.dumps(record))
    save_pairs(pair_splits, tmp_path / "03_pairs")
    # what chapter 01 records about the dump; the card's data source and licence come from it
    course.record_chapter(tmp_path, "01_dump", metrics={"wiki": "simplewiki", "wiki_base": "https://simple.wikipedia.org/wiki/",
                                                       "latest_edit": "2026-11-20T08:00:00Z"})
    result = export.export_model(params, tmp_path)
    assert result.model_dir == tmp_path / "06_export" / "model"
    assert export.check_model_folder(result.model_dir, ["fp32", "q8", "fp16"]) == []
    metrics = result.metrics()
    assert metrics["greedy_match"] and metrics["max_logit_diff"] < params["export_atol"]
    assert set(metrics["sizes_mb"]) == {"fp32", "q8", "fp16"}  # GPT-2: no q4 (Gemm layers)
    card = (result.model_dir / "README.md").read_text()
    assert "license: cc-by-sa-4.0" in card and "CC BY-SA 4.0" in card and "model_quantized.onnx" in card
    assert "`simplewiki` dump (https://simple.wikipedia.org)" in card and "en.wikipedia.org" not in card
    assert "https://simple.wikipedia.org/w/index.php?curid=<id>&action=history" in card
    assert "base_model: a-recorded-base" in card and "`train_pairs`: 123" in card and "`val_loss_after`: 4.5678" in card
    assert "finetune_learning_rate" not in card  # a profile value chapter 05 did not record
    assert result.validation.perplexity_pairs == min(12, len(pair_splits["validation"]))
    assert f"perplexity on {result.validation.perplexity_pairs} validation pairs" in card
    assert sorted(p.name for p in (tmp_path / "06_export").iterdir()) == ["model"], "no staging folder left behind"


def test_a_failed_export_never_replaces_the_complete_one(tmp_path, tiny_gpt2_dir, exported_llama, pair_splits):
    params = get_profile("tiny") | {"export_eval_pairs": 4, "export_check_prompts": 1, "export_greedy_tokens": 4}
    shutil.copytree(tiny_gpt2_dir, tmp_path / "05_finetune" / "model")
    save_pairs(pair_splits, tmp_path / "03_pairs")
    good = export.export_model(params, tmp_path).model_dir
    before = {p.relative_to(good): p.read_bytes() for p in good.rglob("*") if p.is_file()}

    staging = export.staging_folder(tmp_path)
    with pytest.raises(export.ExportError, match="no model.onnx"):  # nothing exported yet
        export.finish_export(params, tmp_path, staging)
    # another model's graph (the tiny Llama, same tokenizer): its logits are not chapter 05's model's
    shutil.copy2(exported_llama / "onnx" / "model.onnx", staging / "onnx" / "model.onnx")
    with pytest.raises(export.ExportError, match="logits differ"):
        export.finish_export(params, tmp_path, staging)
    assert staging.is_dir(), "the failed export is left for inspection"
    assert {p.relative_to(good): p.read_bytes() for p in good.rglob("*") if p.is_file()} == before


def test_converters_make_each_variant_from_the_fp32_graph(exported_gpt2, exported_llama):
    import onnx

    gpt2 = export.load_onnx(exported_gpt2 / "onnx" / "model.onnx")
    assert export.quantize_q4(gpt2) is None  # Gemm layers: nothing for MatMulNBits
    llama_path = exported_llama / "onnx" / "model.onnx"
    fp16 = export.convert_fp16(export.load_onnx(llama_path))
    float_types = {i.type.tensor_type.elem_type for i in [*fp16.graph.input, *fp16.graph.output]} - {onnx.TensorProto.INT64}
    assert float_types == {onnx.TensorProto.FLOAT}  # keep_io_types: the page feeds and reads float32
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    # export_onnx saved exactly what the converter makes from the fp32 file
    q8 = export.quantize_q8(export.load_onnx(llama_path))
    saved = export.load_onnx(exported_llama / "onnx" / "model_quantized.onnx")
    assert [(n.op_type, n.name) for n in q8.graph.node] == [(n.op_type, n.name) for n in saved.graph.node]


def test_quiet_exporter_drops_only_the_known_notices():
    import logging
    import warnings

    import torch

    optimum_logger = logging.getLogger("optimum")
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    optimum_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            with export.quiet_exporter():
                warnings.warn("a trace detail", torch.jit.TracerWarning)
                warnings.warn("Exporting aten::index operator of advanced indexing in opset 18 is ...", UserWarning)
                warnings.warn("something else", UserWarning)
                optimum_logger.warning("Found different candidate ONNX initializers (likely duplicate) for the tied weights:")
                optimum_logger.warning("\tlm_head.weight: {'onnx::MatMul_1'}")
                optimum_logger.warning("an unexpected optimum notice")
        assert [str(w.message) for w in seen] == ["something else"]
        assert logged == ["an unexpected optimum notice"]
        optimum_logger.warning("Found different candidate ONNX initializers (likely duplicate) for the tied weights:")
        assert len(logged) == 2, "the filter is removed afterwards"
    finally:
        optimum_logger.removeHandler(handler)


def test_the_texts_licence_follows_the_dumps_newest_edit(tmp_path, tiny_dump):
    """Wikimedia moved its text to CC BY-SA 4.0 on 2023-06-29: the shipped 2016 sample stays 3.0, a current dump is 4.0."""
    from helpers import dump

    stats = dump.DumpStats()
    timestamps = [page.timestamp for page in dump.iter_pages(tiny_dump)]
    list(dump.iter_articles(tiny_dump, stats=stats))
    assert stats.latest_edit == "2016-05-01T07:08:29Z" and stats.latest_edit <= max(timestamps)
    assert dump.text_licence(stats.latest_edit)["id"] == "cc-by-sa-3.0"
    assert dump.text_licence("2023-06-28T23:59:59Z")["id"] == "cc-by-sa-3.0"
    assert dump.text_licence("2023-06-29T00:00:00Z")["id"] == "cc-by-sa-4.0"
    assert dump.text_licence("")["id"] == "cc-by-sa-4.0" and "not recorded" in dump.text_licence(None)["why"]
    export.write_model_card(tmp_path, base_model="course-tiny-gpt2", training={}, metrics={},
                            data={"wiki": "enwiki", "wiki_base": "https://en.wikipedia.org/wiki/", "latest_edit": stats.latest_edit})
    card = (tmp_path / "README.md").read_text()
    assert "license: cc-by-sa-3.0" in card and "by-sa/3.0/" in card and "2016-05-01" in card


def test_the_model_card_says_which_weights_were_fine_tuned(tmp_path):
    """Chapter 05 records where the base model came from; a card built on the stand-in must say so, not name the Hub's."""
    name = "HuggingFaceTB/SmolLM2-135M-Instruct"
    cards = {}
    for source in (hub.SOURCE_STANDIN, hub.SOURCE_HUB, None):
        folder = tmp_path / str(source)
        folder.mkdir()
        training = {"base_model": name} | ({"base_model_source": source} if source else {})
        export.write_model_card(folder, base_model=name, training=training, metrics={})
        cards[source] = (folder / "README.md").read_text()
    assert "fine-tuned from the course's offline stand-in" in cards[hub.SOURCE_STANDIN]
    assert f"from `{name}` (its offline stand-in" in cards[hub.SOURCE_STANDIN]
    assert hub.STANDINS[name].filename in cards[hub.SOURCE_STANDIN]
    assert f"at revision {hub.PINNED_REVISIONS[name]}" in cards[hub.SOURCE_HUB]
    assert "stand-in" not in cards[hub.SOURCE_HUB].split("## Training")[0]
    assert "Where the Hugging Face Hub is unreachable" in cards[None]  # a record from before the source was noted


# Every module's first import logs "importing <name>" at INFO as it starts, as datasets does when it finds JAX
# (on Colab).
_IMPORT_PROBE = """
import builtins, logging, sys
real_import = builtins.__import__
def probed_import(name, *args, **kwargs):
    if name not in sys.modules:
        logging.getLogger("import-probe").info("importing %s", name)
    return real_import(name, *args, **kwargs)
builtins.__import__ = probed_import
"""


def test_chapter_06_imports_print_no_library_info_lines():
    """onnxruntime's quantizer import sets the root logger to INFO: the chapter restores it before any INFO is printed."""
    notebook = course.NOTEBOOKS_DIR / f"{course.CHAPTERS['06_export']}.md"
    cell = next(c.source for c in jupytext.read(notebook).cells
                if c.cell_type == "code" and "import onnxruntime" in c.source)
    statements = [line for line in cell.splitlines()
                  if line.startswith(("import ", "from ", "logging.getLogger().setLevel"))]
    assert any("MatMulNBitsQuantizer" in line for line in statements)
    code = _IMPORT_PROBE + "\n".join(statements) + "\nlogging.getLogger('import-probe').info('after the cell')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=course.REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert "import-probe" not in result.stderr, result.stderr
