"""Chapter 07: where a decode step's time goes inside the browser (ONNX Runtime Web under Transformers.js).

Two probes, served beside the course's ``site/vendor`` and ``site/models`` (``ort_web_probe/``):

- ``session``: one ONNX Runtime Web session run directly on fixed inputs, one decode step with a cache
  of N positions, for ONNX Runtime Web's plain CPU build and its asyncify (WebGPU-capable) build, chosen
  as ``site/worker.js`` chooses them. Shows the step's cost without Transformers.js, how it grows with
  the cache, and the difference between the builds.
- ``pipeline``: the page's own path, a Transformers.js ``text-generation`` pipeline with a streamer,
  with ``InferenceSession.run`` wrapped in a timer: per token, the time inside ONNX Runtime Web and the
  time in Transformers.js around it.

Each measurement follows ``--warmup-seconds`` of the same work, so that Chromium has finished
optimizing ONNX Runtime's WebAssembly (see benchmarks/README.md). Models are the ones
``bench_browser.py`` deploys (``site/models/bench-course-tiny``, ``bench-distilgpt2-random``): run it once first.

    python benchmarks/bench_ort_web.py                                # both probes, about 4 minutes
    python benchmarks/bench_ort_web.py --models bench-course-tiny --probes pipeline
    python benchmarks/bench_ort_web.py --models bench-course-tiny --probes none --trace   # V8's tier-up, traced
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import deploy, export  # noqa: E402
from helpers import prompt as course_prompt  # noqa: E402
from helpers.profiles import REPO_ROOT  # noqa: E402

PROBE_DIR = Path(__file__).resolve().parent / "ort_web_probe"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
INSTRUCTION = "Explain Anarchism."


def probe_site(root: Path) -> Path:
    """A folder to serve: the probe pages plus links to site/vendor, site/models and onnxruntime-web's dist."""
    for item in PROBE_DIR.iterdir():
        (root / item.name).symlink_to(item)
    (root / "vendor").symlink_to(deploy.SITE_DIR / "vendor")
    (root / "models").symlink_to(deploy.SITE_DIR / "models")
    (root / "ort").symlink_to(deploy.SITE_DIR / "node_modules" / "onnxruntime-web" / "dist")
    return root


def run_probe(browser: Any, url: str, query: dict[str, Any]) -> dict[str, Any]:
    page = browser.new_page()
    try:
        page.goto(f"{url}index.html?" + "&".join(f"{k}={v}" for k, v in query.items()))
        page.wait_for_function("window.probeResult && window.probeResult.done", timeout=600_000)
        result = page.evaluate("window.probeResult")
    finally:
        page.close()
    if "error" in result:
        raise RuntimeError(f"{query}: {result['error']}")
    return result


