"""Chapter 04's helpers: candidate configs and their numbers, the memory estimate, the stand-in models."""
from __future__ import annotations

import json
from unittest import mock

import pytest
import torch
from transformers.utils import logging as transformers_logging

from helpers import models
from helpers.profiles import get_profile

# Published parameter counts (model cards, papers): tied heads are one matrix, counted once.
PUBLISHED_PARAMETERS = {
    "distilbert/distilgpt2": 81.9e6,
    "HuggingFaceTB/SmolLM2-135M": 134.5e6,
    "HuggingFaceTB/SmolLM2-135M-Instruct": 134.5e6,
    "HuggingFaceTB/SmolLM2-360M": 361.8e6,
    "HuggingFaceTB/SmolLM2-360M-Instruct": 361.8e6,
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": 1.71e9,
    "Xenova/LaMini-Flan-T5-783M": 783e6,  # google/flan-t5-large's architecture
}


@pytest.fixture
def offline(monkeypatch):
    """The Hub's offline switch, as a Colab user without network (or CI) would set it."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_offline_the_config_comes_from_the_shipped_copy(offline):
    config, source = models.load_candidate_config("distilbert/distilgpt2")
    assert source == "shipped"
    assert config.model_type == "gpt2" and config.n_layer == 6 and config.n_embd == 768 and config.vocab_size == 50257


def test_every_candidate_ships_a_config_with_licence_and_provenance():
    for name in models.CANDIDATES:
        info = models.model_info(name)
        assert info["hub_id"] == name
        assert info["licence"] and len(info["provenance"]) > 40
        assert (models.shipped_config_dir(name) / "config.json").exists()


def test_unknown_model_offline_fails_listing_the_known_candidates(offline):
    with pytest.raises(models.ModelConfigUnavailableError) as error:
        models.load_candidate_config("someone/unheard-of-model")
    message = str(error.value)
    assert "someone/unheard-of-model" in message
    assert all(name in message for name in models.CANDIDATES)


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMETERS), ids=lambda n: n.split("/")[-1])
def test_parameter_count_from_the_config_matches_the_published_one(offline, name):
    config, _ = models.load_candidate_config(name)
    assert models.count_parameters(models.meta_model(config)) == pytest.approx(PUBLISHED_PARAMETERS[name], rel=0.01)


def test_a_tied_head_is_counted_once(offline):
    config, _ = models.load_candidate_config("distilbert/distilgpt2")
    model = models.meta_model(config)
    with_duplicates = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert with_duplicates - models.count_parameters(model) == config.vocab_size * config.n_embd


def test_fp16_download_size_matches_a_published_file(offline):
    # SmolLM2-360M-Instruct's model.safetensors is bf16: 2 bytes per parameter plus a small header.
    candidate = models.describe_candidate("HuggingFaceTB/SmolLM2-360M-Instruct")
    assert candidate.download_bytes["fp16"] == pytest.approx(candidate.published_download_bytes, rel=0.001)


def test_architecture_and_browser_support(offline):
    t5 = models.describe_candidate("Xenova/LaMini-Flan-T5-783M")
    gpt2 = models.describe_candidate("distilbert/distilgpt2")
    assert (t5.architecture, t5.model_type, t5.licence) == ("encoder-decoder", "t5", "cc-by-nc-4.0")
    assert gpt2.architecture == "decoder-only" and gpt2.transformers_js and t5.transformers_js
    assert "gpt2" in models.TRANSFORMERS_JS_CAUSAL_LM and "t5" not in models.TRANSFORMERS_JS_CAUSAL_LM


def test_kv_cache_per_token_shrinks_with_grouped_query_attention(offline):
    smol, _ = models.load_candidate_config("HuggingFaceTB/SmolLM2-135M")
    assert models.kv_cache_bytes_per_token(smol) == 2 * 30 * 3 * 64 * 2  # 3 key/value heads, not 9
    distil, _ = models.load_candidate_config("distilbert/distilgpt2")
    assert models.kv_cache_bytes_per_token(distil) == 2 * 6 * 12 * 64 * 2


@pytest.mark.parametrize("builder", ["gpt2", "llama"])
def test_kv_cache_estimate_matches_the_cache_a_model_builds(course_tokenizer, builder):
    model = _tiny(builder, course_tokenizer).half()
    tokens = 12
    with torch.no_grad():
        cache = model(input_ids=torch.randint(0, 100, (1, tokens)), use_cache=True).past_key_values
    measured = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    assert measured == tokens * models.kv_cache_bytes_per_token(model.config)


def _tiny(builder, tokenizer):
    if builder == "gpt2":
        return models.build_tiny_gpt2(tokenizer, get_profile("tiny")["tiny_model_config"])
    return models.build_tiny_llama(tokenizer)


def _one_adamw_step(model):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    batch = torch.randint(0, 100, (2, 16))
    model(input_ids=batch, labels=batch).loss.backward()
    optimizer.step()
    return optimizer


@pytest.mark.parametrize("builder", ["gpt2", "llama"])
def test_full_fine_tuning_states_estimate_matches_a_measurement(course_tokenizer, builder):
    model = _tiny(builder, course_tokenizer)
    optimizer = _one_adamw_step(model)
    estimate = models.training_memory(model.config, models.count_parameters(model), method="full")
    # The estimate's non-activation part: fp32 weights, fp32 gradients, AdamW's two fp32 moments.
    # AdamW's step counters (one 4-byte scalar per tensor) are the only thing it leaves out.
    assert models.measured_training_state_bytes(model, optimizer) == pytest.approx(estimate.states, rel=0.005)
    assert estimate.states == 16 * models.count_parameters(model)


@pytest.mark.parametrize("builder", ["gpt2", "llama"])
def test_lora_states_estimate_matches_peft(course_tokenizer, builder):
    from peft import LoraConfig, get_peft_model

    base = _tiny(builder, course_tokenizer)
    parameters = models.count_parameters(base)
    targets = models.lora_target_modules(base.config.model_type)
    expected_lora = models.lora_parameter_count(base, 4, targets)
    fan_in_fan_out = models.LORA_TARGETS[base.config.model_type]["fan_in_fan_out"]  # GPT-2's Conv1D
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets, fan_in_fan_out=fan_in_fan_out,
                                            task_type="CAUSAL_LM"))
    assert models.count_parameters(model, trainable_only=True) == expected_lora > 0
    optimizer = _one_adamw_step(model)
    estimate = models.training_memory(base.config, parameters, method="lora", lora_parameters=expected_lora)
    assert models.measured_training_state_bytes(model, optimizer) == pytest.approx(estimate.states, rel=0.005)
    assert estimate.activations == models.training_memory(base.config, parameters).activations


@pytest.mark.parametrize("builder", ["gpt2", "llama"])
def test_the_lora_estimate_counts_the_adapters_chapter_05_trains(course_tokenizer, builder):
    from helpers import finetune

    base = _tiny(builder, course_tokenizer)
    params = get_profile("tiny")
    targets = models.lora_target_modules(base.config.model_type)
    assert set(finetune.lora_config(base, params).target_modules) == set(targets)
    linear = {name.rsplit(".", 1)[-1] for name, module in base.named_modules()
              if type(module).__name__ in ("Linear", "Conv1D") and name != "lm_head"}
    assert linear == set(targets)  # every linear layer of attention and MLP, not PEFT's query/value default
    estimate = models.lora_parameter_count(base, params["lora_r"], targets)
    trained = finetune.apply_lora(base, params)
    assert models.count_parameters(trained, trainable_only=True) == estimate > 0


def test_lora_targets_cover_every_candidates_architecture(offline):
    for name in models.CANDIDATES:
        config, _ = models.load_candidate_config(name, offline=True)
        meta = models.meta_model(config)
        targets = models.lora_target_modules(config.model_type)
        layers = {n.rsplit(".", 1)[-1] for n, module in meta.named_modules()
                  if isinstance(module, torch.nn.Linear) and not n.endswith("lm_head")}
        assert layers <= set(targets), (name, layers - set(targets))
    with pytest.raises(ValueError, match="'opt'.*gpt2, llama, t5"):
        models.lora_target_modules("opt")


def test_big_models_do_not_fit_a_t4_for_full_fine_tuning(offline):
    small = models.describe_candidate("distilbert/distilgpt2")
    big = models.describe_candidate("HuggingFaceTB/SmolLM2-1.7B-Instruct")
    assert small.full.total < models.T4_USABLE_BYTES < big.full.total
    assert big.full.states == 16 * big.parameters  # 27 GB before a single activation


def test_tiny_llama_has_smollm2s_features(course_tokenizer):
    model = models.build_tiny_llama(course_tokenizer)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.config.vocab_size == len(course_tokenizer)
    assert model.config.eos_token_id == course_tokenizer.eos_token_id
    assert {"q_proj", "v_proj"} <= {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}


def test_tiny_gpt2_has_distilgpt2s_conventions(course_tokenizer):
    model = models.build_tiny_gpt2(course_tokenizer, get_profile("tiny")["tiny_model_config"])
    eos = course_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (eos, eos, None)
    assert model.config.vocab_size == len(course_tokenizer)
    assert model.lm_head.weight is model.transformer.wte.weight



def test_the_gpt2_loss_is_named_and_is_next_token_cross_entropy(course_tokenizer):
    model = models.build_tiny_gpt2(course_tokenizer, get_profile("tiny")["tiny_model_config"])
    assert model.loss_type == model.config.loss_type == "ForCausalLM"  # else transformers logs that it guessed
    ids = torch.tensor([course_tokenizer("Albedo is the fraction of light reflected.")["input_ids"]])
    with torch.no_grad(), mock.patch.object(transformers_logging.get_logger("transformers.modeling_utils"),
                                            "warning_once") as warned:
        output = model(ids, labels=ids)
    assert not warned.called
    expected = torch.nn.functional.cross_entropy(output.logits[0, :-1], ids[0, 1:])
    assert torch.allclose(output.loss, expected, atol=1e-6)

def test_pretraining_uses_only_training_articles(clean_articles, pair_splits):
    texts = models.pretraining_texts(clean_articles, pair_splits["train"])
    titles = {text.split("\n\n", 1)[0] for text in texts}
    assert titles == {pair["title"] for pair in pair_splits["train"]}
    held_out = {pair["title"] for split in ("validation", "test") for pair in pair_splits[split]}
    assert held_out and not titles & held_out


def test_pretraining_loss_falls_and_is_deterministic(course_tokenizer, clean_articles, pair_splits):
    texts = models.pretraining_texts(clean_articles, pair_splits["train"])
    config = {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 64}
    settings = {"steps": 40, "batch_size": 4, "block_size": 32, "learning_rate": 3e-3, "seed": 1}
    runs = [
        models.pretrain(models.build_tiny_gpt2(course_tokenizer, config, seed=1), course_tokenizer, texts, **settings)
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert len(runs[0]) == 40
    assert sum(runs[0][-5:]) / 5 < sum(runs[0][:5]) / 5 - 0.5


@pytest.fixture
def chapter_03_run(tmp_path, course_tokenizer, clean_articles, pair_splits):
    """A run folder holding what chapters 02 and 03 write, as chapter 04 reads it."""
    (tmp_path / "02_cleaning").mkdir()
    (tmp_path / "02_cleaning" / "articles.jsonl").write_text(
        "".join(json.dumps(a) + "\n" for a in clean_articles), encoding="utf-8")
    (tmp_path / "03_pairs").mkdir()
    (tmp_path / "03_pairs" / "train.jsonl").write_text(
        "".join(json.dumps(p) + "\n" for p in pair_splits["train"]), encoding="utf-8")
    course_tokenizer.save_pretrained(tmp_path / "03_pairs" / "tokenizer")
    return tmp_path


def test_stand_in_is_built_saved_and_loaded_like_a_hub_model(chapter_03_run):
    params = get_profile("tiny") | {"pretrain_steps": 12, "pretrain_batch_size": 4, "pretrain_block_size": 32}
    report = models.prepare_base_model(params, chapter_03_run)
    folder = chapter_03_run / "04_model" / "base"
    assert report.name_or_path == models.base_model_path_or_name(params, chapter_03_run) == str(folder)
    assert len(report.losses) == 12 and report.metrics()["pretrain_steps"] == 12
    assert not list(folder.parent.glob(".base.*")), "temporary folders left behind"

    model = models.load_base_model(params, chapter_03_run)
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert isinstance(model, GPT2LMHeadModel) and models.count_parameters(model) == report.parameters
    assert tokenizer.pad_token is None and model.config.pad_token_id is None
    assert model.generation_config.pad_token_id == model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert "stand-in" in (folder / "README.md").read_text()
    assert json.loads((folder / "pretraining.json").read_text())["losses"] == pytest.approx(report.losses)
    samples = models.greedy_samples(model, tokenizer, ["Albedo is"], max_new_tokens=5)
    assert len(tokenizer(samples[0]["continuation"])["input_ids"]) >= 1

    # Built again, the folder is replaced whole.
    models.prepare_base_model(params | {"pretrain_steps": 3}, chapter_03_run)
    assert len(json.loads((folder / "pretraining.json").read_text())["losses"]) == 3


def test_loading_the_stand_in_before_chapter_04_names_chapter_04(tmp_path):
    with pytest.raises(FileNotFoundError, match="04_model"):
        models.load_base_model(get_profile("tiny"), tmp_path)


def test_a_hub_base_model_offline_fails_saying_what_to_do(offline, tmp_path):
    params = get_profile("colab")
    assert models.base_model_path_or_name(params, tmp_path) == "distilbert/distilgpt2"
    with pytest.raises(models.ModelUnavailableError, match="tiny profile"):
        models.load_base_model(params, tmp_path)

