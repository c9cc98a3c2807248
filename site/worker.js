// The inference side of the page: one Web Worker holds one text-generation pipeline, so the
// page's main thread (app.js) stays free to draw, scroll and react to the stop button while the
// model computes.
// Messages in:  {type: "load", model, dtype (or "auto"), device, threads, ortBuild, stopFlag, rules, template, fallback}
//             | {type: "generate", prompt, options} | {type: "stop"}
// (rules: site/page.json as app.js read it, the file Python's helpers read too; template: the model's
// prompt_template.json; fallback: why an earlier worker left WebGPU, if it did; prompt: a string, or a
// chat, the conversation so far as {role, content} messages, which the pipeline renders with the
// model's chat template)
// Messages out: started, status, plan (the bytes a load will fetch), progress (per file, and the total),
// ready, fallback (WebGPU failed: load the model again in a fresh worker, on WASM), token, complete, error.
import {
  env,
  pipeline,
  TextStreamer,
  InterruptableStoppingCriteria,
  LogitsProcessor,
} from "./vendor/transformers.min.js";

// Everything comes from this site: the model from ./models/, ONNX Runtime's WASM from ./vendor/.
const VENDOR = new URL("./vendor/", self.location.href).href;
env.allowLocalModels = true;
env.allowRemoteModels = false;
// A path, not a URL. An absolute URL ("http://host/models/") would still load the files, but
// Transformers.js 4's file-size lookup (get_file_metadata, which sizes the download before it starts)
// skips a local file whose path is a URL, so the download's total would be missing. The path works at
// any folder depth.
env.localModelPath = new URL("./models/", self.location.href).pathname;
// ONNX Runtime Web comes in builds. The asyncify build (ort-wasm-simd-threaded.asyncify.*, 26.9 MB, what
// Transformers.js 4 loads by default) also carries the WebGPU kernels and can pause a run to wait for
// the GPU. The plain build (ort-wasm-simd-threaded.*, 14.3 MB) runs on the CPU only: half the code for
// the browser to compile and optimize, so on WASM the model loads sooner and the first answers come
// faster (benchmarks/README.md, chapter 07). ONNX Runtime reads wasmPaths once, at its first session:
// load() sets it to one of the two.
const BUILDS = {
  plain: { mjs: `${VENDOR}ort-wasm-simd-threaded.mjs`, wasm: `${VENDOR}ort-wasm-simd-threaded.wasm` },
  asyncify: { mjs: `${VENDOR}ort-wasm-simd-threaded.asyncify.mjs`, wasm: `${VENDOR}ort-wasm-simd-threaded.asyncify.wasm` },
};
// The Cache API would keep serving an old copy after the model is deployed again under the same name.
env.useBrowserCache = false;

// 8-bit dynamically quantized models (DynamicQuantizeLinear + MatMulInteger) gave wrong tokens on
// ONNX Runtime Web's WebGPU backend (Transformers.js issues #1317, #1512); with Transformers.js 4 they
// are exact for GPT-2 but still drift from Python's tokens for Llama models (the browser test measures
// both on Chromium's software WebGPU). On WASM they are exact, so they always run there: page.json's
// "wasm_only_dtypes". Its "auto_dtype" is what Transformers.js itself defaults to on each backend.

let generator = null;
// The model's prompt_template.json, as app.js read it: its stop strings and the length it was trained on.
let template = null;
// How many positions the model reads, prompt and answer together. Past it the position embeddings run
// out: ONNX Runtime fails ("Gather ... idx=512 must be within [-512,511]") and leaves the session
// unusable, so generate() never goes there.
let contextLength = null;
// [stop]
// The stop button's way in: a stopping criterion that generate() checks after every token.
const stopper = new InterruptableStoppingCriteria();
// On WASM the whole generation runs inside this worker's one task, so a "stop" message is only read
// once generation is over. A flag in shared memory, which the page sets and the token callback reads
// at every step, gets through at once. It needs cross-origin isolation (COOP/COEP headers); without
// it the page ends this worker instead (app.js).
let stopFlag = null;
// [/stop]

