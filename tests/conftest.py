"""Shared fixtures: the real tiny corpus, parsed and cleaned once per test session."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.profiles import REPO_ROOT

TINY_DUMP = REPO_ROOT / "data" / "tiny" / "enwiki-tiny.xml.bz2"
TABLE_DUMP = REPO_ROOT / "data" / "tiny" / "enwiki-table-markup.xml.bz2"


@pytest.fixture(scope="session")
def tiny_dump() -> Path:
    return TINY_DUMP


@pytest.fixture(scope="session")
def table_dump() -> Path:
    return TABLE_DUMP


@pytest.fixture(scope="session")
def tiny_articles() -> list[dict]:
    from helpers import dump

    return list(dump.iter_articles(TINY_DUMP, progress=False))


@pytest.fixture(scope="session")
def cleaned(tiny_articles):
    """The result of the training-text cleaning on the tiny corpus (articles + report)."""
    from helpers import clean

    return clean.clean_articles(tiny_articles)


@pytest.fixture(scope="session")
def clean_articles(cleaned) -> list[dict]:
    return cleaned.articles


@pytest.fixture(scope="session")
def pair_splits(clean_articles) -> dict[str, list[dict]]:
    """Chapter 03's train/validation/test pairs from the tiny corpus, with the tiny profile's settings."""
    from helpers import pairs
    from helpers.profiles import get_profile

    params = get_profile("tiny")
    config = pairs.PairingConfig(
        seed=params["pair_seed"],
        max_paragraphs=params["pair_max_paragraphs"],
        max_response_chars=params["pair_max_response_chars"],
    )
    kept, _ = pairs.dedupe_pairs(pairs.make_pairs(clean_articles, config))
    return pairs.split_by_article(kept, params["split_fractions"], seed=params["pair_seed"])


@pytest.fixture(scope="session")
def course_tokenizer(tmp_path_factory, clean_articles, pair_splits):
    """The tiny profile's byte-level BPE tokenizer, trained on the training split as chapter 03 does."""
    from helpers import pairs, tokenizer

    texts = pairs.tokenizer_training_texts(clean_articles, pair_splits["train"])
    return tokenizer.train_course_tokenizer(texts, tmp_path_factory.mktemp("tokenizer"), vocab_size=2048)
