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

from helpers import course

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
    todo = TODO + "write the body of `strip_bold(wikitext) -> str`, which removes '''"
    if strip_bold is None:
        return todo
    text = bold_sample(dump_path)
    try:
        got = strip_bold(text)
    except NotImplementedError:
        return todo
    except Exception as error:  # the learner's code: say what went wrong instead of stopping the notebook
        return f"not quite: strip_bold raised {type(error).__name__}: {error}"
    expected = text.replace("'''", "")
    if not isinstance(got, str):
        return f"not quite: strip_bold returned {type(got).__name__}, not a str"
    if "'''" in got:
        at = got.index("'''")
        return f"not quite: bold marks are left, e.g. {got[max(0, at - 30):at + 30]!r}"
    if got.replace("''", "") != expected.replace("''", ""):
        at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        return f"not quite: the text changed beyond the bold marks near {expected[max(0, at - 30):at + 30]!r}"
    return f"correct: {text.count(chr(39) * 3)} bold marks removed from a real article, the rest intact"


def multistream_samples(multistream_path: Path | str, index_path: Path | str) -> list[tuple[str, int, int | None]]:
    """``(title, offset, length)`` of the last page of the first, a middle and the last page stream.

    Read from the index file directly (not through ``dump.read_multistream_index``). For a dump over
    50 MB the third stream stands in for the last one, so that checking stays quick. The last page
    of a stream, so that an answer returning a stream's first page regardless of the title fails.
    """
    import bz2

    opener = bz2.open if str(index_path).endswith(".bz2") else open
    with opener(index_path, "rt", encoding="utf-8") as handle:
        rows = [line.rstrip("\n").split(":", 2) for line in handle if line.strip()]
    last_title = {int(offset): title for offset, _, title in rows}  # the later row wins: the stream's last page
    offsets = sorted(last_title)
    small = Path(multistream_path).stat().st_size <= 50_000_000
    picks = sorted({0, len(offsets) // 2, len(offsets) - 1 if small else min(2, len(offsets) - 1)})
    return [(last_title[offsets[i]], offsets[i], offsets[i + 1] - offsets[i] if i + 1 < len(offsets) else None)
            for i in picks]


def check_01_read_page(multistream_path: Path | str, index_path: Path | str,
                       read_page: Callable[[Path, int, int | None, str], str] | None) -> str:
    """Exercise: ``read_page(path, offset, length, title)``, one page's wikitext read from its stream only.

    The expected wikitexts come from streaming the whole file from its start (``dump.iter_pages``),
    not from the seek this exercise writes.
    """
    from helpers import dump

    todo = TODO + "write the body of `read_page(multistream_path, offset, length, title) -> str`"
    if read_page is None:
        return todo
    samples = multistream_samples(multistream_path, index_path)
    wanted = {title for title, _, _ in samples}
    expected: dict[str, str] = {}
    for page in dump.iter_pages(multistream_path):
        if page.title in wanted:
            expected[page.title] = page.text
            if len(expected) == len(wanted):
                break
    for title, offset, length in samples:
        try:
            got = read_page(Path(multistream_path), offset, length, title)
        except NotImplementedError:
            return todo
        except Exception as error:  # the learner's code: say what went wrong instead of stopping the notebook
            return f"not quite: read_page(..., {offset}, {length}, {title!r}) raised {type(error).__name__}: {error}"
        if got != expected[title]:
            shown = got[:60] if isinstance(got, str) else type(got).__name__
            return (f"not quite: for {title!r} (stream at byte {offset:,}) it returned {shown!r}, "
                    f"not the page's {len(expected[title]):,} characters of wikitext starting {expected[title][:40]!r}")
    streams = ", ".join(str(offset) for _, offset, _ in samples)
    return f"correct: {len(samples)} pages read from the streams at bytes {streams}, each equal to what streaming finds"


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
    before = count_sections(course.chapter_input(run, "articles"))
    after = count_sections(course.chapter_input(run, "clean_articles"))
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


#: Cases the rule of exercise 02.3 must get right whatever the corpus holds: (text, is a note).
EDITORIAL_NOTE_CASES: tuple[tuple[str, bool], ...] = (
    ("(See summation for an explanation of the summation operator).", True),
    ("(Condensed from a handbook: Section 5.7. A glossary of terms.)", True),
    ("  (See the table below (Table 1) for the values.)\n", True),
    ("(a) the first reading of the text. (b) the second reading of the text.", False),
    ("(born 1950) Jane Doe is a painter who works in oil and in watercolour.", False),
    ("Albedo is a ratio (of reflected to incident light), measured from zero to one.", False),
    ("An aside at the end of a sentence (like this one).", False),
)


def is_editorial_note(text: str) -> bool:
    """The whole paragraph is inside one pair of parentheses, perhaps followed by a full stop."""
    text = text.strip()
    if text.endswith(")."):
        text = text[:-1]
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth = 0
    for position, char in enumerate(text):
        depth += (char == "(") - (char == ")")
        if depth == 0:  # the first parenthesis closes here: a note only if that is the end
            return position == len(text) - 1
    return False


def check_02_editorial_note(run_dir: Path | str, check: Callable[[str], str | None] | None) -> str:
    """Exercise: a check that removes paragraphs wholly in parentheses, run on this run's cleaned paragraphs."""
    from helpers import clean, dump

    if check is None:
        return TODO + "write `editorial_note(text) -> str | None` and set the answer to it"
    path = course.chapter_input(run_dir, "clean_articles")
    paragraphs = list(clean.iter_paragraphs(dump.read_jsonl(path)))
    cases = [(text, is_editorial_note(text)) for text in paragraphs] + list(EDITORIAL_NOTE_CASES)
    for text, expected in cases:
        try:
            verdict = check(text)
        except Exception as error:  # the learner's code: say what failed and where
            return f"not quite: it raised {type(error).__name__}: {error} on {text[:80]!r}"
        if verdict is not None and not isinstance(verdict, str):
            return f"not quite: it returned {verdict!r}; a check returns a reason (a str) or None"
        if (verdict is not None) != expected:
            what = "removes" if verdict is not None else "keeps"
            return f"not quite: it {what} {text.strip()[:100]!r}, which is {'' if expected else 'not '}an editorial note"
    notes = [text for text in paragraphs if is_editorial_note(text)]
    example = f", e.g. {notes[0][:70]!r}" if notes else ""
    return f"correct: it removes {len(notes)} of this run's {len(paragraphs)} paragraphs{example}"


# --- 03 Pairing ----------------------------------------------------------------------------------


def split_of(run_dir: Path | str, title: str) -> str | None:
    """The split (train, validation, test) whose pairs come from the article ``title``, from 03_pairs/."""
    from helpers import pairs

    for name, rows in pairs.load_pairs(course.chapter_input(run_dir, "pairs")).items():
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
    splits = pairs.load_pairs(course.chapter_input(run_dir, "pairs"))
    lengths = pairs.token_lengths({"train": splits["train"]}, tokenizer)
    expected = int((lengths.loc[lengths["split"] == "train", "full"] > max_length).sum())
    return _verdict(int(answer) == expected, f"{answer} given, {expected} of {len(splits['train'])} are longer",
                    f"correct: {expected} of {len(splits['train'])} training pairs")


def hashed_split_of(article_id: Any, fractions: dict[str, float]) -> str:
    """Exercise 03.3's rule: the first split whose cumulative fraction is above the id's hash in [0, 1)."""
    import hashlib

    position = int(hashlib.sha256(str(article_id).encode()).hexdigest(), 16) / 16**64
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if position < cumulative:
            return name
    return name  # fractions summing to 0.999... by rounding: the last split


def _pair_key(pair: dict[str, Any]) -> tuple:
    return pair.get("article_id"), pair.get("heading_path"), pair.get("instruction")


def _articles_by_split(splits: dict[str, list[dict[str, Any]]]) -> dict[Any, str]:
    return {pair["article_id"]: name for name, rows in splits.items() for pair in rows}


def check_03_stable_split(run_dir: Path | str, fractions: dict[str, float], stable_split: Callable | None) -> str:
    """Exercise: a split by article decided by each article's hashed id, run on this run's pairs."""
    from helpers import pairs

    if stable_split is None:
        return TODO + "write `stable_split(rows, fractions) -> {split: [pairs]}` and set the answer to it"
    rows = [row for split in pairs.load_pairs(course.chapter_input(run_dir, "pairs")).values() for row in split]
    rows.sort(key=lambda row: row["article_id"])  # not the order chapter 03 made: the rule must not care
    expected = {name: [row for row in rows if hashed_split_of(row["article_id"], fractions) == name] for name in fractions}
    try:
        got = stable_split(list(rows), dict(fractions))
    except Exception as error:  # the learner's code: say what failed
        return f"not quite: it raised {type(error).__name__}: {error}"
    if not isinstance(got, dict) or set(got) != set(fractions):
        keys = sorted(got) if isinstance(got, dict) else type(got).__name__
        return f"not quite: it should return a dict with the keys {sorted(fractions)}, got {keys}"
    for name in fractions:
        if list(got[name]) != expected[name]:
            given = {_pair_key(row) for row in got[name]}
            wanted = {_pair_key(row) for row in expected[name]}
            wrong = next((row for row in rows if (_pair_key(row) in given) != (_pair_key(row) in wanted)), None)
            if wrong is None:
                where = " (the same pairs, in another order)"
            else:
                placed = [other for other in fractions if _pair_key(wrong) in {_pair_key(row) for row in got[other]}]
                where = (f" e.g. article {wrong['title']!r} (id {wrong['article_id']}) belongs in "
                         f"{hashed_split_of(wrong['article_id'], fractions)!r}, not in {' and '.join(placed) or 'no split'}")
            return f"not quite: {name!r} has {len(got[name])} pairs, the rule gives {len(expected[name])};{where}"
    dropped = rows[0]["article_id"]
    rest = [row for row in rows if row["article_id"] != dropped]
    before, after = _articles_by_split(got), _articles_by_split(stable_split(list(rest), dict(fractions)))
    moved = sum(before[article] != split for article, split in after.items())
    shuffled_before = _articles_by_split(pairs.split_by_article(rows, fractions))
    shuffled_after = _articles_by_split(pairs.split_by_article(rest, fractions))
    shuffled_moved = sum(shuffled_before[article] != split for article, split in shuffled_after.items())
    counts = ", ".join(f"{name} {len({row['article_id'] for row in got[name]})}" for name in fractions)
    return (f"correct: articles per split {counts}; without article id {dropped}, {moved} other articles move "
            f"(the shuffled split_by_article moves {shuffled_moved})")


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



def check_04_kv_cache_function(kv_cache_bytes: Callable[[Any], int] | None) -> str:
    """Exercise: ``kv_cache_bytes(config)``, the fp16 KV-cache bytes one token adds, for every decoder-only candidate.

    Run on each candidate's real config (``models.load_candidate_config``, offline copies), GPT-2's
    and Llama's field names both; the first wrong model is named, with its heads.
    """
    from helpers import models

    if kv_cache_bytes is None:
        return TODO + "define kv_cache_bytes(config) and pass it to the check"
    for name in models.CANDIDATES:
        config, _ = models.load_candidate_config(name, offline=True)
        if models.is_encoder_decoder(config):
            continue  # T5's cache has two parts (self- and cross-attention): left out of the exercise
        expected = models.kv_cache_bytes_per_token(config, 2)
        try:
            got = kv_cache_bytes(config)
        except NotImplementedError:
            return TODO + "write the body of kv_cache_bytes(config), then run this cell again"
        except Exception as error:  # the learner's code: say where it broke
            return f"not quite: kv_cache_bytes raised {type(error).__name__}: {error} on {name} ({config.model_type})"
        if got != expected:
            heads, kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
            hint = (f"; it has {kv} key/value heads for {heads} query heads (grouped-query attention)" if kv != heads
                    else f"; {config.num_hidden_layers} layers, {heads} heads of {config.hidden_size // heads} dims")
            return f"not quite: {name} gives {got!r}, expected {expected:,} bytes{hint}"
    return "correct: right for distilgpt2 and the five SmolLM2 models"

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


def check_05_accumulation(tokenizer: Any, examples: list[dict[str, Any]], accumulate: Callable | None) -> str:
    """Exercise: ``accumulate(model, micro_batches) -> float`` leaves the gradients of one big batch.

    Runs it on a small random GPT-2 with the run's tokenizer, on ``examples`` (tokenized training
    pairs) in micro-batches of two, and compares with the gradients and loss of all the examples in
    one batch as the model's own loss computes them (``labels=``: the mean over every labelled token).
    """
    import torch

    from helpers import finetune, models

    if accumulate is None:
        return TODO + "write accumulate(model, micro_batches) and set answer_3 = accumulate"
    model = models.build_tiny_gpt2(tokenizer, {"n_layer": 2, "n_head": 2, "n_embd": 32, "n_positions": 512}).eval()
    collator = finetune.RightPaddingCollator(finetune.pad_token_id(tokenizer))
    micro_batches = [collator(examples[i:i + 2]) for i in range(0, len(examples), 2)]

    model.zero_grad(set_to_none=True)
    got_loss = accumulate(model, [dict(batch) for batch in micro_batches])
    got = {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    big_batch_loss = model(**collator(examples)).loss
    big_batch_loss.backward()
    expected_loss = big_batch_loss.item()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    if any(grad is None for grad in got.values()):
        return "not quite: some parameters have no gradient; call .backward() on each micro-batch's loss"
    ratio = float(sum((got[n] * expected[n]).sum() for n in got) / sum((expected[n] ** 2).sum() for n in got))
    if not all(torch.allclose(got[n], expected[n], rtol=1e-4, atol=1e-6) for n in got):
        if abs(ratio - len(micro_batches)) < 0.05 * len(micro_batches):
            return (f"not quite: the gradients are {len(micro_batches)} times too large; divide each summed "
                    "loss by the token count of all the micro-batches together")
        return ("not quite: the gradients differ from one big batch's; each micro-batch's loss must be its "
                "summed token loss divided by the labelled tokens of all the micro-batches (not its own mean)")
    if not isinstance(got_loss, (int, float)) or abs(got_loss - expected_loss) > 1e-4 * expected_loss:
        return f"not quite: the gradients are right, but the loss returned is {got_loss!r}, not {expected_loss:.4f} (a float)"
    tokens = sum(int((batch["labels"][:, 1:] != -100).sum()) for batch in micro_batches)
    return (f"correct: {len(micro_batches)} micro-batches, {tokens} labelled tokens, the same gradients "
            f"and loss ({expected_loss:.4f}) as one batch of {len(examples)}")


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


class _RecordingSession:
    """An onnxruntime session that notes, for every ``run``, how many tokens were fed and how long the cache was."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.steps: list[dict[str, int]] = []

    def __getattr__(self, name: str) -> Any:  # get_inputs, get_outputs...: the real session's
        return getattr(self._session, name)

    def run(self, output_names: Any, feed: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        past = [value.shape[2] for name, value in feed.items() if name.startswith("past_key_values")]
        self.steps.append({"fed": int(feed["input_ids"].shape[1]), "past": max(past, default=0)})
        return self._session.run(output_names, feed, *args, **kwargs)


def check_06_greedy_without_cache(run_dir: Path | str, greedy_without_cache: Callable[..., Any] | None,
                                  max_new_tokens: int = 12) -> str:
    """Exercise: greedy decoding on the fp32 graph that feeds the whole sequence at every step, with an empty cache.

    Runs the learner's ``greedy_without_cache(session, prompt_ids, max_new_tokens, stop_ids)`` on this
    run's first validation question and compares its tokens with PyTorch's greedy ``generate`` on
    chapter 05's model (not with the course's ONNX decoder).
    """
    if greedy_without_cache is None:
        return TODO + "write greedy_without_cache(session, prompt_ids, max_new_tokens, stop_ids)"
    import onnxruntime
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from helpers import export, finetune
    from helpers.pairs import read_pairs_jsonl

    run_dir = Path(run_dir)
    model_dir = course.chapter_input(run_dir, "onnx_model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    instruction = read_pairs_jsonl(course.chapter_input(run_dir, "validation_pairs"))[0]["instruction"]
    prompt_ids = finetune.encode_prompt(tokenizer, instruction)
    stop_ids = export.eos_ids(model_dir)
    session = _RecordingSession(onnxruntime.InferenceSession(str(model_dir / "onnx" / "model.onnx"),
                                                             providers=["CPUExecutionProvider"]))
    got = greedy_without_cache(session, list(prompt_ids), max_new_tokens, stop_ids)
    if got is None:
        return TODO + "greedy_without_cache returned None: return the list of new token ids"
    model = AutoModelForCausalLM.from_pretrained(course.chapter_input(run_dir, "finetuned_model"), dtype=torch.float32).eval()
    with torch.no_grad():
        expected = model.generate(torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
                                  do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, min_new_tokens=0,
                                  repetition_penalty=1.0, no_repeat_ngram_size=0, eos_token_id=stop_ids or None,
                                  pad_token_id=stop_ids[0] if stop_ids else 0)[0, len(prompt_ids):].tolist()
    cached = [(i, step["past"]) for i, step in enumerate(session.steps) if step["past"] > 0]
    if cached:
        step, length = cached[0]
        return f"not quite: step {step} fed a cache of {length} positions; feed an empty one (length 0) every time"
    got = [int(token) for token in got]
    if got != expected:
        where = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        return (f"not quite: {len(got)} tokens, PyTorch's greedy generate chose {len(expected)}; they first differ at "
                f"position {where} (take the argmax of the last position's logits, and stop after an end token)")
    fed = sum(step["fed"] for step in session.steps)
    with_cache = len(prompt_ids) + len(expected) - 1  # the prompt once, then one token per step
    return (f"correct: the same {len(expected)} tokens as PyTorch's greedy generate. Without the cache the graph read "
            f"{fed} tokens in {len(session.steps)} steps; with it, {with_cache}")


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


def check_07_handler(site_dir: Path | str, handler: type | None) -> str:
    """Exercise: a request handler class that serves the page cross-origin isolated, ``.wasm`` as ``application/wasm``.

    Serves ``site_dir`` with ``handler`` and checks what a browser needs (the values the specifications
    name, not the course's own handler): COOP ``same-origin`` and COEP ``require-corp`` on every answer.
    """
    import functools
    import threading
    import urllib.request
    from http.server import SimpleHTTPRequestHandler

    from helpers.deploy import SiteServer

    if handler is None:
        return TODO + "write the handler class and set answer_3 to it (the class, not an instance)"
    if not (isinstance(handler, type) and issubclass(handler, SimpleHTTPRequestHandler)):
        return f"not quite: answer_3 is {handler!r}; set it to your class, a subclass of SimpleHTTPRequestHandler"
    site_dir = Path(site_dir)
    wasm = sorted((site_dir / "vendor").glob("*.wasm"), key=lambda path: path.stat().st_size)
    paths = ["index.html"] + [f"vendor/{wasm[0].name}"] * bool(wasm)
    try:
        quiet = type("Checked", (handler,), {"log_message": lambda self, *args: None})  # no line per request
        server = SiteServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(site_dir)))
    except Exception as error:  # e.g. a class body that fails
        return f"not quite: could not serve with {handler.__name__} ({type(error).__name__}: {error})"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    problems = []
    try:
        for path in paths:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/{path}") as response:
                    headers = response.headers
                    response.read()
            except Exception as error:
                problems.append(f"{path}: the server answered with an error ({error})")
                continue
            for name, value in (("Cross-Origin-Opener-Policy", "same-origin"), ("Cross-Origin-Embedder-Policy", "require-corp")):
                if headers.get(name) != value:
                    problems.append(f"{path}: {name} is {headers.get(name)!r}, the browser needs {value!r}")
            if path.endswith(".wasm") and headers.get_content_type() != "application/wasm":
                problems.append(f"{path}: served as {headers.get_content_type()!r}, streaming compilation needs 'application/wasm'")
    finally:
        server.shutdown()
        server.server_close()
    if problems:
        return "not quite: " + "; ".join(problems)
    return "correct: cross-origin isolated" + ("" if wasm else " (vendor/ is not built, so the .wasm type was not checked)")


__all__ = [name for name in dir() if name.startswith(("check_", "count_", "split_of", "exported_", "bold_"))]
