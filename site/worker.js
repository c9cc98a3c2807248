// The inference side of the page: one Web Worker holds one text-generation pipeline, so the
// page's main thread (app.js) stays free to draw, scroll and react to the stop button while the
// model computes. Messages in:  {type: "load", model, dtype (or "auto"), device, threads, ortBuild, rules} | {type: "generate", prompt, options} | {type: "stop"}
// (rules: site/page.json as app.js read it, the file Python's helpers read too)
// (prompt: a string, or a chat — a list of {role, content} messages — that the pipeline renders with the model's chat template)
// Messages out: status, progress (one per file event), ready, token, complete, error.
import {
  env,
  pipeline,
  TextStreamer,
  InterruptableStoppingCriteria,
} from "./vendor/transformers.min.js";

// Everything comes from this site: the model from ./models/, ONNX Runtime's WASM from ./vendor/.
// Absolute URLs, because relative ones would resolve against different bases inside the library.
const VENDOR = new URL("./vendor/", self.location.href).href;
env.allowLocalModels = true;
env.allowRemoteModels = false;
env.localModelPath = new URL("./models/", self.location.href).href;
// ONNX Runtime Web comes in two builds. The JSEP build (ort-wasm-simd-threaded.jsep.*, 21.6 MB, what
// Transformers.js loads by default) also carries the WebGPU kernels and wraps every run so that it can
// wait for the GPU. The plain build (ort-wasm-simd-threaded.*, 11.1 MB) runs on the CPU only: half the
// code for the browser to compile and optimize, so on WASM the model loads sooner and the first answers
// come up to 1.7x faster; later ones are about as fast (benchmarks/README.md, chapter 07).
// ONNX Runtime reads wasmPaths once, at its first session: load() sets it (to one of the two).
const PLAIN_CPU_BUILD = { mjs: `${VENDOR}ort-wasm-simd-threaded.mjs`, wasm: `${VENDOR}ort-wasm-simd-threaded.wasm` };
// The Cache API would keep serving an old copy after the model is deployed again under the same name.
env.useBrowserCache = false;

// 8-bit dynamically quantized models (DynamicQuantizeLinear + MatMulInteger) give wrong tokens on
// ONNX Runtime Web's WebGPU backend (Transformers.js issues #1317, #1512); the course's browser test
// reproduces it on Chromium's software WebGPU. They run correctly on WASM, so they always run there:
// page.json's "wasm_only_dtypes". Its "auto_dtype" is what Transformers.js itself defaults to on each backend.

let generator = null;
// How many positions the model reads, prompt and answer together (config.json's max_position_embeddings,
// or GPT-2's n_positions). Past it the position embeddings run out: ONNX Runtime fails ("Gather ...
// idx=512 must be within [-512,511]") and leaves the session unusable, so generate() never goes there.
let contextLength = null;
// [stop]
// The stop button's way in: a stopping criterion that generate() checks after every token.
const stopper = new InterruptableStoppingCriteria();
// On WASM the whole generation runs inside this worker's one task, so a "stop" message is only read
// once generation is over. A flag in shared memory, which the page sets and the token callback reads
// at every step, gets through at once. It needs cross-origin isolation (COOP/COEP headers).
let stopFlag = null;
// [/stop]

async function webgpuAvailable() {
  try {
    return Boolean(self.navigator.gpu && (await self.navigator.gpu.requestAdapter()));
  } catch {
    return false;
  }
}

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
    note = `${dtype} runs on WASM: WebGPU gives wrong tokens for 8-bit models (use dtype fp32, fp16 or q4 for WebGPU)`;
    self.postMessage({ type: "status", text: note });
  }
  // [/backend]
  // A WebGPU load that fails falls back to WASM below on the JSEP build already started: slower, still right.
  const build = wanted === "webgpu" || ortBuild === "jsep" ? "jsep" : "plain";
  env.backends.onnx.wasm.wasmPaths = build === "jsep" ? VENDOR : PLAIN_CPU_BUILD;
  // [pipeline]
  // One call loads the tokenizer, the config and onnx/model{suffix}.onnx for the dtype, from ./models/<model>/.
  const progress_callback = (event) => self.postMessage({ type: "progress", ...event });
  const tryDevice = async (dev) => {
    self.postMessage({ type: "status", text: `Loading ${model} (${dtype}) on ${dev}…` });
    return pipeline("text-generation", model, { dtype, device: dev, progress_callback });
  };
  // [/pipeline]
  try {
    generator = await tryDevice(wanted);
    contextLength = generator.model.config.max_position_embeddings ?? generator.model.config.n_positions ?? null;
    self.postMessage({ type: "ready", model, dtype, device: wanted, note, loadMs: performance.now() - begin,
                       numThreads: env.backends.onnx.wasm.numThreads, ortBuild: build, contextLength });
  } catch (error) {
    if (wanted !== "webgpu") throw error;
    // A GPU the browser exposes but cannot run this graph on: fall back to WASM and say so.
    self.postMessage({ type: "status", text: `WebGPU failed (${error.message}); falling back to WASM` });
    generator = await tryDevice("wasm");
    contextLength = generator.model.config.max_position_embeddings ?? generator.model.config.n_positions ?? null;
    self.postMessage({ type: "ready", model, dtype, device: "wasm", fallbackFrom: "webgpu", note: `WebGPU failed (${error.message}), using WASM`,
                       loadMs: performance.now() - begin,
                       numThreads: env.backends.onnx.wasm.numThreads, ortBuild: build, contextLength });
  }
}

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
  // The exact text the model is prompted with, reported so the tests can compare it with Python's.
  const promptText = typeof prompt === "string" ? prompt
    : generator.tokenizer.apply_chat_template(prompt, { tokenize: false, add_generation_prompt: true });
  // [context]
  // Prompt and answer share the model's context: count the prompt's tokens as the pipeline will (a
  // rendered chat holds its special tokens already), refuse a prompt that fills it, and cap the answer
  // at the room that is left.
  const promptTokens = generator.tokenizer.encode(promptText, {
    add_special_tokens: typeof prompt === "string" ? Boolean(options.add_special_tokens) : false,
  }).length;
  const room = contextLength ? contextLength - promptTokens : Infinity;
  if (room < 1) {
    self.postMessage({ type: "error", stage: "generate", kind: "context", promptTokens, contextLength,
      message: `the question is ${promptTokens} tokens long, and this model reads at most ${contextLength} tokens, ` +
               "question and answer together. Shorten the question and ask again." });
    return;
  }
  const maxNewTokens = Math.min(options.max_new_tokens ?? 20, room);
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
    promptTokens,
    maxNewTokens,
    limitedByContext: maxNewTokens < (options.max_new_tokens ?? 20),
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
