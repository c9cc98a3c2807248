"""Chapter 03: instruction/response pairs from cleaned articles, split by article, and saved.

Every section of an article with some prose becomes one pair: its title and heading go into an
instruction through one of a few templates, and its first paragraphs become the response. The lead
section (heading ``""``) is the article's introduction, so it answers "Explain {title}.". Template choices are seeded per section, so a pair does not change when other
articles are added or removed.

Splits are made by article, never by pair: two sections of one article share vocabulary, names and
facts, so a test pair whose article the model trained on would flatter the evaluation.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import re
import shutil
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from helpers.prompt import format_prompt, special_token_text, training_text

if TYPE_CHECKING:  # imported where used: the pairing itself needs neither
    import datasets
    import pandas

SECTION_TEMPLATES: tuple[str, ...] = (
    "What does the article on {title} say about {heading}?",
    "Describe the {heading} of {title}.",
    "Tell me about {heading} in the context of {title}.",
    "Summarize the section '{heading}' of the article on {title}.",
    "What should I know about {title}, regarding {heading}?",
)
# The lead is always asked for the same way: "Explain {title}." is what the browser page offers first,
# so the model sees that exact request for every article it trains on.
LEAD_TEMPLATES: tuple[str, ...] = ("Explain {title}.",)
# Sections that are lists of links or citations, not prose a model should learn to write.
SKIP_HEADINGS: frozenset[str] = frozenset(
    {
        "see also", "references", "external links", "further reading", "notes", "bibliography",
        "sources", "citations", "footnotes", "notes and references", "works cited", "gallery",
    }
)
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
PAIR_FIELDS: tuple[str, ...] = (
    "article_id", "title", "url", "heading", "heading_path", "level", "instruction", "response", "template",
)

_LIST_LINE = re.compile(r"^\s*([*#:;•\-–|]|\d+[.)]\s)")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)")


@dataclass(frozen=True)
class PairingConfig:
    """How sections become pairs. The defaults are the course's; every choice is seeded.

    - ``seed``: seeds each section's template choice (with the article id and heading path).
    - ``templates`` / ``lead_templates``: instruction templates with ``{title}`` and ``{heading}``.
    - ``max_paragraphs`` / ``max_response_chars``: how much of a section the response keeps; a
      response longer than the limit is cut at its last sentence end before it.
    - ``min_response_chars``: shorter responses (a stub section) make no pair.
    - ``heading_path``: for nested sections, name the parent headings too ("History: Early years").
    - ``skip_headings``: headings (case-insensitive) whose sections make no pair.
    """

    seed: int = 0
    templates: tuple[str, ...] = SECTION_TEMPLATES
    lead_templates: tuple[str, ...] = LEAD_TEMPLATES
    max_paragraphs: int = 2
    max_response_chars: int = 700
    min_response_chars: int = 60
    heading_path: bool = False
    skip_headings: frozenset[str] = field(default=SKIP_HEADINGS)

    def __post_init__(self) -> None:
        if not self.templates or not self.lead_templates:
            raise ValueError("PairingConfig needs at least one section template and one lead template")
        for template in self.templates:
            if "{heading}" not in template or "{title}" not in template:
                raise ValueError(f"section template {template!r} must use both {{title}} and {{heading}}")
        for template in self.lead_templates:
            if "{title}" not in template:
                raise ValueError(f"lead template {template!r} must use {{title}}")
        if self.max_paragraphs < 1 or self.min_response_chars < 1 or self.max_response_chars < self.min_response_chars:
            raise ValueError(
                f"PairingConfig: max_paragraphs must be at least 1 (got {self.max_paragraphs}), min_response_chars "
                f"at least 1 (got {self.min_response_chars}) and max_response_chars at least min_response_chars "
                f"(got {self.max_response_chars}): change the profile's pair_* values")


# --- sections to pairs -------------------------------------------------------------------------


def _is_prose(paragraph: str) -> bool:
    # List items and table remnants read as fragments; a response should be sentences.
    lines = paragraph.splitlines()
    if any(_LIST_LINE.match(line) for line in lines):
        return False
    return _SENTENCE_END.search(paragraph) is not None


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    ends = [match.end() for match in _SENTENCE_END.finditer(text) if match.end() <= max_chars]
    if ends:
        return text[: ends[-1]]
    # One sentence longer than the limit: cut at a word boundary rather than inside a word.
    return text[:max_chars].rsplit(None, 1)[0]


def section_response(text: str, config: PairingConfig) -> str | None:
    """The response a section's ``text`` gives: its first prose paragraphs, within the limits.

    Returns ``None`` when the section has no prose paragraph or too little of it.
    """
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if _is_prose(p)]
    kept: list[str] = []
    for paragraph in paragraphs[: config.max_paragraphs]:
        candidate = "\n\n".join(kept + [paragraph])
        if kept and len(candidate) > config.max_response_chars:
            break  # a whole second paragraph or nothing: half of one reads as cut off
        kept.append(paragraph)
    if not kept:
        return None
    response = _truncate("\n\n".join(kept), config.max_response_chars)
    if not _SENTENCE_END.search(response[-3:]):
        # A paragraph that introduced a list ("...as follows:") loses its list in cleaning: end the
        # response at the last complete sentence instead of on a colon.
        ends = [match.end() for match in _SENTENCE_END.finditer(response)]
        response = response[: ends[-1]] if ends else ""
    return response if len(response) >= config.min_response_chars else None


def _heading_paths(sections: Sequence[dict[str, Any]]) -> list[list[str]]:
    # A stack of the open headings by level: "===" under "==" is a subsection of it.
    stack: list[tuple[int, str]] = []
    paths = []
    for section in sections:
        level, heading = int(section.get("level", 2)), section["heading"]
        if not heading:
            paths.append([])
            continue
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading))
        paths.append([name for _, name in stack])
    return paths


def make_pairs(
    articles: Iterable[dict[str, Any]],
    config: PairingConfig | None = None,
    *,
    seed: int | None = None,
    templates: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Instruction/response pairs from articles (the schema of docs/CONTRACTS.md), in article order.

    Each pair has ``article_id, title, url, heading, heading_path, level, instruction, response,
    template`` (``template`` is the instruction template used). ``seed`` and ``templates`` override
    the config's. The same articles and seed always give the same pairs.
    """
    config = config or PairingConfig()
    if seed is not None:
        config = dataclasses.replace(config, seed=seed)
    if templates is not None:
        config = dataclasses.replace(config, templates=tuple(templates))

    pairs = []
    for article in articles:
        title = article["title"].strip()
        sections = article["sections"]
        for section, path in zip(sections, _heading_paths(sections)):
            heading = section["heading"].strip()
            if heading.casefold() in config.skip_headings:
                continue
            response = section_response(section["text"], config)
            if response is None:
                continue
            shown_heading = ": ".join(path) if config.heading_path else heading
            # Seeded by the section itself, not by its position in the corpus: stable under edits.
            rng = random.Random(f"{config.seed}\x1f{article['id']}\x1f{' / '.join(path)}")
            template = rng.choice(config.lead_templates if not heading else config.templates)
            pairs.append(
                {
                    "article_id": int(article["id"]),
                    "title": title,
                    "url": article.get("url", ""),
                    "heading": heading,
                    "heading_path": " / ".join(path),
                    "level": int(section.get("level", 1)),
                    "instruction": template.format(title=title, heading=shown_heading),
                    "response": response,
                    "template": template,
                }
            )
    return pairs


