// The page's main thread: the form, the download, the conversation and Stop. It never runs the model:
// worker.js does, and this file only sends it messages and shows what comes back. It also checks
// the model folder itself before the worker loads it, so that a missing file is reported by name
// instead of as Transformers.js's `Unexpected token '<', "<!DOCTYPE"... is not valid JSON`.

const DEPLOY_HELP =
  "Deploy a model with `python -m helpers.deploy deploy runs/tiny/06_export/model --name <name>` " +
  "(or helpers.deploy.deploy_model in notebook 07), then serve the site with `python -m helpers.deploy serve`.";

// The rules the page shares with Python, from the one file both read (helpers/export.py reads it too):
// the file each dtype loads, what dtype "auto" means on each backend, the dtypes never run on WebGPU,
// the model opened without ?model=. null when it cannot be read; main() then says so.
async function fetchRules() {
  try {
    const response = await fetch("./page.json", { cache: "no-store" });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  }
}
const rules = await fetchRules();

const query = new URLSearchParams(location.search);
const modelName = query.get("model") ?? rules?.default_model;
// auto: rules.auto_dtype, Transformers.js's own defaults (q8 on WASM, fp32 on WebGPU; worker.js never runs q8 on WebGPU).
const dtype = query.get("dtype") ?? "auto";
const device = query.get("device") ?? "auto"; // auto: WebGPU when the browser has an adapter, else WASM
// WASM threads (benchmarks/bench_browser.py): absent, ONNX Runtime Web picks min(4, ceil(cores / 2)).
const threads = query.has("threads") ? Number(query.get("threads")) : null;
// ?ort=asyncify: run WASM on ONNX Runtime's WebGPU-capable build instead of the plain CPU one (benchmarks).
const ortBuild = query.get("ort") === "asyncify" ? "asyncify" : "plain";

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"), backend: $("backend"), model: $("model-name"), progress: $("progress"),
  downloads: $("downloads"), downloadSummary: $("download-summary"), error: $("error"), form: $("ask"),
  instruction: $("instruction"), preset: $("preset"), generate: $("generate"), stop: $("stop"), reset: $("reset"),
  conversation: $("conversation"), announcer: $("announcer"), isolation: $("isolation"),
};
const CONTROLS = ["do_sample", "temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram_size", "max_new_tokens"];

// What the tests (and a curious reader in the console) can inspect.
const state = { rules, events: [], progress: {}, ready: false, generating: false, result: null, error: null, template: null, presets: {},
  history: [], // the conversation: {question, answer} for each answered question, until "New conversation"
  announcements: [], // what #announcer said, in order (the tests count them)
  // timings (ms since the page started): when the worker was asked to load, when the model was ready
  timings: {}, extraGenerationOptions: {} }; // extraGenerationOptions: merged into generate() (benchmarks)
window.courseApp = state;
state.formatPrompt = (instruction) => formatPrompt(state.template, instruction); // for the tests

// The one place a screen reader is told things (index.html's #announcer): a polite status, set once per event.
function announce(text) {
  state.announcements.push(text);
  ui.announcer.textContent = text;
}

function showError(message) {
  state.error = message;
  ui.error.textContent = message; // text, never HTML: messages can contain what the server sent
  ui.status.textContent = "Not ready.";
}

class MissingFileError extends Error {}

