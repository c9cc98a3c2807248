"""Chapter 00's helpers: attention against PyTorch's, positional encodings, the primer's model and tables."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import hub, primer
from helpers.profiles import get_profile


@pytest.mark.parametrize("is_causal", [False, True])
def test_attention_matches_pytorch(is_causal):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 16) for _ in range(3))
    ours, weights = primer.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 7))
    if is_causal:
        assert weights[..., 0, 1:].abs().max() == 0  # the first token sees only itself


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_attention_with_a_padding_mask_matches_pytorch(kind):
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)[:, None, None, :]
    mask = keep if kind == "bool" else torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    ours, weights = primer.scaled_dot_product_attention(q, k, v, mask)
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert weights[1, :, :, 3:].abs().max() == 0  # the padded keys get no attention


def test_sinusoidal_positions_known_properties():
    encoding = primer.sinusoidal_positions(64, 32)
    assert encoding.shape == (64, 32)
    assert np.allclose(encoding[0, 0::2], 0) and np.allclose(encoding[0, 1::2], 1)  # sin 0, cos 0
    assert encoding.min() >= -1 and encoding.max() <= 1
    assert np.isclose(encoding[1, 0], np.sin(1.0))
    # The dot product of two positions depends on their offset only, not where they are.
    dots = [encoding[p] @ encoding[p + 5] for p in (0, 10, 40)]
    assert np.allclose(dots, dots[0])
    assert not np.isclose(encoding[0] @ encoding[5], encoding[0] @ encoding[9])
    with pytest.raises(ValueError):
        primer.sinusoidal_positions(4, 7)


def test_fresh_run_builds_an_honestly_labelled_model(tmp_path):
    from transformers import GenerationConfig, pipeline

    built = primer.primer_model(get_profile("tiny"), tmp_path)
    assert not built.trained and primer.UNTRAINED_NOTE in built.describe() and "untrained" in built.label
    folder = tmp_path / "00_primer" / "model"
    assert built.model_folder == built.tokenizer_folder == folder
    assert (folder / "tokenizer.json").exists() and (folder / "config.json").exists()
    table = primer.token_table(built.tokenizer, "The Moon orbits Earth.")
    assert "".join(table["text"]) == "The Moon orbits Earth."
    # The chapter's pipeline, loaded from the saved folder, writes what the helper writes from the objects.
    generator = pipeline("text-generation", model=str(folder), tokenizer=str(folder))
    greedy = GenerationConfig(max_new_tokens=5, do_sample=False, pad_token_id=built.tokenizer.eos_token_id)
    from_folder = generator("The Moon", generation_config=greedy, use_model_defaults=False, return_full_text=False)
    from_objects = primer.generate_text(built.model, built.tokenizer, "The Moon", max_new_tokens=5)
    assert from_folder[0]["generated_text"] == from_objects and from_objects.strip()


def test_run_folder_model_is_preferred(tmp_path, tiny_gpt2_dir):
    import shutil

    shutil.copytree(tiny_gpt2_dir, tmp_path / "05_finetune" / "model")
    built = primer.primer_model(get_profile("tiny"), tmp_path)
    assert built.trained and built.model_source.endswith("model") and "fine-tuned" in built.label
    assert built.model_folder == tmp_path / "05_finetune" / "model"
    before = built.model.config._attn_implementation
    tokens, maps = primer.attention_maps(built.model, built.tokenizer, "The Moon orbits Earth.")
    assert built.model.config._attn_implementation == before  # switched to eager only while measuring
    layers, heads = built.model.config.n_layer, built.model.config.n_head
    assert maps.shape == (layers, heads, len(tokens), len(tokens))
    assert np.allclose(maps.sum(-1), 1, atol=1e-5)
    assert np.allclose(np.triu(maps[0, 0], k=1), 0)  # causal: nothing above the diagonal


def test_pipeline_tasks_are_skipped_offline_without_touching_the_hub(monkeypatch):
    import transformers

    def no_network(*args, **kwargs):
        raise AssertionError("pipeline() was called offline")

    monkeypatch.setattr(transformers, "pipeline", no_network)
    table = primer.pipeline_tasks_table(get_profile("tiny"))
    assert set(primer.PIPELINE_TASKS) == set(table.index)
    assert table["status"].str.startswith("skipped: Hub unreachable").all()


@pytest.fixture
def reachable_hub(tmp_path, monkeypatch):
    """The Hub "reachable", its snapshot_download a stand-in that records each call and answers with one local folder."""
    import huggingface_hub

    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    calls = []

    def snapshot_download(repo_id, *, revision=None, allow_patterns=None, **kwargs):
        calls.append((repo_id, revision, allow_patterns))
        return str(folder)

    monkeypatch.setattr(hub, "hub_unreachable", lambda timeout=3.0: False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return SimpleNamespace(folder=folder, calls=calls)


def write_config(folder, **extra):
    (folder / "config.json").write_text(json.dumps({"model_type": "distilbert", **extra}))


def test_pipeline_models_are_fetched_at_their_pinned_commit_and_an_unsafe_config_is_refused(reachable_hub):
    write_config(reachable_hub.folder, _attn_implementation_internal="flash_attention_2")
    names = sorted({spec["model"] for spec in primer.PIPELINE_TASKS.values()})
    for name in names:
        with pytest.raises(hub.UnsafeConfigError, match="CVE-2026-4372"):
            primer.pipeline_model_folder(name)
    assert reachable_hub.calls == [(name, hub.PINNED_REVISIONS[name], hub.HUB_FILES) for name in names]
    write_config(reachable_hub.folder)
    assert primer.pipeline_model_folder(names[0]) == reachable_hub.folder


def test_a_pinned_commit_without_safetensors_gets_its_pytorch_weights(reachable_hub):
    (reachable_hub.folder / "model.safetensors").unlink()
    write_config(reachable_hub.folder)
    name = primer.PIPELINE_TASKS["sentiment-analysis"]["model"]
    primer.pipeline_model_folder(name)
    revision = hub.PINNED_REVISIONS[name]
    assert reachable_hub.calls == [(name, revision, hub.HUB_FILES), (name, revision, ["*.bin"])]


def test_an_unpinned_model_is_refused_before_any_download(reachable_hub):
    with pytest.raises(ValueError, match="PINNED_REVISIONS"):
        primer.pipeline_model_folder("someone/unpinned-model")
    assert reachable_hub.calls == []


def test_a_local_folder_with_an_unsafe_config_is_refused(tmp_path):
    write_config(tmp_path, _attn_implementation_internal="eager")
    with pytest.raises(hub.UnsafeConfigError, match="_attn_implementation_internal"):
        primer.pipeline_model_folder(str(tmp_path))
    write_config(tmp_path)
    assert primer.pipeline_model_folder(str(tmp_path)) == tmp_path


def test_pipeline_tour_refuses_unsafe_configs_without_building_a_pipeline(reachable_hub, monkeypatch):
    import transformers

    def no_pipeline(*args, **kwargs):
        raise AssertionError("pipeline() was given a refused model")

    monkeypatch.setattr(transformers, "pipeline", no_pipeline)
    write_config(reachable_hub.folder, _attn_implementation_internal="sdpa")
    table = primer.pipeline_tasks_table({"hub_offline": False})
    assert set(primer.PIPELINE_TASKS) == set(table.index)
    assert table["status"].str.startswith("refused: its config.json sets _attn_implementation_internal").all()
    assert {revision for _, revision, _ in reachable_hub.calls} <= set(hub.PINNED_REVISIONS.values())


def test_pipeline_tour_builds_each_pipeline_from_the_pinned_local_folder(reachable_hub, monkeypatch):
    import transformers

    built = []

    class Runner:
        tokenizer = SimpleNamespace(mask_token="[MASK]")

        def __call__(self, *args, **kwargs):
            return [{"label": "POSITIVE", "score": 0.99}]

    def fake_pipeline(task, model=None, **kwargs):
        built.append((task, model, kwargs))
        return Runner()

    monkeypatch.setattr(transformers, "pipeline", fake_pipeline)
    write_config(reachable_hub.folder)
    table = primer.pipeline_tasks_table({"hub_offline": False})
    assert (table["status"] == "ok").all(), table["status"].tolist()
    assert built == [(task, str(reachable_hub.folder), {}) for task in primer.PIPELINE_TASKS]
    assert [call[:2] for call in reachable_hub.calls] == [
        (spec["model"], hub.PINNED_REVISIONS[spec["model"]]) for spec in primer.PIPELINE_TASKS.values()]
    assert table.loc["fill-mask", "input"] == "Paris is the [MASK] of France."


def test_families_from_the_candidates():
    table = primer.architecture_families()
    assert table.loc["Xenova/LaMini-Flan-T5-783M", "family"] == "encoder-decoder"
    assert table.loc["distilbert/distilgpt2", "family"] == "decoder-only"
    assert table.loc["HuggingFaceTB/SmolLM2-135M", "family"] == "decoder-only"
    assert "encoder-only" in set(table["family"])


def test_exercise_checks(course_tokenizer):
    text = "Paris is a city."
    right = len(course_tokenizer(text)["input_ids"])
    assert primer.check_token_count(course_tokenizer, text, right) == "correct"
    assert primer.check_token_count(course_tokenizer, text, right + 1).startswith("not quite")
    assert primer.check_token_count(course_tokenizer, text, None).startswith("not answered")
    assert primer.check_family("Xenova/LaMini-Flan-T5-783M", "encoder-decoder") == "correct"
    assert primer.check_family("distilbert/distilgpt2", "encoder-decoder").startswith("not quite")


def test_sliding_window_mask_check():
    def right(n, window):  # a different construction from the checker's cell-by-cell one
        positions = torch.arange(n)
        offset = positions[:, None] - positions[None, :]
        return (offset >= 0) & (offset < window)

    def stub(n, window):
        raise NotImplementedError

    assert primer.check_sliding_window_mask(right).startswith("correct")
    assert primer.check_sliding_window_mask(None).startswith("not answered yet")
    assert primer.check_sliding_window_mask(stub).startswith("not answered yet")
    wrong = {
        "causal, window ignored": lambda n, w: torch.ones(n, n, dtype=torch.bool).tril(),
        "one token too many": lambda n, w: right(n, w + 1),
        "the future instead of the past": lambda n, w: right(n, w).T,
        "floats": lambda n, w: right(n, w).float(),
        "a vector": lambda n, w: torch.ones(n, dtype=torch.bool),
        "raises": lambda n, w: torch.ones(n, n).tril(w, 0),
    }
    for name, answer in wrong.items():
        assert primer.check_sliding_window_mask(answer).startswith("not quite: "), name


def tiny_llama(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_block_parts_run_by_hand_reproduce_the_block(architecture, tiny_gpt2_dir, course_tokenizer):
    from transformers import AutoModelForCausalLM

    model = (AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval() if architecture == "gpt2"
             else tiny_llama(course_tokenizer))
    inputs = course_tokenizer("The Moon orbits the Earth once a month.", return_tensors="pt")
    with torch.no_grad():
        hidden_states = model(**inputs, output_hidden_states=True).hidden_states
    block_input, block_output = primer.block_input_output(model, course_tokenizer, "The Moon orbits the Earth once a month.")
    assert torch.equal(block_input, hidden_states[0]) and torch.equal(block_output, hidden_states[1])
    parts = primer.block_parts(model, 0)
    norm_kind = "LayerNorm" if architecture == "gpt2" else "RMSNorm"
    assert norm_kind in type(parts.norm_1).__name__ and norm_kind in parts.architecture
    with torch.no_grad():
        after_attention = block_input + parts.attend(parts.norm_1(block_input))
        by_hand = after_attention + parts.mlp(parts.norm_2(after_attention))
        assert torch.allclose(by_hand, block_output, atol=1e-5)
        # leaving out a residual, or swapping the norms, changes the result: the check has teeth
        assert not torch.allclose(parts.attend(parts.norm_1(block_input)) + parts.mlp(parts.norm_2(after_attention)),
                                  block_output, atol=1e-3)
    with pytest.raises(ValueError, match="final norm"):
        primer.block_input_output(model, course_tokenizer, "The Moon.", layer=1)


def layer_norm_by_hand(x, norm):
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias


def rms_norm_by_hand(x, norm):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + norm.variance_epsilon) * norm.weight


def test_norm_by_hand_check(tiny_gpt2_dir, course_tokenizer):
    from transformers import AutoModelForCausalLM

    def stub(x, norm):
        raise NotImplementedError

    gpt2 = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval()
    llama = tiny_llama(course_tokenizer)
    with torch.no_grad():  # random norms start at weight 1, bias 0: give them values a wrong formula cannot hide
        for norm in (primer.block_parts(gpt2, 0).norm_1, primer.block_parts(llama, 0).norm_1):
            norm.weight.uniform_(0.5, 1.5)
            if getattr(norm, "bias", None) is not None:
                norm.bias.uniform_(-0.5, 0.5)
    assert primer.check_norm_by_hand(gpt2, course_tokenizer, layer_norm_by_hand).startswith("correct: matches the model's LayerNorm")
    assert primer.check_norm_by_hand(llama, course_tokenizer, rms_norm_by_hand).startswith("correct: matches the model's LlamaRMSNorm")
    assert primer.check_norm_by_hand(gpt2, course_tokenizer, rms_norm_by_hand).startswith("not quite: ")
    assert primer.check_norm_by_hand(llama, course_tokenizer, layer_norm_by_hand).startswith("not quite: ")
    no_bias = lambda x, norm: layer_norm_by_hand(x, norm) - norm.bias  # noqa: E731
    assert primer.check_norm_by_hand(gpt2, course_tokenizer, no_bias).startswith("not quite: off by")
    assert "rather than calling" in primer.check_norm_by_hand(gpt2, course_tokenizer, lambda x, norm: norm(x))
    assert primer.check_norm_by_hand(gpt2, course_tokenizer, None).startswith("not answered yet")
    assert primer.check_norm_by_hand(gpt2, course_tokenizer, stub).startswith("not answered yet")
