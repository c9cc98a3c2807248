"""Chapter 02 cleaning, on the real tiny corpus plus planted cases whose right answer is known."""
from __future__ import annotations

import copy
import itertools
import json
import sys

import matplotlib
import nltk
import numpy as np
import pytest

from helpers import clean, dump, nltk_offline

matplotlib.use("Agg")

PARAGRAPH_FILTERS = [name for name in clean.FILTERS if name not in ("empty_section", "empty_article")]


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"nltk.download called in a test: {args} {kwargs}")

    monkeypatch.setattr(nltk, "download", refuse)


@pytest.fixture(scope="module")
def good_paragraphs(clean_articles) -> list[str]:
    """Real paragraphs that passed every filter, long enough to plant variants of."""
    paragraphs = [p for p in clean.iter_paragraphs(clean_articles) if 300 < len(p) < 1200 and "\n" not in p]
    assert len(paragraphs) >= 20
    return paragraphs


def _article(title: str, *paragraphs: str, article_id: int = 10**9) -> dict:
    return {
        "id": article_id,
        "title": title,
        "url": f"https://en.wikipedia.org/wiki/{title.replace(' ', '_')}",
        "sections": [{"heading": "", "level": 1, "text": "\n\n".join(paragraphs)}],
    }


def _clean_with(cleaned, articles, config=None):
    """Clean with the Punkt model of the corpus run, as a real run on these articles would have."""
    return clean.clean_articles(articles, config, sentence_tokenizer=cleaned.sentence_tokenizer)


def _removed_texts(report, name: str) -> list[str]:
    return [example["text"] for example in report.filters[name].examples]


# --- part 1: the classic pipeline ---------------------------------------------------------------


def test_classic_pipeline_does_what_the_tutorials_say():
    tokens = clean.classic_nlp_pipeline("The 3 geese were running across the U.S. roads, in 1999!")
    assert tokens == ["goose", "running", "road"]  # noun lemmas only: no tagger data offline


def test_classic_pipeline_on_a_real_paragraph(good_paragraphs):
    paragraph = good_paragraphs[0]
    tokens = clean.classic_nlp_pipeline(paragraph)
    assert tokens and all(token.isalpha() and token == token.lower() for token in tokens)
    assert not set(tokens) & {"the", "of", "and", "is", "a"}
    assert len(tokens) < 0.75 * len(paragraph.split())


def test_term_frequencies_count_the_corpus_topics(clean_articles):
    albedo = next(a for a in clean_articles if a["title"] == "Albedo")
    frequencies = clean.term_frequencies([s["text"] for s in albedo["sections"]], top=10)
    assert list(frequencies.columns) == ["term", "count", "share"]
    assert frequencies.iloc[0]["term"] == "albedo"
    assert frequencies["count"].is_monotonic_decreasing
    ax = clean.plot_term_frequencies(frequencies, top=10)
    assert len(ax.patches) == 10


def test_classic_pipeline_output_is_not_language(good_paragraphs):
    comparison = clean.fluency_comparison(good_paragraphs[:20])
    assert comparison.loc["sentences", "original"] >= 20
    assert comparison.loc["sentences", "classic pipeline"] == 0
    kept = comparison.loc["original bigrams still present (%)", "classic pipeline"]
    assert kept < 25  # word order is mostly gone: nothing a generator should learn to write


# --- part 2: the training cleaning on the real corpus ------------------------------------------


def test_every_paragraph_is_accounted_for(cleaned):
    report = cleaned.report
    totals = report.totals
    removed = sum(report.filters[name].paragraphs_removed for name in PARAGRAPH_FILTERS)
    assert totals["paragraphs_in"] == totals["paragraphs_out"] + removed
    sections_removed = sum(s.sections_removed for s in report.filters.values())
    assert totals["sections_in"] == totals["sections_out"] + sections_removed
    assert totals["articles_in"] == totals["articles_out"] + report.filters["empty_article"].articles_removed
    assert totals["paragraphs_out"] < totals["paragraphs_in"] and totals["chars_out"] < totals["chars_in"]


