"""Chapter 02: two kinds of cleaning, for two different jobs.

**Part 1, the classic NLTK pipeline** (:func:`classic_nlp_pipeline`): lowercase, strip punctuation
and numbers, tokenize, drop stopwords, lemmatize. It turns text into a bag of normalized words,
which is right for counting (term frequencies, keyword charts, TF-IDF) and wrong for training a
text generator: the output is no longer language (:func:`fluency_comparison` measures how much).

**Part 2, the cleaning for training text** (:func:`clean_articles`): keep the text as it is written
and remove only what should not be learned from: Unicode and whitespace oddities, markup the parser
left behind, cut-off sentences, paragraphs that are too short, too long, list-like, mostly digits
or symbols, not English, or duplicated (exactly or nearly). Every filter records in a
:class:`CleaningReport` what it removed and why, so a reader can check each decision.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import mmap
import multiprocessing
import re
import sys
import unicodedata
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from nltk.tokenize import TreebankWordTokenizer
from nltk.tokenize.punkt import PunktSentenceTokenizer

from helpers import dump, nltk_offline
from helpers.course import atomic_output

# ============================================================================================
# Part 1: the classic NLTK pipeline (for counting, not for training)
# ============================================================================================

# Apostrophes are deleted (don't -> dont) but other punctuation becomes a space, so that
# "well-known" gives two words instead of "wellknown": what most tutorials intend.
_APOSTROPHES = re.compile(r"['’`]")
_PUNCTUATION = re.compile(r"[^\w\s]|_")
_NUMBERS = re.compile(r"\d+")
_TREEBANK = TreebankWordTokenizer()
_lemmatizer = None


def _get_lemmatizer():
    global _lemmatizer
    if _lemmatizer is None:
        from nltk.stem import WordNetLemmatizer

        nltk_offline.ensure_nltk_data()
        _lemmatizer = WordNetLemmatizer()
    return _lemmatizer


def classic_nlp_pipeline(
    text: str, *, stopwords: Iterable[str] | None = None, lemmatize: bool = True
) -> list[str]:
    """The textbook preprocessing: lowercase, no punctuation or numbers, tokens, no stopwords, lemmas.

    Lemmas are WordNet noun lemmas ("geese" -> "goose", but "running" stays "running"):
    part-of-speech-aware lemmas need ``nltk.pos_tag``, whose tagger data cannot be downloaded
    offline, so every token is treated as a noun. ``stopwords`` defaults to
    :func:`helpers.nltk_offline.english_stopwords` (NLTK's list if installed, else the course's).
    """
    text = text.lower()
    text = _APOSTROPHES.sub("", text)
    text = _PUNCTUATION.sub(" ", text)
    text = _NUMBERS.sub(" ", text)
    tokens = _TREEBANK.tokenize(text)
    stop = frozenset(stopwords) if stopwords is not None else nltk_offline.english_stopwords()[0]
    tokens = [token for token in tokens if token not in stop and len(token) > 1]
    if lemmatize:
        lemmatizer = _get_lemmatizer()
        tokens = [lemmatizer.lemmatize(token) for token in tokens]
    return tokens


def term_frequencies(texts: Iterable[str], *, top: int | None = None, **pipeline_options: Any) -> pd.DataFrame:
    """Bag-of-words counts over ``texts`` after :func:`classic_nlp_pipeline`: term, count, share.

    This is the job the classic pipeline is good at: "stocks" and "stock" count as one term, and
    "the" does not crowd out the words that say what a text is about.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(classic_nlp_pipeline(text, **pipeline_options))
    total = sum(counts.values()) or 1
    rows = [(term, count, count / total) for term, count in counts.most_common(top)]
    return pd.DataFrame(rows, columns=["term", "count", "share"])


