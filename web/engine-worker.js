// The engine's Web Worker: Pyodide (from vendor/, never a CDN), numpy, the engine wheel and the
// model live here, so the page never freezes. web/engine.js is the only code that talks to it.
//
// Page -> worker: {type: "load", id, source, options}   source: {url} | {file: File|Blob} | {bytes: ArrayBuffer}
//                 {type: "chat", id, messages, settings}  {type: "abort"}  {type: "reset", id}
//                 {type: "clear-cache", id}  {type: "lose-device", id} (test hook)
// Worker -> page: {type: "progress", id, stage, loaded?, total?, info?}  {type: "loaded", id, info}
//                 {type: "chunk", id, text}  {type: "done", id, stats}  {type: "ok", id, result?}
//                 {type: "error", id, error: {name, kind, message, hint, keptModel?}}
// Commands run one at a time in arrival order; "abort" acts at once (between two decode steps).
"use strict";

const params = new URL(self.location.href).searchParams;
const BASE = new URL("./", self.location.href);
const PYODIDE_URL = new URL(params.get("pyodide") || "vendor/pyodide/", BASE).href;
const WHEEL_URL = new URL(params.get("wheel") || "engine/py_engine-0.1.0-py3-none-any.whl", BASE).href;
const CACHE_NAME = "py-engine-models-v1";

let pyodideReady = null;  // Promise of {pyodide, session, describeError}
let queue = Promise.resolve();

function post(msg, transfer) { self.postMessage(msg, transfer || []); }

function errorInfo(err) {
  if (err && err.kind && err.message) return err;
  const message = err && err.message ? err.message : String(err);
  // A Python exception arrives as PythonError: its message is the whole traceback.
  return { name: (err && err.name) || "Error", kind: "error", message,
           hint: "Something went wrong; the details are below. Reload the page to start again." };
}

// Python exceptions are described by Python (py_engine.web_worker.describe_error).
async function pythonError(err) {
  try {
    const rt = await pyodideReady;
    const last = rt.pyodide.globals.get("_last_error_json")();
    if (last) return JSON.parse(last);
  } catch (_) { /* fall through */ }
  return errorInfo(err);
}

function runtime(id) {
  if (!pyodideReady) {
    pyodideReady = (async () => {
      if (!self.navigator.gpu) {
        throw { name: "GpuError", kind: "no-webgpu", message: "WebGPU is not available in this worker (navigator.gpu is missing)",
                hint: "Use a recent Chrome or Edge (113+), or enable WebGPU in your browser's settings." };
      }
      post({ type: "progress", id, stage: "runtime", info: { step: "Python (Pyodide)" } });
      importScripts(PYODIDE_URL + "pyodide.js");
      const pyodide = await self.loadPyodide({ indexURL: PYODIDE_URL });
      post({ type: "progress", id, stage: "runtime", info: { step: "numpy and the engine" } });
      const errors = [];
      await pyodide.loadPackage(["numpy", "jinja2", WHEEL_URL], { messageCallback: () => {}, errorCallback: (m) => errors.push(m) });
      if (errors.length) throw new Error("loading Python packages failed: " + errors.join("; "));
      // _call runs a session method and remembers a Python exception, so that the page gets
      // describe_error's {kind, message, hint} instead of a bare traceback.
      pyodide.runPython(`
from py_engine.web_worker import WorkerSession, describe_error
session = WorkerSession()
_last_error = None

async def _call(name, *args):
    global _last_error
    try:
        return await getattr(session, name)(*args)
    except BaseException as e:
        _last_error = e
        raise

def _last_error_json():
    global _last_error
    exc, _last_error = _last_error, None
    return describe_error(exc) if exc is not None else ""
`);
      return { pyodide, session: pyodide.globals.get("session"), call: pyodide.globals.get("_call") };
    })();
  }
  return pyodideReady;
}

importScripts("model-bytes.js");  // self.PyEngineModelBytes

// The largest file the page takes, checked before a download or a read of that size starts. The
// file stays here, in JS; Python reads its header and one tensor at a time (py_engine/gpu/
// wasm_heap.py JsFile), so Pyodide's 4 GiB does not bound it: the browser's memory (this copy,
// and the weights on the GPU) does. 8 GiB takes 7B-8B models in 4 or 5 bits (Q4_K_M files of
// 4.4-4.9 GB); a Llama-3.1-8B-shaped file of 4.3 GB has been loaded.
const MAX_MODEL_BYTES = 2 ** 33;

function tooLargeError(bytes) {
  return { name: "MemoryError", kind: "out-of-memory",
           message: `the model file is ${(bytes / 1e9).toFixed(1)} GB: files past ${(MAX_MODEL_BYTES / 1e9).toFixed(1)} GB are not supported in the browser`,
           hint: "Choose a smaller model: fewer parameters or a smaller quantization (Q4_K_M, Q4_0)." };
}

