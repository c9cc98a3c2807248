// Copy the browser build of Transformers.js and ONNX Runtime Web's WASM files from node_modules
// into vendor/, so the page loads everything from its own origin (no CDN at run time).
// Run after `npm ci`: `npm run vendor` (helpers.deploy.build_site and scripts/setup.sh do both).
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const site = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(site, "node_modules", "@huggingface", "transformers", "dist");
const vendor = join(site, "vendor");

// transformers.min.js bundles onnxruntime-web's JavaScript; at run time ONNX Runtime imports a .mjs
// and fetches its .wasm from env.backends.onnx.wasm.wasmPaths (the worker points that at vendor/):
// the asyncify build (CPU and WebGPU kernels; what Transformers.js 4 loads by default) for WebGPU, and
// the plain CPU build for WASM, both from the onnxruntime-web package Transformers.js depends on (the
// same version, locked in package-lock.json). Transformers.js 4 ships no JSEP .wasm.
const FILES = {
  "transformers.min.js": "@huggingface/transformers/dist",
  "ort-wasm-simd-threaded.asyncify.mjs": "onnxruntime-web/dist",
  "ort-wasm-simd-threaded.asyncify.wasm": "onnxruntime-web/dist",
  "ort-wasm-simd-threaded.mjs": "onnxruntime-web/dist",
  "ort-wasm-simd-threaded.wasm": "onnxruntime-web/dist",
};

if (!existsSync(dist)) {
  console.error(`${dist} is missing: run \`ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --ignore-scripts\` in site/ first`);
  process.exit(1);
}
const modules = join(site, "node_modules");
const versionOf = (pkg) => JSON.parse(readFileSync(join(modules, pkg, "package.json"), "utf8")).version;
const transformers = JSON.parse(readFileSync(join(dist, "..", "package.json"), "utf8"));
// The plain build's .mjs/.wasm are driven by the JavaScript bundled inside transformers.min.js: they
// must come from exactly the onnxruntime-web version Transformers.js was built against.
const ortWanted = transformers.dependencies["onnxruntime-web"];
if (versionOf("onnxruntime-web") !== ortWanted) {
  console.error(`node_modules/onnxruntime-web is ${versionOf("onnxruntime-web")}, but @huggingface/transformers ` +
                `${transformers.version} bundles ${ortWanted}: run \`npm ci\` in site/ (package-lock.json pins it)`);
  process.exit(1);
}
mkdirSync(vendor, { recursive: true });
// Files an earlier version vendored and this one does not (3.x's JSEP build): the page must not find them.
for (const name of readdirSync(vendor)) {
  if (!(name in FILES) && name !== "VERSION.json") rmSync(join(vendor, name));
}
for (const [name, from] of Object.entries(FILES)) {
  const source = join(modules, from, name);
  if (!existsSync(source)) {
    console.error(`${source} is missing: the pinned packages no longer ship it; update FILES`);
    process.exit(1);
  }
  copyFileSync(source, join(vendor, name));
}
// helpers.deploy.build_site compares this with package.json to know when vendor/ is outdated.
const stamp = { "@huggingface/transformers": transformers.version, "onnxruntime-web": ortWanted, files: Object.keys(FILES) };
writeFileSync(join(vendor, "VERSION.json"), JSON.stringify(stamp, null, 2) + "\n");
console.log(`vendored @huggingface/transformers ${transformers.version} + onnxruntime-web ${ortWanted}: ${Object.keys(FILES).join(", ")}`);