// Fetch one file of the model folder and explain precisely what is wrong with the answer.
async function fetchModelFile(path, { json = true, head = false } = {}) {
  const url = `./models/${encodeURIComponent(modelName)}/${path}`;
  let response;
  try {
    response = await fetch(url, { method: head ? "HEAD" : "GET", cache: "no-store" });
  } catch (error) {
    throw new MissingFileError(`Could not fetch models/${modelName}/${path} (${error.message}). Is the site served over http? ${DEPLOY_HELP}`);
  }
  const type = response.headers.get("content-type") ?? "";
  if (response.status === 404) {
    throw new MissingFileError(`The model "${modelName}" is missing models/${modelName}/${path} (404 Not Found). ${DEPLOY_HELP}`);
  }
  if (!response.ok) {
    throw new MissingFileError(`models/${modelName}/${path} answered HTTP ${response.status}. ${DEPLOY_HELP}`);
  }
  if (type.includes("text/html")) {
    throw new MissingFileError(
      `models/${modelName}/${path} returned an HTML page instead of the file: the server answers missing files ` +
      `with a page (a single-page-app fallback or a 404 page). The model is probably not deployed there. ${DEPLOY_HELP}`);
  }
  if (!json || head) return response;
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new MissingFileError(`models/${modelName}/${path} is not valid JSON (it starts with ${JSON.stringify(text.slice(0, 40))}). Export and deploy the model again. ${DEPLOY_HELP}`);
  }
}

// The checks helpers.export.check_model_folder makes in Python, as far as a browser can see them.
async function checkModelFolder() {
  const config = await fetchModelFile("config.json");
  await fetchModelFile("tokenizer.json", { head: true });
  const tokenizerConfig = await fetchModelFile("tokenizer_config.json");
  const template = await fetchModelFile("prompt_template.json");
  const isChat = template.kind === "chat";
  if (template.format !== "corpus-to-client/prompt-template" || (!isChat && template.template?.split(template.placeholder).length !== 2)) {
    throw new MissingFileError(`models/${modelName}/prompt_template.json is not the course's prompt template. Export the model again (chapter 06).`);
  }
  if (typeof template.add_special_tokens !== "boolean") {
    throw new MissingFileError(`models/${modelName}/prompt_template.json has no add_special_tokens (an older export). Export the model again (chapter 06).`);
  }
  // What chapter 05 records in the template (helpers.prompt.template_json): the stop strings, and the length the model was fine-tuned on.
  if (!Array.isArray(template.stop_strings ?? []) || !(template.trained_max_length === undefined || Number.isInteger(template.trained_max_length) && template.trained_max_length > 0)) {
    throw new MissingFileError(`models/${modelName}/prompt_template.json has a stop_strings or trained_max_length the page cannot use. Export the model again (chapter 06).`);
  }
  if (isChat && typeof tokenizerConfig.chat_template !== "string") {
    throw new MissingFileError(`models/${modelName}/tokenizer_config.json has no chat_template, but the model was trained with its chat template. Export the model again (chapter 06).`);
  }
  // "auto" needs both files the worker may pick: q8 on WASM, fp32 on WebGPU.
  const wanted = dtype === "auto" ? [...new Set(Object.values(rules.auto_dtype))] : [dtype];
  for (const name of wanted) {
    if (!(name in rules.dtype_suffix)) {
      throw new MissingFileError(`Unknown dtype "${name}" in the address; use auto or one of ${Object.keys(rules.dtype_suffix).join(", ")}.`);
    }
    const file = `${rules.onnx_subfolder}/model${rules.dtype_suffix[name]}.onnx`; // helpers.export.onnx_filename
    try {
      await fetchModelFile(file, { head: true });
    } catch (error) {
      throw new MissingFileError(`${error.message} (dtype "${name}" loads ${file}; try ?dtype=fp32 or ?dtype=q8, or export that dtype.)`);
    }
  }
  return { config, template };
}

// What the worker's pipeline is given (helpers.prompt is the Python reference). kind "chat": the
// user's message; Transformers.js renders it with the chat template of tokenizer_config.json, the one
// the model was fine-tuned with. kind "course": the course's template, filled by a literal split/join,
// never String.replace (which would interpret `$&` and friends in what the user typed).
function formatPrompt(template, instruction) {
  const cleaned = template.strip_instruction ? instruction.trim() : instruction;
  if (template.kind === "chat") return [{ role: "user", content: cleaned }];
  return template.template.split(template.placeholder).join(cleaned);
}

