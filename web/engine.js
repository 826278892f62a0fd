// py_engine's JavaScript API (ES module). The model runs in a Web Worker (engine-worker.js):
//
//   import { createEngine } from "./engine.js";
//   const engine = await createEngine({ model: "models/SmolLM2-135M-Instruct.Q4_1.gguf",
//                                       onProgress: (p) => console.log(p.stage, p.loaded, p.total) });
//   const stream = await engine.chat.completions.create({ messages, stream: true, max_tokens: 128 });
//   for await (const chunk of stream) out += chunk.choices[0].delta.content ?? "";
//   engine.abort();   // or pass `signal` (an AbortSignal) to create()
//
// `model`: a URL on this page's origin (kept in the Cache API, so the next visit reads it from
// the browser instead of downloading), a File/Blob (file picker, drag and drop), or bytes.
// Errors are EngineError with .kind (no-webgpu, device-lost, out-of-memory, download, ...),
// .message and .hint (what the person can do).

const HERE = new URL("./", import.meta.url);
export const DEFAULT_MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
export const CACHE_NAME = "py-engine-models-v1";  // the worker uses the same name

export class EngineError extends Error {
  constructor({ name, kind, message, hint, keptModel }) {
    super(message);
    this.name = name || "EngineError";
    this.kind = kind || "error";
    this.hint = hint || "";
    this.keptModel = !!keptModel;  // a failed load: the worker still holds the model loaded before
  }
}

export function webgpuAvailable() {
  return typeof navigator !== "undefined" && !!navigator.gpu;
}

const NO_WEBGPU = {
  name: "GpuError", kind: "no-webgpu",
  message: "WebGPU is not available in this browser (navigator.gpu is missing).",
  hint: "Use a recent Chrome or Edge (113 or newer) on a computer with a GPU, or turn on WebGPU in your browser's settings " +
        "(Firefox: dom.webgpu.enabled; Safari: Feature Flags → WebGPU). The page must be opened over https or from localhost.",
};

/** Delete the stored model weights (all models this page cached). */
export async function clearModelCache() {
  try { return typeof caches !== "undefined" ? await caches.delete(CACHE_NAME) : false; } catch (_) { return false; }
}

/** Whether `url` is already stored in the browser (no download needed). */
export async function isModelCached(url) {
  try {
    if (typeof caches === "undefined") return false;
    const cache = await caches.open(CACHE_NAME);
    return !!(await cache.match(new URL(url, location.href).href));
  } catch (_) {  // storage blocked by the browser
    return false;
  }
}

function modelSource(model) {
  if (model == null || model === "") model = new URL(DEFAULT_MODEL, HERE).href;
  if (typeof model === "string" || model instanceof URL) {
    const url = new URL(model, location.href);
    if (url.origin !== location.origin) {
      throw new EngineError({ kind: "download", message: `model URL ${url.href} is not on this site (${location.origin})`,
                              hint: "Serve the model next to the page, or open it as a local file: nothing is fetched from other sites." });
    }
    return { source: { url: url.href }, name: decodeURIComponent(url.pathname.split("/").pop()) };
  }
  if (typeof Blob !== "undefined" && model instanceof Blob) return { source: { file: model }, name: model.name || "model" };
  if (model instanceof ArrayBuffer) return { source: { bytes: model }, name: "model", transfer: [model] };
  if (ArrayBuffer.isView(model)) {
    const copy = model.slice().buffer;
    return { source: { bytes: copy }, name: "model", transfer: [copy] };
  }
  throw new EngineError({ kind: "error", message: "model must be a URL, a File/Blob or bytes" });
}

class WorkerLink {
  constructor(url) {
    this.worker = new Worker(url);
    this.nextId = 1;
    this.pending = new Map();  // id -> {resolve, reject, onMessage}
    this.worker.onmessage = (e) => this.receive(e.data);
    this.worker.onerror = (e) => this.failAll({ kind: "error", message: `the engine worker failed: ${e.message || "script error"}`,
                                                hint: "Reload the page. If it keeps happening, open the browser console for details." });
  }
  receive(msg) {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.type === "error") { this.pending.delete(msg.id); p.reject(new EngineError(msg.error)); }
    else if (msg.type === "loaded" || msg.type === "done" || msg.type === "ok") {
      this.pending.delete(msg.id);
      p.onMessage?.(msg);
      p.resolve(msg);
    } else p.onMessage?.(msg);
  }
  failAll(error) {
    for (const p of this.pending.values()) p.reject(new EngineError(error));
    this.pending.clear();
  }
  request(msg, onMessage, transfer) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onMessage });
      this.worker.postMessage({ ...msg, id }, transfer || []);
    });
  }
  send(msg) { this.worker.postMessage(msg); }
  terminate() { this.worker.terminate(); this.failAll({ kind: "closed", message: "the engine was closed" }); }
}

