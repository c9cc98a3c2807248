"""Chapter 03 on the real cleaned tiny corpus: pairs, dedupe, article-level splits, lengths, saving."""
from __future__ import annotations

import copy
import json

import pytest

from helpers import pairs as P
from helpers.prompt import format_prompt, format_training_text
from helpers.tokenizer import train_course_tokenizer


@pytest.fixture(scope="module")
def made(clean_articles) -> list[dict]:
    return P.make_pairs(clean_articles, P.PairingConfig(seed=0))


@pytest.fixture(scope="module")
def splits(made) -> dict[str, list[dict]]:
    kept, _ = P.dedupe_pairs(made)
    return P.split_by_article(kept, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)


@pytest.fixture(scope="module")
def tok(clean_articles, splits, tmp_path_factory):
    texts = P.tokenizer_training_texts(clean_articles, splits["train"])
    return train_course_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=512)


def test_pairs_have_the_contract_fields_and_real_content(made, clean_articles):
    assert len(made) > 100
    titles = {a["id"]: a["title"] for a in clean_articles}
    for pair in made:
        assert set(P.PAIR_FIELDS) <= set(pair)
        assert pair["title"] == titles[pair["article_id"]]
        assert pair["title"] in pair["instruction"]
        assert pair["instruction"] == pair["template"].format(title=pair["title"], heading=pair["heading"])
        assert 60 <= len(pair["response"]) <= 700
        assert pair["response"][-1] in ".!?\"')]"
        assert not pair["response"].startswith(("*", "#", "|"))


def test_response_is_the_start_of_the_section(made, clean_articles):
    by_key = {(a["id"], s["heading"]): s["text"] for a in clean_articles for s in a["sections"]}
    for pair in made[:80]:
        section = " ".join(by_key[(pair["article_id"], pair["heading"])].split())
        first_sentence = " ".join(pair["response"].split()).split(". ")[0]
        assert first_sentence in section


def test_lead_section_gives_an_explain_style_instruction(made, clean_articles):
    leads = [p for p in made if p["heading"] == ""]
    assert len(leads) >= len(clean_articles) - 2  # nearly every article has an introduction
    assert {p["instruction"] for p in leads} == {f"Explain {p['title']}." for p in leads}
    varied = P.make_pairs(clean_articles, P.PairingConfig(lead_templates=("Explain {title}.", "Introduce {title}.")))
    assert {p["template"] for p in varied if not p["heading"]} == {"Explain {title}.", "Introduce {title}."}


def test_same_seed_same_pairs_other_seed_other_templates(made, clean_articles):
    assert P.make_pairs(clean_articles, P.PairingConfig(seed=0)) == made
    assert P.make_pairs(clean_articles, seed=0) == made
    other = P.make_pairs(clean_articles, seed=1)
    assert [p["response"] for p in other] == [p["response"] for p in made]
    changed = sum(a["template"] != b["template"] for a, b in zip(made, other))
    assert changed > len(made) // 3
    # A pair depends on its own section only: dropping articles does not reshuffle the others.
    assert P.make_pairs(clean_articles[5:], seed=0) == [p for p in made if p["article_id"] not in {a["id"] for a in clean_articles[:5]}]
    # Every template gets used on a corpus this size.
    assert {p["template"] for p in made} >= set(P.SECTION_TEMPLATES)


def test_nested_headings_and_limits_are_configurable(clean_articles):
    nested = P.make_pairs(clean_articles, P.PairingConfig(heading_path=True, templates=("About {heading} in {title}",)))
    deep = [p for p in nested if " / " in p["heading_path"]]
    assert len(deep) > 20, "the tiny corpus has === subsections === under == sections =="
    for pair in (p for p in nested if p["heading"]):
        assert pair["heading_path"].endswith(pair["heading"])
        assert pair["instruction"] == f"About {pair['heading_path'].replace(' / ', ': ')} in {pair['title']}"
    short = P.make_pairs(clean_articles, P.PairingConfig(max_paragraphs=1, max_response_chars=200, min_response_chars=60))
    assert short and all(len(p["response"]) <= 200 and "\n\n" not in p["response"] for p in short)
    with pytest.raises(ValueError, match="heading"):
        P.PairingConfig(templates=("Explain {title}.",))


def test_dedupe_removes_planted_duplicates(made):
    original, removed = P.dedupe_pairs(made)
    planted = copy.deepcopy(made[:3])
    planted[0]["instruction"] = "  " + planted[0]["instruction"].upper() + "  "  # same pair, other case/spacing
    planted[1]["instruction"] = "A different question entirely?"  # same response, another instruction
    planted[2]["response"] = planted[2]["response"].replace(" ", "\n", 3)  # same response, other whitespace
    kept, n_removed = P.dedupe_pairs(made + planted)
    assert n_removed == removed + 3
    assert kept == original