// [conversation]
// What the worker is asked: for a chat model, the conversation so far (each question and the answer the
// page showed) and the new question, which its chat template renders; the worker leaves out the oldest
// exchanges when they would crowd the answer out of the context. A model trained on the course's
// template saw single questions only, so it is asked each question on its own.
function conversationPrompt(template, history, instruction) {
  if (template.kind !== "chat") return formatPrompt(template, instruction);
  const earlier = history.flatMap(({ question, answer }) => [...formatPrompt(template, question), { role: "assistant", content: answer }]);
  return [...earlier, ...formatPrompt(template, instruction)];
}
// [/conversation]

// Greedy decoding ignores temperature, top-k and top-p: their fields are disabled unless sampling is on.
function showSamplingFields() {
  for (const id of ["temperature", "top_k", "top_p"]) $(id).disabled = !$("do_sample").checked;
}

function applyPreset(name) {
  const preset = state.presets[name];
  if (!preset) return;
  for (const key of CONTROLS) {
    if (!(key in preset)) continue;
    const input = $(key);
    if (input.type === "checkbox") input.checked = Boolean(preset[key]);
    else input.value = preset[key];
  }
}

async function loadPresets() {
  try {
    const response = await fetch("./models/presets.json", { cache: "no-store" });
    if (!response.ok || (response.headers.get("content-type") ?? "").includes("text/html")) throw new Error(`HTTP ${response.status}`);
    state.presets = await response.json();
  } catch {
    state.presets = {}; // the controls keep their defaults; deploying a model writes presets.json
  }
  for (const name of [...Object.keys(state.presets), "custom"]) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = state.presets[name]?.label ?? name;
    ui.preset.append(option);
  }
  if (Object.keys(state.presets).length) applyPreset(Object.keys(state.presets)[0]);
}

// [options]
function generationOptions() {
  const doSample = $("do_sample").checked;
  // A field left empty takes its default (Number("") would be 0: a repetition penalty of 0, an answer of
  // dots), and a value outside the field's min/max is brought inside them.
  const number = (id) => {
    const input = $(id);
    const value = input.value.trim() === "" || Number.isNaN(Number(input.value)) ? Number(input.defaultValue) : Number(input.value);
    const inside = Math.min(Number(input.max || Infinity), Math.max(Number(input.min || -Infinity), value));
    return input.step === "1" ? Math.round(inside) : inside; // counts (top-k, n-gram size, tokens) stay whole
  };
  // num_beams: 1 overrides any beam search a model folder's generation_config.json may ask for
  // (Transformers.js merges that file into every call): the streamer and the stop flag follow one
  // sequence, and the page shows tokens as they come. The presets (presets.json) are greedy or sampled.
  const options = { do_sample: doSample, num_beams: 1, max_new_tokens: number("max_new_tokens"), repetition_penalty: number("repetition_penalty"),
                    no_repeat_ngram_size: number("no_repeat_ngram_size") }; // 0: no constraint
  if (doSample) Object.assign(options, { temperature: number("temperature"), top_k: number("top_k"), top_p: number("top_p") });
  return { ...options, ...state.extraGenerationOptions };
}
// [/options]

const megabytes = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

// The download, said before it starts (the worker's "plan": sizes from HEAD requests) and then as one
// total; the per-file rows stay inside the collapsed <details> for whoever wants them.
function describePlan(plan) {
  const runtime = plan.runtimeBytes ? ` + ${megabytes(plan.runtimeBytes)} runtime` : "";
  return `${megabytes(plan.modelBytes)} model${runtime}, kept by your browser's cache after the first visit`;
}

function renderProgress(event) {
  if (event.status === "progress_total") {
    const plan = state.plan ? describePlan(state.plan) : megabytes(event.total);
    ui.downloadSummary.textContent = `Downloading ${plan}: ${Math.round(event.progress ?? 0)}%`;
    return;
  }
  if (!event.file) return;
  let item = state.progress[event.file];
  if (!item) {
    item = document.createElement("li");
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.setAttribute("aria-label", `download of ${event.file}`);
    const label = document.createElement("span");
    item.append(bar, label);
    ui.progress.append(item);
    state.progress[event.file] = item;
  }
  const [bar, label] = item.children;
  if (event.status === "progress") bar.value = event.progress ?? 0;
  if (event.status === "done") bar.value = 100;
  const size = event.total ? ` (${megabytes(event.total)})` : "";
  label.textContent = `${event.file}${size}: ${event.status}`;
}