def test_output_keeps_the_article_schema(tiny_articles, clean_articles):
    by_id = {a["id"]: a for a in tiny_articles}
    assert clean_articles
    for article in clean_articles:
        assert set(article) == {"id", "title", "url", "sections"}
        assert article["title"] == by_id[article["id"]]["title"]
        sections = article["sections"]
        assert sections
        for i, section in enumerate(sections):
            assert set(section) == {"heading", "level", "text"}
            if not section["text"]:  # only a heading over kept subsections, as chapter 01 writes them
                assert section["heading"] and i + 1 < len(sections) and sections[i + 1]["level"] > section["level"]
            assert all(p.strip() for p in clean.split_paragraphs(section["text"]))


def test_cleaning_removes_what_the_report_says_on_real_data(cleaned):
    report = cleaned.report
    # What the tiny corpus really contains: lists (filmographies, link lists), "as follows:" lead-ins
    # of dropped formulas, over-long paragraphs, sections left empty.
    assert report.filters["list_like"].paragraphs_removed >= 20
    assert report.filters["fragment"].paragraphs_removed >= 10
    assert report.filters["trim_long"].paragraphs_modified >= 3
    assert report.filters["empty_section"].sections_removed >= 10
    for name, stats in report.filters.items():
        touched = stats.paragraphs_removed + stats.paragraphs_modified + stats.sections_removed + stats.articles_removed
        assert len(stats.examples) == min(touched, cleaned.report.config.examples_per_filter), name
        for example in stats.examples:
            assert example["detail"] and example["title"]


def test_output_paragraphs_are_prefixes_of_input_paragraphs(tiny_articles, clean_articles):
    """Cleaning cuts and drops; it never rewrites words (beyond Unicode/whitespace normalization)."""
    originals = [clean.normalize_text(p) for p in clean.iter_paragraphs(tiny_articles)]
    by_start: dict[str, list[str]] = {}
    for original in originals:
        by_start.setdefault(original[:30], []).append(original)
    for paragraph in clean.iter_paragraphs(clean_articles):
        assert any(o.startswith(paragraph) for o in by_start.get(paragraph[:30], [])), paragraph[:80]


def test_no_valid_paragraph_is_lost(cleaned, clean_articles):
    """Cleaning its own output removes and changes nothing: whatever passes all filters stays verbatim."""
    again = _clean_with(cleaned, copy.deepcopy(clean_articles))
    assert again.articles == clean_articles
    table = again.report.table()
    assert table.drop(columns="reason").to_numpy().sum() == 0


def test_trimmed_paragraphs_end_at_a_sentence_boundary(clean_articles, cleaned):
    limit = cleaned.report.config.max_paragraph_chars
    for paragraph in clean.iter_paragraphs(clean_articles):
        assert len(paragraph) <= limit
        assert clean.ends_sentence(paragraph), paragraph[-80:]


def test_cleaning_is_deterministic(tiny_articles, cleaned):
    again = _clean_with(cleaned, tiny_articles)
    assert again.articles == cleaned.articles
    assert again.report.as_dict() == cleaned.report.as_dict()


def test_the_characters_removed_add_up_to_the_characters_in_less_out(cleaned):
    report = cleaned.report
    removed = {name: stats.chars_removed for name, stats in report.filters.items()}
    # including a short section whose heading stays for its subsections ("Analysis of variance"): its text goes
    assert sum(removed.values()) == report.totals["chars_in"] - report.totals["chars_out"], removed


def test_report_table_dict_and_plot(cleaned):
    report = cleaned.report
    table = report.table()
    assert list(table.index) == list(clean.FILTERS)
    assert {"paragraphs removed", "chars removed", "reason"} <= set(table.columns)
    data = json.loads(json.dumps(report.as_dict()))
    assert data["totals"] == report.totals and set(data["filters"]) == set(clean.FILTERS)
    metrics = report.metrics()
    assert metrics["paragraphs_out"] == report.totals["paragraphs_out"]
    assert metrics["paragraphs_modified"]["list_like"] == report.filters["list_like"].paragraphs_modified
    assert metrics["paragraphs_removed"]["list_like"] == report.filters["list_like"].paragraphs_removed
    assert metrics["sections_removed"]["empty_section"] == report.filters["empty_section"].sections_removed
    ax = report.plot()
    assert len(ax.patches) == 2 * len(clean.FILTERS)


