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

    def stub(wikitext):
        raise NotImplementedError

    assert ex.check_01_strip_bold(tiny_dump, stub).startswith("not answered yet: ")


@pytest.fixture(scope="module")
def multistream_files(tmp_path_factory, tiny_dump):
    from helpers import dump

    folder = tmp_path_factory.mktemp("multistream")
    dump.build_multistream(tiny_dump, folder / "ms.xml.bz2", folder / "index.txt.bz2", pages_per_stream=10)
    return folder / "ms.xml.bz2", folder / "index.txt.bz2"


def test_01_read_page_from_one_stream(multistream_files):
    import bz2
    import html
    import re

    multistream, index = multistream_files

    def right(path, offset, length, title):  # a regex on the stream's XML, not the chapter's ElementTree
        data = path.read_bytes()[offset:None if length is None else offset + length]
        xml = bz2.BZ2Decompressor().decompress(data).decode("utf-8")
        for page in re.findall(r"<page>.*?</page>", xml, re.S):
            if html.unescape(re.search(r"<title>(.*?)</title>", page).group(1)) == title:
                text = re.search(r"<text[^>]*?(?:/>|>(.*?)</text>)", page, re.S).group(1) or ""
                return html.unescape(text)
        raise KeyError(title)

    def first_page_of_the_stream(path, offset, length, title):
        xml = bz2.BZ2Decompressor().decompress(path.read_bytes()[offset:]).decode("utf-8")
        return html.unescape(re.search(r"<text[^>]*>(.*?)</text>", xml, re.S).group(1))

    def from_the_start(path, offset, length, title):  # ignores the offset: reads the header stream
        return right(path, 0, None, title)

    def stub(path, offset, length, title):
        raise NotImplementedError

    samples = ex.multistream_samples(multistream, index)
    assert len(samples) == 3 and samples[-1][2] is None and len({offset for _, offset, _ in samples}) == 3
    assert_verdicts(lambda f: ex.check_01_read_page(multistream, index, f), right, first_page_of_the_stream)
    assert ex.check_01_read_page(multistream, index, from_the_start).startswith("not quite: ")
    assert ex.check_01_read_page(multistream, index, stub).startswith("not answered yet: ")


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


def test_02_editorial_note_checked_on_the_runs_paragraphs(run, clean_articles):
    import re

    from helpers import clean

    def note(text):  # a solution written apart from the checker's: the outer parentheses must match
        body = text.strip().removesuffix(".")
        if not (body.startswith("(") and body.endswith(")")):
            return None
        inner = body[1:-1]
        while re.search(r"\([^()]*\)", inner):
            inner = re.sub(r"\([^()]*\)", "", inner)
        return None if "(" in inner or ")" in inner else "an editorial note, about the article"

    notes = [p for p in clean.iter_paragraphs(clean_articles) if note(p)]
    assert any("summation operator" in p for p in notes)  # the real note the exercise quotes
    assert_verdicts(lambda f: ex.check_02_editorial_note(run, f), note,
                    lambda t: "starts with (" if t.strip().startswith("(") else None)  # "(a) ... (b) ..." too
    verdict = ex.check_02_editorial_note(run, note)
    assert f"removes {len(notes)} of" in verdict
    assert "not quite" in ex.check_02_editorial_note(run, lambda t: None)  # misses the corpus's notes
    assert "a reason (a str)" in ex.check_02_editorial_note(run, lambda t: True)


def test_03_split_of_an_article(run, pair_splits):
    title = pair_splits["test"][0]["title"]
    assert_verdicts(lambda a: ex.check_03_split_of(run, title, a), "test", "train")
    assert "no pairs" in ex.check_03_split_of(run, "No such article", "train")


def test_03_long_pairs(run, pair_splits, course_tokenizer):
    from helpers import pairs

    lengths = pairs.token_lengths({"train": pair_splits["train"]}, course_tokenizer)
    right = int((lengths["full"] > 128).sum())
    assert_verdicts(lambda a: ex.check_03_long_pairs(run, course_tokenizer, 128, a), right, right + 3)