// Top-p (nucleus) sampling, which Transformers.js 4 does not do: generate() never adds its
// TopPLogitsWarper (commented out in models/modeling_utils.js), which has no _call, and the sampler
// reads top_k only, so a top_p alone would sample from the whole vocabulary. This is Python's
// TopPLogitsWarper, after the temperature (generate() applies it before the processors it is given) and
// top-k, as in Python: keep the smallest set of most probable tokens whose probabilities reach top_p (at
// least one), and rule out the others.
class TopPLogitsProcessor extends LogitsProcessor {
  constructor(topP, topK = 0) {
    super();
    this.topP = topP;
    this.topK = topK;
  }

  _call(inputIds, logits) {
    const vocab = logits.dims.at(-1);
    for (let start = 0; start < logits.data.length; start += vocab) this.keepNucleus(logits.data.subarray(start, start + vocab));
    return logits;
  }

  keepNucleus(row) {
    if (this.topK > 0 && this.topK < row.length) {
      const kth = row.slice().sort()[row.length - this.topK]; // the k-th largest: ties with it stay, as in Python
      for (let i = 0; i < row.length; i++) if (row[i] < kth) row[i] = -Infinity;
    }
    let max = -Infinity;
    for (const x of row) if (x > max) max = x;
    let total = 0;
    for (const x of row) total += Math.exp(x - max);
    // A token less probable than (1 - top_p) / vocabulary is always ruled out (it and all the tokens
    // below it hold less than 1 - top_p together): only the others are sorted.
    const floor = max + Math.log(((1 - this.topP) / row.length) * total);
    const likely = row.filter((x) => x >= floor).sort(); // ascending
    let mass = 0;
    let cutoff = max;
    for (let j = likely.length - 1; j >= 0 && mass < this.topP; j--) {
      cutoff = likely[j];
      mass += Math.exp(cutoff - max) / total;
    }
    for (let i = 0; i < row.length; i++) if (row[i] < cutoff) row[i] = -Infinity;
  }
}

// Chapter 05's stop strings (prompt_template.json's stop_strings: "### Instruction:" and "### Response:"
// for the course's template, none for a chat model, which ends its turn with a token): a model that
// starts a new instruction has finished its answer. The first one in `text`, and where it starts.
function firstStop(text, stops) {
  let found = null;
  for (const string of stops) {
    const index = text.indexOf(string);
    if (index >= 0 && (found === null || index < found.index)) found = { string, index };
  }
  return found;
}
// How much of the end of `text` may be the start of a stop string: held back until the next token says.
function heldBack(text, stops) {
  let longest = 0;
  for (const stop of stops) {
    for (let length = Math.min(stop.length - 1, text.length); length > longest; length--) {
      if (text.endsWith(stop.slice(0, length))) { longest = length; break; }
    }
  }
  return longest;
}