# --- deduplication -----------------------------------------------------------------------------


def _normalized(text: str) -> str:
    return " ".join(text.casefold().split())


def dedupe_pairs(pairs: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Drop repeated pairs, keeping the first: return ``(kept, number removed)``.

    A pair is a duplicate when its response matches an earlier pair's after case folding and whitespace
    collapsing, whatever its instruction: the same paragraph under two headings (or copied between
    articles) would teach two answers for one text. A pair repeated whole repeats its response too.
    """
    pairs = list(pairs)
    duplicates = DuplicateFilter()
    kept = [pair for pair, keep in zip(pairs, duplicates.keep_each(pairs)) if keep]
    return kept, duplicates.removed


class DuplicateFilter:
    """``dedupe_pairs``' rule one pair at a time, for a stream of pairs of any length.

    The key of a response is a 64-bit hash of its normalized text, held in a
    :class:`helpers.clean.KeyIndex` (12 bytes a slot, 2 to 4 slots a kept pair): two different
    responses among 15 million share a key with a chance of about 1 in 160,000.
    """

    def __init__(self):
        from helpers.clean import KeyIndex, text_hash

        self._seen, self._hash = KeyIndex(), text_hash
        self.kept = self.removed = 0

    def keep(self, pair: dict[str, Any]) -> bool:
        """True the first time this response comes; False (counted in ``removed``) after."""
        return self.keep_each([pair])[0]

    def keep_each(self, pairs: list[dict[str, Any]]) -> list[bool]:
        """``keep``'s verdict on each of ``pairs``, as if they came one at a time, in one lookup and one
        write of the table (a call costs about what one pair's does: an article's pairs at once)."""
        keys = self._seen.stored(self._hash(_normalized(pair["response"])) for pair in pairs)
        first = np.zeros(len(keys), dtype=bool)
        first[np.unique(keys, return_index=True)[1]] = True  # the first of equal responses among these
        seen, _ = self._seen.lookup(keys)
        first[seen] = False
        kept = np.flatnonzero(first)
        self._seen.add(keys[kept], self.kept + np.arange(len(kept)))
        self.kept += len(kept)
        self.removed += len(keys) - len(kept)
        return first.tolist()

    def nbytes(self) -> int:
        """Bytes the keys' table takes: what grows with the number of kept pairs."""
        return self._seen.nbytes()


# --- splitting by article ----------------------------------------------------------------------


def _check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    if not fractions:
        raise ValueError("split fractions are empty: give e.g. {'train': 0.8, 'validation': 0.1, 'test': 0.1}")
    unknown = [name for name in fractions if name not in SPLIT_NAMES]
    if unknown:
        raise ValueError(f"unknown split name(s) {unknown}: splits are named {', '.join(SPLIT_NAMES)}")
    if "train" not in fractions:
        raise ValueError("the split fractions need a 'train' split")
    if any(not isinstance(value, (int, float)) or value <= 0 for value in fractions.values()):
        raise ValueError(f"every split fraction must be a positive number, got {fractions}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must sum to 1, got {total:g} from {fractions}")
    return {name: float(fractions[name]) for name in SPLIT_NAMES if name in fractions}


def _split_sizes(n_articles: int, fractions: dict[str, float]) -> dict[str, int]:
    # Largest remainder, then at least one article per split: a split the fractions ask for exists.
    exact = {name: n_articles * fraction for name, fraction in fractions.items()}
    sizes = {name: max(1, math.floor(value)) for name, value in exact.items()}
    by_remainder = sorted(fractions, key=lambda name: exact[name] - math.floor(exact[name]), reverse=True)
    while sum(sizes.values()) < n_articles:
        for name in by_remainder:
            if sum(sizes.values()) < n_articles:
                sizes[name] += 1
    while sum(sizes.values()) > n_articles:
        # Take back from the largest split: only "at least one" can overshoot, and train is largest.
        largest = max(sizes, key=lambda name: sizes[name])
        sizes[largest] -= 1
    return sizes


def split_by_article(
    pairs: Sequence[dict[str, Any]],
    fractions: dict[str, float] | None = None,
    seed: int = 0,
) -> dict[str, list[dict[str, Any]]]:
    """Split pairs into train/validation/test so that no article is in two splits.

    Articles (by ``article_id``) are shuffled with ``seed`` and dealt by ``fractions`` (of articles,
    not pairs; positive, summing to 1, split names from ``SPLIT_NAMES``, ``train`` required). Every
    split gets at least one article; fewer articles than splits is an error. Pairs keep their order.
    """
    if fractions is None:
        fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    assignment = deal_articles((pair["article_id"] for pair in pairs), fractions, seed)
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in _check_fractions(fractions)}
    for pair in pairs:
        splits[assignment[pair["article_id"]]].append(pair)
    return splits


