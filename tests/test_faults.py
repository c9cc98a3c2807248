"""Nothing lost under bad input and faults (issue 13): each case ends either with the valid data kept,
or with a message naming the file, the stage and what to do, and nothing complete touched."""
from __future__ import annotations

import gc
import gzip
import json
import os
import random
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from helpers import course, dump, wikitext
from helpers.profiles import REPO_ROOT


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- 1. a failed parse never replaces a complete output -------------------------------------------


def test_a_failed_parse_leaves_the_complete_output_as_it_was(tmp_path, tiny_dump, tiny_articles):
    out = tmp_path / "a.jsonl"
    dump.dump_to_jsonl(tiny_dump, out)
    complete = out.read_bytes()
    assert len(dump.read_jsonl(out)) == len(tiny_articles)
    half = tmp_path / "half.xml.bz2"
    half.write_bytes(tiny_dump.read_bytes()[: tiny_dump.stat().st_size * 9 // 10])
    with pytest.raises(dump.DumpError) as caught:
        dump.dump_to_jsonl(half, out)
    assert out.read_bytes() == complete  # the complete file, byte for byte
    assert "the earlier complete file is still there" in str(caught.value)
    salvaged = dump.read_jsonl(dump.salvage_path(out))  # what was read before the fault, kept apart
    assert 0 < len(salvaged) < len(tiny_articles) and salvaged == tiny_articles[: len(salvaged)]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".partial", ".lock"))]


# --- 2. the format is sniffed before parsing --------------------------------------------------------


