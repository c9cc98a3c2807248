"""Chapter 05's evaluation: how much better the fine-tuned model is, on articles it never saw.

Three measures, each for the base model and the fine-tuned one, on chapter 03's *test* split (whole
articles held out from training, so nothing here was memorised):

- **Response perplexity**: ``exp`` of the mean cross-entropy of the reference answers' tokens, given
  their prompts (``helpers.finetune.evaluate_loss``). It asks how likely the model finds the
  Wikipedia-style answer, token by token: lower is better, and it needs no generation.
- **ROUGE-L** of greedy answers against the reference section text: the longest common subsequence
  of words, as an F1 of precision and recall (``rouge-score``, Google's reimplementation of the
  original ROUGE-1.5.5 script, with its Porter stemmer). It rewards saying what the article says in
  its words; it cannot tell a true sentence from a fluent invented one.
- **Answers side by side**: question, reference, base and fine-tuned, to read.

``distinct_n`` and ``repetition_rate`` measure generated text itself (diversity and loops) for the
table of generation settings.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The lowercase words of ``text`` (letters and digits; punctuation dropped)."""
    return WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The ``n``-grams of ``tokens``, in order (none when there are fewer than ``n`` tokens)."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): unique word n-grams over all n-grams of ``texts``, pooled.

    1.0: no n-gram is ever repeated; near 0: the texts say the same few things over and over.
    ``nan`` when the texts hold no n-gram at all.
    """
    grams = [gram for text in texts for gram in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def repetition_rate(text: str, n: int = 4) -> float:
    """seq-rep-n (Welleck et al., 2019): the share of ``text``'s word n-grams that repeat an earlier one.

    0.0 for text that never repeats 4 words in a row; a greedy loop ("the first of the first of
    the first...") goes towards 1. ``nan`` for a text shorter than ``n`` words.
    """
    grams = ngrams(words(text), n)
    return 1 - len(set(grams)) / len(grams) if grams else float("nan")


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 of each prediction against its reference (``rouge_score``, stemming on), in [0, 1]."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(reference, prediction)["rougeL"].fmeasure
            for prediction, reference in zip(predictions, references)]


def spread_over_articles(pairs: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` of ``pairs``, taken in turn from each article (its first pair from every article, then its
    second...), in the pairs' order: chapter 03 writes an article's pairs together, so the first ``count``
    pairs would often all come from one article."""
    by_article: dict[Any, list[dict[str, Any]]] = {}
    for index in range(len(pairs)):  # a list or a datasets.Dataset
        pair = pairs[index]
        by_article.setdefault(pair.get("article_id", index), []).append(pair)
    chosen: list[dict[str, Any]] = []
    depth = 0
    while len(chosen) < min(count, len(pairs)):
        chosen += [rows[depth] for rows in by_article.values() if depth < len(rows)][: count - len(chosen)]
        depth += 1
    return chosen


def test_split_evaluation(
    models: dict[str, Any],
    tokenizer: Any,
    test_pairs: Sequence[dict[str, Any]],
    *,
    max_length: int,
    generated_pairs: int,
    max_new_tokens: int,
    batch_size: int = 8,
) -> tuple[pandas.DataFrame, pandas.DataFrame]:
    """Evaluate each of ``models`` (name -> model) on chapter 03's test pairs.

    Returns ``(scores, answers)``. ``scores`` has one row per model: response loss and perplexity on
    every test pair, and mean ROUGE-L, distinct-2 and repetition rate of greedy answers to
    ``generated_pairs`` test pairs spread over the test articles (``spread_over_articles``; generation is
    the slow part on a CPU). ``batch_size`` pairs are
    scored at a time (the logits of a batch are its biggest tensor). ``answers`` has one row per
    generated pair: the instruction, the reference, each model's answer and its ROUGE-L.
    """
    import pandas as pd

    from helpers import finetune as ft

    if not len(test_pairs):
        raise ValueError("the test split has no pairs: chapter 03 made none (too few articles for its fractions?)")
    data = ft.tokenize_pairs(test_pairs, tokenizer, max_length=max_length, truncate=True, split="test")
    collator = ft.RightPaddingCollator(ft.pad_token_id(tokenizer))
    shown = spread_over_articles(test_pairs, generated_pairs)
    instructions = [pair["instruction"] for pair in shown]
    references = [pair["response"] for pair in shown]
    answers = pd.DataFrame({"instruction": instructions, "reference": references})
    rows = {}
    for name, model in models.items():
        loss = ft.evaluate_loss(model, data, collator, batch_size=batch_size)
        # Generation holds one token's activations per step, not a whole answer's: batches of 8 cost little
        # memory and give a CPU about twice the tokens per second of batches of 4.
        generated = ft.generate_batch(model, tokenizer, instructions, "factual", batch_size=8,
                                      do_sample=False, num_beams=1, repetition_penalty=1.0,
                                      no_repeat_ngram_size=0, max_new_tokens=max_new_tokens)
        scores = rouge_l(generated, references)
        answers[name] = generated
        answers[f"ROUGE-L {name}"] = scores
        rows[name] = {
            "test pairs": len(data),
            "response loss": loss["loss"],
            "response perplexity": loss["perplexity"],
            "answers generated": len(generated),
            # an answer of blank lines or only the end token is stripped to "": no words to score
            "empty answers": sum(not text.strip() for text in generated),
            "ROUGE-L": sum(scores) / len(scores) if scores else float("nan"),
            "distinct-2": distinct_n(generated, 2),
            "repetition (rep-4)": pd.Series([repetition_rate(text) for text in generated]).mean(),
            "mean answer words": pd.Series([len(words(text)) for text in generated]).mean(),
        }
    return pd.DataFrame(rows).T, answers


def generation_settings_table(
    model: Any,
    tokenizer: Any,
    instructions: Sequence[str],
    settings: dict[str, dict[str, Any]],
    *,
    seed: int = 0,
    max_new_tokens: int = 96,
) -> tuple[pandas.DataFrame, pandas.DataFrame]:
    """Answers to ``instructions`` under each of ``settings`` (name -> GenerationConfig values).

    Returns ``(measures, answers)``: per setting, distinct-1 and distinct-2 over its answers, their
    mean repetition rate and length; and every answer, one column per setting. Sampling is seeded.
    """
    import pandas as pd

    from helpers import finetune as ft

    measures, answers = {}, {}
    for name, values in settings.items():
        texts = ft.generate_batch(model, tokenizer, list(instructions), "factual", seed=seed,
                                  **({"num_beams": 1, "max_new_tokens": max_new_tokens} | values))
        answers[name] = texts
        measures[name] = {
            "distinct-1": distinct_n(texts, 1),
            "distinct-2": distinct_n(texts, 2),
            "repetition (rep-4)": pd.Series([repetition_rate(text) for text in texts]).mean(),
            "mean words": pd.Series([len(words(text)) for text in texts]).mean(),
        }
    return pd.DataFrame(measures).T, pd.DataFrame(answers, index=pd.Index(list(instructions), name="instruction"))