def deal_articles(article_ids: Iterable[int], fractions: dict[str, float], seed: int = 0) -> ArticleSplits:
    """Each article's split, as ``split_by_article`` deals them: the distinct ids sorted, shuffled
    with ``seed``, the first ones to train, the next to validation, and so on, by ``fractions``.

    ``article_ids`` may repeat an id (one for each of its pairs); repeats that come together, as an
    article's pairs do, are dropped as they come, so memory holds one id an article."""
    fractions = _check_fractions(fractions)
    ids = np.unique(np.fromiter((article_id for article_id, _ in itertools.groupby(article_ids)), dtype=np.int64))
    if len(ids) < len(fractions):
        raise ValueError(
            f"pairs from {len(ids)} article(s) cannot fill {len(fractions)} splits ({', '.join(fractions)}) "
            f"without putting an article in two: pairing needs at least {len(fractions)} articles with prose sections"
        )
    # Shuffling the positions 0..n-1 makes the same swaps as shuffling the sorted ids themselves.
    order = array("q", range(len(ids)))
    random.Random(seed).shuffle(order)
    sizes = _split_sizes(len(ids), fractions)
    codes = np.empty(len(ids), dtype=np.uint8)
    codes[np.frombuffer(order, dtype=np.int64)] = np.repeat(np.arange(len(sizes), dtype=np.uint8), list(sizes.values()))
    return ArticleSplits(ids, codes, list(sizes))