// The thread count ONNX Runtime actually uses: without ?threads= it takes half the cores (at most 4),
// and one thread when the page is not cross-origin isolated (no SharedArrayBuffer).
function wasmLabel(numThreads) {
  const count = Number.isInteger(numThreads) ? numThreads : 1;
  const why = self.crossOriginIsolated ? "" : ", not cross-origin isolated";
  return `WASM (CPU, ${count} thread${count === 1 ? "" : "s"}${why})`;
}

// One question and its answer, as the conversation shows them. Model output is only ever set as text
// (textContent), never parsed as HTML.
function addTurn(question) {
  const turn = document.createElement("article");
  turn.className = "turn";
  const asked = document.createElement("p");
  asked.className = "visually-hidden";
  asked.textContent = "You asked:";
  const questionBox = document.createElement("div");
  questionBox.className = "question";
  questionBox.textContent = question;
  const answered = document.createElement("p");
  answered.className = "visually-hidden";
  answered.textContent = "The model answered:";
  const answer = document.createElement("div");
  answer.className = "answer";
  const footer = document.createElement("div");
  footer.className = "answer-footer";
  const stats = document.createElement("span");
  stats.className = "stats";
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy secondary";
  copy.textContent = "Copy";
  copy.hidden = true;
  copy.addEventListener("click", () => copyAnswer(answer.textContent, copy));
  footer.append(stats, copy);
  turn.append(asked, questionBox, answered, answer, footer);
  ui.conversation.prepend(turn); // newest first, right under the buttons
  return { turn, answer, stats, copy };
}

async function copyAnswer(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed: select the text instead";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
}

// The newest answer stays in view while it streams: once per frame (however fast the tokens come) the
// page scrolls just enough to show the line being written, but never so far that the buttons leave the
// screen, so Stop stays on screen and, while the answer fits, does not move at all.
let scrollPending = false;
function keepInView(element) {
  if (scrollPending) return;
  scrollPending = true;
  requestAnimationFrame(() => {
    scrollPending = false;
    const margin = 16;
    const needed = element.getBoundingClientRect().bottom + margin - window.innerHeight;
    const allowed = ui.stop.getBoundingClientRect().top - margin;
    const by = Math.min(needed, allowed);
    if (by > 0) window.scrollBy(0, by);
  });
}

// [finish]
// The line under an answer: how many tokens, how fast, and why it ended.
function finishLine(data) {
  let why = "end"; // the model's own end-of-text token
  if (data.stoppedBy === "you") why = "you";
  else if (data.stoppedBy === "stop string") why = `stop string ${JSON.stringify(data.stopString)} (the model began a new instruction)`;
  else if (data.stoppedBy === "limit") {
    why = data.limitedByContext
      ? `limit (the ${state.contextLength}-token context left room for ${data.maxNewTokens} new tokens)`
      : `limit (${data.maxNewTokens} new tokens)`;
  }
  const speed = data.tps ? ` (${data.tps.toFixed(1)} tokens/s)` : "";
  const room = data.droppedFor === "trained"
    ? `stay within the ${data.trainedMaxLength} tokens the model was fine-tuned on` : "fit the context";
  const dropped = data.droppedTurns
    ? ` · ${data.droppedTurns} earlier exchange${data.droppedTurns === 1 ? "" : "s"} left out to ${room}`
    : "";
  return `${data.tokens} tokens in ${data.seconds.toFixed(1)} s${speed} · stopped by ${why}${dropped}`;
}
// [/finish]