def test_article_diff_says_what_became_of_each_section(tiny_articles, cleaned):
    for before in tiny_articles:
        after = next((a for a in cleaned.articles if a["id"] == before["id"]), {"sections": []})
        diff = clean.article_diff(before, after, max_sections=len(before["sections"]))
        assert diff.count("BEFORE: ") == diff.count("AFTER:  ") == len(before["sections"])
        assert not any(line in ("BEFORE: ", "AFTER:  ") for line in diff.splitlines())  # never a blank side
    paragraph = next(p for p in clean.iter_paragraphs(cleaned.articles) if len(p) > 300)
    article = {"id": 1, "title": "Outline", "sections": [
        {"heading": "History", "level": 2, "text": ""},
        {"heading": "Early years", "level": 3, "text": paragraph},
        {"heading": "See also", "level": 2, "text": "Short."},
    ]}
    result = clean.clean_articles([article], sentence_tokenizer=cleaned.sentence_tokenizer)
    diff = clean.article_diff(article, result.articles[0])
    assert "=== History ===\nBEFORE: (a heading without text of its own)\nAFTER:  (heading kept for its subsections)" in diff
    assert f"AFTER:  {clean._snippet(paragraph, 400)}" in diff
    assert "=== See also ===\nBEFORE: Short.\nAFTER:  (section removed)" in diff


def test_save_and_read_back(clean_articles, tmp_path):
    path = clean.save_articles(clean_articles, tmp_path / "02_cleaning" / "articles.jsonl")
    assert dump.read_jsonl(path) == clean_articles
    assert [p.name for p in path.parent.iterdir()] == ["articles.jsonl"]  # no temporary file left


# --- planted cases ------------------------------------------------------------------------------


def test_every_kept_paragraph_passes_the_checks_chapter_02_shows(cleaned, tiny_articles):
    checks = clean.paragraph_checks(cleaned.report.config, cleaned.sentence_tokenizer)
    assert [name for name, _ in checks] == [n for n in clean.FILTERS if n in (
        "too_short", "too_long", "digits_symbols", "alpha_ratio", "short_sentences", "not_english")]
    assert all(check(p) is None for p in clean.iter_paragraphs(cleaned.articles) for _, check in checks)
    verdicts = [next((name for name, check in checks if check(p)), None) for p in clean.iter_paragraphs(tiny_articles)]
    assert {"too_short", "not_english"} <= set(verdicts)  # chapter 01's raw paragraphs do fail some


def test_duplicate_key_ignores_case_spacing_and_punctuation(good_paragraphs):
    text = good_paragraphs[0]
    assert clean.duplicate_key(text) == clean.duplicate_key("  " + text.upper().replace(", ", " ; ") + " ")
    assert clean.duplicate_key(text) != clean.duplicate_key(text.replace(" ", " not ", 1))


def test_planted_exact_duplicates_are_removed(cleaned, clean_articles, good_paragraphs):
    original = good_paragraphs[3]
    variant = "  " + original.upper().replace(", ", " , ") + "  "  # case, spacing, punctuation differ
    planted = clean_articles + [_article("Planted copy", original, variant, good_paragraphs[4])]
    result = _clean_with(cleaned, planted)
    stats = result.report.filters["exact_duplicate"]
    assert stats.paragraphs_removed == 3  # the copy and the variant of paragraph 3, the copy of 4
    assert all("same as a paragraph of" in e["detail"] for e in stats.examples)
    assert result.articles == clean_articles  # the planted article is empty, so it goes too
    assert result.report.filters["empty_article"].articles_removed == 1


def _table_slots(keys: int, initial: int) -> int:
    """The slots a KeyIndex holding ``keys`` keys has: it doubles from ``initial`` to stay at most half full."""
    slots = initial
    while keys > slots // 2:
        slots *= 2
    return slots