def test_03_stable_split(run, pair_splits):
    import hashlib
    import itertools

    from helpers import pairs

    def stable_split(rows, fractions):  # written apart from the checker's rule, with bisect-like bounds
        bounds = list(itertools.accumulate(fractions.values()))
        out = {name: [] for name in fractions}
        for row in rows:
            h = int(hashlib.sha256(str(row["article_id"]).encode()).hexdigest(), 16) / 16**64
            out[list(fractions)[min(sum(h >= bound for bound in bounds), len(bounds) - 1)]].append(row)
        return out

    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}
    verdict = ex.check_03_stable_split(run, fractions, stable_split)
    assert verdict.startswith("correct") and ", 0 other articles move" in verdict, verdict
    assert_verdicts(lambda f: ex.check_03_stable_split(run, fractions, f), stable_split,
                    lambda rows, fr: pairs.split_by_article(rows, fr, seed=0))  # shuffled: not the rule
    by_pair = lambda rows, fr: {n: [r for r in rows if ex.hashed_split_of(r["instruction"], fr) == n] for n in fr}  # noqa: E731
    assert "not quite" in ex.check_03_stable_split(run, fractions, by_pair)  # hashes pairs, not articles
    assert "the keys" in ex.check_03_stable_split(run, fractions, lambda rows, fr: rows)
    every_pair = [pair for rows in pair_splits.values() for pair in rows]
    articles = {name: len({pair["article_id"] for pair in rows}) for name, rows in stable_split(every_pair, fractions).items()}
    assert f"train {articles['train']}, validation {articles['validation']}, test {articles['test']};" in verdict


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



def test_04_kv_cache_function_is_run_on_every_decoder_candidate():
    def from_the_config(config):  # GPT-2's and Llama's fields, read by hand: K and V, layers, kv heads, head size, fp16
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return 2 * config.num_hidden_layers * kv_heads * (config.hidden_size // heads) * 2

    def ignores_grouped_query_attention(config):
        return 2 * config.num_hidden_layers * config.hidden_size * 2

    def gpt2_fields_only(config):
        return 2 * config.n_layer * config.n_embd * 2

    assert_verdicts(ex.check_04_kv_cache_function, from_the_config, ignores_grouped_query_attention)
    # distilgpt2 passes with full attention, so the first wrong model named is SmolLM2, with its 3 of 9 heads
    assert "SmolLM2-135M gives 69120, expected 23,040" in ex.check_04_kv_cache_function(ignores_grouped_query_attention)
    assert "3 key/value heads for 9 query heads" in ex.check_04_kv_cache_function(ignores_grouped_query_attention)
    assert "raised AttributeError" in ex.check_04_kv_cache_function(gpt2_fields_only)

    def unwritten(config):
        raise NotImplementedError

    assert ex.check_04_kv_cache_function(unwritten).startswith("not answered yet")

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


def _accumulate_right(model, micro_batches):
    import torch

    tokens = sum(int((batch["labels"][:, 1:] != -100).sum()) for batch in micro_batches)
    total = 0.0
    for batch in micro_batches:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        summed = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                   batch["labels"][:, 1:].reshape(-1), ignore_index=-100,
                                                   reduction="sum")
        (summed / tokens).backward()
        total += summed.item()
    return total / tokens


def _accumulate_mean_of_means(model, micro_batches):
    # The classic slip: each micro-batch's own mean, averaged, weighs a short micro-batch's tokens more.
    losses = [model(**batch).loss for batch in micro_batches]
    for loss in losses:
        (loss / len(micro_batches)).backward()
    return sum(loss.item() for loss in losses) / len(losses)