// The worker in use, and the flag shared with it (Stop). A generation that fails may leave ONNX
// Runtime's session unusable (every later run fails too), so after an error the page starts a fresh
// worker and loads the model again: the next question works without reloading the page. After a
// failure on WebGPU the fresh worker runs on WASM (slower, still right), and the page says why.
let worker = null;
let workerStarted = false; // its module and the library loaded (its "started" message came)
let stopFlag = null;
let activeDevice = device; // what the next worker is asked for
let streamed = "";
let current = null; // the turn being answered: {question, turn, answer, stats, copy}

// Controls follow the state: Generate when a model is ready and idle, Stop while generating, a new
// conversation when there is one. Focus never drops to the page: a control about to be disabled
// hands it to the one that takes over.
function setGenerating(generating) {
  state.generating = generating;
  const focused = document.activeElement;
  ui.generate.disabled = generating || !state.ready;
  ui.stop.disabled = !generating;
  ui.reset.disabled = generating || state.history.length === 0;
  ui.conversation.setAttribute("aria-busy", String(generating));
  if (generating && focused === ui.generate) ui.stop.focus();
  if (!generating && (focused === ui.stop || focused === ui.reset || focused === document.body || focused === null)) ui.instruction.focus();
}

function endTurn(outcome) {
  // outcome: "answered" keeps the turn; otherwise it is removed and the question goes back into the box.
  if (!current) return;
  if (outcome !== "answered") {
    current.turn.remove();
    if (!ui.instruction.value.trim()) ui.instruction.value = current.question;
  }
  current = null;
}

function onWorkerMessage({ data }) {
  state.events.push(data.type === "progress" ? { type: "progress", status: data.status, file: data.file } : { type: data.type });
  switch (data.type) {
    case "started":
      workerStarted = true;
      break;
    case "status":
      ui.status.textContent = data.text;
      break;
    case "plan":
      state.plan = data;
      ui.downloadSummary.textContent = `Downloading ${describePlan(data)}`;
      break;
    case "progress":
      renderProgress(data);
      break;
    case "fallback": // WebGPU failed in a way that leaves the worker unusable: a fresh one, on WASM
      state.restarts = (state.restarts ?? 0) + 1;
      activeDevice = "wasm";
      spawnWorker({ fallbackFrom: data.fallbackFrom, note: data.note });
      ui.status.textContent = "WebGPU failed: loading the model again on WASM (the CPU: slower, still right)…";
      break;
    case "ready":
      state.ready = true;
      state.device = data.device;
      state.timings.ready = performance.now();
      state.timings.pipelineLoad = data.loadMs; // the worker's pipeline() call alone
      state.timings.warmup = data.warmupMs; // WebGPU: the one-token run that compiles the shaders
      state.numThreads = data.numThreads;
      state.ortBuild = data.ortBuild; // which ONNX Runtime Web build runs: plain (CPU) or asyncify (WebGPU-capable)
      state.dtype = data.dtype; // what "auto" became, or what was asked
      state.note = data.note ?? null; // why the backend differs from the one asked for
      state.contextLength = data.contextLength; // positions the model reads, question and answer together
      ui.model.textContent = `${modelName} (${data.dtype})`;
      ui.backend.textContent = data.device === "webgpu" ? "WebGPU" : wasmLabel(data.numThreads);
      // A plain static host (GitHub Pages) sends no COOP/COEP headers: said once, in plain words.
      ui.isolation.textContent = self.crossOriginIsolated ? "" :
        "This server does not send the two headers that let the model use several CPU threads (chapter 07, " +
        "“Hosting it elsewhere”): it runs on one thread, and Stop loads the model again.";
      state.fallbackFrom = data.fallbackFrom ?? null;
      if (state.plan) ui.downloadSummary.textContent = `Downloaded ${describePlan(state.plan)}`;
      ui.status.textContent = data.note ? `Ready. ${data.note}.` : "Ready.";
      setGenerating(false);
      announce(data.note ? `Model ready. ${data.note}.` : "Model ready.");
      break;
    case "token":
      if (!current) break;
      streamed += data.text;
      current.streamedTokens = data.tokens;
      current.answer.textContent = streamed; // textContent: model output is never parsed as HTML
      if (data.tps) current.stats.textContent = `${data.tokens} tokens · ${data.tps.toFixed(1)} tokens/s`;
      keepInView(current.turn);
      break;
    case "complete": {
      const answer = data.text.trim(); // the worker cut it at the first stop string
      state.result = { ...data, text: answer };
      if (current) {
        current.answer.textContent = answer;
        current.stats.textContent = finishLine(data);
        current.copy.hidden = answer.length === 0;
        state.history.push({ question: current.question, answer });
        keepInView(current.turn);
      }
      endTurn("answered");
      ui.status.textContent = data.interrupted ? "Stopped." : "Done.";
      setGenerating(false);
      announce(`The model answered: ${answer || "(nothing)"}. ${finishLine(data)}.`);
      break;
    }
    case "error":
      endTurn("failed");
      if (data.kind === "context") {  // nothing ran: the worker is fine, the question was too long
        state.error = data.message;
        ui.error.textContent = `Too long: ${data.message}`;
        ui.status.textContent = "Ready.";
        setGenerating(false);
        break;
      }
      if (data.stage === "worker") { // an error outside any request: the worker started, and failed later
        reportLateError(data.message);
        break;
      }
      showError(`The model could not ${data.stage === "load" ? "be loaded" : "generate"}: ${data.message}`);
      if (data.stage === "generate") restartAfterError(data.message);
      setGenerating(false);
      break;
  }
}

