// The inference side of the page: one Web Worker holds one text-generation pipeline, so the
// page's main thread (app.js) stays free to draw, scroll and react to the stop button while the
// model computes.
// Messages in:  {type: "load", model, dtype (or "auto"), device, threads, ortBuild, stopFlag, rules}
//             | {type: "generate", prompt, options} | {type: "stop"}
// (rules: site/page.json as app.js read it, the file Python's helpers read too; prompt: a string, or a
// chat, the conversation so far as {role, content} messages, which the pipeline renders with the
// model's chat template)
// Messages out: status, plan (the bytes a load will fetch), progress (per file, and the total), ready,
// token, complete, error.
import {
  env,
  pipeline,
  TextStreamer,
  InterruptableStoppingCriteria,
} from "./vendor/transformers.min.js";

// Everything comes from this site: the model from ./models/, ONNX Runtime's WASM from ./vendor/.
const VENDOR = new URL("./vendor/", self.location.href).href;
env.allowLocalModels = true;
env.allowRemoteModels = false;
// A path, not a URL: Transformers.js 4 joins localModelPath and the file name as paths, which turns an
// absolute URL ("http://host/models/") into nothing it can fetch. The path works at any folder depth.
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

async function load({ model, dtype, device, threads, ortBuild, rules }) {
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
  // A WebGPU load that fails falls back to WASM below on the asyncify build already started: slower, still right.
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
  let ready = { type: "ready", model, dtype, device: wanted, note, ortBuild: build };
  try {
    generator = await tryDevice(wanted);
  } catch (error) {
    if (wanted !== "webgpu") throw error;
    // A GPU the browser exposes but cannot run this graph on: fall back to WASM and say so.
    self.postMessage({ type: "status", text: `WebGPU failed (${error.message}); falling back to WASM` });
    generator = await tryDevice("wasm");
    ready = { ...ready, device: "wasm", fallbackFrom: "webgpu", note: `WebGPU failed (${error.message}), using WASM` };
  }
  contextLength = contextOf(generator.model.config);
  const loadMs = performance.now() - begin;
  // [warmup]
  // WebGPU compiles a shader the first time each kernel runs: one token now, so that the visitor's
  // first answer does not pay for it.
  let warmupMs = null;
  if (ready.device === "webgpu") {
    const warmupBegin = performance.now();
    self.postMessage({ type: "status", text: "Preparing the GPU (one token, compiles its shaders)…" });
    await generator("Hello", { max_new_tokens: 1, do_sample: false, num_beams: 1 });
    warmupMs = performance.now() - warmupBegin;
  }
  // [/warmup]
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
  // [streamer]
  // Called as tokens are chosen: the text goes to the page at once, the ids and times are kept.
  const streamer = new TextStreamer(generator.tokenizer, {
    skip_prompt: true,
    skip_special_tokens: true,
    callback_function: (text) => {
      const seconds = started === null ? 0 : (performance.now() - started) / 1000;
      self.postMessage({ type: "token", text, tokens: tokenIds.length, tps: seconds > 0 ? tokenIds.length / seconds : null });
    },
    token_callback_function: (tokens) => {
      if (stopFlag && Atomics.load(stopFlag, 0) === 1) stopper.interrupt();
      started ??= performance.now();
      for (const token of tokens) {
        tokenIds.push(Number(token));
        tokenTimes.push(performance.now() - begin);
      }
    },
  });
  // [/streamer]
  const wanted = options.max_new_tokens ?? 20;
  // [context]
  // Prompt and answer share the model's context. A chat is the conversation so far: while it leaves no
  // room for the answer asked for, its oldest exchange (a question and its answer) is left out. Then
  // the prompt's tokens are counted as the pipeline will count them (a rendered chat holds its special
  // tokens already): a prompt that fills the context is refused, and the answer is capped at the room left.
  const render = (messages) => generator.tokenizer.apply_chat_template(messages, { tokenize: false, add_generation_prompt: true });
  let droppedTurns = 0;
  let promptText, promptTokens;
  for (;;) {
    promptText = typeof prompt === "string" ? prompt : render(prompt);
    promptTokens = countTokens(promptText, typeof prompt === "string" ? Boolean(options.add_special_tokens) : false);
    const fits = !contextLength || promptTokens + wanted <= contextLength;
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
  const [output] = await generator(prompt, {
    ...options, // the page's settings: do_sample, temperature, top_k, top_p, max_new_tokens...
    max_new_tokens: maxNewTokens, // never past the model's context
    return_full_text: false, // the answer only, not the prompt before it
    streamer,
    stopping_criteria: stopper,
  });
  // [/generate]
  const seconds = (performance.now() - begin) / 1000;
  // A chat comes back as the conversation with the assistant's message appended.
  const text = Array.isArray(output.generated_text) ? output.generated_text.at(-1).content : output.generated_text;
  // Why it ended: the visitor's Stop, the token limit (the setting, or the room the context left), or
  // the model's own end-of-text token.
  const stoppedBy = stopper.interrupted ? "you" : tokenIds.length >= maxNewTokens ? "limit" : "end";
  self.postMessage({
    type: "complete",
    prompt: promptText,
    text,
    tokenIds,
    tokenTimes,
    tokens: tokenIds.length,
    seconds,
    tps: seconds > 0 ? tokenIds.length / seconds : null,
    interrupted: stopper.interrupted,
    stoppedBy,
    promptTokens,
    maxNewTokens,
    droppedTurns,
    limitedByContext: maxNewTokens < wanted,
  });
}

self.addEventListener("message", async ({ data }) => {
  try {
    if (data.type === "load") {
      stopFlag = data.stopFlag ?? null;
      await load(data);
    }
    else if (data.type === "generate") await generate(data);
    else if (data.type === "stop") stopper.interrupt();
  } catch (error) {
    // After a failed run ONNX Runtime's session may be unusable: the page starts a new worker (app.js).
    self.postMessage({ type: "error", stage: data.type, message: String(error?.message ?? error) });
  }
});