def test_exact_duplicates_are_found_after_the_tables_grow(monkeypatch, cleaned, clean_articles, good_paragraphs):
    planted = clean_articles + [_article("Planted copy", good_paragraphs[3], good_paragraphs[4].upper())]
    roomy = _clean_with(cleaned, planted)
    # Tables of 16 slots that double many times, and windows of 2 slots: most lookups read past their window.
    monkeypatch.setattr(clean.KeyIndex, "INITIAL_CAPACITY", 16)
    monkeypatch.setattr(clean.KeyIndex, "WINDOW", 2)
    monkeypatch.setattr(clean.NearDuplicateIndex, "_CHUNK", 64)  # shingle hashes in chunks of 64: little unused room
    grown = _clean_with(cleaned, planted)
    assert grown.articles == roomy.articles == clean_articles
    assert grown.report.as_dict() == roomy.report.as_dict()
    assert grown.report.filters["exact_duplicate"].paragraphs_removed == 2
    # What the kept paragraphs cost: a table of exact keys (8 + 4 bytes a slot), one of their 32 band keys
    # each (4 + 4), where each one's shingle hashes are (4 + 4) and the hashes themselves (4 each).
    config = clean.CleaningConfig()
    probe = clean.NearDuplicateIndex(config.near_duplicate_threshold, config.shingle_size, config.num_perm,
                                     config.lsh_bands, config.seed)
    kept = list(clean.iter_paragraphs(grown.articles))
    assert len(kept) == grown.report.totals["paragraphs_out"]
    shingles = 4 * sum(len(probe.shingle_hashes(text)) for text in kept) + 8 * len(kept)
    # a label number each (4 bytes), and each article's title once (the string and its list pointer)
    titles = [title for title, _ in itertools.groupby(article["title"] for article in grown.articles)]
    labels = 4 * len(kept) + sum(sys.getsizeof(title) + 8 for title in titles)
    tables = 12 * _table_slots(len(kept), 16) + 8 * _table_slots(32 * len(kept), 16)
    assert (shingles + labels + tables <= grown.report.duplicate_index_bytes
            <= shingles + labels + tables + 4 * 64 * len(kept))
    # with one large chunk nothing is left unused between chunks: the bytes are exactly the paragraphs' cost
    initial = 1 << 16
    assert roomy.report.duplicate_index_bytes == (shingles + labels + 12 * _table_slots(len(kept), initial)
                                                  + 8 * _table_slots(32 * len(kept), initial))


@pytest.mark.parametrize("distinct", [50, 2**32])
def test_key_index_finds_what_a_dict_of_sets_finds(monkeypatch, distinct):
    # 50 distinct keys: long runs of taken slots, keys repeated within a call, key 0 (stored as 1)
    monkeypatch.setattr(clean.KeyIndex, "INITIAL_CAPACITY", 16)
    monkeypatch.setattr(clean.KeyIndex, "WINDOW", 4)
    rng = np.random.default_rng(0)
    index, expected, added = clean.KeyIndex(np.uint32), {}, 0
    for paragraph in range(400):
        keys = rng.integers(0, distinct, rng.integers(1, 40)).astype(np.uint32)
        asked = np.concatenate([rng.integers(0, distinct, 8).astype(np.uint32), keys[:2]])
        assert index.paragraphs(asked) == set().union(*(expected.get(max(k, 1), set()) for k in asked.tolist()))
        index.add(keys, paragraph)
        added += len(keys)
        for key in keys.tolist():
            expected.setdefault(max(key, 1), set()).add(paragraph)
    assert len(index) == added  # a key repeated, within a paragraph or across, takes a slot each time
    assert index.nbytes() == 8 * _table_slots(len(index), 16)


@pytest.mark.skipif(sys.platform != "linux", reason="pages read back as zeros after MADV_DONTNEED on Linux only")
def test_a_doubling_key_index_hands_the_old_tables_pages_back_as_their_keys_move(monkeypatch):
    monkeypatch.setattr(clean.KeyIndex, "INITIAL_CAPACITY", 1 << 14)
    monkeypatch.setattr(clean.KeyIndex, "_GROW_CHUNK", 1 << 10)  # 4 KiB of 32-bit keys: one page a chunk
    keys = np.random.default_rng(1).integers(1, 2**32, 1 << 13, dtype=np.uint64).astype(np.uint32)
    index = clean.KeyIndex(np.uint32)
    index.add(keys, np.arange(len(keys)))  # exactly half full: no growth yet
    old_keys, old_paragraphs = index._keys, index._paragraphs
    assert np.count_nonzero(old_keys) == len(np.unique(keys))
    index.add(np.array([7], dtype=np.uint32), len(keys))  # one more doubles it
    assert index.nbytes() == 8 * (1 << 15)
    # the old arrays were handed back page by page as their keys moved: they read as zeros now
    assert not old_keys.any() and not old_paragraphs.any()
    found_at, found = index.lookup(keys)
    assert sorted(zip(found_at.tolist(), found.tolist())) == [(i, i) for i in range(len(keys))]


