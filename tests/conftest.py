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