class ArticleSplits(Mapping):
    """Article id -> split name, as ``deal_articles`` dealt them, in two arrays (the ids sorted, a
    split number each): 9 bytes an article, where a dict of ints takes about 74."""

    def __init__(self, ids: np.ndarray, codes: np.ndarray, names: list[str]):
        self._ids, self._codes, self._names = ids, codes, names
        self._last: tuple[Any, str] | None = None  # an article's pairs come together: one search each

    def __getitem__(self, article_id: int) -> str:
        if self._last is not None and self._last[0] == article_id:
            return self._last[1]
        position = int(np.searchsorted(self._ids, article_id))
        if position == len(self._ids) or self._ids[position] != article_id:
            raise KeyError(article_id)
        self._last = (article_id, self._names[self._codes[position]])
        return self._last[1]

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.tolist())

    def __len__(self) -> int:
        return len(self._ids)


def split_overlap(splits: dict[str, Sequence[dict[str, Any]]]) -> dict[str, int]:
    """For each pair of splits, how many articles they share (all zeros for a sound split)."""
    ids = {name: {pair["article_id"] for pair in rows} for name, rows in splits.items()}
    names = list(ids)
    return {
        f"{a} & {b}": len(ids[a] & ids[b]) for i, a in enumerate(names) for b in names[i + 1:]
    }


def tokenizer_training_texts(
    articles: Iterable[dict[str, Any]], train_pairs: Sequence[dict[str, Any]]
) -> list[str]:
    """The texts the course tokenizer learns from: the training split's articles and prompts.

    Only training articles, so that validation and test text stays unseen; the formatted prompts
    too, so that the template's markers become a few tokens rather than many.
    """
    train_ids = {pair["article_id"] for pair in train_pairs}
    texts = [
        section["text"]
        for article in articles
        if article["id"] in train_ids
        for section in article["sections"]
        if section["text"]
    ]
    texts += [format_prompt(pair["instruction"]) + pair["response"] for pair in train_pairs]
    return texts


# --- special-token text ---------------------------------------------------------------------------


