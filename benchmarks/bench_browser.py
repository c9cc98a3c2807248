"""Chapter 07: decoding speed in the browser (Transformers.js on WASM) against onnxruntime-Python.

The same ONNX files (``helpers.export.export_onnx``'s fp32 ``model.onnx`` and q8
``model_quantized.onnx``) run

- in Debian's Chromium, headless, on the course's page (``site/``, served by ``helpers.deploy.serve``
  with COOP/COEP, so ONNX Runtime Web may use threads), with ``?threads=N`` setting
  ``env.backends.onnx.wasm.numThreads`` in the worker;
- in onnxruntime-Python (``helpers.export.onnx_session(path, threads=N)``, i.e.
  ``intra_op_num_threads=N``) with the course's reference decoder ``helpers.export.greedy_generate``.

On WASM the page runs ONNX Runtime Web's plain CPU build (``--ort asyncify`` also times the WebGPU-capable
asyncify build that Transformers.js 4 loads by default). Each setting first times one *cold* generation,
the first after loading, while the browser is still optimizing the WebAssembly in the background;
then it generates for ``--warmup-seconds`` and times ``--repeats`` generations, whose median is the
steady-state speed.

Both decode greedily with the key/value cache, exactly ``--tokens`` new tokens: the page gets
``min_new_tokens`` = ``max_new_tokens`` (end-of-sequence masked), Python gets no eos id. Each new
token is timestamped (the page's worker records ``tokenTimes``; Python uses ``greedy_generate``'s
``on_token``), so the per-token time of the first and the last ``--window`` tokens can be set
side by side: with the cache it stays flat as the output grows.

Models: (a) distilgpt2's architecture (6 layers, 768 wide, 50,257-token vocabulary) with random
weights — speed does not depend on the weights — and the course tokenizer padded to 50,257 entries;
exported once into ``benchmarks/data/`` and deployed to ``site/models/bench-distilgpt2-random/``;
(b) the tiny course model, ``runs/tiny/06_export/model`` (``python -m helpers.course --profile tiny``),
deployed to ``site/models/bench-course-tiny/``.

    python benchmarks/bench_browser.py                 # everything, about 6 minutes on 2 cores
    python benchmarks/bench_browser.py --models tiny --repeats 1 --warmup-seconds 5
    python benchmarks/bench_browser.py --runtimes wasm --ort plain,asyncify   # the two ONNX Runtime Web builds

Prints a markdown table and writes every timestamp to ``benchmarks/results/bench_browser-<time>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import deploy, export  # noqa: E402
from helpers import prompt as course_prompt  # noqa: E402
from helpers.profiles import REPO_ROOT  # noqa: E402

BENCH_DIR = REPO_ROOT / "benchmarks"
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"
DISTILGPT2_CONFIG = REPO_ROOT / "data" / "model_configs" / "distilbert--distilgpt2" / "config.json"
COURSE_TOKENIZER = REPO_ROOT / "runs" / "tiny" / "03_pairs" / "tokenizer"
TINY_EXPORT = REPO_ROOT / "runs" / "tiny" / "06_export" / "model"
INSTRUCTION = "Explain Anarchism."
FLAT_LIMIT = 1.25  # "flat": the last window's ms/token at most 25% above the first window's
NATIVE_GOAL = 0.5  # WASM multi-thread decode speed at least half of onnxruntime-Python's


# ---------------------------------------------------------------------------------------------
# The models
# ---------------------------------------------------------------------------------------------


def padded_course_tokenizer(out_dir: Path, vocab_size: int) -> Any:
    """The course tokenizer with unused entries ``<extra_i>`` appended up to ``vocab_size`` ids.

    A random model picks any of its 50,257 ids; every one must decode, in Python and in
    Transformers.js. Extra vocabulary entries without merges are never produced by encoding, so the
    prompt's tokens are the course tokenizer's own.
    """
    from transformers import AutoTokenizer

    data = json.loads((COURSE_TOKENIZER / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    used = set(vocab.values()) | {token["id"] for token in data.get("added_tokens", [])}
    next_id, index = 0, 0
    while len(used) < vocab_size:
        while next_id in used:
            next_id += 1
        vocab[f"<extra_{index}>"] = next_id
        used.add(next_id)
        index += 1
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        (out_dir / name).write_bytes((COURSE_TOKENIZER / name).read_bytes())
    tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
    assert len(tokenizer) == vocab_size, len(tokenizer)
    return tokenizer


def distilgpt2_sized_export() -> Path:
    """distilgpt2's architecture, random weights, exported (fp32, q8) into benchmarks/data/ once."""
    from helpers.models import build_tiny_gpt2

    root = DATA_DIR / "distilgpt2-random"
    out = root / "export"
    if (out / "onnx" / "model.onnx").exists() and (out / "onnx" / "model_quantized.onnx").exists():
        return out
    shipped = json.loads(DISTILGPT2_CONFIG.read_text(encoding="utf-8"))
    tokenizer = padded_course_tokenizer(root / "hf", shipped["vocab_size"])
    dims = {key: shipped[key] for key in ("n_layer", "n_head", "n_embd", "n_positions")}
    model = build_tiny_gpt2(tokenizer, dims, seed=0)
    model.save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    print(f"exporting distilgpt2-sized model ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)...",
          file=sys.stderr, flush=True)
    export.export_onnx(root / "hf", out, dtypes=("fp32", "q8"))
    return out


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


