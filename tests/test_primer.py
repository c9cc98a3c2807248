"""Chapter 00's helpers: attention against PyTorch's, positional encodings, the primer's model and tables."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import primer
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
    built = primer.primer_model(get_profile("tiny"), tmp_path)
    assert not built.trained and primer.UNTRAINED_NOTE in built.describe()
    assert (tmp_path / "00_primer" / "tokenizer" / "tokenizer.json").exists()
    table = primer.token_table(built.tokenizer, "The Moon orbits Earth.")
    assert "".join(table["text"]) == "The Moon orbits Earth."
    assert isinstance(primer.generate_text(built.model, built.tokenizer, "The Moon", max_new_tokens=3), str)


def test_run_folder_model_is_preferred(tmp_path, tiny_gpt2_dir):
    import shutil

    shutil.copytree(tiny_gpt2_dir, tmp_path / "05_finetune" / "model")
    built = primer.primer_model(get_profile("tiny"), tmp_path)
    assert built.trained and built.model_source.endswith("model")
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
    assert primer.check_causal_mask(torch.ones(4, 4, dtype=torch.bool).tril()).startswith("correct")
    assert primer.check_causal_mask(torch.ones(4, 4, dtype=torch.bool)).startswith("not quite")
    assert primer.check_family("Xenova/LaMini-Flan-T5-783M", "encoder-decoder") == "correct"
    assert primer.check_family("distilbert/distilgpt2", "encoder-decoder").startswith("not quite")
