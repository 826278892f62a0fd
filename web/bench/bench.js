// The browser benchmark page (python -m app bench --browser): the engine in Pyodide on WebGPU, then
// wllama (llama.cpp in WebAssembly, WebGPU where it can) on the same GGUF, in the same browser.
// Settings: ?cfg=<JSON> (see DEFAULTS). With cfg.post the page POSTs log lines to /bench/log and
// the result JSON to /bench/result (app/serve.py hands them to app/bench_browser.py), so that no
// browser automation is needed to read it. Tests read #status[data-state] and #result.
import { loadPyodide } from "../vendor/pyodide/pyodide.mjs";
import { benchWllama } from "./wllama_bench.js";

const DEFAULTS = {
  model: "/models/SmolLM2-135M-Instruct.Q4_1.gguf",
  context: 2048, max_prefill: 512, prefill: [128, 512], decode: 128, long_context: 1024, depth: 8, group: 4,
  wllama: true, post: false,
};
const ENGINE_WHEEL = "/engine/py_engine-0.1.0-py3-none-any.whl";
const CACHE_NAME = "py-engine-bench-v1";
const $ = (id) => document.getElementById(id);

const cfg = { ...DEFAULTS, ...JSON.parse(new URL(location.href).searchParams.get("cfg") || "{}") };
let posting = Promise.resolve();

function post(path, text) {
  if (!cfg.post) return posting;
  posting = posting.then(() => fetch(path, { method: "POST", body: text }).catch(() => {}));
  return posting;
}

function log(message) {
  const line = `[${(performance.now() / 1000).toFixed(2)}s] ${message}`;
  $("log").textContent += line + "\n";
  console.log(line);
  post("/bench/log", line);
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

// Model bytes for the engine. "network": drop any cached copy, download, then keep it in the
// Cache API (as the chat page does, with its code: ../model-bytes.js; the put is part of a cold
// load). "cache": read it back.
async function getModel(url, mode) {
  const cache = await caches.open(CACHE_NAME);
  const abs = new URL(url, location.href).href;
  if (mode === "cache") {
    const bytes = await PyEngineModelBytes.readCached(cache, abs);
    if (!bytes) throw new Error(`bench: ${abs} is not in the Cache API after the cold load`);
    return { bytes };
  }
  await cache.delete(abs);
  let got;
  try {
    got = await PyEngineModelBytes.download(abs, { cache, fetchOptions: { cache: "no-store" } });
  } catch (e) {
    throw new Error(`bench: downloading ${abs} failed: ` + (e.status ? `HTTP ${e.status}` : String(e && e.message || e)));
  }
  if (!got.stored) throw new Error(`bench: the Cache API did not keep ${abs}: ${got.reason}`);
  return { bytes: got.bytes };
}

async function benchEngine() {
  const t0 = performance.now();
  const pyodide = await loadPyodide({ indexURL: new URL("../vendor/pyodide/", location.href).href });
  const errors = [];
  await pyodide.loadPackage(["numpy", new URL(ENGINE_WHEEL, location.href).href],
                            { messageCallback: () => {}, errorCallback: (m) => errors.push(m) });
  if (errors.length) throw new Error("bench: loading numpy and the engine failed: " + errors.join("; "));
  const runtimeSeconds = (performance.now() - t0) / 1000;
  log(`engine: Pyodide ${pyodide.version}, numpy and the engine loaded in ${runtimeSeconds.toFixed(2)}s`);
  const source = await (await fetch("bench_engine.py", { cache: "no-store" })).text();
  pyodide.runPython(source);
  const text = await pyodide.globals.get("run_engine_bench")(JSON.stringify(cfg), getModel, log);
  await caches.delete(CACHE_NAME);
  return { runtime_seconds: Number(runtimeSeconds.toFixed(3)), ...JSON.parse(text) };
}

async function main() {
  const t0 = performance.now();
  log(`bench: settings ${JSON.stringify(cfg)}`);
  const result = {
    browser: navigator.userAgent, cross_origin_isolated: self.crossOriginIsolated,
    hardware_concurrency: navigator.hardwareConcurrency, settings: cfg,
  };
  setStatus("engine", "running the engine…");
  result.engine = await benchEngine();
  if (cfg.wllama) {
    setStatus("wllama", "running wllama…");
    try {
      result.wllama = await benchWllama(cfg, log);
    } catch (err) {
      log(`wllama: failed: ${err && err.stack ? err.stack : err}`);
      result.wllama = { error: String(err && err.message ? err.message : err) };
    }
  }
  result.total_seconds = Number(((performance.now() - t0) / 1000).toFixed(1));
  const text = JSON.stringify(result, null, 2);
  $("result").textContent = text;
  await post("/bench/result", text);
  setStatus("done", `done in ${result.total_seconds}s`);
}

main().catch(async (err) => {
  const message = err && err.message ? err.message : String(err);
  log(err && err.stack ? err.stack : message);
  await post("/bench/result", JSON.stringify({ error: message }));
  setStatus("error", "error: " + message);
});