def test_an_articles_pairs_checked_together_get_the_verdicts_of_one_at_a_time(made):
    # the made pairs three times over, cut into batches of uneven sizes: repeats within a batch and across
    stream = made + copy.deepcopy(made[::2]) + made[5:40]
    seen = set()  # the rule in plain Python: a response's first time, after case folding and whitespace
    expected = [key not in seen and not seen.add(key) for key in (" ".join(p["response"].casefold().split()) for p in stream)]
    one_at_a_time = P.DuplicateFilter()
    assert [one_at_a_time.keep(pair) for pair in stream] == expected
    together, verdicts, start = P.DuplicateFilter(), [], 0
    for size in [1, 7, 0, 30, 2, 400, len(stream)]:
        verdicts += together.keep_each(stream[start : start + size])
        start += size
    assert verdicts == expected and start >= len(stream)
    assert (together.kept, together.removed) == (one_at_a_time.kept, one_at_a_time.removed)
    assert together.kept == len(P.dedupe_pairs(made)[0]) < len(stream)


def test_no_article_in_two_splits(splits, made):
    assert set(splits) == {"train", "validation", "test"}
    assert all(splits.values())
    assert set(P.split_overlap(splits).values()) == {0}
    ids = {name: {p["article_id"] for p in rows} for name, rows in splits.items()}
    assert ids["train"].isdisjoint(ids["validation"] | ids["test"]) and ids["validation"].isdisjoint(ids["test"])
    kept, _ = P.dedupe_pairs(made)
    assert sum(len(rows) for rows in splits.values()) == len(kept)
    n_articles = len({p["article_id"] for p in kept})
    assert len(ids["train"]) >= 0.7 * n_articles
    # Deterministic with the seed; another seed deals other articles.
    assert P.split_by_article(kept, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0) == splits
    assert P.split_by_article(kept, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=1)["test"] != splits["test"]


@pytest.mark.parametrize("seed", [0, 7])
def test_deal_articles_deals_as_shuffling_the_sorted_ids_does(seed):
    import random

    rng = random.Random(seed)
    ids = rng.sample(range(10**12), 2_000)  # unsorted, as the stream meets them; each with a few pairs
    stream = [article_id for article_id in ids for _ in range(rng.randint(1, 4))] + ids[:5]  # and some again later
    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}

    shuffled = sorted(set(ids))  # the rule, written with a list and a dict
    random.Random(seed).shuffle(shuffled)
    sizes = {"train": 1_600, "validation": 200, "test": 200}
    expected = dict(zip(shuffled, (name for name, size in sizes.items() for _ in range(size))))

    dealt = P.deal_articles(iter(stream), fractions, seed)
    assert len(dealt) == 2_000 and dict(dealt) == expected
    assert [dealt[article_id] for article_id in stream] == [expected[article_id] for article_id in stream]
    with pytest.raises(KeyError):
        dealt[10**12 + 1]


def test_three_articles_fill_three_splits(made):
    first_three = sorted({p["article_id"] for p in made})[:3]
    few = [p for p in made if p["article_id"] in first_three]
    splits = P.split_by_article(few, {"train": 0.9, "validation": 0.05, "test": 0.05}, seed=0)
    assert [len({p["article_id"] for p in rows}) for rows in splits.values()] == [1, 1, 1]


@pytest.mark.parametrize(
    "pairs_slice, fractions, message",
    [
        (0, {"train": 0.8, "validation": 0.1, "test": 0.1}, "0 article"),
        (None, {"train": 0.8, "validation": 0.1, "test": 0.2}, "sum to 1"),
        (None, {"train": 0.8, "dev": 0.2}, "unknown split name"),
        (None, {"validation": 0.5, "test": 0.5}, "'train' split"),
        (None, {"train": 1.1, "test": -0.1}, "positive"),
        (None, {}, "empty"),
    ],
)
def test_bad_split_input_gives_a_clear_error(made, pairs_slice, fractions, message):
    with pytest.raises(ValueError, match=message):
        P.split_by_article(made[:pairs_slice], fractions, seed=0)


def test_one_article_cannot_fill_three_splits(made):
    one = [p for p in made if p["article_id"] == made[0]["article_id"]]
    with pytest.raises(ValueError, match="at least 3 articles"):
        P.split_by_article(one, {"train": 0.8, "validation": 0.1, "test": 0.1})


