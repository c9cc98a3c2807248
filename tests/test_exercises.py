"""Exercise checks (helpers/exercises.py): a right answer passes, a wrong one is explained, None guides."""
from __future__ import annotations

import json

import pytest

from helpers import exercises as ex


def assert_verdicts(check, right, wrong):
    assert check(None).startswith("not answered yet: ")
    assert check(right).startswith("correct"), check(right)
    verdict = check(wrong)
    assert verdict.startswith("not quite: ") and len(verdict) > len("not quite: ") + 10, verdict


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_articles, clean_articles, pair_splits):
    from helpers import clean, pairs

    run = tmp_path_factory.mktemp("run")
    for chapter, articles in (("01_dump", tiny_articles), ("02_cleaning", clean_articles)):
        (run / chapter).mkdir()
        clean.save_articles(articles, run / chapter / "articles.jsonl")
    pairs.save_pairs(pair_splits, run / "03_pairs")
    return run


def test_01_redirects_counted_from_the_dump(tiny_dump):
    from helpers import dump

    stats = dump.DumpStats()
    list(dump.iter_articles(tiny_dump, stats=stats))
    right = stats.skipped["redirect"]
    assert right > 0
    assert_verdicts(lambda a: ex.check_01_redirects(tiny_dump, a), right, right + 1)


def test_01_strip_bold_runs_on_real_wikitext(tiny_dump):
    import re

    assert "'''" in ex.bold_sample(tiny_dump)
    assert_verdicts(lambda f: ex.check_01_strip_bold(tiny_dump, f), lambda t: t.replace("'''", ""),
                    lambda t: t.replace("'", ""))  # removes italics too
    assert ex.check_01_strip_bold(tiny_dump, lambda t: re.sub("'''", "'", t)).startswith("not quite")
    assert ex.check_01_strip_bold(tiny_dump, lambda t: t).startswith("not quite: bold marks are left")


def test_02_dropped_sections(run, tiny_articles, clean_articles):
    def sections(articles):
        return sum(1 for a in articles for s in a["sections"] if s["text"])

    right = sections(tiny_articles) - sections(clean_articles)
    assert_verdicts(lambda a: ex.check_02_dropped_sections(run, a), right, 0 if right else 1)


def test_02_top_term_is_the_pipelines(tiny_articles):
    from helpers import clean

    top = clean.term_frequencies(clean.iter_paragraphs(tiny_articles[:200]), top=1).iloc[0]["term"]
    assert_verdicts(lambda a: ex.check_02_top_term(tiny_articles, a), top.upper(), "the")
    assert "stopword" in ex.check_02_top_term(tiny_articles, "the")


def test_03_split_of_an_article(run, pair_splits):
    title = pair_splits["test"][0]["title"]
    assert_verdicts(lambda a: ex.check_03_split_of(run, title, a), "test", "train")
    assert "no pairs" in ex.check_03_split_of(run, "No such article", "train")


def test_03_long_pairs(run, pair_splits, course_tokenizer):
    from helpers import pairs

    lengths = pairs.token_lengths({"train": pair_splits["train"]}, course_tokenizer)
    right = int((lengths["full"] > 128).sum())
    assert_verdicts(lambda a: ex.check_03_long_pairs(run, course_tokenizer, 128, a), right, right + 3)


def test_04_parameters_counts_tied_weights_once(tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    distinct = sum(p.numel() for p in model.parameters())
    doubled = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert_verdicts(lambda a: ex.check_04_parameters(model, a), distinct, distinct - 1)
    assert "twice" in ex.check_04_parameters(model, doubled)


def test_04_kv_cache_from_the_shipped_config():
    # SmolLM2-135M: 30 layers, 3 key/value heads of 64 dims, fp16
    assert_verdicts(lambda a: ex.check_04_kv_cache("HuggingFaceTB/SmolLM2-135M", a), 2 * 30 * 3 * 64 * 2,
                    2 * 30 * 9 * 64 * 2)
    assert "key/value heads" in ex.check_04_kv_cache("HuggingFaceTB/SmolLM2-135M", 1)


def test_05_greedy_config():
    from transformers import GenerationConfig

    assert_verdicts(ex.check_05_greedy_config, GenerationConfig(do_sample=False, max_new_tokens=20),
                    GenerationConfig(do_sample=True, max_new_tokens=20))
    assert "num_beams" in ex.check_05_greedy_config(GenerationConfig(num_beams=4, max_new_tokens=20))
    assert "max_new_tokens" in ex.check_05_greedy_config(GenerationConfig(max_new_tokens=128))
    assert "not a GenerationConfig" in ex.check_05_greedy_config({"max_new_tokens": 20})


def test_05_counted_tokens(course_tokenizer, pair_splits):
    from helpers import finetune

    pair = pair_splits["train"][0]
    example = finetune.tokenize_pair(course_tokenizer, pair["instruction"], pair["response"], max_length=512)
    right = sum(1 for label in example["labels"] if label != -100)
    assert_verdicts(lambda a: ex.check_05_counted_tokens(course_tokenizer, pair, 512, a), right,
                    len(example["labels"]))
    assert "-100" in ex.check_05_counted_tokens(course_tokenizer, pair, 512, len(example["labels"]))


@pytest.fixture()
def model_folder(tmp_path):
    (tmp_path / "onnx").mkdir()
    for name in ("model.onnx", "model_quantized.onnx", "model_fp16.onnx"):
        (tmp_path / "onnx" / name).write_bytes(b"")
    return tmp_path


def test_06_q8_file(model_folder):
    assert_verdicts(lambda a: ex.check_06_q8_file(model_folder, a), "onnx/model_quantized.onnx", "onnx/model_q8.onnx")
    (model_folder / "onnx" / "model_quantized.onnx").unlink()
    assert "lacks it" in ex.check_06_q8_file(model_folder, "onnx/model_quantized.onnx")


def test_06_dtypes(model_folder):
    assert_verdicts(lambda a: ex.check_06_dtypes(model_folder, a), ["fp32", "q8", "fp16"], {"fp32", "q8", "fp16", "q4"})


def test_07_url_and_presets(tmp_path):
    from helpers import deploy

    (tmp_path / "models" / "m" / "onnx").mkdir(parents=True)
    (tmp_path / "models" / "m" / "onnx" / "model_fp16.onnx").write_bytes(b"")
    assert_verdicts(lambda a: ex.check_07_url(tmp_path, "m", a), "index.html?model=m&dtype=fp16&threads=2",
                    "index.html?model=m&dtype=q8&threads=2")
    assert "not deployed" in ex.check_07_url(tmp_path, "other", "/index.html?model=other&dtype=fp16&threads=2")
    assert "run the deploy cell" in ex.check_07_max_new_tokens(tmp_path, 1)
    (tmp_path / "models" / "presets.json").write_text(json.dumps(deploy.presets()))
    right = deploy.presets()["factual"]["max_new_tokens"]
    assert_verdicts(lambda a: ex.check_07_max_new_tokens(tmp_path, a), right, right + 1)
