"""Chapter 05's helpers on the real tiny corpus: tokenizing, batching, training, resuming, generating.

Models are tiny random GPT-2s and Llamas built with the tokenizer of the course (``course_tokenizer``),
so every test runs on CPU in seconds; the end-to-end runs use a subset of the real pairs.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerCallback

from helpers import finetune as ft
from helpers import models, pairs
from helpers.profiles import REPO_ROOT, get_profile
from helpers.prompt import format_prompt, format_training_text

SMALL_GPT2 = {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 512}


def _params(**overrides):
    """The tiny profile, made smaller and faster: a few steps, an evaluation and a checkpoint every 2."""
    params = get_profile("tiny") | {
        "tiny_model_config": SMALL_GPT2,
        "finetune_epochs": 2,
        "finetune_batch_size": 8,
        "finetune_eval_steps": 2,
        "finetune_logging_steps": 1,
        "finetune_learning_rate": 3e-3,
        "finetune_early_stopping_patience": 100,  # the resume test compares step counts: never stop early
    }
    return params | overrides


def _make_run(run_dir: Path, pair_splits, tokenizer, *, train=48, validation=12, base=None) -> Path:
    """A run folder as chapters 03 and 04 leave it: a subset of the real pairs, the tokenizer, a base model."""
    subset = {"train": pair_splits["train"][:train], "validation": pair_splits["validation"][:validation],
              "test": pair_splits["test"][:4]}
    pairs.save_pairs(subset, run_dir / "03_pairs")
    tokenizer.save_pretrained(run_dir / "03_pairs" / "tokenizer")
    model = base if base is not None else models.build_tiny_gpt2(tokenizer, SMALL_GPT2)
    model.save_pretrained(run_dir / "04_model" / "base")
    tokenizer.save_pretrained(run_dir / "04_model" / "base")
    return run_dir


@pytest.fixture(scope="module")
def gpt2(course_tokenizer):
    return models.build_tiny_gpt2(course_tokenizer, SMALL_GPT2).eval()


@pytest.fixture(scope="module")
def llama(course_tokenizer):
    return models.build_tiny_llama(course_tokenizer, hidden_size=32, intermediate_size=64).eval()


@pytest.fixture(scope="module")
def train_data(course_tokenizer, pair_splits):
    return ft.tokenize_pairs(pair_splits["train"], course_tokenizer, max_length=512)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, pair_splits, course_tokenizer):
    """One uninterrupted full fine-tuning run, shared by the end-to-end and the resume tests."""
    run_dir = _make_run(tmp_path_factory.mktemp("run_full"), pair_splits, course_tokenizer)
    return ft.finetune(_params(), run_dir)


# --- tokenizing ----------------------------------------------------------------------------------


def test_prompt_is_labelled_ignore_and_the_response_is_exact(course_tokenizer, pair_splits):
    tok = course_tokenizer
    for pair in pair_splits["train"] + pair_splits["validation"]:
        example = ft.tokenize_pair(tok, pair["instruction"], pair["response"], max_length=512)
        ids, labels = example["input_ids"], example["labels"]
        prompt_ids = ft.encode_prompt(tok, pair["instruction"])
        # The ids are the template's text, byte for byte, and the prompt is exactly what generate() feeds.
        assert tok.decode(ids) == format_training_text(pair["instruction"], pair["response"], tok.eos_token)
        assert ids[: len(prompt_ids)] == prompt_ids
        assert labels[: len(prompt_ids)] == [ft.IGNORE_INDEX] * len(prompt_ids)
        response_ids = labels[len(prompt_ids):]
        assert response_ids == ids[len(prompt_ids):] and ft.IGNORE_INDEX not in response_ids
        assert tok.decode(response_ids) == pair["response"].strip() + tok.eos_token
        assert response_ids[-1] == tok.eos_token_id and example["length"] == len(ids)


def test_a_pair_longer_than_the_context_names_itself_or_is_cut_on_request(course_tokenizer, pair_splits):
    pair = max(pair_splits["train"], key=lambda p: len(p["response"]))
    with pytest.raises(ft.FinetuneError) as error:
        ft.tokenize_pairs([pair], course_tokenizer, max_length=40, split="train")
    message = str(error.value)
    assert pair["title"] in message and pair["instruction"] in message
    assert "finetune_max_length" in message and "chapter 03" in message
    cut = ft.tokenize_pairs([pair], course_tokenizer, max_length=40, truncate=True)[0]
    prompt_len = len(ft.encode_prompt(course_tokenizer, pair["instruction"]))
    assert cut["length"] == len(cut["input_ids"]) == 40
    assert cut["labels"][:prompt_len] == [ft.IGNORE_INDEX] * prompt_len and ft.IGNORE_INDEX not in cut["labels"][prompt_len:]


def test_an_empty_split_is_refused_naming_the_split(course_tokenizer):
    with pytest.raises(ft.FinetuneError, match="validation split has no pairs"):
        ft.tokenize_pairs([], course_tokenizer, max_length=512, split="validation")


def test_context_length_is_capped_by_the_model_positions(course_tokenizer):
    model = models.build_tiny_gpt2(course_tokenizer, SMALL_GPT2 | {"n_positions": 64})
    assert ft.context_length(model, 512) == 64 and ft.context_length(model, 32) == 32


# --- batching: no attention across examples ------------------------------------------------------


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("with_mask", [True, False], ids=["mask", "no-mask"])
@pytest.mark.parametrize("lengths", [None, (64, 128, 256, 512)], ids=["longest", "buckets"])
def test_each_example_in_a_padded_batch_has_its_loss_run_alone(arch, attn, with_mask, lengths, request, train_data,
                                                               course_tokenizer):
    # CourseTrainer trains without the attention mask (the flash kernel's path on a GPU): right padding
    # and causal attention must keep every example's loss exactly its loss alone, with or without it,
    # padded to the longest example or further, to the next of a few fixed lengths (static shapes).
    model = request.getfixturevalue(arch)
    model.config._attn_implementation = attn
    collator = ft.RightPaddingCollator(ft.pad_token_id(course_tokenizer), pad_to_lengths=lengths)

    def collate(examples):
        batch = collator(examples)
        return batch if with_mask else {k: v for k, v in batch.items() if k != "attention_mask"}

    by_length = sorted(range(len(train_data)), key=lambda i: train_data[i]["length"])
    picked = [train_data[i] for i in by_length[:: max(1, len(by_length) // 6)][:6]]  # short to long
    pads = collator(picked)["attention_mask"] == 0
    assert pads.any(), "the batch must hold padding for this test to mean anything"
    if lengths:  # padded to a fixed length, beyond the longest example
        assert collator(picked)["input_ids"].shape[1] in lengths and pads.all(dim=0).any()
    batch = collate(picked)
    assert (batch["labels"][pads] == ft.IGNORE_INDEX).all()
    in_batch = ft.example_losses(model, batch)
    alone = torch.cat([ft.example_losses(model, collate([example])) for example in picked])
    torch.testing.assert_close(in_batch, alone, atol=1e-5, rtol=0)


def test_the_trainer_batches_examples_of_similar_length(tmp_path, train_data, course_tokenizer, gpt2):
    # group_by_length: far less padding than the same batches drawn at random.
    from transformers import Trainer

    collator = ft.RightPaddingCollator(ft.pad_token_id(course_tokenizer))
    args = ft.training_arguments(_params(finetune_batch_size=16), tmp_path, learning_rate=1e-3, precision="fp32")
    trainer = Trainer(model=gpt2, args=args, train_dataset=train_data, eval_dataset=train_data, data_collator=collator)

    def padding(batches):
        masks = [batch["attention_mask"] for batch in batches]
        return sum(int((m == 0).sum()) for m in masks) / sum(m.numel() for m in masks)

    grouped = padding(trainer.get_train_dataloader())
    generator = torch.Generator().manual_seed(0)
    shuffled = torch.randperm(len(train_data), generator=generator).tolist()
    random = padding(collator([train_data[i] for i in shuffled[s:s + 16]]) for s in range(0, len(shuffled), 16))
    assert grouped < random / 2, (grouped, random)


# --- precision, LoRA, checkpoints ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "capability", "bf16_reported", "expected"),
    [("H200", (9, 0), True, "bf16"), ("A100", (8, 0), True, "bf16"), ("T4", (7, 5), True, "fp16"),
     ("V100", (7, 0), False, "fp16"), ("CPU", None, False, "fp32")],
)
def test_precision_follows_the_hardware(monkeypatch, machine, capability, bf16_reported, expected):
    # A T4 reports bf16 as "supported" through emulation: the compute capability must decide.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: capability is not None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_reported)
    assert ft.choose_precision() == expected
    assert ft.choose_precision("cpu") == "fp32"


def test_lora_targets_every_linear_layer_of_each_architecture(gpt2, llama):
    params = _params()
    config = ft.lora_config(gpt2, params)
    assert set(config.target_modules) == {"c_attn", "c_proj", "c_fc"} and config.fan_in_fan_out
    config = ft.lora_config(llama, params)
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not config.fan_in_fan_out
    table = ft.trainable_parameter_table(llama, params)
    assert table.loc["lora", "trainable"] < table.loc["full", "trainable"] == table.loc["full", "total"]
    assert ft.count_trainable(llama)[0] == table.loc["full", "total"]  # the table left the model unwrapped


def test_lora_refuses_an_unknown_architecture_listing_the_known(course_tokenizer):
    from transformers import OPTConfig, OPTForCausalLM

    opt = OPTForCausalLM(OPTConfig(vocab_size=len(course_tokenizer), hidden_size=16, num_hidden_layers=1,
                                   ffn_dim=32, num_attention_heads=2, word_embed_proj_dim=16))
    with pytest.raises(ft.FinetuneError, match="'opt'.*gpt2, llama"):
        ft.lora_config(opt, _params())


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_merging_lora_gives_a_plain_model_with_the_same_outputs(arch, course_tokenizer, tmp_path, train_data):
    base = (models.build_tiny_gpt2(course_tokenizer, SMALL_GPT2) if arch == "gpt2"
            else models.build_tiny_llama(course_tokenizer, hidden_size=32, intermediate_size=64))
    wrapped = ft.apply_lora(base, _params())
    torch.manual_seed(0)
    for name, parameter in wrapped.named_parameters():
        if "lora_B" in name:  # B starts at zero (LoRA is the identity): make the adapters matter
            torch.nn.init.normal_(parameter, std=0.05)
    batch = ft.RightPaddingCollator(course_tokenizer.eos_token_id)([train_data[0], train_data[1]])
    wrapped.eval()
    with torch.no_grad():
        expected = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    merged = ft.merge_lora(wrapped)
    assert type(merged).__module__.startswith("transformers.")
    assert not any("lora" in name for name, _ in merged.named_parameters())
    with torch.no_grad():
        got = merged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    merged.save_pretrained(tmp_path)
    assert not (tmp_path / "adapter_config.json").exists() and (tmp_path / "config.json").exists()


def test_the_checked_merge_reports_the_difference_and_refuses_a_wrong_merge(course_tokenizer, train_data, monkeypatch):
    def adapted():
        wrapped = ft.apply_lora(models.build_tiny_llama(course_tokenizer, hidden_size=32, intermediate_size=64), _params())
        torch.manual_seed(0)
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.05)
        return wrapped

    batch = ft.RightPaddingCollator(course_tokenizer.eos_token_id)([train_data[0], train_data[1]])
    merged, difference = ft.merge_lora_checked(adapted(), batch)
    assert 0 <= difference <= ft.MERGE_TOLERANCE and type(merged).__name__ == "LlamaForCausalLM"
    # A merge that drops the adapters instead of folding them in (PEFT's unload()).
    monkeypatch.setattr(ft, "merge_lora", lambda model: model.unload())
    with pytest.raises(ft.FinetuneError, match="changed the logits"):
        ft.merge_lora_checked(adapted(), batch)


def test_checkpoints_live_in_the_run_folder_unless_a_folder_is_given(tmp_path):
    run_dir = tmp_path / "MyDrive" / "corpus-to-client" / "runs" / "colab"
    for profile in ("tiny", "colab", "full"):  # on Colab the run folder is on Drive: so are the checkpoints
        assert ft.checkpoint_dir_for(get_profile(profile), run_dir) == run_dir / "05_finetune" / "checkpoints"
    assert ft.checkpoint_dir_for(_params(checkpoint_dir=str(tmp_path / "x")), run_dir) == tmp_path / "x"


def test_last_checkpoint_skips_one_cut_short(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert ft.last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert ft.last_checkpoint(tmp_path / "none") is None


def test_resuming_continues_from_the_last_checkpoint_and_a_fresh_run_removes_them(tmp_path):
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"num_input_tokens_seen": 10 * step}))
    (tmp_path / "unrelated").mkdir()
    resumed = ft.resume_checkpoint(tmp_path, resume=True)
    assert resumed == tmp_path / "checkpoint-4" and ft.tokens_seen(resumed) == 40
    assert ft.resume_checkpoint(tmp_path, resume=False) is None and ft.tokens_seen(None) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["unrelated"]
    assert ft.resume_checkpoint(tmp_path / "never-made", resume=True) is None


def test_evaluations_score_a_fixed_sample_of_the_validation_pairs(train_data):
    sample = ft.evaluation_sample(train_data, _params(finetune_eval_pairs=16))
    assert len(sample) == 16 and sample["input_ids"] == ft.evaluation_sample(train_data, _params(finetune_eval_pairs=16))["input_ids"]
    assert sample["input_ids"] != train_data.select(range(16))["input_ids"]  # shuffled, not the first ones
    assert ft.evaluation_sample(train_data, _params(finetune_eval_pairs=None)) is train_data


# --- the plain PyTorch loop ------------------------------------------------------------------------


def test_train_loop_lowers_the_loss_on_real_pairs(course_tokenizer, train_data):
    model = models.build_tiny_gpt2(course_tokenizer, SMALL_GPT2)
    data = train_data.select(range(32))
    collator = ft.RightPaddingCollator(course_tokenizer.eos_token_id)
    before = ft.evaluate_loss(model, data, collator)["loss"]
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, collate_fn=collator,
                                         generator=torch.Generator().manual_seed(0))
    history = ft.train_loop(model, loader, epochs=5, lr=3e-3, grad_accumulation=2)
    after = ft.evaluate_loss(model, data, collator)["loss"]
    assert len(history) == 5 * 4 and after < before - 0.5, (before, after)
    assert max(entry["lr"] for entry in history) <= 3e-3 and history[-1]["lr"] < history[1]["lr"]


def test_gradient_accumulation_matches_one_big_batch(course_tokenizer, train_data):
    model = models.build_tiny_gpt2(course_tokenizer, SMALL_GPT2).eval()  # eval: no dropout noise
    collator = ft.RightPaddingCollator(course_tokenizer.eos_token_id)
    examples = [train_data[i] for i in range(0, 40, 5)]  # 8 pairs of different lengths

    def gradients(micro_batches):
        model.zero_grad()
        loss, _ = ft.backward_accumulated(model, micro_batches)
        return loss, {name: p.grad.clone() for name, p in model.named_parameters()}

    big_loss, big = gradients([collator(examples)])
    acc_loss, acc = gradients([collator(examples[:4]), collator(examples[4:])])
    assert acc_loss == pytest.approx(big_loss, rel=1e-5)
    for name in big:
        torch.testing.assert_close(acc[name], big[name], atol=1e-6, rtol=1e-4)


# --- generating -----------------------------------------------------------------------------------


def test_generate_answers_without_the_prompt_for_each_preset(gpt2, course_tokenizer):
    factual = ft.generate(gpt2, course_tokenizer, "Explain Albedo.", max_new_tokens=12)
    assert isinstance(factual, str) and "### Instruction" not in factual and "### Response" not in factual
    assert factual == ft.generate(gpt2, course_tokenizer, "Explain Albedo.", max_new_tokens=12)  # deterministic
    first = ft.generate(gpt2, course_tokenizer, "Explain Albedo.", "creative", seed=1, max_new_tokens=12)
    assert first == ft.generate(gpt2, course_tokenizer, "Explain Albedo.", "creative", seed=1, max_new_tokens=12)
    # A model saved with beam search in its generation config: "creative" must still not use beams.
    saved_like = copy.deepcopy(gpt2)
    saved_like.generation_config = ft.generation_config(course_tokenizer, "factual", num_beams=4)
    assert ft.generate(saved_like, course_tokenizer, "Explain Albedo.", "creative", seed=1, max_new_tokens=12) == first
    config = ft.generation_config(course_tokenizer, "creative", temperature=0.5)
    assert config.do_sample and config.temperature == 0.5 and config.top_p == 0.9 and config.top_k == 0
    assert config.pad_token_id == config.eos_token_id == course_tokenizer.eos_token_id
    with pytest.raises(ValueError, match="factual, creative"):
        ft.generate(gpt2, course_tokenizer, "Explain Albedo.", "wild")


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_batched_generation_gives_each_prompt_its_answer_alone(arch, course_tokenizer, pair_splits):
    # Left padding of prompts of different lengths: every answer must be the one its prompt gets alone.
    model = (models.build_tiny_gpt2(course_tokenizer, SMALL_GPT2) if arch == "gpt2"
             else models.build_tiny_llama(course_tokenizer, hidden_size=32, intermediate_size=64)).eval()
    instructions = [pair["instruction"] for pair in pair_splits["validation"][:5]]
    assert len({len(ft.encode_prompt(course_tokenizer, text)) for text in instructions}) > 1
    batched = ft.generate_batch(model, course_tokenizer, instructions, batch_size=3, max_new_tokens=10)
    assert batched == [ft.generate(model, course_tokenizer, text, max_new_tokens=10) for text in instructions]


def test_generate_stops_at_the_next_instruction(course_tokenizer):
    # A model that always writes "### Instruction:" after a word: the answer is cut before it.
    script = course_tokenizer(" Albedo is light.\n\n### Instruction:\nMore")["input_ids"]
    model = models.build_tiny_gpt2(course_tokenizer, SMALL_GPT2).eval()
    prompt_len = len(ft.encode_prompt(course_tokenizer, "Explain Albedo."))

    def forced(input_ids, scores):  # force the script, token by token
        position = input_ids.shape[1] - prompt_len
        forced_scores = torch.full_like(scores, -1e9)
        forced_scores[:, script[position] if position < len(script) else course_tokenizer.eos_token_id] = 0
        return forced_scores

    from transformers import LogitsProcessorList

    # The script repeats the prompt's "### Instruction:": no n-gram rule may stand in its way.
    config = ft.generation_config(course_tokenizer, "factual", num_beams=1, no_repeat_ngram_size=0,
                                  max_new_tokens=len(script) + 2)
    ids = torch.tensor([ft.encode_prompt(course_tokenizer, "Explain Albedo.")])
    output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                            tokenizer=course_tokenizer, logits_processor=LogitsProcessorList([forced]))
    text = course_tokenizer.decode(output[0, ids.shape[1]:])
    assert text.startswith(" Albedo is light.") and len(output[0]) - ids.shape[1] < len(script)  # stop_strings
    from helpers.prompt import split_prompt_response

    assert split_prompt_response(format_prompt("Explain Albedo.") + text)[1] == "Albedo is light."


# --- finetune(): the chapter's entry point ---------------------------------------------------------


def test_finetune_trains_saves_a_plain_model_and_reports(full_run):
    metrics = full_run.metrics
    assert metrics["val_loss_after"] < metrics["val_loss_before"]
    assert metrics["val_perplexity_after"] == pytest.approx(math.exp(metrics["val_loss_after"]), rel=1e-3)
    assert metrics["trainable_parameters"] == metrics["total_parameters"] > 0
    assert metrics["precision"] == ft.choose_precision()  # fp32 on a CPU; bf16 or fp16 on a GPU
    assert metrics["global_step"] == 2 * math.ceil(48 / 8)
    assert metrics["tokens_trained"] > 0 and metrics["tokens_per_second"] > 0 and metrics["best_step"] > 0
    evals = [entry for entry in full_run.log_history if "eval_loss" in entry]
    assert len(evals) == metrics["global_step"] // 2
    assert all(entry["eval_perplexity"] == pytest.approx(math.exp(entry["eval_loss"])) for entry in evals)
    assert metrics["best_step"] == min(evals, key=lambda e: e["eval_loss"])["step"]
    # Real tokens only: the padding the batches carried is not counted.
    assert metrics["tokens_trained"] == 2 * sum(_lengths(full_run))
    folder = full_run.model_dir
    assert folder.name == "model" and folder.parent.name == "05_finetune"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", "prompt_template.json"):
        assert (folder / name).exists(), name
    assert not (folder / "adapter_config.json").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation.get("num_beams", 1) == ft.PRESETS["factual"]["num_beams"]  # 1 is the default, left out
    assert generation["no_repeat_ngram_size"] == ft.PRESETS["factual"]["no_repeat_ngram_size"] == 4
    # The saved weights are the best model: their validation loss is the one reported.
    collator = ft.RightPaddingCollator(full_run.tokenizer.eos_token_id)
    splits = pairs.load_pairs(folder.parent.parent / "03_pairs")
    val = ft.tokenize_pairs(splits["validation"], full_run.tokenizer, max_length=512)
    assert ft.evaluate_loss(reloaded, val, collator)["loss"] == pytest.approx(metrics["val_loss_after"], abs=1e-3)


def _lengths(result):
    splits = pairs.load_pairs(result.model_dir.parent.parent / "03_pairs")
    return ft.tokenize_pairs(splits["train"], result.tokenizer, max_length=512)["length"]


def test_early_stopping_keeps_the_best_model(tmp_path, pair_splits, course_tokenizer):
    # Eight training pairs, thirty epochs, a high learning rate: the validation loss soon rises. With a
    # patience of 2, training stops two evaluations after the best one and keeps the best one's weights.
    run_dir = _make_run(tmp_path, pair_splits, course_tokenizer, train=8, validation=8)
    params = _params(finetune_learning_rate=3e-2, finetune_epochs=30, finetune_warmup_ratio=0.0,
                     finetune_early_stopping_patience=2)
    result = ft.finetune(params, run_dir)
    evals = [(entry["step"], entry["eval_loss"]) for entry in result.log_history if "eval_loss" in entry]
    best_step, best_loss = min(evals, key=lambda point: point[1])
    assert result.metrics["global_step"] < 30, evals  # it stopped early (30 steps otherwise)
    assert evals[-1][0] == best_step + 2 * 2 and result.metrics["best_step"] == best_step
    assert result.metrics["val_loss_after"] == pytest.approx(best_loss, abs=1e-2)  # the best weights, not the last
    assert result.metrics["val_loss_after"] < evals[-1][1]


def test_finetune_lora_on_a_llama_saves_the_merged_model(tmp_path, pair_splits, course_tokenizer):
    llama = models.build_tiny_llama(course_tokenizer, hidden_size=32, intermediate_size=64)
    run_dir = _make_run(tmp_path, pair_splits, course_tokenizer, train=24, validation=8, base=llama)
    params = _params(model_name=str(run_dir / "04_model" / "base"), finetune_epochs=1, lora_r=4, lora_alpha=8)
    result = ft.finetune(params, run_dir, method="lora")
    metrics = result.metrics
    assert metrics["method"] == "lora" and metrics["trainable_parameters"] < metrics["total_parameters"] / 5
    assert 0 <= metrics["merge_max_logit_diff"] <= ft.MERGE_TOLERANCE
    assert metrics["val_loss_after"] < metrics["val_loss_before"]
    assert not (result.model_dir / "adapter_config.json").exists()
    reloaded = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert type(reloaded).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in reloaded.parameters()) == sum(p.numel() for p in llama.parameters())


def _replace_dataset(run_dir: Path, dataset) -> None:
    saved = run_dir / "saving"
    dataset.save_to_disk(str(saved))
    shutil.rmtree(run_dir / "03_pairs" / "dataset")
    os.replace(saved, run_dir / "03_pairs" / "dataset")


@pytest.mark.parametrize("split", ["train", "validation"])
def test_finetune_refuses_an_empty_or_missing_split(tmp_path, pair_splits, course_tokenizer, split):
    run_dir = _make_run(tmp_path, pair_splits, course_tokenizer, train=8, validation=4)
    dataset = pairs.load_pairs(run_dir / "03_pairs")
    emptied = type(dataset)(dataset)  # a DatasetDict of the same splits
    del dataset[split]
    _replace_dataset(run_dir, dataset)
    with pytest.raises(ft.FinetuneError, match=f"the {split} split has no pairs.*chapter 03"):
        ft.finetune(_params(), run_dir)
    # A split with no rows saves, but datasets cannot read it back: the error still says what to do.
    emptied[split] = emptied[split].select([])
    _replace_dataset(run_dir, emptied)
    with pytest.raises(ft.FinetuneError, match="chapter 03's dataset.*every split has pairs"):
        ft.finetune(_params(), run_dir)


def test_finetune_refuses_a_pair_longer_than_the_context(tmp_path, pair_splits, course_tokenizer):
    run_dir = _make_run(tmp_path, pair_splits, course_tokenizer, train=8, validation=4)
    with pytest.raises(ft.FinetuneError, match=r"train pair \d+ \(article .*finetune_max_length"):
        ft.finetune(_params(finetune_max_length=48), run_dir)


def test_finetune_names_an_unknown_model_offline(tmp_path, pair_splits, course_tokenizer, monkeypatch):
    import huggingface_hub.constants

    # Offline mode fails at once instead of retrying a Hub that is unreachable (the variable is read when
    # huggingface_hub is imported, hence the constant too).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    run_dir = _make_run(tmp_path, pair_splits, course_tokenizer, train=8, validation=4)
    with pytest.raises(OSError, match="no-such-org/no-such-model.*tiny profile"):
        ft.finetune(_params(model_name="no-such-org/no-such-model"), run_dir)


# --- resuming after the process is killed ----------------------------------------------------------

KILLED_RUN = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from transformers import TrainerCallback
    from helpers import finetune

    run_dir, params = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())

    class HangAfterCheckpoint(TrainerCallback):
        # Train one step past the first checkpoint, then hang: the kill then costs that step.
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                (run_dir / "hanging").write_text("3")
                time.sleep(600)

    finetune.finetune(params, run_dir, callbacks=[HangAfterCheckpoint()])
    """
)