def summarize(token_ms: list[float], window: int) -> dict[str, Any]:
    """From the arrival time of each new token (ms after generation began): the speed figures.

    Token 1's time is the prompt pass plus the first step; token i's own time (i >= 2) is
    ``t[i] - t[i-1]``: one decode step with the cache. Windows are tokens 2..window+1 and the last
    ``window`` tokens.
    """
    steps = [b - a for a, b in zip(token_ms, token_ms[1:])]
    n = len(token_ms)
    first, last = steps[:window], steps[-window:]
    return {
        "tokens": n,
        "first_token_ms": token_ms[0],
        "decode_tokens_per_s": (n - 1) / ((token_ms[-1] - token_ms[0]) / 1000),
        "end_to_end_tokens_per_s": n / (token_ms[-1] / 1000),
        "first_window": [2, window + 1],
        "last_window": [n - window + 1, n],
        "first_window_ms": statistics.fmean(first),
        "last_window_ms": statistics.fmean(last),
        "last_over_first": statistics.fmean(last) / statistics.fmean(first),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median decode speed (its own windows, not a mix of runs)."""
    ordered = sorted(runs, key=lambda run: run["decode_tokens_per_s"])
    return ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 else ordered[len(ordered) // 2 - 1]


def python_runs(model_dir: Path, dtype: str, threads: int, tokens: int, repeats: int, window: int,
                warmup_s: float) -> dict[str, Any]:
    from transformers import AutoTokenizer

    begin = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    session = export.onnx_session(model_dir / "onnx" / export.onnx_filename(dtype), threads=threads)
    load_s = time.perf_counter() - begin
    template = json.loads((model_dir / "prompt_template.json").read_text(encoding="utf-8"))
    ids = tokenizer(course_prompt.prompt_from_template_json(template, INSTRUCTION), add_special_tokens=False)["input_ids"]

    def timed() -> dict[str, Any]:
        stamps: list[float] = []
        start = time.perf_counter()
        export.greedy_generate(session, ids, max_new_tokens=tokens, eos_token_id=None,
                               on_token=lambda _token: stamps.append((time.perf_counter() - start) * 1000))
        return {**summarize(stamps, window), "token_ms": stamps}

    cold = timed()  # the first generation after loading
    warm_until = time.perf_counter() + min(warmup_s, 5.0)  # nothing to optimize at run time: 5 s is plenty
    while time.perf_counter() < warm_until:
        export.greedy_generate(session, ids, max_new_tokens=32, eos_token_id=None)
    runs = [timed() for _ in range(repeats)]
    return {"runtime": "onnxruntime-python", "load_s": load_s, "prompt_tokens": len(ids), "cold": cold, "runs": runs}


def _page_generate(page: Any, tokens: int) -> dict[str, Any]:
    page.evaluate("(n) => { courseApp.extraGenerationOptions = { min_new_tokens: n }; courseApp.result = null; }", tokens)
    if page.is_enabled("#reset"):
        page.click("#reset")  # one question per conversation: the page keeps no growing history
    page.uncheck("#do_sample")
    page.fill("#repetition_penalty", "1")
    page.fill("#max_new_tokens", str(tokens))
    page.fill("#instruction", INSTRUCTION)  # the box empties when a question is sent
    page.click("#generate")
    page.wait_for_function("courseApp.result || courseApp.error", timeout=300_000)
    if page.evaluate("courseApp.error"):
        raise RuntimeError(page.evaluate("courseApp.error"))
    return page.evaluate("courseApp.result")


def browser_runs(browser: Any, url: str, name: str, dtype: str, threads: int, tokens: int, repeats: int,
                 window: int, warmup_s: float, ort_build: str) -> dict[str, Any]:
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{url}index.html?model={name}&dtype={dtype}&device=wasm&threads={threads}&ort={ort_build}")
        page.wait_for_function("window.courseApp && (courseApp.ready || courseApp.error)", timeout=300_000)
        if page.evaluate("courseApp.error"):
            raise RuntimeError(f"{name} {dtype}: {page.evaluate('courseApp.error')}")
        info = page.evaluate("""() => ({timings: courseApp.timings, numThreads: courseApp.numThreads, device: courseApp.device,
            ortBuild: courseApp.ortBuild,
            isolated: self.crossOriginIsolated, cores: navigator.hardwareConcurrency,
            nav: performance.getEntriesByType('navigation')[0]?.startTime ?? 0})""")

        def timed() -> dict[str, Any]:
            result = _page_generate(page, tokens)
            if result["tokens"] != tokens:
                raise RuntimeError(f"{name} {dtype}: the page generated {result['tokens']} tokens, not {tokens}")
            return {**summarize(result["tokenTimes"], window), "token_ms": result["tokenTimes"], "page_seconds": result["seconds"]}

        # The first generation runs while V8 is still optimizing ONNX Runtime's WebAssembly in the
        # background (tier-up, on the same cores): what a visitor sees first, kept apart as "cold".
        cold = timed()
        warm_until = time.perf_counter() + warmup_s
        while time.perf_counter() < warm_until:
            _page_generate(page, 32)
        runs = [timed() for _ in range(repeats)]
        if errors:
            raise RuntimeError(f"page errors: {errors}")
        timings = info["timings"]
        return {"runtime": "wasm", "load_s": timings["ready"] / 1000, "pipeline_load_s": timings["pipelineLoad"] / 1000,
                "num_threads": info["numThreads"], "device": info["device"], "ort_build": info["ortBuild"],
                "cross_origin_isolated": info["isolated"], "hardware_concurrency": info["cores"], "cold": cold, "runs": runs}
    finally:
        context.close()


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def versions(browser: Any) -> dict[str, str]:
    import onnxruntime
    import transformers

    node = REPO_ROOT / "site" / "node_modules"
    read = lambda path: json.loads(path.read_text(encoding="utf-8"))["version"]  # noqa: E731
    return {
        "chromium": browser.version if browser is not None else "-",
        "transformers.js": read(node / "@huggingface" / "transformers" / "package.json"),
        "onnxruntime-web": read(node / "onnxruntime-web" / "package.json"),
        "onnxruntime-python": onnxruntime.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cores": str(os.cpu_count()),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def table(rows: list[dict[str, Any]], tokens: int, window: int) -> str:
    native = {(r["model"], r["dtype"], r["threads"]): median_run(r["runs"])["decode_tokens_per_s"]
              for r in rows if r["runtime"] == "onnxruntime-python"}
    lines = [
        f"| model | dtype | threads | runtime | load (s) | cold decode tok/s | first token (ms) | decode tok/s "
        f"| ms/token, tokens 2-{window + 1} | ms/token, tokens {tokens - window + 1}-{tokens} | last/first | WASM/native |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        run = median_run(r["runs"])
        ratio = ""
        if r["runtime"] == "wasm" and (r["model"], r["dtype"], r["threads"]) in native:
            ratio = f"{run['decode_tokens_per_s'] / native[(r['model'], r['dtype'], r['threads'])]:.2f}x"
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['threads']} | {_runtime_label(r)} "
            f"| {r['load_s']:.2f} | {r['cold']['decode_tokens_per_s']:.1f} | {run['first_token_ms']:.1f} | {run['decode_tokens_per_s']:.1f} "
            f"| {run['first_window_ms']:.2f} | {run['last_window_ms']:.2f} | {run['last_over_first']:.2f} | {ratio} |")
    return "\n".join(lines)


def _runtime_label(row: dict[str, Any]) -> str:
    if row["runtime"] != "wasm":
        return "ORT-Python"
    return "WASM" if row.get("ort_build", "plain") == "plain" else f"WASM ({row['ort_build']})"


def goals(rows: list[dict[str, Any]], multi: int) -> list[str]:
    native = {(r["model"], r["dtype"], r["threads"]): median_run(r["runs"])["decode_tokens_per_s"]
              for r in rows if r["runtime"] == "onnxruntime-python"}
    out = []
    for r in rows:
        run = median_run(r["runs"])
        flat = run["last_over_first"] <= FLAT_LIMIT
        line = f"- {r['model']} {r['dtype']} {_runtime_label(r)} {r['threads']}T: flat {'MET' if flat else 'MISSED'} ({run['last_over_first']:.2f})"
        key = (r["model"], r["dtype"], r["threads"])
        if r["runtime"] == "wasm" and r["threads"] == multi and key in native:
            ratio = run["decode_tokens_per_s"] / native[key]
            line += f"; WASM multi-thread >= {NATIVE_GOAL}x native {'MET' if ratio >= NATIVE_GOAL else 'MISSED'} ({ratio:.2f}x)"
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="distilgpt2,tiny", help="comma-separated: distilgpt2, tiny")
    parser.add_argument("--dtypes", default="q8,fp32")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (the last is 'multi-thread')")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per setting (the median is reported)")
    parser.add_argument("--runtimes", default="wasm,python")
    parser.add_argument("--warmup-seconds", type=float, default=15.0,
                        help="generate for this long after the cold run before timing (the browser optimizes the WASM meanwhile)")
    parser.add_argument("--ort", default="plain", help="comma-separated ONNX Runtime Web builds for the page: plain, asyncify")
    args = parser.parse_args(argv)
    if args.tokens < 2 * args.window + 1:
        parser.error("--tokens must be more than twice --window")
    threads = [int(n) for n in args.threads.split(",")]
    runtimes = args.runtimes.split(",")

    models: dict[str, Path] = {}
    for key in args.models.split(","):
        if key == "distilgpt2":
            models["distilgpt2-random"] = distilgpt2_sized_export()
        elif key == "tiny":
            if not (TINY_EXPORT / "onnx" / "model.onnx").exists():
                parser.error(f"{TINY_EXPORT} is missing: run `python -m helpers.course --profile tiny` first")
            models["course-tiny"] = TINY_EXPORT
        else:
            parser.error(f"unknown model {key!r}")
    names = {model: f"bench-{model}" for model in models}

    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    browser = server = None
    playwright_cm = None
    try:
        if "wasm" in runtimes:
            deploy.build_site()
            for model, folder in models.items():
                deploy.deploy_model(folder, deploy.SITE_DIR, names[model])
            server, url = deploy.serve(deploy.SITE_DIR)
            from playwright.sync_api import sync_playwright

            playwright_cm = sync_playwright()
            playwright = playwright_cm.__enter__()
            browser = playwright.chromium.launch(executable_path=str(deploy.CHROMIUM), args=deploy.CHROMIUM_ARGS)
        for model, folder in models.items():
            for dtype in args.dtypes.split(","):
                for n in threads:
                    for runtime in runtimes:
                        for build in (args.ort.split(",") if runtime == "wasm" else ["-"]):
                            print(f"{model} {dtype} {runtime} {build} threads={n} (load {os.getloadavg()[0]:.2f})...",
                                  file=sys.stderr, flush=True)
                            if runtime == "wasm":
                                row = browser_runs(browser, url, names[model], dtype, n, args.tokens, args.repeats, args.window,
                                                   args.warmup_seconds, build)
                            else:
                                row = python_runs(folder, dtype, n, args.tokens, args.repeats, args.window, args.warmup_seconds)
                            rows.append({"model": model, "dtype": dtype, "threads": n, **row, "load_average": os.getloadavg()})
        info = versions(browser)
    finally:
        if browser is not None:
            browser.close()
        if playwright_cm is not None:
            playwright_cm.__exit__(None, None, None)
        if server is not None:
            server.shutdown()
            server.server_close()
    load_after = os.getloadavg()

    report = table(rows, args.tokens, args.window)
    print(f"\nload average before {load_before[0]:.2f} / after {load_after[0]:.2f}; " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(f"{args.tokens} new tokens, greedy, KV cache; cold: the first generation after loading; then {args.warmup_seconds:.0f} s "
          f"of warm-up and the median of {args.repeats} runs; decode tok/s excludes token 1 (prompt pass)\n")
    print(report)
    print("\n" + "\n".join(goals(rows, max(threads))))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"bench_browser-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "versions": info, "load_average_before": load_before,
                               "load_average_after": load_after, "instruction": INSTRUCTION, "rows": rows}, indent=1),
                   encoding="utf-8")
    print(f"\nraw timestamps: {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
