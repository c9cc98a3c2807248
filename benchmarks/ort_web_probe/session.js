// One ONNX Runtime Web session, run directly (no Transformers.js) on fixed inputs: one decode step
// with a cache of `past` positions, timed `runs` times after `warmup` seconds of the same step.
// build=plain|asyncify picks the WebAssembly exactly as site/worker.js does, with the same JavaScript API.
const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];

self.onmessage = async ({ data }) => {
  try {
    const ort = await import("./ort/ort.webgpu.min.mjs");
    const vendor = new URL("./vendor/", self.location.href).href;
    ort.env.wasm.wasmPaths = data.build === "asyncify"
      ? { mjs: `${vendor}ort-wasm-simd-threaded.asyncify.mjs`, wasm: `${vendor}ort-wasm-simd-threaded.asyncify.wasm` }
      : { mjs: `${vendor}ort-wasm-simd-threaded.mjs`, wasm: `${vendor}ort-wasm-simd-threaded.wasm` };
    ort.env.wasm.numThreads = Number(data.threads);
    const folder = new URL(`./models/${data.model}/`, self.location.href).href;
    const config = await (await fetch(`${folder}config.json`)).json();
    const bytes = new Uint8Array(await (await fetch(`${folder}onnx/${data.file}`)).arrayBuffer());
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    const headDim = config.n_embd / config.n_head;
    const steps = {};
    for (const past of data.past.split(",").map(Number)) {
      const feeds = {
        input_ids: new ort.Tensor("int64", BigInt64Array.from([5n]), [1, 1]),
        attention_mask: new ort.Tensor("int64", new BigInt64Array(past + 1).fill(1n), [1, past + 1]),
        position_ids: new ort.Tensor("int64", BigInt64Array.from([BigInt(past)]), [1, 1]),
      };
      for (let layer = 0; layer < config.n_layer; layer++) {
        for (const kind of ["key", "value"]) {
          const values = new Float32Array(config.n_head * past * headDim).fill(0.01);
          feeds[`past_key_values.${layer}.${kind}`] = new ort.Tensor("float32", values, [1, config.n_head, past, headDim]);
        }
      }
      // The full warm-up once (the browser optimizing the WebAssembly), then 1 s per further cache length.
      const until = performance.now() + (Object.keys(steps).length ? 1 : Number(data.warmup)) * 1000;
      while (performance.now() < until) await session.run(feeds);
      const times = [];
      for (let i = 0; i < Number(data.runs); i++) {
        const begin = performance.now();
        await session.run(feeds);
        times.push(performance.now() - begin);
      }
      steps[past] = { median_ms: median(times), mean_ms: times.reduce((a, b) => a + b, 0) / times.length, runs: times.length,
                      ...(data.raw === "1" ? { times } : {}) };
    }
    self.postMessage({ done: true, threads: ort.env.wasm.numThreads, steps });
  } catch (error) {
    self.postMessage({ done: true, error: String(error?.stack ?? error) });
  }
};