async function webgpuAvailable() {
  try {
    return Boolean(self.navigator.gpu && (await self.navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

// The bytes a load will fetch: the model's graph (and its external weights, when the export split them
// off) and tokenizer, and ONNX Runtime's WASM. HEAD requests only: the page says the size before it downloads.
async function sizeOf(url) {
  try {
    const response = await fetch(url, { method: "HEAD" });
    return response.ok ? Number(response.headers.get("content-length") ?? 0) : 0;
  } catch {
    return 0;
  }
}

async function downloadPlan(model, dtype, build, rules) {
  const folder = `${env.localModelPath}${model}/`;
  const graph = `${folder}${rules.onnx_subfolder}/model${rules.dtype_suffix[dtype]}.onnx`;
  const modelFiles = [graph, `${graph}_data`, `${folder}tokenizer.json`, `${folder}config.json`, `${folder}tokenizer_config.json`];
  const [modelBytes, runtimeBytes] = await Promise.all([
    Promise.all(modelFiles.map(sizeOf)).then((sizes) => sizes.reduce((a, b) => a + b, 0)),
    sizeOf(BUILDS[build].wasm),
  ]);
  return { modelBytes, runtimeBytes };
}

// The context the model reads, prompt and answer together: config.json's max_position_embeddings, or GPT-2's n_positions.
const contextOf = (config) => config.max_position_embeddings ?? config.n_positions ?? null;

// [warmup]
// WebGPU compiles a shader the first time each kernel runs: one token now, so that the visitor's
// first answer does not pay for it. It is also the GPU's first real run: a shader it cannot compile, a
// buffer it cannot hold or a lost device fails here, before the first question, and load() falls back.
async function warmUp() {
  const begin = performance.now();
  self.postMessage({ type: "status", text: "Preparing the GPU (one token, compiles its shaders)…" });
  await generator("Hello", { max_new_tokens: 1, do_sample: false, num_beams: 1 });
  return performance.now() - begin;
}
// [/warmup]

async function load({ model, dtype, device, threads, ortBuild, rules, fallback }) {
  // Before the first session: ONNX Runtime Web reads it once. Without cross-origin isolation it uses 1.
  if (Number.isInteger(threads) && threads > 0) env.backends.onnx.wasm.numThreads = threads;
  const begin = performance.now();
  // [backend]
  let wanted = device === "auto" || !device ? ((await webgpuAvailable()) ? "webgpu" : "wasm") : device;
  if (!dtype || dtype === "auto") dtype = rules.auto_dtype[wanted];
  let note = null;
  if (wanted === "webgpu" && rules.wasm_only_dtypes.includes(dtype)) {
    wanted = "wasm";
    note = `${dtype} runs on WASM: on WebGPU 8-bit models drift from the exact tokens (use dtype fp32, fp16 or q4 for WebGPU)`;
    self.postMessage({ type: "status", text: note });
  }
  // [/backend]
  // A WebGPU load that fails falls back to WASM below, on the asyncify build already started (after a failed
  // warm-up, in a fresh worker): slower, still right.
  const build = wanted === "webgpu" || ortBuild === "asyncify" ? "asyncify" : "plain";
  env.backends.onnx.wasm.wasmPaths = BUILDS[build];
  self.postMessage({ type: "plan", dtype, device: wanted, ortBuild: build, ...(await downloadPlan(model, dtype, build, rules)) });
  // [pipeline]
  // One call loads the tokenizer, the config and onnx/model{suffix}.onnx for the dtype, from ./models/<model>/.
  const progress_callback = (event) => self.postMessage({ type: "progress", ...event });
  const tryDevice = async (dev) => {
    self.postMessage({ type: "status", text: `Loading ${model} (${dtype}) on ${dev}…` });
    return pipeline("text-generation", model, { dtype, device: dev, progress_callback });
  };
  // [/pipeline]
  // An earlier worker whose WebGPU failed in its warm-up or while generating (app.js): this one runs on WASM, and says why.
  let ready = { type: "ready", model, dtype, device: wanted, note, ortBuild: build, ...(fallback ?? {}) };
  let warmupMs = null;
  let ran = false; // whether the model ran on the GPU (the warm-up)
  try {
    generator = await tryDevice(wanted);
    ran = wanted === "webgpu";
    if (ran) warmupMs = await warmUp();
  } catch (error) {
    if (wanted !== "webgpu") throw error;
    // A GPU the browser exposes but cannot run this graph on, at load or in the warm-up: WASM, said.
    await generator?.dispose().catch(() => {}); // whatever the GPU holds of the failed model
    generator = null;
    warmupMs = null;
    const fallback = { fallbackFrom: "webgpu", note: `WebGPU failed (${error.message}), using WASM` };
    // Transformers.js queues every run of a worker on one promise chain, which a failed run leaves
    // rejected: after the warm-up failed, no run in this worker can succeed. A fresh worker loads the
    // model on WASM (app.js); so does one after a load whose failure leaves this worker unable to load.
    if (ran) return void self.postMessage({ type: "fallback", ...fallback });
    self.postMessage({ type: "status", text: `WebGPU failed (${error.message}); falling back to WASM` });
    try {
      generator = await tryDevice("wasm");
    } catch {
      return void self.postMessage({ type: "fallback", ...fallback });
    }
    ready = { ...ready, device: "wasm", ...fallback };
  }
  contextLength = contextOf(generator.model.config);
  const loadMs = performance.now() - begin - (warmupMs ?? 0); // loading alone, the warm-up left out
  self.postMessage({ ...ready, loadMs, warmupMs, numThreads: env.backends.onnx.wasm.numThreads, contextLength });
}

const countTokens = (text, addSpecialTokens) => generator.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).length;

async function generate({ prompt, options }) {
  if (!generator) throw new Error("no model loaded yet");
  stopper.reset();
  const tokenIds = [];
  const tokenTimes = []; // ms after generate() began at which each new token arrived
  let started = null;
  let begin = null;
  const stops = template?.stop_strings ?? [];
  // [streamer]
  // Called as tokens are chosen: the ids and times are kept, and the answer so far, decoded, is searched
  // for a stop string; at the first one generation stops (the stopper below). The streamer's text (whole
  // words) goes to the page at once, but never a stop string nor what may be the start of one.
  let stop = null; // the stop string the answer reached, and where it starts
  let streamedText = ""; // what the streamer gave so far
  let shown = 0; // how much of it the page has
  const show = (end) => {
    end = Math.min(end, streamedText.length);
    if (end <= shown) return;
    const seconds = started === null ? 0 : (performance.now() - started) / 1000;
    self.postMessage({ type: "token", text: streamedText.slice(shown, end), tokens: tokenIds.length,
                       tps: seconds > 0 ? tokenIds.length / seconds : null });
    shown = end;
  };
  const streamer = new TextStreamer(generator.tokenizer, {
    skip_prompt: true,
    skip_special_tokens: true,
    callback_function: (text) => {
      streamedText += text;
      show(stop ? stop.index : streamedText.length - heldBack(streamedText, stops));
    },
    token_callback_function: (tokens) => {
      if (stopFlag && Atomics.load(stopFlag, 0) === 1) stopper.interrupt();
      started ??= performance.now();
      for (const token of tokens) {
        tokenIds.push(Number(token));
        tokenTimes.push(performance.now() - begin);
      }
      if (stops.length && !stop) {
        stop = firstStop(generator.tokenizer.decode(tokenIds, { skip_special_tokens: true }), stops);
        if (stop) stopper.interrupt();
      }
    },
  });
  // [/streamer]
  const wanted = options.max_new_tokens ?? 20;
  // [context]
  // Prompt and answer share the model's context, and a conversation also stays within the length the
  // model was fine-tuned on (prompt_template.json's trained_max_length: chapter 05's max_length, which
  // it records there): past it the model reads longer texts than any it learned from, and each
  // question would compute the whole conversation again. A chat is the conversation so far: while it
  // leaves no room for the answer asked for, its oldest exchange (a question and its answer) is left
  // out; the newest question always stays. Then the prompt's tokens are counted as the pipeline will
  // count them (a rendered chat holds its special tokens already): a prompt that fills the context is
  // refused, and the answer is capped at the room left.
  const render = (messages) => generator.tokenizer.apply_chat_template(messages, { tokenize: false, add_generation_prompt: true });
  const trained = template?.trained_max_length ?? Infinity;
  const budget = Math.min(contextLength ?? Infinity, trained);
  let droppedTurns = 0;
  let promptText, promptTokens;
  for (;;) {
    promptText = typeof prompt === "string" ? prompt : render(prompt);
    promptTokens = countTokens(promptText, typeof prompt === "string" ? Boolean(options.add_special_tokens) : false);
    const fits = promptTokens + wanted <= budget;
    if (fits || typeof prompt === "string" || prompt.length < 3) break;
    prompt = prompt.slice(2); // the oldest question and its answer
    droppedTurns += 1;
  }
  const room = contextLength ? contextLength - promptTokens : Infinity;
  if (room < 1) {
    self.postMessage({ type: "error", stage: "generate", kind: "context", promptTokens, contextLength,
      message: `the question is ${promptTokens} tokens long, and this model reads at most ${contextLength} tokens, ` +
               "question and answer together. Shorten the question and ask again." });
    return;
  }
  const maxNewTokens = Math.min(wanted, room);
  // [/context]
  begin = performance.now();
  // [generate]
  // Top-p, which the library leaves out (above), joins the processors generate() applies after the temperature.
  const nucleus = options.do_sample && options.top_p > 0 && options.top_p < 1
    ? [new TopPLogitsProcessor(options.top_p, options.top_k ?? 0)] : [];
  const [output] = await generator(prompt, {
    ...options, // the page's settings: do_sample, temperature, top_k, top_p, max_new_tokens...
    max_new_tokens: maxNewTokens, // never past the model's context
    return_full_text: false, // the answer only, not the prompt before it
    streamer,
    stopping_criteria: stopper,
    ...(nucleus.length ? { logits_processor: [...(options.logits_processor ?? []), ...nucleus] } : {}),
  });
  // [/generate]
  const seconds = (performance.now() - begin) / 1000;
  show(stop ? stop.index : streamedText.length); // what was held back in case a stop string began there
  // A chat comes back as the conversation with the assistant's message appended.
  const rawText = Array.isArray(output.generated_text) ? output.generated_text.at(-1).content : output.generated_text;
  const cut = firstStop(rawText, stops);
  // Why it ended: a stop string, the visitor's Stop, the token limit (the setting, or the room the
  // context left), or the model's own end-of-text token.
  const stoppedBy = stop ? "stop string" : stopper.interrupted ? "you" : tokenIds.length >= maxNewTokens ? "limit" : "end";
  self.postMessage({
    type: "complete",
    prompt: promptText,
    text: cut ? rawText.slice(0, cut.index) : rawText, // the answer: up to the first stop string
    rawText, // all the model wrote
    stopString: stop?.string ?? null,
    tokenIds,
    tokenTimes,
    tokens: tokenIds.length,
    seconds,
    tps: seconds > 0 ? tokenIds.length / seconds : null,
    interrupted: stoppedBy === "you",
    stoppedBy,
    promptTokens,
    maxNewTokens,
    droppedTurns,
    trainedMaxLength: Number.isFinite(trained) ? trained : null,
    droppedFor: droppedTurns === 0 ? null : trained < (contextLength ?? Infinity) ? "trained" : "context",
    limitedByContext: maxNewTokens < wanted,
  });
}

self.addEventListener("message", async ({ data }) => {
  try {
    if (data.type === "load") {
      stopFlag = data.stopFlag ?? null;
      template = data.template ?? null;
      await load(data);
    }
    else if (data.type === "generate") await generate(data);
    else if (data.type === "stop") stopper.interrupt();
  } catch (error) {
    // After a failed run ONNX Runtime's session may be unusable: the page starts a new worker (app.js).
    self.postMessage({ type: "error", stage: data.type, message: String(error?.message ?? error) });
  }
});

// Anything that fails outside the handler above (a callback, a promise nobody awaits) reaches the page
// with its message, not as a bare worker error the page would take for one that never started.
self.addEventListener("error", (event) => {
  event.preventDefault(); // reported once, here
  self.postMessage({ type: "error", stage: "worker", message: String(event.message ?? event.error ?? "unknown error") });
});
self.addEventListener("unhandledrejection", (event) => {
  self.postMessage({ type: "error", stage: "worker", message: String(event.reason?.message ?? event.reason ?? "unknown error") });
});
// The module and the library it imports are loaded: from here on a failure is not a failed start.
self.postMessage({ type: "started" });
