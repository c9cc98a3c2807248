"""The course tokenizer: byte-level BPE trained on the real corpus, loaded like distilgpt2's."""
from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from helpers import tokenizer as course_tokenizer
from helpers.profiles import get_profile

VOCAB = 512  # small: the tests train it in well under a second


@pytest.fixture(scope="module")
def corpus_texts(clean_articles) -> list[str]:
    return [s["text"] for a in clean_articles for s in a["sections"] if s["text"]]


@pytest.fixture(scope="module")
def trained(corpus_texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("course-bpe")
    return out, course_tokenizer.train_course_tokenizer(corpus_texts, out, vocab_size=VOCAB)


def test_folder_loads_with_autotokenizer_like_distilgpt2(trained):
    out, _ = trained
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {p.name for p in out.iterdir()}
    tok = AutoTokenizer.from_pretrained(str(out))
    assert isinstance(tok, PreTrainedTokenizerFast)
    assert tok.bos_token == tok.eos_token == tok.unk_token == "<|endoftext|>"
    assert tok.pad_token is None
    assert len(tok) == VOCAB
    spec = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    assert spec["model"]["type"] == "BPE"
    assert spec["normalizer"] is None
    assert spec["pre_tokenizer"]["type"] == "ByteLevel" and spec["pre_tokenizer"]["add_prefix_space"] is False
    assert spec["decoder"]["type"] == "ByteLevel"


def test_eos_id_is_consistent(trained):
    _, tok = trained
    eos = tok.eos_token_id
    assert eos == tok.convert_tokens_to_ids("<|endoftext|>") == tok.bos_token_id
    assert tok("Albedo<|endoftext|>")["input_ids"][-1] == eos
    assert tok.decode([eos]) == "<|endoftext|>"
    # The same text gives the same ids with no special tokens added (GPT-2 adds none).
    assert tok("Albedo")["input_ids"] == tok("Albedo", add_special_tokens=False)["input_ids"]


def test_round_trip_of_real_corpus_text_is_lossless(trained, corpus_texts):
    _, tok = trained
    for text in corpus_texts:
        ids = tok(text)["input_ids"]
        assert tok.convert_tokens_to_ids("<|endoftext|>") not in ids or "<|endoftext|>" in text
        assert tok.decode(ids) == text
    # It learned the corpus: far fewer tokens than bytes.
    sample = "\n\n".join(corpus_texts[:20])
    assert len(tok(sample)["input_ids"]) < 0.6 * len(sample.encode("utf-8"))


def test_unicode_heavy_real_string_round_trips(trained, clean_articles):
    _, tok = trained
    non_ascii = [s["text"] for a in clean_articles for s in a["sections"] if sum(ord(c) > 127 for c in s["text"]) > 5]
    assert non_ascii, "the tiny corpus has accented and non-Latin text"
    text = max(non_ascii, key=lambda t: sum(ord(c) > 127 for c in t))
    text += " Ünïcödé – 日本語 Ελληνικά 🙂\t  double  spaces\n"
    assert tok.decode(tok(text)["input_ids"]) == text


def test_course_tokenizer_for_tiny_trains_once_then_reuses(tmp_path, corpus_texts):
    params = get_profile("tiny") | {"tokenizer_vocab_size": VOCAB}
    tok = course_tokenizer.course_tokenizer_for(params, tmp_path, corpus_texts[:50])
    folder = tmp_path / "03_pairs" / "tokenizer"
    assert (folder / "tokenizer.json").exists() and tok.name_or_path == str(folder)
    stamp = (folder / "tokenizer.json").stat().st_mtime_ns
    again = course_tokenizer.course_tokenizer_for(params, tmp_path, corpus_texts[:50])
    assert (folder / "tokenizer.json").stat().st_mtime_ns == stamp
    assert again.get_vocab() == tok.get_vocab()
    # Other texts: retrained, not silently reused.
    other = course_tokenizer.course_tokenizer_for(params, tmp_path, corpus_texts[50:120])
    assert other.get_vocab() != tok.get_vocab()
    with pytest.raises(ValueError, match="training texts"):
        course_tokenizer.course_tokenizer_for(params, tmp_path, None)


def test_bad_training_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no texts"):
        course_tokenizer.train_course_tokenizer(["", ""], tmp_path)
    with pytest.raises(ValueError, match="too small"):
        course_tokenizer.train_course_tokenizer(["text"], tmp_path, vocab_size=100)


def test_hub_name_offline_fails_clearly(monkeypatch, tmp_path):
    # Offline mode makes the Hub lookup fail at once instead of after retries, as a real outage does.
    import huggingface_hub.constants
    import transformers.utils.hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(transformers.utils.hub, "_is_offline_mode", True)
    with pytest.raises(course_tokenizer.TokenizerUnavailableError, match="(?s)Hub is unreachable.*course-bpe"):
        course_tokenizer.load_tokenizer("distilbert/distilgpt2-not-in-any-cache")
    with pytest.raises(course_tokenizer.TokenizerUnavailableError, match="holds no tokenizer"):
        course_tokenizer.load_tokenizer(tmp_path)
