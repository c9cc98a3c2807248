// The page's path (a Transformers.js text-generation pipeline) with ONNX Runtime Web's
// InferenceSession.run wrapped in a timer: per token, the time inside ONNX Runtime Web against the
// time in Transformers.js around it (generation loop, logits processing, streamer, postMessage).
import { env, pipeline, TextStreamer } from "./vendor/transformers.min.js";

const vendor = new URL("./vendor/", self.location.href).href;
env.allowLocalModels = true;
env.allowRemoteModels = false;
env.useBrowserCache = false;
env.localModelPath = new URL("./models/", self.location.href).pathname; // a path: Transformers.js 4 ignores a URL

self.onmessage = async ({ data }) => {
  try {
    env.backends.onnx.wasm.wasmPaths = data.build === "asyncify"
      ? { mjs: `${vendor}ort-wasm-simd-threaded.asyncify.mjs`, wasm: `${vendor}ort-wasm-simd-threaded.asyncify.wasm` }
      : { mjs: `${vendor}ort-wasm-simd-threaded.mjs`, wasm: `${vendor}ort-wasm-simd-threaded.wasm` };
    env.backends.onnx.wasm.numThreads = Number(data.threads);
    const generator = await pipeline("text-generation", data.model, { dtype: data.dtype, device: "wasm" });
    const session = generator.model.sessions.model;
    const run = session.run.bind(session);
    let insideMs = 0;
    session.run = async (...args) => {
      const begin = performance.now();
      try { return await run(...args); } finally { insideMs += performance.now() - begin; }
    };
    const tokens = Number(data.tokens);
    const generate = async (n) => {
      insideMs = 0;
      const streamer = new TextStreamer(generator.tokenizer, {
        skip_prompt: true, callback_function: (text) => self.postMessage({ type: "token", text }),
      });
      const begin = performance.now();
      await generator(data.prompt, { max_new_tokens: n, min_new_tokens: n, do_sample: false, streamer });
      const totalMs = performance.now() - begin;
      return { total_ms_per_token: totalMs / n, ort_ms_per_token: insideMs / n, around_ms_per_token: (totalMs - insideMs) / n };
    };
    const until = performance.now() + Number(data.warmup) * 1000;
    while (performance.now() < until) await generate(32);
    const measured = [];
    for (let i = 0; i < Number(data.runs); i++) measured.push(await generate(tokens));
    self.postMessage({ done: true, threads: env.backends.onnx.wasm.numThreads, measured });
  } catch (error) {
    self.postMessage({ done: true, error: String(error?.stack ?? error) });
  }
};
