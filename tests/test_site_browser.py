"""The page in a real browser: Debian's Chromium, headless, driven by Playwright.

The site is built (npm ci + vendor copy, cached in site/node_modules and site/vendor), the tiny
exported models are deployed into site/models/, and the page must generate greedily exactly what
the onnxruntime-Python reference decoder generates, token for token. This test is never skipped:
without Chromium or npm it fails and says what to install.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import deploy, export, prompt

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Chromium's software WebGPU (SwiftShader, shipped in Debian's chromium package) gives a real WebGPU
# adapter on a machine without a GPU, so the page's WebGPU path is tested too: the same flags without
# --disable-gpu, plus the two that expose the software adapter.
WEBGPU_ARGS = [arg for arg in CHROMIUM_ARGS if arg != "--disable-gpu"] + ["--enable-unsafe-webgpu",
                                                                          "--use-webgpu-adapter=swiftshader"]
MODELS = {"test-tiny-gpt2": "exported_gpt2", "test-tiny-llama": "exported_llama", "test-tiny-chat": "exported_chat_llama"}
INSTRUCTION = "Explain Albedo."


@pytest.fixture(scope="module")
def site_url(request):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser test needs Debian's Chromium. Install it with "
                    "`sudo apt-get install -y chromium` (scripts/setup.sh does it as root), then `npm ci` in site/")
    try:
        deploy.build_site()
    except deploy.SiteBuildError as error:
        pytest.fail(f"could not build site/: {error}\nRun `cd site && ONNXRUNTIME_NODE_INSTALL=skip npm ci --ignore-scripts "
                    "&& npm run vendor` (scripts/setup.sh does it)")
    deployed = [deploy.deploy_model(request.getfixturevalue(fixture), deploy.SITE_DIR, name) for name, fixture in MODELS.items()]
    server, url = deploy.serve(deploy.SITE_DIR)
    yield url
    server.shutdown()
    server.server_close()
    for folder in deployed:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as running:  # one Playwright for both browsers (two would clash)
        yield running


@pytest.fixture(scope="module")
def browser(playwright):
    # Debian's Chromium, never a download: Playwright's own browsers cannot be fetched here.
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def webgpu_browser(playwright):
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=WEBGPU_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture()
def webgpu_page(webgpu_browser):
    yield from _page(webgpu_browser)


@pytest.fixture()
def page(browser):
    yield from _page(browser)


def _page(browser):
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    # Every URL the page and its worker ask for: which ONNX Runtime build was fetched.
    page.requested = []
    context.on("request", lambda request: page.requested.append(request.url))
    yield page
    context.close()


def _open(page, url: str, query: str) -> dict:
    page.goto(f"{url}index.html?{query}")
    page.wait_for_function("window.courseApp && (window.courseApp.ready || window.courseApp.error)", timeout=120_000)
    return page.evaluate("({ready: courseApp.ready, error: courseApp.error, device: courseApp.device})")


def _generate(page, instruction: str, max_new_tokens: int, wait: bool = True) -> dict | None:
    page.uncheck("#do_sample")
    page.fill("#repetition_penalty", "1")
    page.fill("#no_repeat_ngram_size", "0")
    page.fill("#max_new_tokens", str(max_new_tokens))
    page.fill("#instruction", instruction)
    page.click("#generate")
    if not wait:
        return None
    page.wait_for_function("courseApp.result || courseApp.error", timeout=120_000)
    return page.evaluate("courseApp.result")


@pytest.mark.parametrize("model,dtype", [("test-tiny-gpt2", "fp32"), ("test-tiny-gpt2", "q8"),
                                         ("test-tiny-llama", "fp32"), ("test-tiny-llama", "q8"),
                                         ("test-tiny-chat", "q8")])
def test_page_generates_what_onnxruntime_python_generates(site_url, page, model, dtype):
    state = _open(page, site_url, f"model={model}&dtype={dtype}")
    assert state["ready"], state["error"]
    assert state["device"] == "wasm"  # --disable-gpu: no WebGPU adapter, so the fallback must work
    assert page.text_content("#backend").startswith("WASM")
    result = _generate(page, INSTRUCTION, 20)
    expected = export.reference_generation(deploy.SITE_DIR / "models" / model, INSTRUCTION, dtype=dtype, max_new_tokens=20)
    assert result["prompt"] == expected["prompt"]
    assert result["tokenIds"] == expected["token_ids"]
    assert result["rawText"] == expected["text"]
    assert page.text_content("#output") == result["text"]
    # On WASM the worker loads ONNX Runtime's plain CPU build, not the slower WebGPU-capable JSEP one.
    assert _fetched_wasm(page) == ["ort-wasm-simd-threaded.wasm"]
    assert not page.errors


def _webgpu_adapter(page) -> dict | None:
    return page.evaluate("""async () => {
        const adapter = await navigator.gpu?.requestAdapter();
        return adapter ? { vendor: adapter.info?.vendor, architecture: adapter.info?.architecture,
                           shader_f16: adapter.features.has("shader-f16") } : null; }""")


def _fetched_wasm(page) -> list[str]:
    return [url.rsplit("/", 1)[-1] for url in page.requested if url.endswith(".wasm")]


@pytest.mark.parametrize("model,dtype,runs_as", [("test-tiny-gpt2", "auto", "fp32"), ("test-tiny-llama", "q4", "q4")])
def test_page_runs_on_webgpu_and_generates_what_python_generates(site_url, webgpu_page, model, dtype, runs_as):
    state = _open(webgpu_page, site_url, f"model={model}&dtype={dtype}")
    assert _webgpu_adapter(webgpu_page), "Chromium gave no software WebGPU adapter: the WebGPU path is untested"
    assert state["ready"], state["error"]
    assert state["device"] == "webgpu" and webgpu_page.text_content("#backend") == "WebGPU"
    assert webgpu_page.evaluate("courseApp.dtype") == runs_as  # auto: fp32 on WebGPU
    result = _generate(webgpu_page, INSTRUCTION, 20)
    expected = export.reference_generation(deploy.SITE_DIR / "models" / model, INSTRUCTION, dtype=runs_as, max_new_tokens=20)
    assert result["tokenIds"] == expected["token_ids"]
    assert _fetched_wasm(webgpu_page) == ["ort-wasm-simd-threaded.jsep.wasm"]  # WebGPU needs the JSEP build
    assert not webgpu_page.errors


def test_q8_runs_on_wasm_even_when_webgpu_is_there(site_url, webgpu_page):
    # ONNX Runtime Web's WebGPU backend turns 8-bit models into gibberish (Transformers.js #1317);
    # without the worker's rule this test sees different tokens from Python's.
    state = _open(webgpu_page, site_url, "model=test-tiny-gpt2&dtype=q8")
    assert _webgpu_adapter(webgpu_page)
    assert state["ready"] and state["device"] == "wasm"
    assert "wrong tokens" in webgpu_page.text_content("#status")
    result = _generate(webgpu_page, INSTRUCTION, 20)
    expected = export.reference_generation(deploy.SITE_DIR / "models" / "test-tiny-gpt2", INSTRUCTION, dtype="q8", max_new_tokens=20)
    assert result["tokenIds"] == expected["token_ids"]
    assert _fetched_wasm(webgpu_page) == ["ort-wasm-simd-threaded.wasm"]


def test_webgpu_failure_falls_back_to_wasm(site_url, webgpu_page):
    # fp16 on WebGPU needs the adapter's shader-f16 feature, which many GPUs (and SwiftShader) lack:
    # Transformers.js then refuses the model on WebGPU, and the worker loads it on WASM instead.
    state = _open(webgpu_page, site_url, "model=test-tiny-llama&dtype=fp16")
    adapter = _webgpu_adapter(webgpu_page)
    assert adapter and state["ready"], state["error"]
    result = _generate(webgpu_page, INSTRUCTION, 12)
    if adapter["shader_f16"]:  # a GPU with fp16: nothing to fall back from
        assert state["device"] == "webgpu" and result["tokens"] == 12
        return
    assert state["device"] == "wasm" and webgpu_page.evaluate("courseApp.fallbackFrom") == "webgpu"
    assert "WebGPU failed" in webgpu_page.text_content("#status") or "WebGPU failed" in webgpu_page.evaluate("courseApp.note")
    expected = export.reference_generation(deploy.SITE_DIR / "models" / "test-tiny-llama", INSTRUCTION, dtype="fp16", max_new_tokens=12)
    assert result["tokenIds"] == expected["token_ids"]


def test_progress_events_arrive_per_file(site_url, page):
    assert _open(page, site_url, "model=test-tiny-gpt2&dtype=q8")["ready"]
    events = page.evaluate("courseApp.events.filter(e => e.type === 'progress')")
    files = {event["file"] for event in events if event.get("file")}
    assert {"config.json", "tokenizer.json", "onnx/model_quantized.onnx"} <= files
    assert any(e["status"] == "done" and e["file"] == "onnx/model_quantized.onnx" for e in events)
    assert page.locator("#progress li").count() >= 3


def test_page_prompt_is_byte_identical_to_python(site_url, page):
    assert _open(page, site_url, "model=test-tiny-gpt2&dtype=q8")["ready"]
    for instruction in ["Explain Albedo.", "  What costs $& or $1?\n", "Line one\nline two"]:
        assert page.evaluate("(text) => courseApp.formatPrompt(text)", instruction) == prompt.format_prompt(instruction)


def test_page_renders_the_chat_template_byte_identical_to_python(site_url, page, smollm2_tokenizer):
    # kind "chat": the page hands the pipeline a message, Transformers.js renders tokenizer_config.json's
    # template (@huggingface/jinja); it must be the text the model was fine-tuned on, to the byte.
    assert _open(page, site_url, "model=test-tiny-chat&dtype=q8")["ready"]
    for instruction in ["Explain Albedo.", "  What costs $& or $1?\n", "Line one\nline two", "Ünïcödé – 日本語 🙂 {x}"]:
        result = _generate(page, instruction, 2)
        assert result["prompt"] == prompt.prompt_text(smollm2_tokenizer, instruction)
        page.evaluate("courseApp.result = null")


def test_main_thread_stays_responsive_and_stop_interrupts(site_url, page):
    assert _open(page, site_url, "model=test-tiny-llama&dtype=fp32")["ready"]
    _generate(page, INSTRUCTION, 400, wait=False)
    page.wait_for_function("courseApp.events.some(e => e.type === 'token')", timeout=60_000)
    # the main thread answers while the worker generates: an evaluation and a click both go through
    assert page.evaluate("courseApp.generating && !courseApp.result") is True
    page.click("#stop")
    page.wait_for_function("courseApp.result || courseApp.error", timeout=60_000)
    result = page.evaluate("courseApp.result")
    assert result["interrupted"] and 0 < result["tokens"] < 400
    assert page.text_content("#status") == "Stopped."


def test_missing_model_is_reported_by_name_not_as_a_json_error(site_url, page):
    state = _open(page, site_url, "model=not-deployed")
    assert not state["ready"]
    message = page.text_content("#error")
    assert "not-deployed" in message and "config.json" in message and "404" in message
    assert "python -m helpers.deploy" in message and "DOCTYPE" not in message


def test_missing_dtype_file_is_reported(site_url, page):
    state = _open(page, site_url, "model=test-tiny-gpt2&dtype=q4")  # GPT-2 has no q4 export
    assert not state["ready"]
    assert "onnx/model_q4.onnx" in page.text_content("#error")


def test_a_prompt_template_from_an_older_export_is_refused_by_name(site_url, page):
    """Without add_special_tokens the page cannot tokenize the prompt as training did: it says so, and how to fix it."""
    template_path = deploy.SITE_DIR / "models" / "test-tiny-gpt2" / "prompt_template.json"
    original = template_path.read_text(encoding="utf-8")
    older = {key: value for key, value in json.loads(original).items() if key != "add_special_tokens"}
    try:
        template_path.write_text(json.dumps(older), encoding="utf-8")
        state = _open(page, site_url, "model=test-tiny-gpt2")
    finally:
        template_path.write_text(original, encoding="utf-8")
    assert not state["ready"]
    message = page.text_content("#error")
    assert "prompt_template.json" in message and "add_special_tokens" in message and "chapter 06" in message

def test_model_output_is_text_never_html(site_url, page):
    assert _open(page, site_url, "model=test-tiny-gpt2&dtype=q8")["ready"]
    result = _generate(page, INSTRUCTION, 8)
    assert page.locator("#output *").count() == 0  # textContent only: no element ever parsed from output
    assert page.text_content("#output") == result["text"]


def test_threads_timings_and_token_times_for_the_benchmark(site_url, page):
    # benchmarks/bench_browser.py: ?threads= sets ONNX Runtime Web's WASM threads; timings and per-token times come back
    state = _open(page, site_url, "model=test-tiny-gpt2&dtype=q8&device=wasm&threads=1")
    assert state["ready"], state["error"]
    assert page.evaluate("courseApp.numThreads") == 1
    assert page.text_content("#backend") == "WASM (CPU, 1 thread)"  # the count ONNX Runtime uses, not a guess
    timings = page.evaluate("courseApp.timings")
    assert 0 < timings["loadRequested"] < timings["ready"] and 0 < timings["pipelineLoad"] <= timings["ready"]
    page.evaluate("courseApp.extraGenerationOptions = { min_new_tokens: 12 }")  # eos masked: exactly 12 tokens
    result = _generate(page, INSTRUCTION, 12)
    assert result["tokens"] == 12 and len(result["tokenTimes"]) == 12
    assert all(a <= b for a, b in zip(result["tokenTimes"], result["tokenTimes"][1:]))
    assert result["tokenTimes"][-1] <= result["seconds"] * 1000
    assert not page.errors


def test_page_json_is_transformers_js_own_table(site_url):
    # site/page.json is the one copy of the dtype rules: the library pinned in package.json must agree.
    node = shutil.which("node")
    assert node, "node is missing: install Node.js 20 (scripts/setup.sh)"
    source = "./node_modules/@huggingface/transformers/src/utils/dtypes.js"
    script = (f"import {{ DEFAULT_DTYPE_SUFFIX_MAPPING as suffix, DEFAULT_DEVICE_DTYPE_MAPPING as device }} from '{source}';"
              "console.log(JSON.stringify({ suffix, device }));")
    done = subprocess.run([node, "--input-type=module", "-e", script], cwd=deploy.SITE_DIR, capture_output=True, text=True, check=True)
    library = json.loads(done.stdout)
    assert export.DTYPE_SUFFIX == library["suffix"]
    # the library's default per device, fp32 where it names none ("If not specified, will default to fp32")
    assert export.PAGE_RULES["auto_dtype"] == {"webgpu": library["device"].get("webgpu", "fp32"), "wasm": library["device"]["wasm"]}


def test_the_page_reads_the_rules_python_reads(site_url, page):
    _open(page, site_url, "")  # no ?model=: the page opens the default name (deployed by chapter 07 or not)
    assert page.evaluate("courseApp.rules") == json.loads((deploy.SITE_DIR / "page.json").read_text()) == export.PAGE_RULES
    assert page.text_content("#model-name").startswith(f"{deploy.DEFAULT_NAME} (")
    # every dtype the table knows is requested under the name Python gives it (none but fp32/q8/fp16 exist for GPT-2)
    for dtype in sorted(set(export.DTYPE_SUFFIX) - {"fp32", "q8", "fp16"}):
        assert not _open(page, site_url, f"model=test-tiny-gpt2&dtype={dtype}")["ready"]
        assert f"{export.ONNX_SUBFOLDER}/{export.onnx_filename(dtype)}" in page.text_content("#error"), dtype
    assert not _open(page, site_url, "model=test-tiny-gpt2&dtype=int3")["ready"]
    assert f"one of {', '.join(export.DTYPE_SUFFIX)}" in page.text_content("#error")


def test_the_staged_space_is_the_whole_page_with_its_headers(site_url, page, tmp_path):
    """What publish_space uploads works on its own: served as a static Space serves it, the page answers
    with the deployed model, opened at its plain address (no ?model=)."""
    import yaml

    staged = deploy.stage_space(deploy.SITE_DIR, tmp_path / "space", "test-tiny-gpt2")
    front = yaml.safe_load((staged / "README.md").read_text().split("---")[1])
    assert front["sdk"] == "static" and front["custom_headers"] == deploy.SPACE_HEADERS
    assert sorted(p.name for p in (staged / "models").iterdir()) == [deploy.DEFAULT_NAME, "presets.json"]
    server, url = deploy.serve(staged)
    try:
        state = _open(page, url, "dtype=fp32")
        assert state["ready"], state
        result = _generate(page, INSTRUCTION, 8)
        reference = export.reference_generation(staged / "models" / deploy.DEFAULT_NAME, INSTRUCTION, max_new_tokens=8)
        assert result["tokenIds"] == reference["token_ids"]
    finally:
        server.shutdown()
        server.server_close()


def test_a_question_past_the_context_gets_a_plain_message_and_the_next_is_answered(site_url, page, course_tokenizer):
    state = _open(page, site_url, "model=test-tiny-gpt2&dtype=fp32")
    assert state["ready"] and page.evaluate("courseApp.contextLength") == 512  # the tiny GPT-2's n_positions
    long_question = "Albedo is the fraction of light a surface reflects. " * 60
    assert len(course_tokenizer(prompt.format_prompt(long_question))["input_ids"]) > 512
    page.fill("#instruction", long_question)
    page.click("#generate")
    page.wait_for_function("courseApp.error !== null", timeout=60_000)
    message = page.text_content("#error")
    assert "Too long" in message and "at most 512 tokens" in message and "Shorten" in message
    assert "Gather" not in message and "OrtRun" not in message  # a plain message, not ONNX Runtime's
    assert page.evaluate("courseApp.ready") and page.text_content("#status") == "Ready."
    assert page.is_enabled("#generate")
    result = _generate(page, INSTRUCTION, 8)  # the same worker answers the next question
    assert result["tokens"] >= 1 and page.evaluate("courseApp.error") is None


def test_the_answer_is_capped_at_the_room_the_question_leaves(site_url, page, course_tokenizer):
    _open(page, site_url, "model=test-tiny-gpt2&dtype=fp32")
    question = "Albedo is the fraction of light a surface reflects. " * 34
    prompt_tokens = len(course_tokenizer(prompt.format_prompt(question))["input_ids"])
    assert 300 < prompt_tokens < 500, prompt_tokens
    page.evaluate("courseApp.extraGenerationOptions = { min_new_tokens: 512 }")  # no early end: the cap must act
    result = _generate(page, question, 512)
    assert result["promptTokens"] == prompt_tokens and result["maxNewTokens"] == 512 - prompt_tokens
    assert result["limitedByContext"] and result["tokens"] == 512 - prompt_tokens
    assert f"limited to {512 - prompt_tokens} new tokens by the model's 512-token context" in page.text_content("#speed")


def test_after_a_failed_generation_a_fresh_worker_answers_the_next_question(site_url, page):
    _open(page, site_url, "model=test-tiny-gpt2&dtype=fp32")
    page.evaluate("courseApp.extraGenerationOptions = { logits_processor: 42 }")  # makes generate() throw in the worker
    page.fill("#instruction", INSTRUCTION)
    page.click("#generate")
    page.wait_for_function("courseApp.error !== null", timeout=60_000)
    assert "could not generate" in page.text_content("#error")
    page.wait_for_function("courseApp.restarts === 1 && courseApp.ready", timeout=120_000)
    page.evaluate("courseApp.extraGenerationOptions = {}")
    result = _generate(page, INSTRUCTION, 8)
    assert result["tokens"] >= 1 and page.text_content("#status") == "Done."


def test_the_settings_take_ordinary_values_and_empty_fields_fall_back_to_defaults(site_url, page):
    _open(page, site_url, "model=test-tiny-gpt2&dtype=fp32")
    page.uncheck("#do_sample")
    assert all(page.is_disabled(f"#{name}") for name in ("temperature", "top_k", "top_p"))  # greedy ignores them
    page.check("#do_sample")
    assert not any(page.is_disabled(f"#{name}") for name in ("temperature", "top_k", "top_p"))
    page.fill("#temperature", "0.73")
    page.fill("#top_p", "0.92")
    assert page.evaluate("['temperature', 'top_p'].every(id => document.getElementById(id).checkValidity())")
    page.fill("#repetition_penalty", "")  # empty: the default (1.0), not Number("") = 0
    page.fill("#top_k", "12.6")
    page.fill("#max_new_tokens", "4")
    result = _submit_and_wait(page)
    options = page.evaluate("courseApp.lastOptions")
    assert options["repetition_penalty"] == 1 and options["temperature"] == 0.73 and options["top_p"] == 0.92
    assert options["top_k"] == 13 and options["max_new_tokens"] == 4 and result["tokens"] <= 4
    page.fill("#repetition_penalty", "0")  # below the field's min: brought up to it
    _submit_and_wait(page)
    assert page.evaluate("courseApp.lastOptions.repetition_penalty") == 1


def test_enter_sends_and_shift_enter_starts_a_new_line(site_url, page):
    _open(page, site_url, "model=test-tiny-gpt2&dtype=fp32")
    page.fill("#max_new_tokens", "4")
    page.fill("#instruction", "Explain Albedo.")
    page.press("#instruction", "Shift+Enter")
    assert page.input_value("#instruction") == "Explain Albedo.\n" and page.evaluate("courseApp.result") is None
    page.press("#instruction", "Enter")
    page.wait_for_function("courseApp.result || courseApp.error", timeout=60_000)
    assert page.evaluate("courseApp.result.tokens") >= 1
    assert not [url for url in page.requested if url.endswith("favicon.ico")]  # no 404 for a missing icon


def _submit_and_wait(page) -> dict:
    page.evaluate("courseApp.result = null")
    page.click("#generate")
    page.wait_for_function("courseApp.result || courseApp.error", timeout=60_000)
    return page.evaluate("courseApp.result")