// A fresh worker after a failed generation; on WASM when WebGPU failed (the GPU may fail again).
function restartAfterError(message) {
  state.restarts = (state.restarts ?? 0) + 1;
  if (state.device === "webgpu") {
    activeDevice = "wasm";
    spawnWorker({ fallbackFrom: "webgpu", note: `WebGPU failed while generating (${message}), using WASM` });
    ui.status.textContent = "WebGPU failed while generating: loading the model again on WASM (the CPU: slower, still right)…";
  } else {
    spawnWorker();
    ui.status.textContent = "Loading the model again after the error, so that the next question works…";
  }
}

// An error the worker reported outside any request, or one it could not catch: not a failed start. During
// an answer, the answer is lost and a fresh worker loads the model again; otherwise the model stays loaded.
function reportLateError(message) {
  const text = `The model worker failed after it started: ${message}`;
  if (state.generating) {
    endTurn("failed");
    showError(text);
    restartAfterError(message);
    setGenerating(false);
  } else if (state.ready) {
    state.error = text; // the model is still loaded: only said
    ui.error.textContent = text;
  } else {
    showError(text);
  }
}

function spawnWorker(fallback = null) {
  worker?.terminate();
  state.ready = false;
  workerStarted = false;
  ui.generate.disabled = true;
  worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  // Stop is a flag in memory shared with the worker (see worker.js); it needs cross-origin isolation.
  stopFlag = self.crossOriginIsolated ? new Int32Array(new SharedArrayBuffer(4)) : null;
  worker.addEventListener("message", onWorkerMessage);
  // What the worker could not report itself: its module or the library failing to load (not built?),
  // or, rarely, an error it could not catch later on.
  worker.addEventListener("error", (event) => {
    event.preventDefault();
    if (workerStarted) reportLateError(event.message ?? "unknown error");
    else showError(`The model worker failed to start: ${event.message ?? "unknown error"}. Was the site built (vendor/)? Run \`python -m helpers.deploy build\`.`);
  });
  state.timings.loadRequested = performance.now();
  worker.postMessage({ type: "load", model: modelName, dtype, device: activeDevice, stopFlag, threads, ortBuild, rules,
                       template: state.template, fallback });
}