class _ResumeProbe(TrainerCallback):
    """Records, when training begins, the step and the optimizer and scheduler state it begins from."""

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        exp_avg = [s["exp_avg"] for s in optimizer.state.values() if "exp_avg" in s]
        self.begin = {
            "step": state.global_step,
            "adam_state_norm": float(sum(t.abs().sum() for t in exp_avg)) if exp_avg else 0.0,
            "scheduler_steps": lr_scheduler.last_epoch,
        }


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, pair_splits, course_tokenizer, full_run):
    run_dir = _make_run(tmp_path, pair_splits, course_tokenizer)
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(_params()))
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    checkpoint = run_dir / "05_finetune" / "checkpoints" / "full" / "checkpoint-2"
    log = open(tmp_path / "killed_run.log", "wb")  # a file, not a pipe: a full pipe would block the run
    process = subprocess.Popen([sys.executable, str(script), str(run_dir), str(params_file)], cwd=REPO_ROOT,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300  # a generous bound on start-up, not a timing assertion
        while not ((checkpoint / "trainer_state.json").exists() and (run_dir / "hanging").exists()):
            assert process.poll() is None, f"the run died by itself: {(tmp_path / 'killed_run.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert not (run_dir / "05_finetune" / "model").exists()  # killed before the end: no model, no half model

    probe = _ResumeProbe()
    resumed = ft.finetune(_params(), run_dir, resume=True, callbacks=[probe])
    assert resumed.metrics["resumed_from"] == "checkpoint-2"
    # It began at step 2 with Adam's moments and the schedule restored, not from a fresh optimizer.
    assert probe.begin["step"] == 2 and probe.begin["scheduler_steps"] == 2 and probe.begin["adam_state_norm"] > 0
    assert resumed.metrics["global_step"] == full_run.metrics["global_step"]

    def by_step(history, key):
        return {entry["step"]: entry[key] for entry in history if key in entry}

    # The same learning rate at every step as the uninterrupted run (the history up to step 2 comes from
    # the checkpoint), and, with the same data order and RNG state, the same final evaluation.
    lr_full, lr_resumed = by_step(full_run.log_history, "learning_rate"), by_step(resumed.log_history, "learning_rate")
    assert sorted(lr_resumed) == sorted(lr_full) and all(lr_resumed[s] == pytest.approx(lr_full[s]) for s in lr_full)
    eval_full, eval_resumed = by_step(full_run.log_history, "eval_loss"), by_step(resumed.log_history, "eval_loss")
    assert eval_resumed[max(eval_resumed)] == pytest.approx(eval_full[max(eval_full)], rel=1e-4)


def test_fixed_lengths_pad_to_the_first_that_holds_the_batch(train_data, course_tokenizer):
    collator = ft.RightPaddingCollator(ft.pad_token_id(course_tokenizer), pad_to_lengths=(64, 128))
    by_length = sorted(train_data, key=lambda example: example["length"])
    short = [example for example in by_length if example["length"] <= 64][-2:]
    middle = [example for example in by_length if 64 < example["length"] <= 128][-2:]
    long = [example for example in by_length if example["length"] > 128][:2]
    assert short and middle and long
    assert collator(short)["input_ids"].shape[1] == 64 and collator(middle)["input_ids"].shape[1] == 128
    assert collator(long)["input_ids"].shape[1] == max(example["length"] for example in long)  # beyond the last


def test_data_parallel_training_on_two_processes_matches_one(tmp_path, train_data, course_tokenizer):
    # The same global batch (16 examples: the whole dataset at every step) on one process, and split
    # 8 + 8 over two processes under torchrun (gloo on CPUs, NCCL on GPUs): the Trainer averages the
    # loss over the tokens of all processes, so the losses, the weights and the token count must match.
    model = models.build_tiny_gpt2(course_tokenizer, SMALL_GPT2 | {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0})
    model.save_pretrained(tmp_path / "model")
    course_tokenizer.save_pretrained(tmp_path / "tokenizer")
    data = train_data.select(range(16))
    data.save_to_disk(str(tmp_path / "data"))
    script = REPO_ROOT / "tests" / "ddp_train.py"
    env = os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    runs = {
        "one": [sys.executable, str(script), str(tmp_path), "16", str(tmp_path / "one.json")],
        "two": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                str(script), str(tmp_path), "8", str(tmp_path / "two.json")],
    }
    for name, command in runs.items():
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
    one, two = (json.loads((tmp_path / f"{name}.json").read_text()) for name in runs)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert len(one["losses"]) == len(two["losses"]) == 4 and one["losses"][-1] < one["losses"][0]  # it trained
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-4)
    assert two["tokens"] == one["tokens"] == 4 * sum(data["length"])  # every process's tokens, every step
    assert two["weights"] == pytest.approx(one["weights"], rel=1e-4, abs=1e-6)