def drop_special_token_pairs(
    splits: dict[str, Sequence[dict[str, Any]]], tokenizer: Any
) -> tuple[dict[str, list[dict[str, Any]]], pandas.DataFrame]:
    """Leave out the pairs whose instruction or response holds the text of one of ``tokenizer``'s
    special tokens (an article quoting ``<|endoftext|>``): the tokenizer would read it as the token.

    Returns the kept splits and one row per pair left out (``split``, ``title``, ``article_id``,
    ``field``, ``token``), so the chapter can count and show them; every other pair is kept as it was.
    """
    import pandas as pd

    kept: dict[str, list[dict[str, Any]]] = {}
    left_out = []
    for name, rows in splits.items():
        kept[name] = []
        for pair in rows:
            found = [(part, token) for part in ("instruction", "response")
                     if (token := special_token_text(tokenizer, pair[part]))]
            if found:
                left_out.append({"split": name, "title": pair.get("title"), "article_id": pair.get("article_id"),
                                 "field": found[0][0], "token": found[0][1]})
            else:
                kept[name].append(pair)
    return kept, pd.DataFrame(left_out, columns=["split", "title", "article_id", "field", "token"])


# --- token lengths -----------------------------------------------------------------------------


def token_lengths(splits: dict[str, Sequence[dict[str, Any]]], tokenizer: Any) -> pandas.DataFrame:
    """One row per pair: ``split``, and the token counts of its ``prompt``, ``response`` and ``full``
    training text (prompt + response + the tokenizer's end-of-text token), in the model's prompt
    format (``helpers.prompt.training_text``: its chat template, or the course's)."""
    import pandas as pd

    rows = []
    for name, rows_of_split in splits.items():
        for pair in rows_of_split:
            prompt, answer = training_text(tokenizer, pair["instruction"], pair["response"])
            counts = tokenizer([prompt, pair["response"], prompt + answer], add_special_tokens=False)["input_ids"]
            rows.append({"split": name, "prompt": len(counts[0]), "response": len(counts[1]), "full": len(counts[2])})
    return pd.DataFrame(rows, columns=["split", "prompt", "response", "full"])


def token_length_stats(
    splits: dict[str, Sequence[dict[str, Any]]], tokenizer: Any, lengths: pandas.DataFrame | None = None
) -> pandas.DataFrame:
    """Per split (the index): ``pairs`` and the ``mean``, ``median``, ``p95`` and ``max`` token counts
    of the prompt, the response and the full training text (columns ``prompt_mean``...``full_max``).

    Pass ``lengths`` (from ``token_lengths``) to reuse counts already made.
    """
    import pandas as pd

    lengths = token_lengths(splits, tokenizer) if lengths is None else lengths
    table = {}
    for name in splits:
        rows = lengths[lengths["split"] == name]
        stats: dict[str, float] = {"pairs": len(rows)}
        for part in ("prompt", "response", "full"):
            values = rows[part]
            stats |= {
                f"{part}_mean": round(float(values.mean()), 1) if len(values) else math.nan,
                f"{part}_median": float(values.median()) if len(values) else math.nan,
                f"{part}_p95": round(float(values.quantile(0.95)), 1) if len(values) else math.nan,
                f"{part}_max": int(values.max()) if len(values) else 0,
            }
        table[name] = stats
    frame = pd.DataFrame.from_dict(table, orient="index")
    frame["pairs"] = frame["pairs"].astype(int)
    frame.index.name = "split"
    return frame