def test_token_stats_match_the_tokenizers_own_counts(splits, tok):
    stats = P.token_length_stats(splits, tok)
    parts = ("prompt", "response", "full")
    assert list(stats.index) == ["train", "validation", "test"]
    assert list(stats.columns) == ["pairs"] + [f"{p}_{s}" for p in parts for s in ("mean", "median", "p95", "max")]
    for name, rows in splits.items():
        counts = {
            "prompt": [len(tok(format_prompt(p["instruction"]))["input_ids"]) for p in rows],
            "response": [len(tok(p["response"])["input_ids"]) for p in rows],
            "full": [len(tok(format_training_text(p["instruction"], p["response"], tok.eos_token))["input_ids"]) for p in rows],
        }
        assert stats.loc[name, "pairs"] == len(rows)
        for part in parts:
            values = sorted(counts[part])
            assert stats.loc[name, f"{part}_max"] == values[-1]
            assert stats.loc[name, f"{part}_mean"] == pytest.approx(sum(values) / len(values), abs=0.05)
            middle = len(values) // 2
            median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
            assert stats.loc[name, f"{part}_median"] == median
    # The full text ends with exactly one end-of-text token.
    full = tok(format_training_text(splits["test"][0]["instruction"], splits["test"][0]["response"], tok.eos_token))
    assert full["input_ids"][-1] == tok.eos_token_id and full["input_ids"].count(tok.eos_token_id) == 1


def test_plot_token_lengths_draws_one_histogram_per_split(splits, tok):
    import matplotlib

    matplotlib.use("Agg")
    lengths = P.token_lengths(splits, tok)
    ax = P.plot_token_lengths(lengths, "full", max_length=256)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[:3] == [f"{name} ({len(rows)})" for name, rows in splits.items()]


def test_saved_dataset_reloads_equal_to_jsonl(splits, tmp_path):
    saved = P.save_pairs(splits, tmp_path)
    P.save_pairs(splits, tmp_path)  # saving again replaces the previous result cleanly
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "test.jsonl", "train.jsonl", "validation.jsonl"]
    loaded = P.load_pairs(tmp_path)
    assert set(loaded) == set(splits)
    for name, rows in splits.items():
        from_jsonl = P.read_pairs_jsonl(tmp_path / f"{name}.jsonl")
        assert loaded[name].to_list() == from_jsonl == saved[name].to_list()
        assert from_jsonl == [{k: p[k] for k in P.PAIR_FIELDS} for p in rows]
    assert json.loads((tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])["article_id"] == splits["train"][0]["article_id"]


def test_load_pairs_names_the_producing_chapter(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_pairs"):
        P.load_pairs(tmp_path)


def test_the_stream_writes_what_the_chapters_lists_write(clean_articles, tok, tmp_path):
    from helpers.clean import save_articles

    first = clean_articles[0]
    quoting = copy.deepcopy(clean_articles[1])
    quoting["sections"][0]["text"] = quoting["sections"][0]["text"].replace(" ", " <|endoftext|> ", 1)
    articles = clean_articles + [
        {**copy.deepcopy(first), "id": 10**9, "title": first["title"] + " (copy)"},  # every response a repeat
        {**quoting, "id": 10**9 + 1, "title": quoting["title"] + " (quoting)"},  # one pair quotes a special token
    ]
    source = save_articles(articles, tmp_path / "articles.jsonl")
    config = P.PairingConfig(seed=3)
    fractions = {"train": 0.7, "validation": 0.15, "test": 0.15}

    made = P.make_pairs(articles, config)
    kept, removed = P.dedupe_pairs(made)
    splits, left_out = P.drop_special_token_pairs(P.split_by_article(kept, fractions, seed=5), tok)
    in_memory = P.save_pairs(splits, tmp_path / "lists")
    counts = P.pairs_jsonl(source, tmp_path / "stream", config, fractions=fractions, seed=5, tokenizer=tok)

    assert removed >= len(P.make_pairs([first], config)) > 0 and len(left_out) == 1 and left_out["token"][0] == "<|endoftext|>"
    assert counts == {"pairs_made": len(made), "duplicates_removed": removed, "special_token_pairs": 1,
                      "rows": {name: len(rows) for name, rows in splits.items()},
                      "duplicate_index_bytes": 12 * 2**16}  # a 64-bit key and a 32-bit number a slot; the first table
    for name in splits:
        assert (tmp_path / "stream" / f"{name}.jsonl").read_bytes() == (tmp_path / "lists" / f"{name}.jsonl").read_bytes()
    streamed = P.load_pairs(tmp_path / "stream")
    assert {name: streamed[name].to_list() for name in streamed} == {name: in_memory[name].to_list() for name in in_memory}
    assert streamed["train"].features == in_memory["train"].features
    assert sorted(p.name for p in (tmp_path / "stream").iterdir()) == ["dataset", "test.jsonl", "train.jsonl",
                                                                       "validation.jsonl"]  # no cache left behind
