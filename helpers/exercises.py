"""Exercise checks for chapters 01-07: each computes the right answer from the run's real data.

Every ``check_NN_*`` returns a verdict string (the notebook prints it): "correct...", "not quite:
..." saying what is off, or, for the placeholder answer ``None``, "not answered yet: ..." saying
what to do. None never raises, so the notebooks run top to bottom unattended. Solutions are in
``solutions/NN_name.md``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

TODO = "not answered yet: "


def _verdict(ok: bool, wrong: str, right: str = "correct") -> str:
    return right if ok else f"not quite: {wrong}"


# --- 01 Dump parsing ------------------------------------------------------------------------------


def count_redirects(dump_path: Path | str) -> int:
    """Article-namespace pages of the dump that are redirects, counted from the dump itself."""
    from helpers import dump

    return sum(1 for page in dump.iter_pages(dump_path) if page.namespace == 0 and dump.is_redirect(page))


def check_01_redirects(dump_path: Path | str, answer: int | None) -> str:
    """Exercise: how many article pages of the dump are redirects?"""
    if answer is None:
        return TODO + "set the answer to an int (tip: `stats`, what dump_to_jsonl returned, counts skipped pages by reason)"
    expected = count_redirects(dump_path)
    return _verdict(int(answer) == expected, f"{answer} given, the dump holds {expected} redirects in namespace 0",
                    f"correct: {expected} redirects")


def bold_sample(dump_path: Path | str) -> str:
    """The wikitext of the first real article of the dump that has bold marks (''')."""
    from helpers import dump

    for page in dump.iter_pages(dump_path):
        if page.namespace == 0 and not dump.is_redirect(page) and "'''" in page.text:
            return page.text
    raise ValueError(f"no article in {dump_path} has bold marks")


def check_01_strip_bold(dump_path: Path | str, strip_bold: Callable[[str], str] | None) -> str:
    """Exercise: a function that removes bold marks (''') and keeps everything else, italics ('') included."""
    if strip_bold is None:
        return TODO + "define `strip_bold(wikitext) -> str` that removes ''' and set the answer to it"
    text = bold_sample(dump_path)
    got, expected = strip_bold(text), text.replace("'''", "")
    if not isinstance(got, str):
        return f"not quite: strip_bold returned {type(got).__name__}, not a str"
    if "'''" in got:
        at = got.index("'''")
        return f"not quite: bold marks are left, e.g. {got[max(0, at - 30):at + 30]!r}"
    if got.replace("''", "") != expected.replace("''", ""):
        at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        return f"not quite: the text changed beyond the bold marks near {expected[max(0, at - 30):at + 30]!r}"
    return f"correct: {text.count(chr(39) * 3)} bold marks removed from a real article, the rest intact"


# --- 02 Cleaning ---------------------------------------------------------------------------------


def count_sections(path: Path | str) -> int:
    """Sections with text in an articles JSONL file."""
    from helpers import dump

    return sum(1 for article in dump.read_jsonl(path) for section in article["sections"] if section["text"])


def check_02_dropped_sections(run_dir: Path | str, answer: int | None) -> str:
    """Exercise: how many sections with text did the cleaning drop (01_dump vs 02_cleaning)?"""
    if answer is None:
        return TODO + "set the answer to the number of non-empty sections in 01_dump minus those in 02_cleaning (an int)"
    run = Path(run_dir)
    before = count_sections(run / "01_dump" / "articles.jsonl")
    after = count_sections(run / "02_cleaning" / "articles.jsonl")
    expected = before - after
    return _verdict(int(answer) == expected, f"{answer} given; {before} sections with text went in, {after} came out",
                    f"correct: {expected} of {before} sections dropped")


def check_02_top_term(articles: list[dict[str, Any]], answer: str | None, n_articles: int = 200) -> str:
    """Exercise: the most frequent term of the first ``n_articles`` after the classic NLP pipeline."""
    from helpers import clean

    if answer is None:
        return TODO + f"set the answer to a str: the top term of the first {n_articles} articles (tip: clean.term_frequencies)"
    table = clean.term_frequencies(clean.iter_paragraphs(articles[:n_articles]), top=5)
    expected = str(table.iloc[0]["term"])
    if str(answer).strip().lower() == expected:
        return f"correct: {expected!r}"
    hint = " (that is a stopword: the pipeline removes those)" if str(answer).strip().lower() in {"the", "of", "and", "a"} else ""
    return f"not quite: {answer!r}{hint}; the top terms are {', '.join(map(str, table['term']))}"


# --- 03 Pairing ----------------------------------------------------------------------------------


def split_of(run_dir: Path | str, title: str) -> str | None:
    """The split (train, validation, test) whose pairs come from the article ``title``, from 03_pairs/."""
    from helpers import pairs

    for name, rows in pairs.load_pairs(Path(run_dir) / "03_pairs").items():
        if any(row["title"] == title for row in rows):
            return name
    return None


def check_03_split_of(run_dir: Path | str, title: str, answer: str | None) -> str:
    """Exercise: which split holds the pairs of article ``title``?"""
    if answer is None:
        return TODO + f'set the answer to "train", "validation" or "test": where are the pairs of {title!r}?'
    expected = split_of(run_dir, title)
    if expected is None:
        return f"{title!r} has no pairs in this run: pick another title"
    return _verdict(str(answer).strip().lower() == expected,
                    f"{answer!r}; all pairs of {title!r} are in {expected!r} (split by article, never across)",
                    f"correct: {title!r} is in {expected}")


def check_03_long_pairs(run_dir: Path | str, tokenizer: Any, max_length: int, answer: int | None) -> str:
    """Exercise: how many training pairs are longer than ``max_length`` tokens (prompt + response + eos)?"""
    from helpers import pairs

    if answer is None:
        return TODO + f"set the answer to the number of training pairs over {max_length} tokens (tip: pairs.token_lengths)"
    splits = pairs.load_pairs(Path(run_dir) / "03_pairs")
    lengths = pairs.token_lengths({"train": splits["train"]}, tokenizer)
    expected = int((lengths.loc[lengths["split"] == "train", "full"] > max_length).sum())
    return _verdict(int(answer) == expected, f"{answer} given, {expected} of {len(splits['train'])} are longer",
                    f"correct: {expected} of {len(splits['train'])} training pairs")


# --- 04 Model choice -----------------------------------------------------------------------------


def check_04_parameters(model: Any, answer: int | None) -> str:
    """Exercise: how many parameters does the base model have (tied weights counted once)?"""
    from helpers import models

    if answer is None:
        return TODO + "set the answer to the base model's parameter count (an int)"
    expected = models.count_parameters(model)
    tied = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    if int(answer) == expected:
        return f"correct: {expected:,}"
    if int(answer) == tied and tied != expected:
        return f"not quite: {answer:,} counts the tied embedding twice; {expected:,} distinct parameters"
    return f"not quite: {answer:,} given, the model has {expected:,}"


def check_04_kv_cache(name: str, answer: int | None, bytes_per_value: int = 2) -> str:
    """Exercise: KV-cache bytes one generated token adds for candidate ``name`` in fp16."""
    from helpers import models

    if answer is None:
        return TODO + "set the answer to 2 (K and V) x layers x kv heads x head dim x 2 bytes, from the config"
    config, _ = models.load_candidate_config(name, offline=True)
    expected = models.kv_cache_bytes_per_token(config, bytes_per_value)
    if int(answer) == expected:
        return f"correct: {expected:,} bytes per token"
    heads = getattr(config, "num_attention_heads", None)
    kv = getattr(config, "num_key_value_heads", None)
    hint = f" (it has {kv} key/value heads for {heads} query heads)" if kv and heads and kv != heads else ""
    return f"not quite: {answer:,} given, {expected:,} bytes{hint}"


# --- 05 Fine-tuning ------------------------------------------------------------------------------


def check_05_greedy_config(answer: Any, max_new_tokens: int = 20) -> str:
    """Exercise: a GenerationConfig that decodes greedily with at most ``max_new_tokens`` new tokens."""
    from transformers import GenerationConfig

    if answer is None:
        return TODO + f"set the answer to a transformers.GenerationConfig: greedy, at most {max_new_tokens} new tokens"
    if not isinstance(answer, GenerationConfig):
        return f"not quite: a {type(answer).__name__}, not a GenerationConfig"
    problems = []
    if answer.do_sample:
        problems.append("do_sample=True samples; greedy needs do_sample=False")
    if (answer.num_beams or 1) != 1:
        problems.append(f"num_beams={answer.num_beams} is beam search; greedy is num_beams=1")
    if answer.max_new_tokens != max_new_tokens:
        problems.append(f"max_new_tokens is {answer.max_new_tokens}, not {max_new_tokens}")
    return "correct: greedy, " + f"{max_new_tokens} new tokens at most" if not problems else "not quite: " + "; ".join(problems)


def check_05_counted_tokens(tokenizer: Any, pair: dict[str, Any], max_length: int, answer: int | None) -> str:
    """Exercise: how many tokens of this training pair does the loss count (labels not -100)?"""
    from helpers import finetune

    if answer is None:
        return TODO + "set the answer to the number of labels that are not -100 (an int)"
    example = finetune.tokenize_pair(tokenizer, pair["instruction"], pair["response"], max_length=max_length)
    expected = sum(1 for label in example["labels"] if label != -100)
    if int(answer) == expected:
        return f"correct: {expected} of {len(example['labels'])} tokens (the response and its eos)"
    if int(answer) == len(example["labels"]):
        return f"not quite: {answer} is every token; the prompt's labels are -100, only {expected} count"
    return f"not quite: {answer} given, the loss counts {expected}"


# --- 06 ONNX export ------------------------------------------------------------------------------


def check_06_q8_file(model_dir: Path | str, answer: str | None) -> str:
    """Exercise: which file (relative to the model folder) does Transformers.js load for dtype q8?"""
    from helpers import export

    if answer is None:
        return TODO + 'set the answer to a path inside the model folder, like "onnx/model.onnx" for fp32'
    expected = f"onnx/{export.onnx_filename('q8')}"
    if str(answer).strip().lstrip("./") != expected:
        return f"not quite: {answer!r}; Transformers.js asks for {expected!r} (q8 is 'quantized')"
    present = (Path(model_dir) / expected).exists()
    return f"correct: {expected}" + ("" if present else " (but this run's folder lacks it: rerun chapter 06)")


def exported_dtypes(model_dir: Path | str) -> set[str]:
    """The dtypes whose ONNX file the model folder holds."""
    from helpers import export

    return {dtype for dtype in export.DTYPE_SUFFIX if (Path(model_dir) / "onnx" / export.onnx_filename(dtype)).exists()}


def check_06_dtypes(model_dir: Path | str, answer: Any) -> str:
    """Exercise: which dtypes did this run's export make? (a set of strings like {"fp32", "q8"})"""
    if answer is None:
        return TODO + 'set the answer to the set of dtypes in 06_export/model/onnx/, e.g. {"fp32", ...}'
    expected = exported_dtypes(model_dir)
    given = {str(d).strip().lower() for d in answer}
    if given == expected:
        return f"correct: {', '.join(sorted(expected))}"
    return (f"not quite: missing {sorted(expected - given) or 'none'}, not there {sorted(given - expected) or 'none'} "
            "(q4 is made only for graphs with MatMul weights: GPT-2's are Gemm/Conv1D)")


# --- 07 Browser deploy ---------------------------------------------------------------------------


def check_07_url(site_dir: Path | str, name: str, answer: str | None, dtype: str = "fp16", threads: int = 2) -> str:
    """Exercise: the page URL (path + query) that loads model ``name`` in ``dtype`` on ``threads`` threads."""
    from helpers import export

    if answer is None:
        return TODO + f'set the answer to a URL like "index.html?model=...": model {name}, dtype {dtype}, {threads} threads'
    parsed = urlparse(str(answer))
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    problems = []
    if not parsed.path.endswith("index.html"):
        problems.append(f"the page is index.html, not {parsed.path!r}")
    for key, want in {"model": name, "dtype": dtype, "threads": str(threads)}.items():
        if query.get(key) != want:
            problems.append(f"{key} should be {want!r}, got {query.get(key)!r}")
    if problems:
        return "not quite: " + "; ".join(problems)
    file = Path(site_dir) / "models" / name / "onnx" / export.onnx_filename(dtype)
    return "correct" + ("" if file.exists() else f" (but {file} is not deployed: the page would fail to load it)")


def check_07_max_new_tokens(site_dir: Path | str, answer: int | None, preset: str = "factual") -> str:
    """Exercise: how many new tokens at most does the page's ``preset`` allow (site/models/presets.json)?"""
    if answer is None:
        return TODO + f"set the answer to the {preset} preset's max_new_tokens, as the page reads it (an int)"
    path = Path(site_dir) / "models" / "presets.json"
    if not path.exists():
        return f"{path} does not exist: run the deploy cell (deploy.deploy_model) first"
    expected = json.loads(path.read_text(encoding="utf-8"))[preset]["max_new_tokens"]
    return _verdict(int(answer) == expected, f"{answer} given, presets.json says {expected}", f"correct: {expected}")


__all__ = [name for name in dir() if name.startswith(("check_", "count_", "split_of", "exported_", "bold_"))]