/** An async iterator fed by push(); ends on end() or fail(). */
class ChunkStream {
  constructor() { this.items = []; this.waiters = []; this.done = false; this.error = null; }
  push(item) { const w = this.waiters.shift(); if (w) w.resolve({ value: item, done: false }); else this.items.push(item); }
  end() { this.done = true; for (const w of this.waiters.splice(0)) w.resolve({ value: undefined, done: true }); }
  fail(error) { this.error = error; for (const w of this.waiters.splice(0)) w.reject(error); }
  next() {
    if (this.items.length) return Promise.resolve({ value: this.items.shift(), done: false });
    if (this.error) return Promise.reject(this.error);
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
  [Symbol.asyncIterator]() { return this; }
}

const FINISH = { stop: "stop", length: "length", abort: "abort", context: "length" };

export class Engine {
  constructor(link, info, modelName) {
    this.link = link;
    this.info = info;
    this.model = modelName;
    this.lastStats = null;
    this.busy = Promise.resolve();
    const create = (req) => this.createCompletion(req);
    this.chat = { completions: { create } };
  }

  /** OpenAI-style: stream: true -> async iterator of chunks; otherwise a promise of the completion. */
  async createCompletion({ messages, stream = false, temperature, top_p, top_k, max_tokens, seed, signal } = {}) {
    if (!Array.isArray(messages) || !messages.length) throw new EngineError({ message: "chat.completions.create: messages must be a non-empty array" });
    const settings = { temperature, top_p, top_k, max_tokens, seed };
    for (const k of Object.keys(settings)) if (settings[k] === undefined || settings[k] === null) delete settings[k];
    const id = "chatcmpl-" + Math.random().toString(36).slice(2, 12);
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta, finish_reason = null) => ({ id, object: "chat.completion.chunk", created, model: this.model,
                                                      choices: [{ index: 0, delta, finish_reason }] });
    const chunks = new ChunkStream();
    let first = true;
    const onAbort = () => this.abort();
    if (signal) { if (signal.aborted) onAbort(); else signal.addEventListener("abort", onAbort, { once: true }); }
    // One generation at a time: a new request waits for the previous one to end.
    const run = this.busy.then(() => this.link.request(
      { type: "chat", messages: messages.map((m) => ({ role: m.role, content: String(m.content ?? "") })), settings },
      (msg) => {
        if (msg.type !== "chunk") return;
        chunks.push(chunk(first ? { role: "assistant", content: msg.text } : { content: msg.text }));
        first = false;
      }));
    this.busy = run.catch(() => {});
    run.then((msg) => {
      this.lastStats = msg.stats;
      const usage = { prompt_tokens: msg.stats.prompt_tokens, completion_tokens: msg.stats.generated_tokens,
                      total_tokens: msg.stats.prompt_tokens + msg.stats.generated_tokens };
      chunks.push({ ...chunk({}, FINISH[msg.stats.finish_reason] || msg.stats.finish_reason), usage, stats: msg.stats });
      chunks.end();
    }, (err) => chunks.fail(err)).finally(() => signal?.removeEventListener("abort", onAbort));
    if (stream) return chunks;
    let content = "", last = null;
    for await (const c of chunks) { content += c.choices[0].delta.content ?? ""; last = c; }
    return { id, object: "chat.completion", created, model: this.model, usage: last.usage, stats: last.stats,
             choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: last.choices[0].finish_reason }] };
  }

  /** Stop the generation in progress (it ends after the current step, with finish_reason "abort"). */
  abort() { this.link.send({ type: "abort" }); }
  /** Forget the conversation kept in the KV cache. */
  async reset() { await this.busy; await this.link.request({ type: "reset" }); }
  /** Test hook: make the GPU device lost, to see how the page copes. */
  async loseDevice() { await this.link.request({ type: "lose-device" }); }
  terminate() { this.link.terminate(); }
}

/**
 * Start the worker and load a model. onProgress({stage, loaded, total, info}) stages, in order:
 * runtime (Python starting), download | cache | read (bytes), parse, upload, ready.
 * Options: context (KV-cache positions), maxPrefill, kvCache ("auto": float32 caches, float16
 * where the memory budget would cut the model's context; "float16"; "float32"), cache (keep the
 * weights in the Cache API).
 * Pass `engine` (a previous Engine) to load another model in the same worker; a file that fails
 * its checks (not a model, unsupported architecture or type, ...) rejects with
 * `err.keptModel === true` and leaves that previous Engine working.
 */
export async function createEngine({ model, onProgress = () => {}, context, maxPrefill, kvCache, cache = true, engine: reuse } = {}) {
  if (!webgpuAvailable()) throw new EngineError(NO_WEBGPU);
  const { source, name, transfer } = modelSource(model);
  const link = reuse ? reuse.link : new WorkerLink(new URL("engine-worker.js", HERE));
  try {
    if (reuse) await reuse.busy;
    const msg = await link.request({ type: "load", source, options: { context, maxPrefill, kvCache, cache } },
                                   (m) => m.type === "progress" && onProgress({ stage: m.stage, loaded: m.loaded, total: m.total, info: m.info || {} }),
                                   transfer);
    return new Engine(link, msg.info, name);
  } catch (err) {
    if (!reuse) link.terminate();
    throw err;
  }
}