def plot_token_lengths(
    lengths: pandas.DataFrame, column: str = "full", max_length: int | None = None, ax: Any = None
) -> Any:
    """Histogram of one token count (``prompt``, ``response`` or ``full``) per split, on ``ax``.

    ``max_length`` draws the context length the model will be trained with, to show what it cuts.
    Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if column not in ("prompt", "response", "full"):
        raise ValueError(f"column must be prompt, response or full, not {column!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    top = int(lengths[column].max()) if len(lengths) else 1
    bins = range(0, top + max(1, top // 40) + 1, max(1, top // 40))
    for name, rows in lengths.groupby("split", sort=False):
        ax.hist(rows[column], bins=bins, alpha=0.6, label=f"{name} ({len(rows)})")
    if max_length is not None:
        ax.axvline(max_length, color="black", linestyle="--", label=f"context {max_length}")
    ax.set_xlabel(f"tokens ({column} training text)" if column == "full" else f"tokens ({column})")
    ax.set_ylabel("pairs")
    ax.legend()
    return ax


# --- saving ------------------------------------------------------------------------------------


def save_pairs(splits: dict[str, Sequence[dict[str, Any]]], out_dir: Path | str) -> datasets.DatasetDict:
    """Save the splits in ``out_dir``: ``dataset/`` (``DatasetDict.save_to_disk``) and ``{split}.jsonl``.

    Every file is written beside its destination and moved into place at the end, so an interrupted
    save leaves the previous result, not half of a new one. Returns the DatasetDict.
    """
    import datasets

    from helpers.course import atomic_output

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {name: [{key: pair[key] for key in PAIR_FIELDS} for pair in pairs] for name, pairs in splits.items()}
    dataset = datasets.DatasetDict(
        {name: datasets.Dataset.from_list(split_rows, features=_features()) for name, split_rows in rows.items()}
    )
    for name, split_rows in rows.items():
        with atomic_output(out_dir / f"{name}.jsonl", encoding="utf-8") as handle:
            for row in split_rows:
                handle.write(_jsonl_line(row))
    _remove_other_splits(out_dir, rows)
    _save_dataset(dataset, out_dir)
    return dataset


def _features() -> datasets.Features:
    import datasets

    return datasets.Features(
        {name: datasets.Value("int64") if name in ("article_id", "level") else datasets.Value("string")
         for name in PAIR_FIELDS}
    )


def _jsonl_line(pair: dict[str, Any]) -> str:
    return json.dumps({key: pair[key] for key in PAIR_FIELDS}, ensure_ascii=False) + "\n"


def _remove_other_splits(out_dir: Path, splits: Iterable[str]) -> None:
    for name in set(SPLIT_NAMES) - set(splits):  # a split an earlier run made and this one does not
        (out_dir / f"{name}.jsonl").unlink(missing_ok=True)


@contextlib.contextmanager
def _no_progress_bars():
    """A progress bar per split is noise in a notebook for a few hundred rows; the setting comes back after."""
    import datasets

    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _save_dataset(dataset: datasets.DatasetDict, out_dir: Path) -> None:
    """``dataset`` into ``out_dir/dataset`` whole: written beside it, then moved into place."""
    final, partial, old = out_dir / "dataset", out_dir / ".dataset.partial", out_dir / ".dataset.old"
    for leftover in (partial, old):
        shutil.rmtree(leftover, ignore_errors=True)
    with _no_progress_bars():
        dataset.save_to_disk(str(partial))
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)


_ARROW_BATCH_ROWS = 1_000  # rows held per split before they are written to its Arrow file


def pairs_jsonl(
    articles_path: Path | str,
    out_dir: Path | str,
    config: PairingConfig | None = None,
    *,
    fractions: dict[str, float] | None = None,
    seed: int = 0,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Chapter 03 from the cleaned articles' file to ``save_pairs``' files, one article in memory at a time.

    Pass 1 makes each article's pairs (``make_pairs``), drops the duplicates (``DuplicateFilter``) and
    notes which articles keep a pair; ``deal_articles`` deals those. Pass 2 makes the same pairs
    again, drops the same duplicates, leaves out the pairs holding a special token's text when
    ``tokenizer`` is given (``drop_special_token_pairs``' rule), and writes each pair to its split's
    JSONL file and, a thousand rows at a time, to an Arrow file, as it comes; the DatasetDict is
    built from the Arrow files (on disk, not rows in memory). Writes what ``save_pairs(
    drop_special_token_pairs(split_by_article(dedupe_pairs(make_pairs(articles)))))`` writes; what
    grows with the corpus is the duplicate keys (``duplicate_index_bytes``) and each article's split
    (9 bytes an article: ``ArticleSplits``).

    Returns the counts: ``pairs_made``, ``duplicates_removed``, ``special_token_pairs``, ``rows`` per
    split, and ``duplicate_index_bytes`` (what the duplicate keys' table takes).
    """
    import datasets
    import pyarrow as pa

    from helpers.course import atomic_output
    from helpers.dump import iter_jsonl

    def pairs_of_articles():
        """Each article's pairs, with ``duplicates``' verdict on each (their first time: kept)."""
        for article in iter_jsonl(articles_path, required=("id", "title", "sections")):
            made = make_pairs([article], config)
            yield from zip(made, duplicates.keep_each(made))

    if fractions is None:
        fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    duplicates = DuplicateFilter()
    split_of = deal_articles((pair["article_id"] for pair, kept in pairs_of_articles() if kept), fractions, seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(_check_fractions(fractions))
    counts: dict[str, Any] = {"pairs_made": 0, "duplicates_removed": 0, "special_token_pairs": 0,
                              "rows": dict.fromkeys(names, 0)}
    duplicates = DuplicateFilter()  # the same decisions again, from the start
    features = _features()
    # Each split's rows also go into an Arrow file as they come, a batch at a time, for the DatasetDict:
    # Dataset.from_json would parse the JSONL again on Arrow's threads, whose memory grew with the file.
    cache = out_dir / ".arrow-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir()
    try:
        with contextlib.ExitStack() as files:
            handles = {name: files.enter_context(atomic_output(out_dir / f"{name}.jsonl", encoding="utf-8"))
                       for name in names}
            tables = {name: files.enter_context(pa.ipc.new_stream(str(cache / f"{name}.arrow"), features.arrow_schema))
                      for name in names}
            batches: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for pair, kept in pairs_of_articles():
                counts["pairs_made"] += 1
                if not kept:
                    continue
                if tokenizer is not None and any(special_token_text(tokenizer, pair[part]) for part in ("instruction", "response")):
                    counts["special_token_pairs"] += 1
                    continue
                name = split_of[pair["article_id"]]
                row = {key: pair[key] for key in PAIR_FIELDS}
                handles[name].write(_jsonl_line(row))
                batches[name].append(row)
                if len(batches[name]) == _ARROW_BATCH_ROWS:
                    tables[name].write_batch(pa.RecordBatch.from_pylist(batches[name], schema=features.arrow_schema))
                    batches[name].clear()
                counts["rows"][name] += 1
            for name, rows in batches.items():
                if rows:
                    tables[name].write_batch(pa.RecordBatch.from_pylist(rows, schema=features.arrow_schema))
        counts["duplicates_removed"] = duplicates.removed
        counts["duplicate_index_bytes"] = duplicates.nbytes()
        _remove_other_splits(out_dir, names)
        dataset = datasets.DatasetDict({
            name: datasets.Dataset.from_file(str(cache / f"{name}.arrow"), info=datasets.DatasetInfo(features=features))
            if counts["rows"][name] else datasets.Dataset.from_list([], features=features)
            for name in names
        })
        _save_dataset(dataset, out_dir)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return counts


def load_pairs(out_dir: Path | str) -> datasets.DatasetDict:
    """The DatasetDict ``save_pairs`` wrote in ``out_dir`` (e.g. ``runs/tiny/03_pairs``)."""
    import datasets

    from helpers.course import require_input

    path = require_input(Path(out_dir) / "dataset", produced_by="03_pairs")
    return datasets.load_from_disk(str(path))


def read_pairs_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """The pairs of one ``{split}.jsonl`` file, as dicts; a line that is not a whole pair (no
    ``instruction`` or ``response``...) raises ``helpers.dump.JsonlError`` naming the file and line."""
    from helpers.dump import iter_jsonl

    return list(iter_jsonl(path, required=PAIR_FIELDS))