def plot_term_frequencies(frequencies: pd.DataFrame, *, top: int = 20, ax: Any = None, title: str | None = None) -> Any:
    """A horizontal bar chart of the ``top`` most frequent terms (from :func:`term_frequencies`)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.28 * top + 1))
    head = frequencies.head(top).iloc[::-1]
    ax.barh(head["term"], head["count"], color="#4c72b0")
    ax.set_xlabel("count")
    ax.set_title(title or f"Top {top} terms after the classic pipeline")
    return ax


def fluency_comparison(texts: Iterable[str], *, sentence_tokenizer: PunktSentenceTokenizer | None = None) -> pd.DataFrame:
    """How much of the language survives the classic pipeline, measured on ``texts``.

    Compares the original words (lowercased Treebank tokens) with the pipeline's output: token
    count, distinct words, sentences, and how many of the original's word bigrams (pairs of
    neighbouring words, the smallest unit of word order) still occur in the output.
    """
    texts = list(texts)
    before_tokens, after_tokens = [], []
    sentences_before = sentences_after = 0
    bigrams_before: set[tuple[str, str]] = set()
    bigrams_after: set[tuple[str, str]] = set()
    for text in texts:
        words = [token.lower() for token in _TREEBANK.tokenize(text) if any(ch.isalpha() for ch in token)]
        processed = classic_nlp_pipeline(text)
        before_tokens += words
        after_tokens += processed
        bigrams_before |= set(zip(words, words[1:]))
        bigrams_after |= set(zip(processed, processed[1:]))
        if sentence_tokenizer is not None:
            sentences_before += len(sentence_tokenizer.tokenize(text))
            sentences_after += len(sentence_tokenizer.tokenize(" ".join(processed))) if processed else 0
        else:
            sentences_before += len(re.findall(r"[.!?](?:\s|$)", text))
            sentences_after += len(re.findall(r"[.!?](?:\s|$)", " ".join(processed)))
    kept = len(bigrams_before & bigrams_after)
    rows = {
        "tokens": (len(before_tokens), len(after_tokens)),
        "distinct words": (len(set(before_tokens)), len(set(after_tokens))),
        "sentences": (sentences_before, sentences_after),
        "distinct word bigrams": (len(bigrams_before), len(bigrams_after)),
        "original bigrams still present": (len(bigrams_before), kept),
        "original bigrams still present (%)": (100.0, round(100 * kept / max(1, len(bigrams_before)), 1)),
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["original", "classic pipeline"])


# ============================================================================================
# Part 2: cleaning for training text
# ============================================================================================


@dataclass(frozen=True)
class CleaningConfig:
    """Every threshold of the training-text cleaning, in one place (the defaults suit Wikipedia).

    The near-duplicate search is MinHash with locality-sensitive hashing; ``seed`` fixes its hash
    functions, so the same input and config always remove the same paragraphs.
    """

    normalization: str = "NFKC"
    min_paragraph_chars: int = 60
    max_paragraph_chars: int = 2000  # longer paragraphs are trimmed at a sentence boundary
    min_alpha_ratio: float = 0.7  # letters / non-space characters
    max_digit_ratio: float = 0.25  # digits / non-space characters
    max_symbol_ratio: float = 0.05  # symbols (not letters, digits or ordinary punctuation) / non-space
    max_list_line_share: float = 0.5  # a paragraph whose lines are mostly list items is a list
    min_words_per_sentence: float = 4.0  # mean over the paragraph's sentences
    min_stopword_share: float = 0.08  # English prose is about 40-50% function words; names lower it
    min_section_chars: int = 120  # the profile's min_section_chars; 0 keeps every non-empty section
    near_duplicate_threshold: float = 0.7  # Jaccard similarity of word shingles
    shingle_size: int = 3  # words per shingle
    num_perm: int = 128  # MinHash hash functions
    lsh_bands: int = 32  # num_perm must be a multiple: bands x rows
    seed: int = 0
    punkt_training_chars: int = 2_000_000
    examples_per_filter: int = 3

    def __post_init__(self) -> None:
        if self.lsh_bands < 1 or self.num_perm < 1:
            raise ValueError(f"num_perm ({self.num_perm}) and lsh_bands ({self.lsh_bands}) must be at least 1")
        if self.num_perm % self.lsh_bands:
            raise ValueError(f"num_perm ({self.num_perm}) must be a multiple of lsh_bands ({self.lsh_bands})")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise ValueError("near_duplicate_threshold must be in (0, 1]")


#: The filters in the order they run, with what each one is for. Transforms change a paragraph
#: (and remove it when nothing is left); checks keep or remove it whole.
FILTERS: dict[str, str] = {
    "normalize": "Unicode NFKC and whitespace normalization (invisible characters, spacing)",
    "markup": "wiki/HTML markup that survived parsing ({{ }}, [[ ]], <tags>, ''' , table rows)",
    "list_like": "list lines (no terminal punctuation) dropped after prose, or a paragraph that is mostly a list",
    "trim_long": "longer than max_paragraph_chars: cut at the last sentence boundary that fits",
    "fragment": "trailing sentence fragment without terminal punctuation dropped",
    "too_short": "shorter than min_paragraph_chars",
    "too_long": "longer than max_paragraph_chars even after trimming (no sentence boundary)",
    "digits_symbols": "too many digits or symbols (tables of numbers, formulas)",
    "alpha_ratio": "too few letters among the non-space characters",
    "short_sentences": "too few words per sentence (captions, labels, fragments)",
    "not_english": "mostly non-Latin letters, or too few English function words: not English prose",
    "exact_duplicate": "same text (case, spacing and punctuation ignored) as an earlier paragraph",
    "near_duplicate": "Jaccard similarity of word shingles with an earlier paragraph >= threshold",
    "short_section": "section shorter than min_section_chars after cleaning (its paragraphs go with it)",
    "empty_section": "section with no paragraph left",
    "empty_article": "article with no section left",
}
TRANSFORMS = ("normalize", "markup", "list_like", "trim_long", "fragment")


@dataclass
class FilterStats:
    """What one filter did: counts, characters removed and a few examples."""

    name: str
    reason: str
    paragraphs_removed: int = 0
    paragraphs_modified: int = 0
    sections_removed: int = 0
    articles_removed: int = 0
    chars_removed: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)


@dataclass
class CleaningReport:
    """For every filter: what it removed, how much, why, with examples; plus totals in and out."""

    config: CleaningConfig
    filters: dict[str, FilterStats]
    totals: dict[str, int] = field(default_factory=dict)
    # the duplicate filters' arrays when the cleaning ended: what grows with the corpus (benchmarks/README.md)
    duplicate_index_bytes: int = 0

    @classmethod
    def empty(cls, config: CleaningConfig) -> CleaningReport:
        return cls(config, {name: FilterStats(name, reason) for name, reason in FILTERS.items()})

    def _example(self, stats: FilterStats, title: str, text: str, detail: str, after: str | None = None) -> None:
        if len(stats.examples) < self.config.examples_per_filter:
            example = {"title": title, "text": _snippet(text), "detail": detail}
            if after is not None:
                example["after"] = _snippet(after)
            stats.examples.append(example)

    def removed(self, name: str, title: str, text: str, detail: str) -> None:
        stats = self.filters[name]
        stats.paragraphs_removed += 1
        stats.chars_removed += len(text)
        self._example(stats, title, text, detail)

    def merge(self, later: CleaningReport) -> None:
        """Add what ``later`` recorded after this report's last record (a worker's batch): the counts,
        and its examples while a filter has room, so the examples are the first ones either way."""
        for name, stats in later.filters.items():
            mine = self.filters[name]
            for counter in ("paragraphs_removed", "paragraphs_modified", "sections_removed", "articles_removed",
                            "chars_removed"):
                setattr(mine, counter, getattr(mine, counter) + getattr(stats, counter))
            mine.examples.extend(stats.examples[: self.config.examples_per_filter - len(mine.examples)])

    def modified(self, name: str, title: str, before: str, after: str) -> None:
        stats = self.filters[name]
        stats.paragraphs_modified += 1
        stats.chars_removed += len(before) - len(after)
        self._example(stats, title, before, f"{len(before)} -> {len(after)} chars", after)

    def table(self) -> pd.DataFrame:
        """One row per filter, in the order they run: counts removed/modified, characters, reason."""
        rows = [
            {
                "filter": s.name,
                "paragraphs removed": s.paragraphs_removed,
                "paragraphs modified": s.paragraphs_modified,
                "sections removed": s.sections_removed,
                "articles removed": s.articles_removed,
                "chars removed": s.chars_removed,
                "reason": s.reason,
            }
            for s in self.filters.values()
        ]
        return pd.DataFrame(rows).set_index("filter")

    def examples(self, name: str) -> pd.DataFrame:
        """The examples a filter kept (title, text, detail and, for transforms, the text after:
        "(removed)" where the step left nothing)."""
        table = pd.DataFrame(self.filters[name].examples)
        return table.fillna({"after": "(removed)"}) if "after" in table else table

    def metrics(self) -> dict[str, Any]:
        """Flat numbers for ``summary.json``: totals in/out and what each filter removed."""
        filters = self.filters.values()
        return {
            **self.totals,
            "paragraphs_removed": {s.name: s.paragraphs_removed for s in filters if s.paragraphs_removed},
            "paragraphs_modified": {s.name: s.paragraphs_modified for s in filters if s.name in TRANSFORMS},
            "sections_removed": {s.name: s.sections_removed for s in filters if s.sections_removed},
            "articles_removed": self.filters["empty_article"].articles_removed,
        }

    def as_dict(self) -> dict[str, Any]:
        """The whole report as plain data (JSON-serializable)."""
        return {
            "config": asdict(self.config),
            "totals": dict(self.totals),
            "filters": {name: asdict(stats) for name, stats in self.filters.items()},
        }

    def plot(self, ax: Any = None) -> Any:
        """Bar chart: paragraphs removed and modified per filter (sections/articles for the last ones)."""
        import matplotlib.pyplot as plt

        table = self.table()
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 5))
        names = list(table.index)[::-1]
        removed = [
            table.loc[n, "paragraphs removed"] + table.loc[n, "sections removed"] + table.loc[n, "articles removed"]
            for n in names
        ]
        modified = [table.loc[n, "paragraphs modified"] for n in names]
        y = np.arange(len(names))
        ax.barh(y - 0.2, removed, height=0.4, label="removed", color="#c44e52")
        ax.barh(y + 0.2, modified, height=0.4, label="modified (kept)", color="#55a868")
        ax.set_yticks(y, names)
        ax.set_xlabel("paragraphs (sections / articles for the last three filters)")
        ax.set_title("What each cleaning filter did")
        ax.legend(loc="lower right")
        return ax


@dataclass
class CleaningResult:
    """Cleaned articles (same schema as the input) and the report of what was removed."""

    articles: list[dict[str, Any]]
    report: CleaningReport
    sentence_tokenizer: PunktSentenceTokenizer | None = None  # the Punkt model the run used


def _snippet(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_paragraphs(text: str) -> list[str]:
    """A section's paragraphs: the schema separates them with one blank line."""
    return [part.strip("\n") for part in re.split(r"\n[ \t]*\n", text) if part.strip()]