def test_the_script_trains_on_two_processes_and_the_first_saves(tmp_path, pair_splits, course_tokenizer):
    # What a learner with two GPUs launches (chapter 05): torchrun and the course's own script, here on
    # two CPU processes. Without dropout: on CPUs dropout draws from the same random generator as the
    # length-grouped sampler, so processes with different batches would shuffle the next epoch
    # differently (on GPUs dropout has its own generator).
    base = models.build_tiny_gpt2(course_tokenizer, SMALL_GPT2 | {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0})
    run_dir = _make_run(tmp_path / "run", pair_splits, course_tokenizer, base=base)
    settings = {key: value for key, value in _params().items() if key.startswith("finetune_")} | {"finetune_batch_size": 4}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "helpers.finetune", "--profile", "tiny", "--run-dir", str(run_dir),
               *[f"--set={key}={json.dumps(value)}" for key, value in settings.items()]]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=900,
                          env=os.environ | {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("saved ") == 1  # the first process only
    metrics = json.loads((run_dir / "05_finetune" / "model" / "finetune_metrics.json").read_text())
    train = ft.tokenize_pairs(pair_splits["train"][:48], course_tokenizer, max_length=512)
    assert metrics["tokens_trained"] == 2 * sum(train["length"])  # two epochs: every example of both processes, once
    assert metrics["global_step"] == 2 * 48 // 8  # 2 processes x 4 examples a step
    assert metrics["val_loss_after"] < metrics["val_loss_before"]


def test_course_trainer_counts_every_real_token_and_trains_without_the_mask(tmp_path, train_data, course_tokenizer, gpt2):
    gpt2 = copy.deepcopy(gpt2)  # trained here: the shared fixture stays as it was
    seen_masks = []
    original_forward = gpt2.forward

    def forward(*args, **kwargs):
        seen_masks.append(kwargs.get("attention_mask"))
        return original_forward(*args, **kwargs)

    gpt2.forward = forward
    params = _params(finetune_batch_size=16, finetune_epochs=1)
    args = ft.training_arguments(params, tmp_path, learning_rate=1e-4, precision="fp32",
                                 eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    collator = ft.RightPaddingCollator(ft.pad_token_id(course_tokenizer))
    trainer = ft.CourseTrainer(model=gpt2, args=args, train_dataset=train_data, data_collator=collator)
    trainer.train()
    gpt2.forward = original_forward
    assert trainer.state.num_input_tokens_seen == sum(train_data["length"])
    assert seen_masks and all(mask is None for mask in seen_masks)


def test_checkpoints_saved_within_a_second_rotate_by_step_without_a_warning(tmp_path, train_data, course_tokenizer, gpt2,
                                                                          recwarn, monkeypatch):
    """A small model on a GPU saves several checkpoints a second; the Trainer then warns about file times."""
    params = _params(finetune_batch_size=16, finetune_epochs=1, finetune_save_total_limit=1)
    args = ft.training_arguments(params, tmp_path, learning_rate=1e-4, precision="fp32", max_steps=4,
                                 eval_strategy="no", save_strategy="steps", save_steps=1, load_best_model_at_end=False)
    collator = ft.RightPaddingCollator(ft.pad_token_id(course_tokenizer))
    trainer = ft.CourseTrainer(model=copy.deepcopy(gpt2), args=args, train_dataset=train_data, data_collator=collator)
    monkeypatch.setattr(os.path, "getmtime", lambda path: 1_700_000_000.0)  # every save in the same second
    trainer.train()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-4"]  # the newest kept, by step
    assert not [w for w in recwarn if "mtime" in str(w.message)], [str(w.message) for w in recwarn]
