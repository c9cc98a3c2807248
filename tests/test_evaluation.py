"""helpers.evaluation: the test-split scores and the measures of generated text."""
from __future__ import annotations

import math

import pytest

from helpers import evaluation
from helpers import finetune as ft
from helpers import models


def test_distinct_n_counts_unique_ngrams_over_all_texts():
    assert evaluation.distinct_n(["the cat sat", "the dog sat"], 1) == pytest.approx(4 / 6)
    assert evaluation.distinct_n(["the cat sat", "the cat sat"], 2) == pytest.approx(2 / 4)
    assert evaluation.distinct_n(["One, two; THREE."], 1) == 1.0  # words: lowercased, punctuation dropped
    assert math.isnan(evaluation.distinct_n(["one"], 2))


def test_repetition_rate_is_zero_for_fresh_text_and_high_for_a_loop():
    assert evaluation.repetition_rate("Albedo is the fraction of light that a surface reflects.") == 0.0
    loop = "the first of the first of the first of the first of the first"
    assert evaluation.repetition_rate(loop) == pytest.approx(1 - 3 / 11)  # only 3 distinct 4-grams of 11
    assert math.isnan(evaluation.repetition_rate("too short"))


def test_rouge_l_is_one_for_the_reference_and_zero_for_nothing_shared():
    reference = "Albedo is the fraction of sunlight that is reflected by a surface."
    scores = evaluation.rouge_l([reference, "Bananas grow in bunches.", "Albedo is reflected sunlight."],
                                [reference] * 3)
    assert scores[0] == pytest.approx(1.0) and scores[1] == 0.0 and 0.2 < scores[2] < 0.7
    with pytest.raises(ValueError, match="2 predictions for 1"):
        evaluation.rouge_l(["a", "b"], ["a"])


def test_test_split_evaluation_scores_each_model_on_real_test_pairs(course_tokenizer, pair_splits):
    base = models.build_tiny_gpt2(course_tokenizer, {"n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 512})
    scores, answers = evaluation.test_split_evaluation(
        {"a": base}, course_tokenizer, pair_splits["test"], max_length=512, generated_pairs=3, max_new_tokens=8)
    assert scores.loc["a", "test pairs"] == len(pair_splits["test"]) and scores.loc["a", "answers generated"] == 3
    collator = ft.RightPaddingCollator(ft.pad_token_id(course_tokenizer))
    data = ft.tokenize_pairs(pair_splits["test"], course_tokenizer, max_length=512, truncate=True, split="test")
    assert scores.loc["a", "response perplexity"] == pytest.approx(ft.evaluate_loss(base, data, collator)["perplexity"])
    assert list(answers.columns) == ["instruction", "reference", "a", "ROUGE-L a"]
    test_articles = list(dict.fromkeys(pair["article_id"] for pair in pair_splits["test"]))
    assert len(test_articles) >= 3 and pair_splits["test"][1]["article_id"] == pair_splits["test"][0]["article_id"]
    # one question from each of the first three test articles, not the first article's first three
    firsts = [next(p for p in pair_splits["test"] if p["article_id"] == article) for article in test_articles[:3]]
    assert list(answers["instruction"]) == [pair["instruction"] for pair in firsts]
    assert scores.loc["a", "empty answers"] == sum(not text.strip() for text in answers["a"])
    with pytest.raises(ValueError, match="no pairs"):
        evaluation.test_split_evaluation({"a": base}, course_tokenizer, [], max_length=512, generated_pairs=1, max_new_tokens=4)


def test_spread_over_articles_takes_each_articles_pairs_in_turn():
    pairs = [{"article_id": article, "n": n} for article, n in
             (("A", 0), ("A", 1), ("A", 2), ("B", 0), ("C", 0), ("C", 1))]
    assert [(p["article_id"], p["n"]) for p in evaluation.spread_over_articles(pairs, 5)] == [
        ("A", 0), ("B", 0), ("C", 0), ("A", 1), ("C", 1)]
    assert evaluation.spread_over_articles(pairs, 2) == [pairs[0], pairs[3]]
    assert evaluation.spread_over_articles(pairs, 99) == [pairs[i] for i in (0, 3, 4, 1, 5, 2)]
    assert evaluation.spread_over_articles([], 3) == []


def test_every_preset_is_a_row_of_the_settings_table():
    rows = list(ft.GENERATION_SETTINGS.values())
    for preset in ft.PRESETS.values():
        assert {key: value for key, value in preset.items() if key != "max_new_tokens"} in rows