def iter_paragraphs(articles: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Every paragraph of every section of ``articles``, in order."""
    for article in articles:
        for section in article["sections"]:
            yield from split_paragraphs(section["text"])


# --- text repairs ---------------------------------------------------------------------------

_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACES = re.compile(r"[^\S\n]+")


def normalize_text(text: str, form: str = "NFKC") -> str:
    """Unicode normalization (NFKC: one code point sequence per character, no ligatures or
    full-width forms), invisible characters removed, runs of spaces collapsed, lines stripped."""
    text = unicodedata.normalize(form, text)
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub(" ", text)
    text = _SPACES.sub(" ", text)
    return "\n".join(line.strip() for line in text.split("\n") if line.strip())


# Markup chapter 01's parser works on (helpers.dump.clean_inline) does not reach: table rows and
# heading lines cut loose from their table or section, and brackets of markup that was cut in two.
_TABLE_LINE = re.compile(r"^\s*(?:\{\||\|\}|\|[-+]|[|!])|\|\||!!")
_HEADING_LINE = re.compile(r"^\s*=+[^=].*=+\s*$")
_STRAY = re.compile(r"\{\{|\}\}|\[\[|\]\]|\{\||\|\}")
_SPACE_BEFORE_PUNCT = re.compile(r" +([,.;:!?)])")


def strip_markup(text: str) -> str:
    """Remove wiki and HTML markup a parser left in ``text``, keeping the words a reader would see.

    Chapter 01's own inline cleaner (``helpers.dump.clean_inline``) does the parsing: link targets
    give way to their labels; templates, references, comments, tags, tables and bold/italic quotes go.
    Then loose table rows and heading lines go, and so do stray brackets of markup that was cut in two.
    """
    lines = dump.clean_inline(text).split("\n")
    lines = [line for line in lines if not _TABLE_LINE.search(line) and not _HEADING_LINE.match(line)]
    stripped = _STRAY.sub("", "\n".join(lines))
    if stripped == text:
        return text
    # Removing a template often leaves "Albedo () or" and "word ." behind: tidy only those seams.
    stripped = dump.EMPTY_PARENTHESES_RE.sub("", stripped)
    stripped = _SPACE_BEFORE_PUNCT.sub(r"\1", stripped)
    return normalize_text(stripped, "NFC")


_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")
_ORDINARY_PUNCT = set(".,;:!?'\"()[]-–—’‘“”/%&")


# Outside Basic Latin to Latin Extended-B and Latin Extended Additional (Vietnamese and the like).
_NOT_LATIN = re.compile(r"[^\u0000-\u024f\u1e00-\u1eff]")


# --- lists and sentence ends (the list_like filter) -----------------------------------------

_TERMINAL = re.compile(r"[.!?][\"'”’»)\]]*$")
_LIST_MARKER = re.compile(r"^\s*(?:[*#•·▪◦‣-]|–|—|\d{1,3}[.)]\s)")


def ends_sentence(text: str) -> bool:
    """True when ``text`` ends with terminal punctuation (. ! ?), possibly followed by quotes/brackets."""
    return bool(_TERMINAL.search(text.rstrip()))


_SENTENCE_INSIDE = re.compile(r"[.!?][\"')\]]*\s")


def is_list_line(line: str) -> bool:
    """A list item or label line: a bullet or number in front, or no terminal punctuation at the end.

    Only meaningful inside a multi-line paragraph: the dump writes list items one per line.
    """
    return bool(_LIST_MARKER.match(line)) or not ends_sentence(line)


def drop_lists(text: str, max_list_line_share: float = 0.5) -> str:
    """Remove list-like content from a paragraph; ``""`` when the paragraph is a list.

    A paragraph of prose lines followed by list lines ("They are:" + items) keeps its prose, and the
    fragment filter later drops the dangling "They are:". A paragraph that is mostly list lines
    otherwise is a list and goes whole. Single lines are left to the other filters.
    """
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    flags = [is_list_line(line) for line in lines]
    if not any(flags):
        return text
    first = flags.index(True)
    # "...monks. They are:" introduces the list: it stays with the prose (complete sentence first).
    lead = first + 1 if lines[first].rstrip().endswith(":") and _SENTENCE_INSIDE.search(lines[first]) else first
    if lead > 0 and all(flags[lead:]):
        return "\n".join(lines[:lead])
    if sum(flags) / len(flags) >= max_list_line_share:
        return ""
    return text


# --- corpus-level duplicate detection -------------------------------------------------------


def text_hash(text: str, nbytes: int = 8) -> int:
    """``text``'s BLAKE2b hash as an integer of ``nbytes`` bytes: the keys of the duplicate filters."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=nbytes).digest(), "little")


def duplicate_key(text: str) -> int:
    """What two paragraphs share when they are exact duplicates: their words, case-folded, hashed.

    Case, spacing and punctuation do not count, so "Albedo, the ratio" and "albedo the ratio" match.
    The hash has 64 bits (8 bytes a kept paragraph): among 15 million paragraphs, two different ones
    share a key with a chance of about 1 in 160,000.
    """
    canonical = " ".join(re.findall(r"\w+", text.casefold()))
    return text_hash(canonical)


class KeyIndex:
    """Integer keys (hashes), each with the number of the paragraph it came from, in a hash table of
    two NumPy arrays: a lookup reads one short stretch of memory a key, however large the index grows.

    Open addressing with linear probing: a key's home slot is its top bits (the table has a power
    of two slots), and it goes in the first empty slot from there, so the entries of a key lie
    between its home and the next empty slot (nothing is ever removed). A lookup reads ``WINDOW``
    slots from each key's home in one gather, and reads on only for a key whose window holds no
    empty slot. Key 0 marks an empty slot, so a key 0 is stored as 1 (for a hash: one more
    collision in 2**bits).

    The table doubles when half full: 2 to 4 slots a key (16 to 32 bytes a 32-bit key with its
    paragraph). Fuller tables make long runs of taken slots, and a lookup then walks them key by key
    (allowed three quarters full, 4 to 8 times slower: `benchmarks/bench_key_index.py`). Each array
    has a memory mapping of its own, so that while the table doubles the old one's pages go back
    to the system a chunk at a time as their keys move over: the two tables are never held whole
    together (that was chapter 02's peak at 10x, 512 MiB above the index: `benchmarks/README.md`).
    """

    WINDOW = 16  # slots a lookup reads from each key's home: 64 bytes of 32-bit keys
    MAX_LOAD = 0.5
    INITIAL_CAPACITY = 1 << 16
    _GROW_CHUNK = 1 << 20  # slots moved at a time when the table doubles: bounded temporaries

    def __init__(self, dtype: type = np.uint64):
        if self.INITIAL_CAPACITY & (self.INITIAL_CAPACITY - 1):
            raise ValueError(f"KeyIndex.INITIAL_CAPACITY must be a power of two, not {self.INITIAL_CAPACITY}")
        self.dtype = np.dtype(dtype)
        self._steps = np.arange(self.WINDOW)
        self._count = 0
        self._allocate(self.INITIAL_CAPACITY)

    def __len__(self) -> int:
        return self._count

    def add(self, keys: Iterable[int], paragraph: int | np.ndarray) -> None:
        """Index ``keys`` under ``paragraph``: one number for them all, or one per key."""
        keys = self.stored(keys)
        paragraphs = np.broadcast_to(np.asarray(paragraph, dtype=np.uint32), keys.shape)
        if self._count + len(keys) > self.MAX_LOAD * self._capacity:
            self._grow(self._count + len(keys))
        rows, window = self._windows(keys)
        empty = window == 0
        slots = rows[np.arange(len(keys)), empty.argmax(axis=1)]
        # Usually each key has an empty slot in its window, and no two keys want the same one.
        if empty.any(axis=1).all() and len(np.unique(slots)) == len(slots):
            self._keys[slots] = keys
            self._paragraphs[slots] = paragraphs
        else:
            self._place(keys, np.array(paragraphs))
        self._count += len(keys)

    def paragraphs(self, keys: Iterable[int]) -> set[int]:
        """The paragraphs that hold any of ``keys``."""
        return set(self.lookup(keys)[1].tolist())

    def lookup(self, keys: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Every entry of ``keys``, as two arrays: which of ``keys`` it matched (its position among
        them), and the paragraph it holds. Many keys in one call cost about what one costs."""
        keys = self.stored(keys)
        rows, window = self._windows(keys)
        asked, step = np.nonzero(window == keys[:, None])
        found_at, found = [asked], [self._paragraphs[rows[asked, step]]]
        full = np.flatnonzero(~(window == 0).any(axis=1))
        for position, key, last in zip(full.tolist(), keys[full].tolist(), rows[full, -1].tolist()):
            slot = (last + 1) % self._capacity
            while (held := int(self._keys[slot])) != 0:  # the key's entries may go on past its window
                if held == key:
                    found_at.append(np.array([position]))
                    found.append(self._paragraphs[slot : slot + 1])
                slot = (slot + 1) % self._capacity
        return np.concatenate(found_at), np.concatenate(found).astype(np.int64)

    def nbytes(self) -> int:
        """Bytes the table's two arrays take (empty slots included): what grows with the corpus."""
        return self._keys.nbytes + self._paragraphs.nbytes

    def _allocate(self, capacity: int) -> None:
        self._capacity = capacity
        self._home_shift = self.dtype.type(max(0, 8 * self.dtype.itemsize - capacity.bit_length() + 1))
        self._keys = _releasable_zeros(capacity, self.dtype)
        self._paragraphs = _releasable_zeros(capacity, np.dtype(np.uint32))

    def stored(self, keys: Iterable[int]) -> np.ndarray:
        """``keys`` as the table holds them: its dtype, a key 0 as 1. Keys equal here are equal there."""
        if not isinstance(keys, np.ndarray) or keys.dtype != self.dtype:
            keys = np.fromiter(keys, dtype=self.dtype)
        return np.maximum(keys, self.dtype.type(1))

    def _homes(self, keys: np.ndarray) -> np.ndarray:
        return (keys >> self._home_shift).astype(np.intp)

    def _windows(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's ``WINDOW`` slots from its home (wrapping at the end) and the keys held there."""
        rows = self._homes(keys)[:, None] + self._steps
        rows &= self._capacity - 1
        return rows, self._keys[rows]

    def _place(self, keys: np.ndarray, paragraphs: np.ndarray) -> None:
        """Any number of keys, slot by slot: of the keys that reach an empty slot together, the first
        takes it, and the others go on to the next slot with the keys that found theirs taken."""
        slots = self._homes(keys)
        waiting = np.arange(len(keys))
        while waiting.size:
            at = slots[waiting]
            free = np.flatnonzero(self._keys[at] == 0)
            _, first = np.unique(at[free], return_index=True)
            taking = free[first]
            winners = waiting[taking]
            self._keys[slots[winners]] = keys[winners]
            self._paragraphs[slots[winners]] = paragraphs[winners]
            placed = np.zeros(len(waiting), dtype=bool)
            placed[taking] = True
            waiting = waiting[~placed]
            slots[waiting] = (slots[waiting] + 1) & (self._capacity - 1)

    def _grow(self, needed: int) -> None:
        capacity = self._capacity
        while needed > self.MAX_LOAD * capacity:
            capacity *= 2
        old_keys, old_paragraphs = self._keys, self._paragraphs
        self._allocate(capacity)
        for start in range(0, len(old_keys), self._GROW_CHUNK):
            stop = start + self._GROW_CHUNK
            keys = old_keys[start:stop]
            taken = keys != 0
            self._place(keys[taken], old_paragraphs[start:stop][taken])
            _release(old_keys, start, stop)
            _release(old_paragraphs, start, stop)


def _releasable_zeros(length: int, dtype: np.dtype) -> np.ndarray:
    """A zeroed array in a private memory mapping of its own, whose pages ``_release`` can hand back
    to the system; a plain ``np.zeros`` where the platform cannot (Windows)."""
    if not hasattr(mmap, "MADV_DONTNEED") or not hasattr(mmap, "MAP_PRIVATE"):
        return np.zeros(length, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, length * dtype.itemsize, flags=mmap.MAP_PRIVATE), dtype=dtype)


def _release(array: np.ndarray, start: int, stop: int) -> None:
    """Give the pages of ``array[start:stop]`` back to the system, for an array that will not be read
    there again (on Linux they read as zeros after). Only whole pages; a no-op for other arrays."""
    mapping = array.base.obj if isinstance(array.base, memoryview) else None
    if not isinstance(mapping, mmap.mmap):
        return
    first = -(-start * array.itemsize // mmap.PAGESIZE) * mmap.PAGESIZE
    last = min(stop, len(array)) * array.itemsize // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


class NearDuplicateIndex:
    """MinHash + LSH over word shingles, with exact Jaccard to confirm each candidate.

    Each paragraph becomes a set of ``shingle_size``-word shingles. ``num_perm`` seeded hash
    functions give its MinHash signature; paragraphs that agree on every row of at least one of
    ``bands`` bands become candidates, and a candidate is a near-duplicate only if the exact Jaccard
    similarity of the two shingle sets reaches ``threshold``. Deterministic for a given seed.

    It is the one part of chapter 02's cleaning that grows with the corpus, so it is kept compact:
    a shingle is stored as a 32-bit hash (4 bytes), in fixed-size NumPy chunks that are never copied
    as they fill, and each band key as a 32-bit hash in a :class:`KeyIndex` (with its paragraph's
    number and the table's empty slots, 16 to 32 bytes). Two paragraphs of 100 shingles each share a
    spurious 32-bit shingle hash with a chance of about 1 in 400,000 (a Jaccard off by about 0.01
    then); two band keys that collide only add a candidate, which the Jaccard check then turns away
    (with N band keys indexed, a key meets a stranger's with a chance of N / 2**32: about 1% at 10x
    the colab slice, 49 million keys).
    """

    _PRIME = (1 << 31) - 1  # a*x + b stays below 2**63 for 31-bit a, b, x
    _CHUNK = 1 << 21  # shingle hashes per chunk (8 MB)

    def __init__(self, threshold: float, shingle_size: int, num_perm: int, bands: int, seed: int):
        self.threshold, self.shingle_size, self.bands = threshold, shingle_size, bands
        self.rows = num_perm // bands
        rng = np.random.default_rng(seed)
        self._a = rng.integers(1, self._PRIME, size=num_perm, dtype=np.uint64)
        self._b = rng.integers(0, self._PRIME, size=num_perm, dtype=np.uint64)
        self._band_salt = np.arange(bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # bands never share a key
        self.band_keys = KeyIndex(np.uint32)
        self._chunks: list[np.ndarray] = []  # every kept paragraph's sorted shingle hashes, chunk after chunk
        self._used = 0  # hashes written in the last chunk
        self._chunk_of = array("I")  # each kept paragraph's chunk
        self._ends = array("I")  # and where its hashes end in that chunk
        # Each kept paragraph's label as a number (4 bytes) into the distinct labels, each held once: an
        # article's paragraphs come together and share its title (a list of 15 million pointers was 117 MiB).
        self._label_of = array("I")
        self._label_names: list[str] = []
        self._label_names_bytes = 0

    def __len__(self) -> int:
        return len(self._label_of)

    def label(self, number: int) -> str:
        """The label of the kept paragraph ``number``."""
        return self._label_names[self._label_of[number]]

    def nbytes(self) -> int:
        """Bytes the index holds: its arrays (the band keys as ``KeyIndex.nbytes`` counts them; of the last
        chunk, the part written so far, since the rest is not touched, so not in memory yet), a label number
        a paragraph, and each distinct label (the string and its pointer)."""
        chunks = sum(chunk.nbytes for chunk in self._chunks[:-1]) + self._used * np.dtype(np.uint32).itemsize
        per_paragraph = (self._chunk_of.itemsize * len(self._chunk_of) + self._ends.itemsize * len(self._ends)
                         + self._label_of.itemsize * len(self._label_of))
        return self.band_keys.nbytes() + chunks + per_paragraph + self._label_names_bytes

    def shingles(self, text: str) -> frozenset[str]:
        words = [word.casefold() for word in _WORD.findall(text)]
        n = self.shingle_size
        if len(words) <= n:
            return frozenset([" ".join(words)])
        return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))

    def shingle_hashes(self, text: str) -> np.ndarray:
        """The paragraph's shingles as sorted, distinct 32-bit hashes."""
        return np.unique(np.fromiter(
            (text_hash(shingle, 4) for shingle in self.shingles(text)),
            dtype=np.uint32,
        ))

    def _band_keys(self, hashes: np.ndarray) -> np.ndarray:
        signature = ((np.outer(self._a, hashes.astype(np.uint64) % np.uint64(self._PRIME)) + self._b[:, None])
                     % self._PRIME).min(axis=1)
        rows = signature.reshape(self.bands, self.rows)
        keys = self._band_salt.copy()
        with np.errstate(over="ignore"):  # wrapping multiplication is the hash
            for row in rows.T:
                keys = (keys ^ row) * np.uint64(0x100000001B3)
        return (keys >> np.uint64(32)).astype(np.uint32)  # the high bits: the multiplication mixed them best

    def _stored(self, index: int) -> np.ndarray:
        chunk, end = self._chunk_of[index], self._ends[index]
        start = self._ends[index - 1] if index and self._chunk_of[index - 1] == chunk else 0
        return self._chunks[chunk][start:end]

    def sketch(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """What the index needs of a paragraph: its shingle hashes and band keys. It depends on the
        paragraph alone (and the seed), so worker processes compute it for the one that holds the index."""
        hashes = self.shingle_hashes(text)
        return hashes, self._band_keys(hashes)

    def query_and_add(self, text: str, label: str, sketch: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> tuple[str, float] | None:
        """The label and Jaccard of the most similar earlier paragraph at or above the threshold
        (the paragraph is then not added), or None (and the paragraph is added to the index).
        ``sketch``: ``self.sketch(text)`` when it was computed already."""
        hashes, keys = sketch if sketch is not None else self.sketch(text)
        best = self.best_match(hashes, self.band_keys.paragraphs(keys))
        if best is None:
            self.band_keys.add(keys, self.keep(hashes, label))
        return best

    def best_match(self, hashes: np.ndarray, candidates: Iterable[int]) -> tuple[str, float] | None:
        """Of ``candidates`` (numbers of indexed paragraphs), the label and Jaccard of the most similar
        to the paragraph whose shingle hashes are ``hashes``, if at or above the threshold."""
        best: tuple[str, float] | None = None
        for candidate in sorted(candidates):
            other = self._stored(candidate)
            shared = len(np.intersect1d(hashes, other, assume_unique=True))
            jaccard = shared / (len(hashes) + len(other) - shared)
            if jaccard >= self.threshold and (best is None or jaccard > best[1]):
                best = (self.label(candidate), jaccard)
        return best

    def keep(self, hashes: np.ndarray, label: str) -> int:
        """Store a paragraph's shingle hashes and label; its number. Its band keys are the caller's to
        add to ``band_keys`` under that number (``query_and_add`` does it at once)."""
        if not self._label_names or self._label_names[-1] != label:
            self._label_names.append(label)
            self._label_names_bytes += sys.getsizeof(label) + 8  # the string, and the list's pointer to it
        self._label_of.append(len(self._label_names) - 1)
        self._store(hashes)
        return len(self._label_of) - 1

    def _store(self, hashes: np.ndarray) -> None:
        if not self._chunks or self._used + len(hashes) > len(self._chunks[-1]):
            self._chunks.append(np.empty(max(self._CHUNK, len(hashes)), dtype=np.uint32))
            self._used = 0
        self._chunks[-1][self._used : self._used + len(hashes)] = hashes
        self._used += len(hashes)
        self._chunk_of.append(len(self._chunks) - 1)
        self._ends.append(self._used)


# --- the pipeline -----------------------------------------------------------------------------


def clean_articles(
    articles: Iterable[dict[str, Any]],
    config: CleaningConfig | None = None,
    *,
    sentence_tokenizer: PunktSentenceTokenizer | None = None,
    nltk_data_dir: Path | None = None,
) -> CleaningResult:
    """Clean articles for training; return the cleaned articles (same schema) and the report.

    Paragraphs go through the filters of :data:`FILTERS` in order; the first filter that removes a
    paragraph is the one the report charges. Sentence boundaries come from a Punkt model trained
    on this corpus after the text repairs (:func:`helpers.nltk_offline.train_punkt`), unless
    ``sentence_tokenizer`` is given. Sections and articles left empty are dropped. The articles are
    held in memory; :func:`clean_jsonl` cleans a file of any size the same way, streaming.
    """
    articles = list(articles)
    cleaned, report, sentence_tokenizer = clean_stream(lambda: articles, config, sentence_tokenizer=sentence_tokenizer,
                                                       nltk_data_dir=nltk_data_dir)
    return CleaningResult(list(cleaned), report, sentence_tokenizer)


def clean_jsonl(
    source: Path | str,
    out: Path | str,
    config: CleaningConfig | None = None,
    *,
    sentence_tokenizer: PunktSentenceTokenizer | None = None,
    nltk_data_dir: Path | None = None,
    processes: int = 1,
) -> tuple[CleaningReport, PunktSentenceTokenizer]:
    """:func:`clean_articles` from one JSONL file to another, one article in memory at a time.

    The file is read twice (once for the Punkt training text, once to clean), and ``out`` appears
    only when complete. What grows with the corpus is the duplicate index alone (a key per kept
    paragraph, and its MinHash signature). Writes what ``clean_articles`` + ``save_articles`` write,
    with any number of ``processes`` (see :func:`clean_stream`).
    """
    cleaned, report, sentence_tokenizer = clean_stream(lambda: dump.iter_jsonl(source, required=("sections",)), config,
                                                       sentence_tokenizer=sentence_tokenizer, nltk_data_dir=nltk_data_dir,
                                                       processes=processes)
    save_articles(cleaned, out)
    return report, sentence_tokenizer


def clean_stream(
    read_articles: Callable[[], Iterable[dict[str, Any]]],
    config: CleaningConfig | None = None,
    *,
    sentence_tokenizer: PunktSentenceTokenizer | None = None,
    nltk_data_dir: Path | None = None,
    processes: int = 1,
) -> tuple[Iterator[dict[str, Any]], CleaningReport, PunktSentenceTokenizer]:
    """The cleaning as a stream: the cleaned articles as they come, the report they fill in (its
    totals are set when the stream ends) and the Punkt model. ``read_articles()`` must give the
    articles afresh on each call: once for Punkt's training text (its first
    ``config.punkt_training_chars`` characters), once to clean.

    ``processes`` > 1 runs what each article needs alone (the repairs, the checks, the hashes of
    its paragraphs) in that many worker processes, a batch of articles each, while this process
    keeps the duplicate index and takes their results in the articles' order: the same articles and
    the same report as one process."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    config = config or CleaningConfig()
    report = CleaningReport.empty(config)
    if sentence_tokenizer is None:
        # Pass 1: the text repairs alone, so Punkt is trained on text without markup.
        quiet = CleaningReport.empty(config)
        sentence_tokenizer = nltk_offline.train_punkt(
            (p for article in read_articles() for paragraphs in _repaired_sections(quiet, config, article, Counter())
             for p in paragraphs),
            data_dir=nltk_data_dir,
            max_chars=config.punkt_training_chars,
        )
    return _cleaned(read_articles(), report, config, sentence_tokenizer, processes), report, sentence_tokenizer


def _repaired_sections(report: CleaningReport, config: CleaningConfig, article: dict[str, Any],
                       totals: Counter) -> list[list[str]]:
    """An article's paragraphs, section by section, after the text repairs (normalize, markup)."""
    title = article.get("title", "")
    totals["articles_in"] += 1
    sections = []
    for section in article["sections"]:
        totals["sections_in"] += 1
        paragraphs = []
        for raw in split_paragraphs(section["text"]):
            totals["paragraphs_in"] += 1
            totals["chars_in"] += len(raw)
            text = _transform(report, "normalize", title, raw, lambda t: normalize_text(t, config.normalization))
            if text is not None:
                text = _transform(report, "markup", title, text, strip_markup)
            if text is not None:
                paragraphs.append(text)
        sections.append(paragraphs)
    return sections


# One kept-so-far paragraph, as the duplicate filters need it: text, exact key, near-duplicate sketch
Candidate = tuple[str, int, tuple[np.ndarray, np.ndarray]]


class _ArticleFilters:
    """The filters that look at one article alone: the repairs, the checks, and the keys and sketch
    of each paragraph that passes them. Pickled to each worker process when there are several."""

    def __init__(self, config: CleaningConfig, sentence_tokenizer: PunktSentenceTokenizer):
        self.config, self.sentence_tokenizer = config, sentence_tokenizer
        self.checks = paragraph_checks(config, sentence_tokenizer)
        # An empty index with the run's hash functions: only its sketch() is used here.
        self.sketcher = NearDuplicateIndex(config.near_duplicate_threshold, config.shingle_size, config.num_perm,
                                           config.lsh_bands, config.seed)

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "sentence_tokenizer": self.sentence_tokenizer}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"], state["sentence_tokenizer"])

    def __call__(self, article: dict[str, Any], report: CleaningReport, totals: Counter
                 ) -> list[tuple[dict[str, Any], list[Candidate]]]:
        """Each section with its paragraphs that passed, for the duplicate filters to decide."""
        config, tokenizer, title = self.config, self.sentence_tokenizer, article.get("title", "")
        outcomes = []
        for section, paragraphs in zip(article["sections"], _repaired_sections(report, config, article, totals)):
            passed = []
            for text in paragraphs:
                text = _transform(report, "list_like", title, text, lambda t: drop_lists(t, config.max_list_line_share))
                if text is not None:
                    text = _transform(report, "trim_long", title, text, lambda t: trim_long(t, config, tokenizer))
                if text is not None:
                    text = _transform(report, "fragment", title, text, lambda t: drop_fragment(t, tokenizer))
                if text is None or _failed_check(report, self.checks, title, text):
                    continue
                passed.append((text, duplicate_key(text), self.sketcher.sketch(text)))
            outcomes.append((section, passed))
        return outcomes

    def batch(self, articles: list[dict[str, Any]]) -> tuple[CleaningReport, Counter, list]:
        """A worker's task: a batch of articles, with a report and counts of its own to merge."""
        report, totals = CleaningReport.empty(self.config), Counter()
        return report, totals, [self(article, report, totals) for article in articles]


_worker_filters: _ArticleFilters | None = None  # in a worker process: its copy of the run's filters


def _start_worker(filters: _ArticleFilters) -> None:
    global _worker_filters
    _worker_filters = filters


def _filter_batch(articles: list[dict[str, Any]]) -> tuple[CleaningReport, Counter, list]:
    return _worker_filters.batch(articles)


_BATCH_ARTICLES = 16  # articles per worker task: enough to make each message worth sending


def _filtered(articles: Iterable[dict[str, Any]], filters: _ArticleFilters, report: CleaningReport,
              totals: Counter, processes: int) -> Iterator[tuple[dict[str, Any], list]]:
    """Each article with its sections' candidates, in the articles' order; ``report`` and ``totals``
    hold what the filters did up to it."""
    if processes == 1:
        for article in articles:
            yield article, filters(article, report, totals)
        return
    articles = iter(articles)
    # spawn: a fresh interpreter per worker, safe in a Jupyter kernel (fork copies its threads' locks)
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(filters,)) as pool:
        pending: deque = deque()  # tasks in the articles' order; a few per worker, so memory stays bounded
        while True:
            while len(pending) < 3 * processes and (batch := list(itertools.islice(articles, _BATCH_ARTICLES))):
                pending.append((batch, pool.submit(_filter_batch, batch)))
            if not pending:
                return
            batch, task = pending.popleft()
            batch_report, batch_totals, outcomes = task.result()
            report.merge(batch_report)
            totals.update(batch_totals)
            yield from zip(batch, outcomes)


def _cleaned(articles: Iterable[dict[str, Any]], report: CleaningReport, config: CleaningConfig,
             sentence_tokenizer: PunktSentenceTokenizer, processes: int = 1) -> Iterator[dict[str, Any]]:
    """Pass 2: every filter over every paragraph, article by article; yields what stays."""
    near = NearDuplicateIndex(
        config.near_duplicate_threshold, config.shingle_size, config.num_perm, config.lsh_bands, config.seed
    )
    exact = KeyIndex(np.uint64)  # each kept paragraph's duplicate_key, with its number in ``near``
    totals = Counter()
    filters = _ArticleFilters(config, sentence_tokenizer)
    for article, sections in _filtered(articles, filters, report, totals, processes):
        title = article.get("title", "")
        verdicts = iter(_deduplicated([candidate for _, candidates in sections for candidate in candidates],
                                      title, exact, near))
        outcomes: list[tuple[dict[str, Any], list[str]]] = []
        for section, candidates in sections:
            kept = []
            for (text, _, _), verdict in zip(candidates, verdicts):
                if verdict is None:
                    kept.append(text)
                elif verdict[0] == "exact_duplicate":
                    report.removed("exact_duplicate", title, text, f"same as a paragraph of {verdict[1]!r}")
                else:
                    report.removed(
                        "near_duplicate", title, text,
                        f"Jaccard {verdict[2]:.2f} with a paragraph of {verdict[1]!r} "
                        f"({config.shingle_size}-word shingles, threshold {config.near_duplicate_threshold})",
                    )
            outcomes.append((section, kept))
        kept_sections = _keep_sections(report, config, title, outcomes)
        if not kept_sections:
            stats = report.filters["empty_article"]
            stats.articles_removed += 1
            report._example(stats, title, title, "no section left")
            continue
        cleaned = {**article, "sections": kept_sections}
        totals["articles_out"] += 1
        totals["sections_out"] += len(kept_sections)
        for paragraph in iter_paragraphs([cleaned]):
            totals["paragraphs_out"] += 1
            totals["chars_out"] += len(paragraph)
        yield cleaned
    order = ["articles_in", "articles_out", "sections_in", "sections_out", "paragraphs_in", "paragraphs_out", "chars_in", "chars_out"]
    report.totals = {key: int(totals[key]) for key in order}
    report.duplicate_index_bytes = near.nbytes() + exact.nbytes()


def _deduplicated(candidates: list[Candidate], label: str, exact: KeyIndex, near: NearDuplicateIndex
                  ) -> list[tuple[str, str, float] | None]:
    """The duplicate filters' verdict on each of an article's candidates, the same as checking and
    indexing them one after another gives: None (kept, and now indexed under ``label``),
    ``("exact_duplicate", label of the earliest paragraph with its key, 1.0)`` or
    ``("near_duplicate", label, Jaccard)``. The indexes are read once for all the candidates and
    written once: each call into NumPy costs more than the few keys one paragraph has."""
    if not candidates:
        return []
    keys = exact.stored([key for _, key, _ in candidates])
    band_keys = near.band_keys.stored(np.concatenate([sketch[1] for _, _, sketch in candidates])).reshape(len(candidates), near.bands)
    same_before: list[set[int]] = [set() for _ in candidates]
    for number, paragraph in zip(*(found.tolist() for found in exact.lookup(keys))):
        same_before[number].add(paragraph)
    similar_before: list[set[int]] = [set() for _ in candidates]
    for position, paragraph in zip(*(found.tolist() for found in near.band_keys.lookup(band_keys.ravel()))):
        similar_before[position // near.bands].add(paragraph)
    # Candidates of this article that share a band key with an earlier one (rare: one an article's
    # paragraphs near-copies another): found by sorting the article's keys, not key by key.
    order = np.argsort(band_keys.ravel())
    same_as_next = np.diff(band_keys.ravel()[order]) == 0
    earlier_sharing: dict[int, set[int]] = {}  # candidate -> the earlier ones sharing a band key with it
    if same_as_next.any():
        edges = np.flatnonzero(np.diff(np.concatenate(([0], same_as_next, [0])).astype(np.int8)))
        for start, end in zip(edges[::2].tolist(), edges[1::2].tolist()):  # a run of equal keys: start..end
            owners = sorted(set((order[start : end + 1] // near.bands).tolist()))
            for later, owner in enumerate(owners):
                earlier_sharing.setdefault(owner, set()).update(owners[:later])
    kept_keys: dict[int, int] = {}  # an exact key -> the first paragraph kept here with it
    kept_as: dict[int, int] = {}  # candidate -> its number in the index, if kept
    verdicts: list[tuple[str, str, float] | None] = []
    for number, ((_, _, (hashes, _)), key) in enumerate(zip(candidates, keys.tolist())):
        same = same_before[number] | ({kept_keys[key]} if key in kept_keys else set())
        if same:
            verdicts.append(("exact_duplicate", near.label(min(same)), 1.0))
            continue
        similar = similar_before[number] | {kept_as[other] for other in earlier_sharing.get(number, ()) if other in kept_as}
        match = near.best_match(hashes, similar)
        if match is not None:
            verdicts.append(("near_duplicate", *match))
            continue
        kept_as[number] = near.keep(hashes, label)
        kept_keys.setdefault(key, kept_as[number])
        verdicts.append(None)
    if kept_as:
        kept, numbers = list(kept_as), np.fromiter(kept_as.values(), dtype=np.uint32)
        exact.add(keys[kept], numbers)
        near.band_keys.add(band_keys[kept].ravel(), np.repeat(numbers, near.bands))
    return verdicts


def _transform(report: CleaningReport, name: str, title: str, text: str, repair: Callable[[str], str]) -> str | None:
    """Apply a repair; record a change as 'modified', and an emptied paragraph as 'removed'."""
    after = repair(text)
    if not after.strip():
        report.removed(name, title, text, "nothing left after this step")
        return None
    if after != text:
        report.modified(name, title, text, after)
    return after


def _keep_sections(
    report: CleaningReport, config: CleaningConfig, title: str, outcomes: list[tuple[dict[str, Any], list[str]]]
) -> list[dict[str, Any]]:
    """The sections that stay, given each one's kept paragraphs.

    Walks backwards so that a heading whose subsections survive stays (with empty text), as in
    chapter 01's output: without it the subsections would lose their place in the outline.
    """
    kept_sections: list[dict[str, Any]] = []
    for section, kept in reversed(outcomes):
        text = "\n\n".join(kept)
        has_children = bool(kept_sections) and kept_sections[-1]["level"] > section["level"]
        too_short = len(text) < config.min_section_chars
        if text and not too_short:
            kept_sections.append({**section, "text": text})
            continue
        if text:  # its paragraphs go either way
            report.filters["short_section"].paragraphs_removed += len(kept)
        if has_children and section["heading"]:
            kept_sections.append({**section, "text": ""})
            if text:  # the heading stays for its subsections; its short text goes
                stats = report.filters["short_section"]
                stats.chars_removed += len(text)
                report._example(stats, title, f"== {section['heading']} == {text}",
                                f"{len(text)} chars < min_section_chars {config.min_section_chars}; "
                                "the heading stays for its subsections")
        elif not text:
            _section_removed(report, "empty_section", title, section, "no paragraph left")
        else:
            detail = f"{len(text)} chars < min_section_chars {config.min_section_chars}"
            _section_removed(report, "short_section", title, section, detail, text)
    return kept_sections[::-1]


def _section_removed(report: CleaningReport, name: str, title: str, section: dict, detail: str, text: str = "") -> None:
    stats = report.filters[name]
    stats.sections_removed += 1
    stats.chars_removed += len(text)
    report._example(stats, title, f"== {section.get('heading') or '(lead)'} == {text}", detail)


# --- cutting at sentence boundaries (the trim_long and fragment filters) ----------------------


@functools.lru_cache(maxsize=4)
def sentence_spans(tokenizer: PunktSentenceTokenizer, text: str) -> tuple[tuple[int, int], ...]:
    """Where ``text``'s sentences start and end, by Punkt. Kept for the last few texts: the fragment
    filter and the short-sentences check split the same paragraph, and splitting is the slowest step."""
    return tuple(tokenizer.span_tokenize(text))


def trim_long(text: str, config: CleaningConfig, tokenizer: PunktSentenceTokenizer) -> str:
    """``text`` cut after the last sentence that ends within ``config.max_paragraph_chars``."""
    if len(text) <= config.max_paragraph_chars:
        return text
    end = 0
    for start, stop in sentence_spans(tokenizer, text):
        if stop > config.max_paragraph_chars:
            break
        end = stop
    # No boundary before the limit: leave it whole for the too_long check to remove, with its reason.
    return text[:end] if end else text


def drop_fragment(text: str, tokenizer: PunktSentenceTokenizer) -> str:
    """``text`` without its trailing sentences that lack terminal punctuation (``""``: all of them did)."""
    spans = list(sentence_spans(tokenizer, text))
    while spans and not ends_sentence(text[spans[-1][0] : spans[-1][1]]):
        spans.pop()
    return text[: spans[-1][1]] if spans else ""


def _failed_check(report: CleaningReport, checks: list[tuple[str, Callable[[str], str | None]]], title: str, text: str) -> bool:
    for name, check in checks:
        detail = check(text)
        if detail is not None:
            report.removed(name, title, text, detail)
            return True
    return False


def paragraph_checks(config: CleaningConfig, tokenizer: PunktSentenceTokenizer) -> list[tuple[str, Callable[[str], str | None]]]:
    """The keep-or-remove tests, in order; each returns why it removes a paragraph, or None."""
    stopwords = nltk_offline.COURSE_STOPWORDS  # fixed, so results do not depend on installed NLTK data

    def too_short(text: str) -> str | None:
        if len(text) < config.min_paragraph_chars:
            return f"{len(text)} chars < {config.min_paragraph_chars}"
        return None

    def too_long(text: str) -> str | None:
        if len(text) > config.max_paragraph_chars:
            return f"{len(text)} chars > {config.max_paragraph_chars}"
        return None

    # The character counts run map() over the text (the loop in C): a space is neither letter, digit
    # nor punctuation, so counting over the whole text counts over its visible characters.
    def alpha_ratio(text: str) -> str | None:
        visible = len(text) - sum(map(str.isspace, text))
        ratio = sum(map(str.isalpha, text)) / max(1, visible)
        if ratio < config.min_alpha_ratio:
            return f"letters are {ratio:.0%} of characters < {config.min_alpha_ratio:.0%}"
        return None

    def digits_symbols(text: str) -> str | None:
        visible = len(text) - sum(map(str.isspace, text))
        n = max(1, visible)
        digits = sum(map(str.isdigit, text)) / n
        # symbols: visible, neither letter nor digit, not ordinary punctuation
        symbols = (visible - sum(map(str.isalnum, text)) - sum(map(_ORDINARY_PUNCT.__contains__, text))) / n
        if digits > config.max_digit_ratio:
            return f"digits are {digits:.0%} of characters > {config.max_digit_ratio:.0%}"
        if symbols > config.max_symbol_ratio:
            return f"symbols are {symbols:.0%} of characters > {config.max_symbol_ratio:.0%}"
        return None

    def short_sentences(text: str) -> str | None:
        sentences = len(sentence_spans(tokenizer, text))
        words = len(_WORD.findall(text))
        mean = words / max(1, sentences)
        if mean < config.min_words_per_sentence:
            return f"{mean:.1f} words per sentence < {config.min_words_per_sentence}"
        return None

    def not_english(text: str) -> str | None:
        letters = sum(map(str.isalpha, text))
        non_latin = sum(map(str.isalpha, _NOT_LATIN.findall(text)))
        latin = (letters - non_latin) / max(1, letters)
        if latin < 0.8:
            return f"only {latin:.0%} of letters are Latin script"
        words = [word.casefold() for word in _WORD.findall(text)]
        share = sum(word in stopwords for word in words) / max(1, len(words))
        if share < config.min_stopword_share:
            return f"English function words are {share:.0%} of words < {config.min_stopword_share:.0%}"
        return None

    return [
        ("too_short", too_short),
        ("too_long", too_long),
        ("digits_symbols", digits_symbols),
        ("alpha_ratio", alpha_ratio),
        ("short_sentences", short_sentences),
        ("not_english", not_english),
    ]


# --- looking at the result -------------------------------------------------------------------


def compare_articles(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Per article: sections, paragraphs and characters before and after; most changed first."""
    kept = {article["id"]: article for article in after}
    rows = []
    for article in before:
        cleaned = kept.get(article["id"], {"sections": []})
        chars_before = sum(len(p) for p in iter_paragraphs([article]))
        chars_after = sum(len(p) for p in iter_paragraphs([cleaned]))
        rows.append(
            {
                "title": article["title"],
                "sections before": len(article["sections"]),
                "sections after": len(cleaned["sections"]),
                "paragraphs before": sum(1 for _ in iter_paragraphs([article])),
                "paragraphs after": sum(1 for _ in iter_paragraphs([cleaned])),
                "chars before": chars_before,
                "chars after": chars_after,
                "chars kept (%)": round(100 * chars_after / max(1, chars_before), 1),
            }
        )
    table = pd.DataFrame(rows).set_index("title")
    return table.sort_values(by=["chars kept (%)"], kind="stable")


def article_diff(before: dict[str, Any], after: dict[str, Any], *, max_sections: int = 3, width: int = 400) -> str:
    """A readable before/after of an article's first sections (each text cut to ``width`` chars)."""
    kept = {(s["heading"], s["level"]): s["text"] for s in after["sections"]}
    lines = []
    for section in before["sections"][:max_sections]:
        lines.append(f"=== {section['heading'] or '(lead section)'} ===")
        lines.append("BEFORE: " + (_snippet(section["text"], width) or "(a heading without text of its own)"))
        text = kept.get((section["heading"], section["level"]))
        if text is None:
            shown = "(section removed)"
        elif not text and section["text"]:
            shown = "(heading kept for its subsections, text removed)"
        elif not text:
            shown = "(heading kept for its subsections)"
        else:
            shown = _snippet(text, width)
        lines.append("AFTER:  " + shown)
        lines.append("")
    return "\n".join(lines)


# --- saving ---------------------------------------------------------------------------------


def save_articles(articles: Iterable[dict[str, Any]], path: Path | str) -> Path:
    """Write articles as JSON lines (the schema of ``helpers.dump``'s files), atomically.

    Read them back with ``helpers.dump.read_jsonl``. Written through ``course.atomic_output``, so an
    interrupted run leaves no half-written file for chapter 03 to trust.
    """
    with atomic_output(path, encoding="utf-8") as handle:
        for article in articles:
            handle.write(json.dumps(article, ensure_ascii=False) + "\n")
    return Path(path)