// Bytes of the model with download progress; same-origin URLs are kept in the Cache API.
async function modelBytes(id, source, useCache) {
  try {
    return await modelBytesOf(id, source, useCache);
  } catch (e) {
    if (e instanceof RangeError) {  // the browser could not allocate the file's buffer
      throw { name: "MemoryError", kind: "out-of-memory", message: `the browser could not hold the model file in memory (${e.message})`,
              hint: "Close other tabs or apps, or choose a smaller model." };
    }
    throw e && e.tooLarge ? tooLargeError(e.tooLarge) : e;
  }
}

async function modelBytesOf(id, source, useCache) {
  if (source.bytes) return new Uint8Array(source.bytes);
  if (source.file) {
    if (source.file.size > MAX_MODEL_BYTES) throw { tooLarge: source.file.size };
    post({ type: "progress", id, stage: "read", loaded: 0, total: source.file.size });
    const buf = new Uint8Array(await source.file.arrayBuffer());
    post({ type: "progress", id, stage: "read", loaded: buf.length, total: buf.length });
    return buf;
  }
  const url = new URL(source.url, BASE).href;
  let cache = null;
  if (useCache && self.caches) {
    // Refused where the browser blocks storage (e.g. some third-party iframes): work without it.
    try { cache = await self.caches.open(CACHE_NAME); } catch (e) {
      post({ type: "progress", id, stage: "cache-unavailable", info: { reason: String(e && e.message || e) } });
    }
  }
  const progress = (stage) => (loaded, total) => post({ type: "progress", id, stage, loaded, total });
  if (cache) {
    const hit = await PyEngineModelBytes.readCached(cache, url, progress("cache"), MAX_MODEL_BYTES);
    if (hit) return hit;
  }
  let got;
  try {
    got = await PyEngineModelBytes.download(url, { cache, onProgress: progress("download"), maxBytes: MAX_MODEL_BYTES });
  } catch (e) {
    if (e && (e.status === undefined || e.tooLarge)) throw e;
    throw { name: "DownloadError", kind: "download", message: `downloading ${url} failed: HTTP ${e.status} ${e.statusText}`,
            hint: "Check the model URL (it must be on this site) or choose a local .gguf file." };
  }
  if (cache && !got.stored) {  // quota: still usable, just not kept
    post({ type: "progress", id, stage: "cache-skipped", info: { reason: got.reason } });
  }
  return got.bytes;
}

const handlers = {
  async load(msg) {
    const { id, source, options = {} } = msg;
    const bytesP = modelBytes(id, source, options.cache !== false);
    bytesP.catch(() => {});  // awaited below, once the runtime is up
    const rt = await runtime(id);
    const onProgress = (stage, infoJson) => post({ type: "progress", id, stage, info: JSON.parse(infoJson) });
    let info;
    try {
      const bytes = await bytesP;  // a failed download or a file too large: the loaded model stays too
      // Boxed: Python reads ranges of the bytes from the box (py_engine/gpu/wasm_heap.py explains why).
      info = await rt.call("load", { bytes }, JSON.stringify({ context: options.context, max_prefill: options.maxPrefill, kv_cache: options.kvCache }), onProgress);
    } catch (err) {
      // A file that failed its checks left the model before it loaded: say so, the page keeps it.
      const error = err && err.kind ? err : await pythonError(err);
      error.keptModel = !!rt.session.has_model();
      throw error;
    }
    post({ type: "loaded", id, info: JSON.parse(info) });
  },
  async chat(msg) {
    const rt = await runtime(msg.id);
    const onPiece = (text) => post({ type: "chunk", id: msg.id, text });
    const stats = await rt.call("chat", JSON.stringify(msg.messages), JSON.stringify(msg.settings || {}), onPiece);
    post({ type: "done", id: msg.id, stats: JSON.parse(stats) });
  },
  async reset(msg) {
    if (pyodideReady) (await pyodideReady).session.reset();
    post({ type: "ok", id: msg.id });
  },
  async "clear-cache"(msg) {
    let removed = false;
    try { removed = self.caches ? await self.caches.delete(CACHE_NAME) : false; } catch (_) { /* storage blocked: nothing stored */ }
    post({ type: "ok", id: msg.id, result: { removed } });
  },
  async "lose-device"(msg) {
    (await runtime(msg.id)).session.lose_device();
    post({ type: "ok", id: msg.id });
  },
};

self.onmessage = (event) => {
  const msg = event.data || {};
  if (msg.type === "abort") {  // at once, not queued: the running chat checks it between steps
    if (pyodideReady) pyodideReady.then((rt) => rt.session.abort(), () => {});
    return;
  }
  const handler = handlers[msg.type];
  if (!handler) { post({ type: "error", id: msg.id, error: errorInfo(new Error(`unknown message type ${msg.type}`)) }); return; }
  queue = queue.then(() => handler(msg)).catch(async (err) => {
    const error = err && err.kind ? err : await pythonError(err);
    post({ type: "error", id: msg.id, error });
  });
};
