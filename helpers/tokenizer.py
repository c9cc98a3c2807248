"""The course's tokenizer: its own byte-level BPE offline, or a Hub tokenizer online.

The tiny profile cannot download distilgpt2's tokenizer, so it trains a small one on the corpus with
the ``tokenizers`` library, with distilgpt2's conventions: byte-level BPE (every string encodes
and decodes back unchanged, whatever its script), ``<|endoftext|>`` as the only special token
(beginning, end and unknown), no padding token, no prefix space. It is saved as a folder that
``transformers.AutoTokenizer.from_pretrained`` loads, so the later chapters load either tokenizer
through the same call: the profile only changes the name or path.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, GPT2TokenizerFast, PreTrainedTokenizerBase, PreTrainedTokenizerFast

EOS_TOKEN = "<|endoftext|>"
COURSE_TOKENIZER = "course-bpe"  # the tokenizer_name by which a profile asks for the course's own
TRAINING_RECORD = "course_tokenizer.json"  # what the folder was trained on, to know when to retrain


class TokenizerUnavailableError(OSError):
    """A Hub tokenizer could not be loaded (offline, or no such repository)."""


def train_course_tokenizer(
    texts: Iterable[str],
    out_dir: Path | str,
    vocab_size: int = 2048,
    *,
    min_frequency: int = 2,
    model_max_length: int = 1024,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``, save it in ``out_dir`` and return it loaded.

    The folder holds ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json``
    (plus GPT-2's ``vocab.json``/``merges.txt``); ``load_tokenizer(out_dir)`` reads it back.
    ``vocab_size`` counts the 256 byte symbols and ``<|endoftext|>``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise ValueError(f"vocab_size {vocab_size} is too small: byte-level BPE needs at least {len(alphabet) + 1}")
    texts = [text for text in texts if text]
    if not texts:
        raise ValueError("no texts to train the tokenizer on: pass the training split's texts")

    # Exactly GPT-2's pipeline: no normalizer (normalizing would make decoding lossy), GPT-2's
    # pre-tokenizing regex, bytes mapped to printable symbols, and the same mapping back on decode.
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        # All 256 bytes are in the vocabulary even if the corpus never uses them: nothing is unknown.
        initial_alphabet=alphabet,
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)

    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        add_prefix_space=False,
        model_max_length=model_max_length,
        # Decoding must give back the text exactly; the "clean up" would drop spaces before punctuation.
        clean_up_tokenization_spaces=False,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return load_tokenizer(out_dir)


def load_tokenizer(name_or_path: Path | str, *, offline: bool = False) -> PreTrainedTokenizerFast:
    """Load a tokenizer with ``AutoTokenizer.from_pretrained``: a local folder or a Hub name.

    A Hub name is resolved by ``helpers.hub.pretrained_source`` (the Hub at the course's pinned
    revision, or the model's offline stand-in). With neither, ``TokenizerUnavailableError`` says so and
    names the tiny profile's route.
    """
    from helpers import hub

    local = Path(name_or_path)
    if local.exists():
        if not (local / "tokenizer_config.json").exists() and not (local / "tokenizer.json").exists():
            raise TokenizerUnavailableError(f"{local} holds no tokenizer (no tokenizer.json or tokenizer_config.json)")
        return AutoTokenizer.from_pretrained(str(local))
    try:
        folder, _ = hub.pretrained_source(str(name_or_path), offline=offline)
    except hub.ModelUnavailableError as error:
        raise TokenizerUnavailableError(
            f"could not load the tokenizer {str(name_or_path)!r}: the Hub is unreachable from here (or there is no "
            f"such repository) and the course has no stand-in for it ({error}). Offline, use the tiny profile, whose "
            f"tokenizer_name {COURSE_TOKENIZER!r} trains the course's own tokenizer into runs/tiny/03_pairs/tokenizer/, "
            "or the laptop profile, whose model has an offline stand-in"
        ) from error
    return AutoTokenizer.from_pretrained(str(folder))


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, out_dir: Path | str) -> Path:
    """Save ``tokenizer`` with its chat template inside ``tokenizer_config.json``, where Transformers.js reads it.

    (transformers 4.57 would otherwise write it to a separate ``chat_template.jinja``, which
    Transformers.js 3 never requests.)
    """
    tokenizer.save_pretrained(str(out_dir), save_jinja_files=False)
    return Path(out_dir)


def _fingerprint(texts: list[str], vocab_size: int) -> str:
    digest = hashlib.sha256(f"vocab_size={vocab_size}\n".encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    return digest.hexdigest()


def course_tokenizer_for(
    params: dict[str, Any],
    run_dir: Path | str,
    texts: Iterable[str] | None = None,
) -> PreTrainedTokenizerFast:
    """The profile's tokenizer, through one code path.

    ``tokenizer_name == "course-bpe"`` (the tiny profile): train the course tokenizer on ``texts``
    (the training split's texts) into ``<run_dir>/03_pairs/tokenizer/``, reusing the folder when it
    was trained on the same texts and vocabulary size, then load it from that path. Any other name is
    loaded from the Hub. Either way ``load_tokenizer`` does the loading.
    """
    name = params["tokenizer_name"]
    if name != COURSE_TOKENIZER:
        return load_tokenizer(name)
    if texts is None:
        raise ValueError(f"tokenizer_name {COURSE_TOKENIZER!r} trains on the corpus: pass the training texts")
    from helpers.course import output_path, write_json

    out_dir = output_path(run_dir, "tokenizer")
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = list(texts)
    vocab_size = int(params["tokenizer_vocab_size"])
    fingerprint = _fingerprint(texts, vocab_size)
    record = out_dir / TRAINING_RECORD
    if record.exists() and (out_dir / "tokenizer.json").exists():
        if json.loads(record.read_text(encoding="utf-8")).get("fingerprint") == fingerprint:
            return load_tokenizer(out_dir)
    # Written last: a folder without the record (a training that died) is trained again.
    record.unlink(missing_ok=True)
    train_course_tokenizer(texts, out_dir, vocab_size=vocab_size)
    write_json(record, {"fingerprint": fingerprint, "vocab_size": vocab_size, "texts": len(texts)})
    return load_tokenizer(out_dir)
