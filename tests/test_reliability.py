"""Reliability: same seed, same artifacts; bad parameters fail at once saying what to run.

Already covered elsewhere (not repeated): unknown profile in get_profile and run_course, unknown
chapter (tests/test_course.py, tests/test_profiles.py), require_input's message (test_course.py),
a missing shipped corpus (test_profiles.py).
"""
from __future__ import annotations

import pytest

from helpers import course
from helpers.profiles import get_profile


def _pairs_run(clean_articles, out_dir):
    from helpers import pairs

    params = get_profile("tiny")
    config = pairs.PairingConfig(seed=params["pair_seed"], max_paragraphs=params["pair_max_paragraphs"],
                                 max_response_chars=params["pair_max_response_chars"])
    kept, _ = pairs.dedupe_pairs(pairs.make_pairs(clean_articles, config))
    pairs.save_pairs(pairs.split_by_article(kept, params["split_fractions"], seed=params["pair_seed"]), out_dir)
    return {name: (out_dir / f"{name}.jsonl").read_bytes() for name in ("train", "validation", "test")}


def test_same_seed_gives_identical_pairs_files(tmp_path, clean_articles):
    first, second = _pairs_run(clean_articles, tmp_path / "a"), _pairs_run(clean_articles, tmp_path / "b")
    assert all(first[name] for name in first)
    assert first == second


def _losses(tokenizer, pairs, seed):
    import torch

    from helpers import finetune, models

    torch.manual_seed(seed)
    model = models.build_tiny_gpt2(tokenizer, get_profile("tiny")["tiny_model_config"], seed=seed)
    data = finetune.tokenize_pairs(pairs[:40], tokenizer, max_length=128, truncate=True)
    loader = torch.utils.data.DataLoader(data, batch_size=8, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed),
                                         collate_fn=finetune.RightPaddingCollator(finetune.pad_token_id(tokenizer)))
    history = finetune.train_loop(model, loader, epochs=1, lr=1e-3, precision="fp32")
    return [row["loss"] for row in history]


def test_same_seed_gives_equal_finetuning_losses_on_cpu(course_tokenizer, pair_splits):
    first = _losses(course_tokenizer, pair_splits["train"], seed=0)
    second = _losses(course_tokenizer, pair_splits["train"], seed=0)
    assert len(first) == 5
    assert first == second
    assert _losses(course_tokenizer, pair_splits["train"], seed=1) != first  # the seed matters


def _chapter_helpers():
    from helpers import export, finetune, models

    params = get_profile("tiny")
    return {
        "04_model": (lambda run: models.prepare_base_model(params, run), "02_cleaning"),
        "05_finetune": (lambda run: finetune.finetune(params, run), "03_pairs"),
        "06_export": (lambda run: export.export_model(params, run), "05_finetune"),
    }


@pytest.mark.parametrize("chapter", ["04_model", "05_finetune", "06_export"])
@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_chapter_without_its_inputs_fails_at_once_naming_what_to_run(tmp_path, chapter, folder):
    helper, needs = _chapter_helpers()[chapter]
    run = tmp_path if folder == "empty" else tmp_path / "no-such-run"
    with pytest.raises(course.MissingInputError) as error:
        helper(run)
    message = str(error.value)
    assert f"chapter {needs}" in message
    assert f"notebooks/{course.CHAPTERS[needs]}.ipynb" in message and "python -m helpers.course" in message
    assert not (tmp_path / "no-such-run").exists() or folder == "empty"


def test_deploying_a_missing_model_folder_fails_saying_what_to_pass(tmp_path):
    from helpers import deploy, export

    with pytest.raises(export.ModelFolderError, match="not a folder") as error:
        deploy.deploy_model(tmp_path / "nope", tmp_path / "site", "m")
    assert "fix:" in str(error.value)
    assert not (tmp_path / "site" / "models" / "m").exists()