def tier_up_trace(browser: Any, url: str, model: str, build: str, runs: int = 1500) -> dict[str, Any]:
    """A fresh page runs the session probe with no warm-up while Chromium traces V8's WebAssembly compiler.

    Returns the optimizing compiler's background work (``wasm.TopTierCompilation``) and the step times
    the page saw meanwhile: steady steps interrupted by stalls while the compiler takes the cores.
    """
    page = browser.new_page()
    trace = Path(tempfile.mkstemp(suffix=".json")[1])
    try:
        browser.start_tracing(page=page, path=str(trace), categories=["disabled-by-default-v8.wasm.detailed", "v8.wasm"])
        page.goto(f"{url}index.html?probe=session&model={model}&build={build}&threads=1&warmup=0&past=16&runs={runs}"
                  f"&file=model.onnx&raw=1")
        page.wait_for_function("window.probeResult && window.probeResult.done", timeout=600_000)
        result = page.evaluate("window.probeResult")
        browser.stop_tracing()
    finally:
        page.close()
    if "error" in result:
        raise RuntimeError(result["error"])
    data = json.loads(trace.read_text())
    trace.unlink()
    events = data["traceEvents"] if isinstance(data, dict) else data
    compile_ms = sum(e.get("dur", 0) for e in events if e.get("name") == "wasm.TopTierCompilation") / 1000
    times = result["steps"]["16"]["times"]
    typical = statistics.median(times)
    return {"model": model, "build": build, "top_tier_compilation_ms": compile_ms, "steps": len(times),
            "median_step_ms": typical, "stalls_over_4ms": sum(t > 4 for t in times),
            "first_third_mean_ms": statistics.fmean(times[: len(times) // 3]),
            "last_third_mean_ms": statistics.fmean(times[-len(times) // 3:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bench-course-tiny,bench-distilgpt2-random", help="folders under site/models/")
    parser.add_argument("--probes", default="session,pipeline")
    parser.add_argument("--builds", default="plain,asyncify")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--dtype", default="q8", help="the pipeline probe's dtype (the session probe runs fp32 and q8)")
    parser.add_argument("--past", default="16,80,143", help="cache lengths for the session probe")
    parser.add_argument("--runs", type=int, default=200, help="timed session runs per cache length")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per timed pipeline generation (3 of them)")
    parser.add_argument("--warmup-seconds", type=float, default=12.0)
    parser.add_argument("--trace", action="store_true",
                        help="also trace V8's WebAssembly tier-up on a fresh page (the tiny model, each build)")
    args = parser.parse_args(argv)

    models = args.models.split(",")
    for name in models:
        if not (deploy.SITE_DIR / "models" / name / "onnx" / "model.onnx").exists():
            parser.error(f"site/models/{name} is missing: run `python benchmarks/bench_browser.py` once first")
    deploy.build_site()
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        server, url = deploy.serve(probe_site(Path(tmp)))
        browser = playwright.chromium.launch(executable_path=str(deploy.CHROMIUM), args=deploy.CHROMIUM_ARGS)
        try:
            for model in models:
                template = json.loads((deploy.SITE_DIR / "models" / model / "prompt_template.json").read_text(encoding="utf-8"))
                prompt_text = course_prompt.prompt_from_template_json(template, INSTRUCTION)
                for probe in [name for name in args.probes.split(",") if name != "none"]:
                    for build in args.builds.split(","):
                        for threads in [int(n) for n in args.threads.split(",")]:
                            common = {"model": model, "build": build, "threads": threads, "warmup": args.warmup_seconds}
                            if probe == "session":
                                for dtype in ("fp32", "q8"):
                                    print(f"session {model} {dtype} {build} {threads}T (load {os.getloadavg()[0]:.2f})...", file=sys.stderr, flush=True)
                                    result = run_probe(browser, url, {**common, "probe": "session", "past": args.past,
                                                                      "runs": args.runs, "file": export.onnx_filename(dtype)})
                                    rows.append({"probe": probe, **common, "dtype": dtype, **result})
                            else:
                                print(f"pipeline {model} {args.dtype} {build} {threads}T (load {os.getloadavg()[0]:.2f})...", file=sys.stderr, flush=True)
                                from urllib.parse import quote
                                result = run_probe(browser, url, {**common, "probe": "pipeline", "dtype": args.dtype,
                                                                  "tokens": args.tokens, "runs": 3, "prompt": quote(prompt_text)})
                                rows.append({"probe": probe, **common, "dtype": args.dtype, **result})
            traces = []
            if args.trace:
                for build in args.builds.split(","):
                    # A new browser: no compiled code cached from the pages above.
                    fresh = playwright.chromium.launch(executable_path=str(deploy.CHROMIUM), args=deploy.CHROMIUM_ARGS)
                    try:
                        print(f"tier-up trace {models[0]} {build}...", file=sys.stderr, flush=True)
                        traces.append(tier_up_trace(fresh, url, models[0], build))
                    finally:
                        fresh.close()
            chromium = browser.version
        finally:
            browser.close()
            server.shutdown()
            server.server_close()

    print(f"\nload average before {load_before[0]:.2f} / after {os.getloadavg()[0]:.2f}; Chromium {chromium}; "
          f"{args.warmup_seconds:.0f} s warm-up before every measurement\n")
    pasts = args.past.split(",")
    print("session probe: one decode step, median ms of", args.runs, "runs, by cache length")
    print("| model | dtype | build | threads | " + " | ".join(f"past {p}" for p in pasts) + " |")
    print("| --- | --- | --- | ---: | " + " | ".join("---:" for _ in pasts) + " |")
    for r in rows:
        if r["probe"] == "session":
            print(f"| {r['model']} | {r['dtype']} | {r['build']} | {r['threads']} | "
                  + " | ".join(f"{r['steps'][p]['median_ms']:.2f}" for p in pasts) + " |")
    print(f"\npipeline probe: ms per token over {args.tokens} tokens, median of 3 generations (by total)")
    print("| model | dtype | build | threads | total | inside ONNX Runtime Web | around it (Transformers.js) |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        if r["probe"] == "pipeline":
            run = sorted(r["measured"], key=lambda m: m["total_ms_per_token"])[1]
            print(f"| {r['model']} | {r['dtype']} | {r['build']} | {r['threads']} | {run['total_ms_per_token']:.2f} "
                  f"| {run['ort_ms_per_token']:.2f} | {run['around_ms_per_token']:.2f} |")
    if traces:
        print("\nTier-up: a fresh page, fp32, 1 thread, a 16-position cache, no warm-up")
        print("| model | build | optimizing compiler, background (ms) | steps | median step (ms) | steps over 4 ms "
              "| mean step, first third (ms) | mean step, last third (ms) |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for t in traces:
            print(f"| {t['model']} | {t['build']} | {t['top_tier_compilation_ms']:.0f} | {t['steps']} | {t['median_step_ms']:.2f} "
                  f"| {t['stalls_over_4ms']} | {t['first_third_mean_ms']:.2f} | {t['last_third_mean_ms']:.2f} |")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"bench_ort_web-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "chromium": chromium, "rows": rows, "tier_up": traces}, indent=1),
                   encoding="utf-8")
    print(f"\nraw: {out.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