def test_planted_near_duplicate_is_removed(cleaned, clean_articles, good_paragraphs):
    original = good_paragraphs[5]
    words = original.split(" ")
    words[len(words) // 3] = "remarkably"
    words[2 * len(words) // 3] = "notably"
    edited = " ".join(words)
    assert edited != original
    result = _clean_with(cleaned, clean_articles + [_article("Planted edit", edited)])
    stats = result.report.filters["near_duplicate"]
    assert stats.paragraphs_removed == 1
    assert stats.examples[0]["text"] == clean._snippet(edited)
    assert "Jaccard" in stats.examples[0]["detail"]
    assert result.report.filters["exact_duplicate"].paragraphs_removed == 0


def test_an_unrelated_paragraph_is_not_a_near_duplicate(cleaned, clean_articles, good_paragraphs):
    first, second = good_paragraphs[6].split(" "), good_paragraphs[7].split(" ")
    mixed = " ".join(first[: len(first) // 2] + second[len(second) // 2 :])
    result = _clean_with(cleaned, clean_articles + [_article("Planted mix", mixed)])
    assert result.report.filters["near_duplicate"].paragraphs_removed == 0


def _edited(paragraph: str, every: int) -> str:
    words = paragraph.split(" ")
    return " ".join("changed" if i % every == every // 2 else word for i, word in enumerate(words))


def test_the_compact_index_finds_what_exact_jaccard_over_every_pair_finds(monkeypatch, good_paragraphs):
    config = clean.CleaningConfig()
    texts = []
    for paragraph in good_paragraphs[:80]:  # real paragraphs, each followed by edits above and near the threshold
        texts += [paragraph, _edited(paragraph, 30), _edited(paragraph, 14)]
    probe = clean.NearDuplicateIndex(config.near_duplicate_threshold, config.shingle_size, config.num_perm,
                                     config.lsh_bands, config.seed)
    shingles = [probe.shingles(text) for text in texts]

    def jaccard(a, b):
        return len(shingles[a] & shingles[b]) / len(shingles[a] | shingles[b])

    answers = {}
    # A roomy band-key table and the hashes in one chunk; then a table of 16 slots that doubles as it
    # fills, read 2 slots at a time, and chunks of 500 hashes (a few paragraphs each): the same answers.
    for initial, window, chunk in ((1 << 16, 16, 10**7), (16, 2, 500)):
        monkeypatch.setattr(clean.KeyIndex, "INITIAL_CAPACITY", initial)
        monkeypatch.setattr(clean.KeyIndex, "WINDOW", window)
        monkeypatch.setattr(clean.NearDuplicateIndex, "_CHUNK", chunk)
        index = clean.NearDuplicateIndex(config.near_duplicate_threshold, config.shingle_size, config.num_perm,
                                         config.lsh_bands, config.seed)
        answers[initial] = [index.query_and_add(text, str(number)) for number, text in enumerate(texts)]
        if initial == 16:
            assert len(index) == sum(answer is None for answer in answers[initial])
            assert len(index.band_keys) == 32 * len(index) and index.band_keys._capacity > 16 * 2**5
            assert len(index._chunks) > 10
    assert answers[16] == answers[1 << 16]
    kept: list[int] = []
    for number, answer in enumerate(answers[16]):
        best = max((jaccard(number, k) for k in kept), default=0.0)
        if answer is None:
            kept.append(number)
            assert best < config.near_duplicate_threshold + 0.1  # LSH may miss a pair just over the threshold
        else:
            assert answer[1] == pytest.approx(jaccard(number, int(answer[0])), abs=1e-12)
            assert answer[1] == pytest.approx(best, abs=1e-12) and int(answer[0]) in kept
            assert answer[1] >= config.near_duplicate_threshold
    assert sum(answer is not None for answer in answers[16]) >= 80  # at least the light edits


def test_markup_residue_is_removed_and_the_words_kept(cleaned, good_paragraphs):
    original = next(p for p in good_paragraphs[8:] if p.endswith(".") and not p.endswith(".."))
    first, _, rest = original[:-1].partition(" ")
    dirty = (
        f"'''{first}'''{{{{Citation needed|date=May 2016}}}} [[Light|{rest[:40]}]]{rest[40:]} &amp; "
        f"<span>more</span><ref name=\"a\">{{{{cite web|url=http://x.org}}}}</ref> [[File:X.png|thumb|A cap]]."
    )
    table = "{| class=\"wikitable\"\n|-\n! Year !! Value\n|-\n| 1990 || 12\n|}"
    other = good_paragraphs[-1]
    result = _clean_with(cleaned, [_article("Planted markup", dirty, table + "\n" + other)])
    out = list(clean.iter_paragraphs(result.articles))
    assert out == [original[:-1] + " & more.", other]
    assert result.report.filters["markup"].paragraphs_modified == 2


def test_low_quality_paragraphs_are_removed_with_their_reason(cleaned, good_paragraphs):
    cases = {
        "not_english": "Die Albedo ist ein Maß für das Rückstrahlvermögen von diffus reflektierenden, "
        "also nicht selbst leuchtenden Oberflächen. Sie wird als dimensionslose Zahl angegeben.",
        "digits_symbols": "Values for 2010: 12.5, 13.75, 14.25, 15.5, 16.0, 18.25, 19.5, 21.0, 22.75, 24.5.",
        "alpha_ratio": "Initials A. B. C. D. E. F. G. H. I. J. K. L. M. N. O. P. Q. R. S. T. U. V.",
        "too_short": "It is short.",
        "list_like": "Films\nThe Gold Lust (1911)\nThe Picket Guard (1913)\nThe Restless Spirit (1913)",
        "fragment": "The correlation between albedo, absolute magnitude and diameter is given by",
        "short_sentences": "Albedo rises. Snow melts. Ice forms. Sea ices. Land dries. Cloud forms again.",
    }
    articles = [_article(f"Planted {name}", text, good_paragraphs[9 + i], article_id=i) for i, (name, text) in enumerate(cases.items())]
    result = _clean_with(cleaned, articles, clean.CleaningConfig(min_section_chars=0))
    for name, text in cases.items():
        assert result.report.filters[name].paragraphs_removed >= 1, name
        assert clean._snippet(text) in _removed_texts(result.report, name), name
    kept = list(clean.iter_paragraphs(result.articles))
    assert kept == good_paragraphs[9 : 9 + len(cases)]  # the real paragraph beside each case stays


def test_a_list_after_prose_keeps_the_prose(cleaned):
    text = (
        "Jains believe that to attain liberation, one must practice the following ethical principles "
        "in thought, speech and action. The degree differs for householders and monks. They are:\n"
        "Non-violence (Ahimsa);\nTruthfulness (Satya);\nNon-stealing (Asteya);"
    )
    result = _clean_with(cleaned, [_article("Planted list", text)], clean.CleaningConfig(min_section_chars=0))
    (paragraph,) = clean.iter_paragraphs(result.articles)
    assert paragraph.endswith("householders and monks.")
    assert result.report.filters["list_like"].paragraphs_modified == 1
    assert result.report.filters["fragment"].paragraphs_modified == 1  # "They are:" dangled


def test_long_paragraph_is_trimmed_at_a_sentence_boundary(cleaned, good_paragraphs):
    long_text = " ".join(good_paragraphs[20:24])
    config = clean.CleaningConfig(max_paragraph_chars=len(good_paragraphs[20]) + 50, min_section_chars=0)
    result = _clean_with(cleaned, [_article("Planted long", long_text)], config)
    (paragraph,) = clean.iter_paragraphs(result.articles)
    assert paragraph.startswith(good_paragraphs[20]) and len(paragraph) <= config.max_paragraph_chars
    assert clean.ends_sentence(paragraph)
    assert result.report.filters["trim_long"].paragraphs_modified == 1


def test_unicode_and_whitespace_are_normalized(cleaned, good_paragraphs):
    original = good_paragraphs[10]
    with_ligature = original[:20] + "\ufb01" + original[20:]  # the "fi" ligature: NFKC makes it two letters
    messy = with_ligature.replace(" ", "\u00a0", 3).replace("e", "e\u200b", 2).replace(" ", "   ", 2)
    result = _clean_with(cleaned, [_article("Planted unicode", messy)], clean.CleaningConfig(min_section_chars=0))
    (paragraph,) = clean.iter_paragraphs(result.articles)
    assert paragraph == original[:20] + "fi" + original[20:]
    assert result.report.filters["normalize"].paragraphs_modified == 1


def test_config_is_validated():
    with pytest.raises(ValueError):
        clean.CleaningConfig(num_perm=100, lsh_bands=32)
    with pytest.raises(ValueError):
        clean.CleaningConfig(near_duplicate_threshold=0)


def test_training_cleaning_does_not_depend_on_installed_stopwords(cleaned, good_paragraphs, monkeypatch):
    """The not_english filter always uses the course's list, so results are the same on every machine."""

    def unavailable():
        raise AssertionError("the training cleaning must not ask which stopwords are installed")

    monkeypatch.setattr(nltk_offline, "english_stopwords", unavailable)
    result = _clean_with(cleaned, [_article("Planted", good_paragraphs[0])], clean.CleaningConfig(min_section_chars=0))
    assert list(clean.iter_paragraphs(result.articles)) == [good_paragraphs[0]]


# --- streaming: a file of any size, one article in memory at a time -----------------------------------


def test_clean_jsonl_writes_what_clean_articles_writes(tmp_path, tiny_articles, cleaned):
    source = tmp_path / "articles.jsonl"
    clean.save_articles(tiny_articles, source)
    report, _ = clean.clean_jsonl(source, tmp_path / "streamed.jsonl")
    clean.save_articles(cleaned.articles, tmp_path / "listed.jsonl")
    assert (tmp_path / "streamed.jsonl").read_bytes() == (tmp_path / "listed.jsonl").read_bytes()
    assert report.as_dict() == cleaned.report.as_dict()


def _one_by_one(candidates, label, exact, near):
    """The duplicate filters as the rule reads: each candidate checked, then indexed, before the next."""
    verdicts = []
    for text, key, sketch in candidates:
        if earlier := exact.paragraphs([key]):
            verdicts.append(("exact_duplicate", near.label(min(earlier)), 1.0))
        elif (match := near.query_and_add(text, label, sketch)) is not None:
            verdicts.append(("near_duplicate", *match))
        else:
            exact.add([key], len(near) - 1)
            verdicts.append(None)
    return verdicts


@pytest.mark.parametrize("initial, window", [(1 << 16, 16), (16, 2)])
def test_an_articles_paragraphs_checked_together_get_the_verdicts_of_one_at_a_time(monkeypatch, good_paragraphs,
                                                                                    initial, window):
    monkeypatch.setattr(clean.KeyIndex, "INITIAL_CAPACITY", initial)
    monkeypatch.setattr(clean.KeyIndex, "WINDOW", window)
    config = clean.CleaningConfig()
    sketcher = clean.NearDuplicateIndex(config.near_duplicate_threshold, config.shingle_size, config.num_perm,
                                        config.lsh_bands, config.seed)

    def candidate(text, key=None):
        return text, clean.duplicate_key(text) if key is None else key, sketcher.sketch(text)

    first, second, third = good_paragraphs[8], good_paragraphs[9], good_paragraphs[10]
    articles = [
        [candidate(p) for p in good_paragraphs[:6]],
        # an exact copy and a near copy of a paragraph of this article and of the one before; a
        # paragraph with the near copy's exact key, which is no exact duplicate, since that copy
        # was not kept; keys 0 and 1, which the index stores alike
        [candidate(first), candidate(first.upper()), candidate(_edited(first, 30)),
         candidate(_edited(first, 30).upper()), candidate(_edited(good_paragraphs[2], 30)),
         candidate(good_paragraphs[4]), candidate(second, key=0), candidate(third, key=1)],
        [],
        [candidate(_edited(second, 30)), candidate(good_paragraphs[11]), candidate(good_paragraphs[11])],
    ]

    def fresh():
        return clean.KeyIndex(np.uint64), clean.NearDuplicateIndex(
            config.near_duplicate_threshold, config.shingle_size, config.num_perm, config.lsh_bands, config.seed)

    (exact, near), (exact_ref, near_ref) = fresh(), fresh()
    verdicts = [clean._deduplicated(article, f"article {n}", exact, near) for n, article in enumerate(articles)]
    expected = [_one_by_one(article, f"article {n}", exact_ref, near_ref) for n, article in enumerate(articles)]
    assert verdicts == expected
    assert [verdict and verdict[0] for verdict in verdicts[1]] == [
        None, "exact_duplicate", "near_duplicate", "near_duplicate", "near_duplicate", "exact_duplicate", None,
        "exact_duplicate"]
    assert [verdict and verdict[0] for verdict in verdicts[3]] == ["near_duplicate", None, "exact_duplicate"]
    assert [near.label(n) for n in range(len(near))] == [near_ref.label(n) for n in range(len(near_ref))]
    assert len(near.band_keys) == len(near_ref.band_keys) == 32 * len(near)
    assert len(exact) == len(exact_ref) == len(near) and exact.nbytes() == exact_ref.nbytes()
    assert near.nbytes() == near_ref.nbytes()


def test_several_processes_write_what_one_writes(tmp_path, monkeypatch, tiny_articles, cleaned, good_paragraphs):
    # Copies of earlier paragraphs at the end, so the duplicate filters (in this process) must see what
    # every earlier batch (in the workers) let through; small batches, so the report merges many.
    planted = tiny_articles + [
        _article("Planted copies", good_paragraphs[3], _edited(good_paragraphs[5], 30), article_id=10**9),
        _article("Planted copy alone", good_paragraphs[4].upper(), article_id=10**9 + 1),
    ]
    source = tmp_path / "articles.jsonl"
    clean.save_articles(planted, source)
    monkeypatch.setattr(clean, "_BATCH_ARTICLES", 3)
    one, _ = clean.clean_jsonl(source, tmp_path / "one.jsonl", sentence_tokenizer=cleaned.sentence_tokenizer)
    two, _ = clean.clean_jsonl(source, tmp_path / "two.jsonl", sentence_tokenizer=cleaned.sentence_tokenizer,
                               processes=2)
    assert (tmp_path / "two.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert two.as_dict() == one.as_dict()
    assert two.filters["exact_duplicate"].paragraphs_removed == 2
    assert two.filters["near_duplicate"].paragraphs_removed == 1
    assert two.filters["empty_article"].articles_removed == 2  # both planted articles held only copies
    # the filter that acted most, in many batches, kept its first examples only, as one process does
    busiest = max(two.filters.values(), key=lambda stats: stats.paragraphs_removed + stats.paragraphs_modified)
    assert busiest.paragraphs_removed + busiest.paragraphs_modified > 10
    assert len(busiest.examples) == clean.CleaningConfig().examples_per_filter
    assert [line["title"] for line in dump.read_jsonl(tmp_path / "one.jsonl")] == \
        [article["title"] for article in cleaned.articles]
    with pytest.raises(ValueError, match="processes must be at least 1"):
        clean.clean_jsonl(source, tmp_path / "none.jsonl", processes=0)
    assert not (tmp_path / "none.jsonl").exists()


def test_the_stream_holds_one_article_at_a_time(tiny_articles, cleaned):
    read = []

    def read_articles():
        for article in tiny_articles:
            read.append(article["title"])
            yield article

    stream, report, _ = clean.clean_stream(read_articles, sentence_tokenizer=cleaned.sentence_tokenizer)
    first = next(stream)
    assert read == [first["title"]]  # the first cleaned article came before the second was read
    rest = list(stream)
    assert [first, *rest] == cleaned.articles and report.totals == cleaned.report.totals