// [stop]
// Stop with cross-origin isolation: the shared flag, read by the worker after every token. Without it
// (a plain static host such as GitHub Pages) a WASM generation never reads the "stop" message until it
// is over, so the page keeps what has streamed so far as the answer, ends that worker and loads the
// model in a fresh one (from the browser's cache: a second or two for a small model).
function stopGenerating() {
  if (!state.generating) return;
  ui.status.textContent = "Stopping…";
  if (stopFlag) {
    Atomics.store(stopFlag, 0, 1);
    worker.postMessage({ type: "stop" });
    return;
  }
  worker.postMessage({ type: "stop" }); // enough on WebGPU, where the worker awaits the GPU between tokens
  const asked = current;
  setTimeout(() => {
    if (!state.generating || current !== asked) return; // the worker stopped by itself
    const answer = streamed.trim(); // the worker streams nothing from a stop string on
    const data = { text: streamed, tokens: asked.streamedTokens ?? 0, seconds: (performance.now() - asked.began) / 1000,
                   tps: null, interrupted: true, stoppedBy: "you", stoppedByRestart: true };
    state.result = { ...data, rawText: streamed, text: answer };
    asked.answer.textContent = answer;
    asked.stats.textContent = `${finishLine(data)} · the model is loaded again (this page is not cross-origin isolated)`;
    asked.copy.hidden = answer.length === 0;
    state.history.push({ question: asked.question, answer });
    endTurn("answered");
    state.restarts = (state.restarts ?? 0) + 1;
    spawnWorker();
    setGenerating(false);
    ui.status.textContent = "Stopped. Loading the model again (without cross-origin isolation, stopping ends the worker)…";
    announce(`Stopped. The model answered: ${answer || "(nothing)"}.`);
  }, 300);
}
// [/stop]

function startWorker() {
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!state.ready || state.generating) return;
    const instruction = ui.instruction.value;
    if (!instruction.trim()) { ui.status.textContent = "Type a question first."; return; }
    streamed = "";
    ui.error.textContent = "";
    state.error = null;
    state.result = null;
    const prompt = conversationPrompt(state.template, state.history, instruction);
    current = { question: instruction, began: performance.now(), ...addTurn(instruction) };
    ui.instruction.value = "";
    setGenerating(true);
    keepInView(current.turn);
    ui.status.textContent = "Generating…";
    if (stopFlag) Atomics.store(stopFlag, 0, 0);
    // add_special_tokens: tokenized as in training (prompt_template.json records it; helpers.prompt owns the rule)
    const options = { ...generationOptions(), add_special_tokens: state.template.add_special_tokens };
    state.lastOptions = options; // what the tests check
    worker.postMessage({ type: "generate", prompt, options });
  });
  ui.stop.addEventListener("click", stopGenerating);
  ui.reset.addEventListener("click", () => {
    state.history = [];
    ui.conversation.replaceChildren();
    ui.status.textContent = "New conversation.";
    setGenerating(false);
    ui.instruction.focus();
  });
  ui.preset.addEventListener("change", () => { applyPreset(ui.preset.value); showSamplingFields(); });
  for (const key of CONTROLS) $(key).addEventListener("input", () => { ui.preset.value = "custom"; });
  $("do_sample").addEventListener("change", showSamplingFields);
  showSamplingFields();
  // Enter sends, Shift+Enter starts a new line (and Enter while an input method composes does neither).
  ui.instruction.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.form.requestSubmit();
    }
  });
  spawnWorker();
}

async function main() {
  if (!rules) {
    showError("The page could not read page.json beside index.html: serve the whole site/ folder (`python -m helpers.deploy serve`).");
    return;
  }
  ui.model.textContent = `${modelName} (${dtype})`;
  if (typeof Worker === "undefined" || typeof WebAssembly === "undefined") {
    showError("This browser cannot run the model: it needs Web Workers and WebAssembly (any current Chrome, Edge, Firefox or Safari).");
    return;
  }
  await loadPresets();
  try {
    ui.status.textContent = `Checking models/${modelName}/…`;
    const { template } = await checkModelFolder();
    state.template = template;
  } catch (error) {
    showError(error.message);
    return;
  }
  startWorker();
}

main();