@pytest.mark.parametrize("name,content,words", [
    ("feed.xml", b'<?xml version="1.0"?>\n<rss><channel><item>x</item></channel></rss>\n', "not a MediaWiki export"),
    ("notes.xml", b"Albedo is the fraction of light a surface reflects.\n", "not XML"),
    ("page.xml.bz2", b"<html><body>404 Not Found</body></html>\n", "named .bz2 but holds no bz2 data"),
])
def test_input_that_is_not_a_mediawiki_dump_is_refused_by_what_it_is(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "out.jsonl"
    with pytest.raises(dump.DumpError, match=words) as caught:
        dump.dump_to_jsonl(path, out)
    assert name in str(caught.value) and not out.exists()


def test_gzip_input_is_named_as_gzip_with_the_way_out(tmp_path, tiny_xml):
    path = tmp_path / "dump.xml.gz"
    path.write_bytes(gzip.compress(tiny_xml))
    with pytest.raises(dump.DumpError, match="gzip-compressed") as caught:
        dump.dump_to_jsonl(path, tmp_path / "out.jsonl")
    assert "gunzip -k dump.xml.gz" in str(caught.value) and "malformed" not in str(caught.value)


def test_bz2_data_that_is_not_xml_is_refused(tmp_path):
    import bz2

    path = tmp_path / "text.xml.bz2"
    path.write_bytes(bz2.compress(b"just some text, compressed\n" * 10))
    with pytest.raises(dump.DumpError, match="decompressed data is not XML"):
        dump.dump_to_jsonl(path, tmp_path / "out.jsonl")


# --- 3. two writers of one output -------------------------------------------------------------------

def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path, tiny_dump, lock_holder):
    out = tmp_path / "a.jsonl"
    pid = lock_holder(out)
    with pytest.raises(course.OutputBusyError, match=f"process {pid} is writing"):
        dump.dump_to_jsonl(tiny_dump, out)
    cli = subprocess.run([sys.executable, "-m", "helpers.dump", str(tiny_dump), "-o", str(out), "--no-progress"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert cli.returncode == 1 and f"process {pid}" in cli.stderr and "Traceback" not in cli.stderr
    lock_holder.release()
    assert not out.exists()
    dump.dump_to_jsonl(tiny_dump, out)  # the holder died without cleaning up: its lock is taken over
    assert out.exists() and not (tmp_path / ".a.jsonl.lock").exists()


def test_partial_files_are_unique_per_writer(tmp_path):
    first, second = course.new_partial(tmp_path / "a.jsonl"), course.new_partial(tmp_path / "a.jsonl")
    assert first != second and first.name.startswith(".a.jsonl.") and first.name.endswith(".partial")


# --- 4. input == output -----------------------------------------------------------------------------


def test_writing_over_the_dump_itself_is_refused(tmp_path, tiny_dump):
    copy = tmp_path / "dump.xml.bz2"
    copy.write_bytes(tiny_dump.read_bytes())
    original = copy.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(copy)
    for out in (copy, tmp_path / "link.jsonl", tmp_path / "sub" / ".." / "dump.xml.bz2"):
        with pytest.raises(dump.DumpError, match="the output is the dump itself"):
            dump.dump_to_jsonl(copy, out)
    assert copy.read_bytes() == original


# --- 8. files readable by a web server running as another user --------------------------------------


def test_outputs_are_written_0644_and_folders_0755(tmp_path, tiny_dump):
    previous = os.umask(0o022)
    try:
        with course.atomic_output(tmp_path / "a.json") as handle:
            handle.write("{}")
        with course.atomic_directory(tmp_path / "model") as staging:
            (staging / "config.json").write_text("{}")
        dump.dump_to_jsonl(tiny_dump, tmp_path / "articles.jsonl")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "a.json") == 0o644 and _mode(tmp_path / "articles.jsonl") == 0o644
    assert _mode(tmp_path / "model") == 0o755 and _mode(tmp_path / "model" / "config.json") == 0o644


# --- 5 and 6. the wikitext stripper: no recursion, linear time, MediaWiki's rules for unclosed markup ---

ADVERSARIAL = {
    "unclosed templates": lambda n: "{{" * n + "x",
    "unclosed links": lambda n: "[[" * n + "x",
    "nested links": lambda n: "[[a|" * n + "x" + "]]" * n,
    "nested kept templates": lambda n: "{{nowrap|" * n + "x" + "}}" * n,
    "templates across unclosed tables": lambda n: "{{a|" * n + "{|\n" * n + "}}" * n,
    "unclosed templates with prose": lambda n: "{{ some words here\n" * n,
    "closed in unclosed": lambda n: "{{a|b}} {{c|" * n,
    "unclosed refs": lambda n: "<ref>" * n + "x",
}


def _shallow(limit: int = 60):
    """A recursion limit just above the current depth: any recursion per nesting level fails at once."""
    import contextlib
    import inspect

    @contextlib.contextmanager
    def limited():
        previous = sys.getrecursionlimit()
        sys.setrecursionlimit(len(inspect.stack()) + limit)
        try:
            yield
        finally:
            sys.setrecursionlimit(previous)
    return limited()


@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_deep_or_unclosed_markup_neither_recurses_nor_leaves_marks(case):
    markup = ADVERSARIAL[case](2_000)
    with _shallow():
        for keep_tables in (False, True):
            text = "\n".join(section["text"] for section in wikitext.parse_wikitext(markup, keep_tables))
            assert not any(mark in text for mark in ("{{", "}}", "[[", "]]", "<ref")), (case, text[:80])


def _cpu_seconds(markup: str) -> float:
    best = float("inf")
    gc.collect()
    gc.disable()  # the cyclic collector's passes scale with the whole test process's heap, not with this scan
    try:
        for _ in range(3):  # CPU time of this process, the best of three: other processes barely move it
            started = time.process_time()
            wikitext.parse_wikitext(markup, keep_tables=True)
            best = min(best, time.process_time() - started)
    finally:
        gc.enable()
    return best


@pytest.mark.parametrize("case", sorted(ADVERSARIAL))
def test_the_stripper_takes_linear_time_on_adversarial_markup(case):
    """A complexity guard, not a speed goal: ten times the input costs about ten times the time when the
    scan is linear, and a hundred times when it is quadratic (the stripper before issue 13 took 13 s on
    20,000 of "{{a|b}} {{c|" and 266 s on 80,000). 30x is the line between them."""
    small, large = _cpu_seconds(ADVERSARIAL[case](8_000)), _cpu_seconds(ADVERSARIAL[case](80_000))
    # 1.5 s at least: linear takes 0.2-0.9 s for 80,000, quadratic 3 s to minutes
    assert large < 30 * max(small, 0.05), (case, small, large)


def _random_markup(rng: random.Random, pieces: int) -> str:
    vocabulary = ["{{", "}}", "{|", "|}", "|-", "|", "!", "[[", "]]", "[[File:a.jpg|thumb|", "[[Category:X]]",
                  "<ref>", "</ref>", '<ref name="a"/>', "<ref name=b>", "<!--", "-->", "<math>", "</math>",
                  "<br/>", "<noinclude>", "'''", "''", "== H ==", "=== H ===", "&amp;", "&nbsp;", "[http://x.org y]",
                  "{{nowrap|", "{{lang|fr|", "{{convert|3|km}}", "* ", "# ", ":", "\n", "\n\n", " ", "word", "Albedo",
                  "é", "日本", "\t", "__NOTOC__", "<div>", "</div>", "=", ",", "."]
    return "".join(rng.choice(vocabulary) + (" " if rng.random() < 0.3 else "") for _ in range(pieces))


def test_random_and_adversarial_markup_never_raises():
    """A seeded fuzz: 400 random pages of markup soup, each parsed with and without tables, no exception,
    no template or link mark left, every section a dict of heading, level and text."""
    rng = random.Random(13)
    with _shallow():
        for _ in range(400):
            markup = _random_markup(rng, rng.randint(1, 400))
            for keep_tables in (False, True):
                sections = wikitext.parse_wikitext(markup, keep_tables)
                for section in sections:
                    assert set(section) == {"heading", "level", "text"} and isinstance(section["text"], str)
                    assert "{{" not in section["text"] and "[[" not in section["text"], markup


def test_an_unclosed_ref_keeps_the_rest_of_the_article():
    sections = wikitext.parse_wikitext("Albedo is reflectivity.<ref>Smith 2001, p. 4\n\n== Measurement ==\n"
                                       "It is measured from 0 to 1.<ref name=a/>\n\n== Uses ==\nClimate models.")
    assert [s["heading"] for s in sections] == ["", "Measurement", "Uses"]
    assert sections[1]["text"] == "It is measured from 0 to 1." and sections[2]["text"] == "Climate models."
    # a closed one is still removed with its content, and <noinclude> still runs to the end when unclosed
    assert wikitext.parse_wikitext("A.<ref>cite</ref> B.")[0]["text"] == "A. B."
    assert wikitext.parse_wikitext("A. <noinclude>hidden\n\n== X ==\nhidden")[0]["text"] == "A."


def test_an_unclosed_infobox_leaks_no_parameters_into_the_prose():
    sections = wikitext.parse_wikitext("{{Infobox person\n| name = Ada Lovelace\n| born = 1815\n"
                                       "'''Ada Lovelace''' was a mathematician.\n\n== Life ==\nShe wrote notes.")
    assert sections[0]["text"] == "Ada Lovelace was a mathematician." and sections[1]["text"] == "She wrote notes."
    # inline, MediaWiki's rule: the mark is literal text (dropped here) and the words after it stay
    assert wikitext.parse_wikitext("Born {{circa 1815 in London.")[0]["text"] == "Born circa 1815 in London."


def test_one_pathological_page_does_not_abort_the_dump(tmp_path, tiny_xml, tiny_articles):
    page = ("  <page>\n    <title>Deep</title>\n    <ns>0</ns>\n    <id>999999</id>\n    <revision>\n"
            "      <timestamp>2024-01-01T00:00:00Z</timestamp>\n      <text>" + "{{" * 10_000 + "[[" * 10_000
            + "Deep is a test.</text>\n    </revision>\n  </page>\n")
    path = tmp_path / "deep.xml"
    path.write_bytes(tiny_xml.replace(b"</mediawiki>", page.encode() + b"</mediawiki>"))
    articles = list(dump.iter_articles(path))
    assert [a["title"] for a in articles] == [a["title"] for a in tiny_articles] + ["Deep"]
    assert articles[-1]["sections"][0]["text"] == "Deep is a test."


# --- 10. the smaller ones ----------------------------------------------------------------------------


def test_a_broken_jsonl_line_is_reported_by_file_and_line(tmp_path):
    path = tmp_path / "articles.jsonl"
    path.write_text('{"id": 1, "title": "A", "sections": []}\n\n{"id": 2, "title": "B", "sec\n', encoding="utf-8")
    with pytest.raises(dump.JsonlError, match=r"articles\.jsonl, line 3: not valid JSON .*run the chapter"):
        dump.read_jsonl(path)
    path.write_text('[1, 2]\n', encoding="utf-8")
    with pytest.raises(dump.JsonlError, match="line 1: a list, not a JSON object"):
        dump.read_jsonl(path)


def test_a_pairs_file_without_responses_is_refused_when_read(tmp_path):
    from helpers import pairs

    good = {name: "x" for name in pairs.PAIR_FIELDS} | {"article_id": 1, "level": 1}
    path = tmp_path / "validation.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({k: v for k, v in good.items() if k != "response"}) + "\n")
    with pytest.raises(dump.JsonlError, match=r"validation\.jsonl, line 2: the record has no response"):
        pairs.read_pairs_jsonl(path)


@pytest.mark.parametrize("settings,words", [
    ({"min_response_chars": -5, "max_response_chars": 0}, "min_response_chars at least 1"),
    ({"max_paragraphs": 0}, "max_paragraphs must be at least 1"),
])
def test_pairing_config_edges_are_refused_saying_which_value(settings, words):
    from helpers import pairs

    with pytest.raises(ValueError, match=words):
        pairs.PairingConfig(**settings)


def test_cleaning_config_with_no_bands_is_refused():
    from helpers import clean

    with pytest.raises(ValueError, match="lsh_bands .0. must be at least 1"):
        clean.CleaningConfig(lsh_bands=0)


def test_special_token_text_in_a_response_never_becomes_the_token(course_tokenizer):
    from helpers import finetune

    with pytest.raises(finetune.FinetuneError, match=r"response of train pair 3 .*'<\|endoftext\|>'.*run chapter 03 again"):
        finetune.tokenize_pair(course_tokenizer, "Explain GPT-2.", "It ends texts with <|endoftext|> tokens.",
                               max_length=128, where="train pair 3")
    ok = finetune.tokenize_pair(course_tokenizer, "Explain GPT-2.", "It ends texts with a special token.", max_length=128)
    assert ok["labels"][-1] == course_tokenizer.eos_token_id  # the one real end of text is the last label


@pytest.mark.parametrize("tokenizer_fixture, token", [("course_tokenizer", "<|endoftext|>"), ("smollm2_tokenizer", "<|im_start|>")])
def test_chapter_03_leaves_out_pairs_quoting_a_special_token_and_keeps_the_rest(request, pair_splits, tokenizer_fixture, token):
    from helpers import finetune, pairs

    tokenizer = request.getfixturevalue(tokenizer_fixture)
    splits = {name: [dict(pair) for pair in rows] for name, rows in pair_splits.items()}
    quoting = splits["train"][2]
    quoting["response"] = f"Models end a text with {token} in training. " + quoting["response"]
    kept, left_out = pairs.drop_special_token_pairs(splits, tokenizer)
    assert left_out.to_dict("records") == [{"split": "train", "title": quoting["title"], "article_id": quoting["article_id"],
                                            "field": "response", "token": token}]
    assert kept["train"] == splits["train"][:2] + splits["train"][3:]  # every other pair, unchanged and in order
    assert kept["validation"] == pair_splits["validation"] and kept["test"] == pair_splits["test"]
    finetune.tokenize_pairs(kept["train"], tokenizer, max_length=1024, truncate=True)  # what chapter 05 then reads


def test_the_collator_refuses_labels_that_do_not_match_the_inputs():
    from helpers import finetune

    collate = finetune.RightPaddingCollator(pad_token_id=0)
    with pytest.raises(ValueError, match="example 1 of the batch has 1 labels for 3 input ids"):
        collate([{"input_ids": [1, 2], "labels": [1, 2]}, {"input_ids": [1, 2, 3], "labels": [-100]}])


def test_saving_fewer_splits_removes_the_old_split_file(tmp_path, pair_splits):
    from helpers import pairs

    pairs.save_pairs(pair_splits, tmp_path)
    assert (tmp_path / "test.jsonl").exists()
    pairs.save_pairs({name: pair_splits[name] for name in ("train", "validation")}, tmp_path)
    assert not (tmp_path / "test.jsonl").exists() and (tmp_path / "validation.jsonl").exists()


def test_a_redeployed_model_gets_new_file_times(tmp_path, exported_gpt2):
    from helpers import deploy

    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    old_time = time.time() - 86_400
    for file in exported_gpt2.rglob("*"):
        os.utime(file, (old_time, old_time))  # an export made yesterday
    before = time.time()
    target = deploy.deploy_model(exported_gpt2, site, "m")
    assert all(file.stat().st_mtime >= before - 1 for file in target.rglob("*") if file.is_file())
    assert all(_mode(file) == 0o644 for file in target.rglob("*") if file.is_file())


def test_a_model_redeployed_within_the_same_second_is_fetched_again_not_answered_304(tmp_path, exported_gpt2, exported_llama):
    """The server's validator comes from the bytes: Last-Modified has whole seconds, an ETag of the content does not."""
    from helpers import deploy

    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html>")
    server, url = deploy.serve(site)
    model_file = f"{url}models/m/config.json"

    def get(headers=None):
        try:
            with urllib.request.urlopen(urllib.request.Request(model_file, headers=headers or {})) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:  # urllib raises for 304
            return error.code, error.headers, b""

    try:
        deploy.deploy_model(exported_gpt2, site, "m")
        status, headers, first = get()
        assert status == 200 and headers["ETag"]
        cached = {"If-None-Match": headers["ETag"], "If-Modified-Since": headers["Last-Modified"]}
        assert get(cached)[0] == 304  # unchanged: the browser keeps its copy
        deploy.deploy_model(exported_llama, site, "m")  # another model, same name, same second
        status, headers, second = get(cached)
        assert status == 200 and second != first and json.loads(second)["model_type"] == "llama"
        deploy.deploy_model(exported_llama, site, "m")  # the same bytes again: still answered 304
        assert get({"If-None-Match": headers["ETag"]})[0] == 304
    finally:
        server.shutdown()
        server.server_close()


def test_serve_refuses_a_port_that_is_not_one_in_one_line():
    done = subprocess.run([sys.executable, "-m", "helpers.deploy", "serve", "--port", "99999"], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "99999 is not a port number" in done.stderr


def test_the_parser_cli_ends_an_os_error_with_one_line(tmp_path, tiny_dump):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = subprocess.run([sys.executable, "-m", "helpers.dump", str(tiny_dump), "-o", str(blocker / "out.jsonl"),
                           "--no-progress"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr and done.stderr.startswith("error: ")