def _accumulate_summing_means(model, micro_batches):
    losses = [model(**batch).loss for batch in micro_batches]
    for loss in losses:
        loss.backward()
    return sum(loss.item() for loss in losses) / len(losses)


def test_05_accumulation(course_tokenizer, pair_splits):
    from helpers import finetune

    examples = [finetune.tokenize_pair(course_tokenizer, p["instruction"], p["response"], max_length=512)
                for p in pair_splits["train"][:6]]
    assert len({example["length"] for example in examples}) > 3  # lengths differ, so the mean of means is wrong
    check = lambda answer: ex.check_05_accumulation(course_tokenizer, examples, answer)  # noqa: E731
    assert_verdicts(check, _accumulate_right, _accumulate_mean_of_means)
    assert "3 times too large" in check(_accumulate_summing_means)
    assert "the loss returned" in check(lambda model, batches: _accumulate_right(model, batches) and None)


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


def _greedy_without_cache(session, prompt_ids, max_new_tokens, stop_ids, position=-1):
    import numpy as np

    names = {i.name for i in session.get_inputs()}
    empty = {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), dtype=np.float32)
             for i in session.get_inputs() if i.name.startswith("past_key_values")}
    ids, new = list(prompt_ids), []
    while len(new) < max_new_tokens:
        feed = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), dtype=np.int64), **empty}
        if "position_ids" in names:
            feed["position_ids"] = np.arange(len(ids))[None, :]
        logits = session.run(["logits"], feed)[0]
        new.append(int(logits[0, position].argmax()))
        ids.append(new[-1])
        if new[-1] in stop_ids:
            break
    return new


def test_06_greedy_without_cache_against_pytorch(tmp_path, tiny_llama_dir, exported_llama, pair_splits):
    from helpers import export, pairs

    (tmp_path / "05_finetune").mkdir()
    (tmp_path / "05_finetune" / "model").symlink_to(tiny_llama_dir)
    (tmp_path / "06_export").mkdir()
    (tmp_path / "06_export" / "model").symlink_to(exported_llama)
    pairs.save_pairs(pair_splits, tmp_path / "03_pairs")
    wrong_position = lambda *args: _greedy_without_cache(*args, position=0)  # noqa: E731 - the first position's prediction
    assert_verdicts(lambda a: ex.check_06_greedy_without_cache(tmp_path, a), _greedy_without_cache, wrong_position)
    assert "returned None" in ex.check_06_greedy_without_cache(tmp_path, lambda *args: None)
    # the course's decoder gives the right tokens, but with the cache: refused
    with_cache = lambda s, ids, n, stops: export.greedy_generate(s, ids, max_new_tokens=n, eos_token_id=stops)  # noqa: E731
    assert "fed a cache" in ex.check_06_greedy_without_cache(tmp_path, with_cache)
    assert "read " in ex.check_06_greedy_without_cache(tmp_path, _greedy_without_cache)


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


def test_07_handler_is_checked_against_what_browsers_need(tmp_path):
    from http.server import SimpleHTTPRequestHandler

    from helpers import deploy

    (tmp_path / "index.html").write_text("<!doctype html><title>t</title>")
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "ort.wasm").write_bytes(b"\0asm")

    class Isolated(SimpleHTTPRequestHandler):
        extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm"}

        def end_headers(self):
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            super().end_headers()

    class WasmAsText(Isolated):
        extensions_map = {**Isolated.extensions_map, ".wasm": "text/plain"}

    assert_verdicts(lambda a: ex.check_07_handler(tmp_path, a), Isolated, SimpleHTTPRequestHandler)
    assert "Cross-Origin-Embedder-Policy" in ex.check_07_handler(tmp_path, SimpleHTTPRequestHandler)
    assert "application/wasm" in ex.check_07_handler(tmp_path, WasmAsText)
    assert ex.check_07_handler(tmp_path, deploy.SiteRequestHandler).startswith("correct")
    assert ex.check_07_handler(tmp_path, 42).startswith("not quite: ")
