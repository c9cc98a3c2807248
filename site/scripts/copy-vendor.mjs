// Copy the browser build of Transformers.js and ONNX Runtime Web's WASM files from node_modules
// into vendor/, so the page loads everything from its own origin (no CDN at run time).
// Run after `npm ci`: `npm run vendor` (helpers.deploy.build_site and scripts/setup.sh do both).
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const site = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(site, "node_modules", "@huggingface", "transformers", "dist");
const vendor = join(site, "vendor");

// transformers.min.js bundles onnxruntime-web; at run time ONNX Runtime imports the .mjs and
// fetches the .wasm from env.backends.onnx.wasm.wasmPaths (the worker points that at vendor/).
const FILES = ["transformers.min.js", "ort-wasm-simd-threaded.jsep.mjs", "ort-wasm-simd-threaded.jsep.wasm"];

if (!existsSync(dist)) {
  console.error(`${dist} is missing: run \`ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --ignore-scripts\` in site/ first`);
  process.exit(1);
}
mkdirSync(vendor, { recursive: true });
for (const name of FILES) {
  const source = join(dist, name);
  if (!existsSync(source)) {
    console.error(`${source} is missing: the pinned @huggingface/transformers no longer ships it; update FILES`);
    process.exit(1);
  }
  copyFileSync(source, join(vendor, name));
}
const { version } = JSON.parse(readFileSync(join(dist, "..", "package.json"), "utf8"));
// helpers.deploy.build_site compares this with package.json to know when vendor/ is outdated.
writeFileSync(join(vendor, "VERSION.json"), JSON.stringify({ "@huggingface/transformers": version, files: FILES }, null, 2) + "\n");
console.log(`vendored @huggingface/transformers ${version}: ${FILES.join(", ")}`);
