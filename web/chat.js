// The chat page (index.html). It uses the public JS API (engine.js) like any other page would.
// URL parameters: model=<same-origin URL> (default: the model served next to the page),
// autoload=0 (wait for a click), embed=1&parent=<origin> (inside the widget's iframe: talk to
// that parent window only, through postMessage).
// Tests read: #status[data-state] (idle|loading|ready|generating|error), #stats[data-*],
// .msg.assistant[data-done], and window.pyEngineChat (lastStats, loadInfo).
import { createEngine, clearModelCache, isModelCached, webgpuAvailable, DEFAULT_MODEL, EngineError } from "./engine.js";
import { renderMarkdown, copyButton } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const embed = params.get("embed") === "1";

const state = {
  engine: null,
  modelLabel: "",
  history: [],        // [{role, content}] of this conversation (without the system prompt)
  generating: false,
  current: null,      // the AbortController of the reply being written
  lastStats: null,
  loadInfo: null,
  problem: null,
};
window.pyEngineChat = state;

// ---------- status, problems ----------
function setStatus(kind, text) {
  $("status").dataset.state = kind;
  $("status").textContent = text;
  bridge.post({ type: "py-engine:status", state: kind, text });
}

const TITLES = {
  "no-webgpu": "WebGPU is not available",
  "no-adapter": "No usable GPU found",
  "device-lost": "The GPU device was lost",
  "out-of-memory": "Out of memory",
  "download": "The model could not be downloaded",
  "unsupported-op": "This model is not supported yet",
  "unsupported-model": "This file is not a model the engine can open",
  "context-full": "The conversation is too long",
};

function showProblem(err) {
  const e = err instanceof EngineError ? err : new EngineError({ message: err && err.message ? err.message : String(err) });
  state.problem = { kind: e.kind, message: e.message, hint: e.hint };
  $("problem").hidden = false;
  $("problem").dataset.kind = e.kind;
  $("problem-title").textContent = TITLES[e.kind] || "Something went wrong";
  $("problem-hint").textContent = e.hint || "Reload the page to start again.";
  $("problem-detail").textContent = e.message;
  bridge.post({ type: "py-engine:error", kind: e.kind, message: e.message, hint: e.hint });
}

function clearProblem() { $("problem").hidden = true; state.problem = null; }

// ---------- loading ----------
const STAGES = [
  ["runtime", "Start Python (Pyodide) in a worker"],
  ["bytes", "Get the weights"],
  ["parse", "Read the model (tokenizer, tensors)"],
  ["upload", "Upload weights to the GPU, build pipelines"],
  ["ready", "Ready"],
];
const STAGE_OF = { runtime: "runtime", download: "bytes", cache: "bytes", read: "bytes", parse: "parse", transcode: "upload",
  upload: "upload", ready: "ready" };

function mb(n) { return (n / 1048576).toFixed(n < 10485760 ? 2 : 1) + " MB"; }

function resetStages() {
  const list = $("stages");
  list.replaceChildren();
  for (const [key, label] of STAGES) {
    const li = document.createElement("li");
    li.dataset.stage = key;
    li.dataset.state = "waiting";
    li.textContent = label;
    list.append(li);
  }
}

function markStage(key, detail) {
  let reached = false;
  for (const li of $("stages").children) {
    if (li.dataset.stage === key) {
      reached = true;
      li.dataset.state = key === "ready" ? "done" : "active";
      if (detail) li.dataset.detail = detail;
      const label = STAGES.find((s) => s[0] === key)[1];
      li.textContent = detail ? `${label}: ${detail}` : label;
    } else if (!reached) li.dataset.state = "done";
  }
}

function onProgress(p) {
  const key = STAGE_OF[p.stage];
  if (!key) return;
  const bar = $("progress");
  if (p.stage === "download" || p.stage === "read" || p.stage === "cache") {
    const what = { download: "downloading", read: "reading the file", cache: "from browser storage (no download)" }[p.stage];
    if (p.total) { bar.max = p.total; bar.value = p.loaded; } else bar.removeAttribute("value");
    const pct = p.total ? ` (${Math.round((100 * p.loaded) / p.total)}%)` : "";
    const text = `${what}: ${mb(p.loaded)}${p.total ? " of " + mb(p.total) : ""}${pct}`;
    $("progress-text").textContent = text;
    markStage(key, text);
    $("progress").dataset.source = p.stage;
  } else if (p.stage === "runtime") {
    markStage(key, p.info.step);
  } else if (p.stage === "transcode") {
    markStage(key, `transcoding weights to the GPU's formats: ${p.info.done} of ${p.info.total} tensors`);
  } else if (p.stage === "upload") {
    markStage(key, p.info.ops ? `${p.info.ops} ops` : "");
  } else if (p.stage === "ready") {
    const mem = p.info.total_bytes || (p.info.backend && p.info.backend.total_bytes);
    markStage(key, `${(p.info.seconds || 0).toFixed(1)} s${mem ? ", " + mb(mem) + " on the GPU" : ""}`);
  } else markStage(key);
  setStatus("loading", `loading: ${STAGES.find((s) => s[0] === key)[1].toLowerCase()}…`);
}

async function loadModel(model, label) {
  if (state.generating) stopReply();
  clearProblem();
  setComposer(false);
  $("loader").hidden = false;
  $("load-title").textContent = `Loading ${label}…`;
  $("progress").value = 0;
  $("progress-text").textContent = "";
  resetStages();
  setStatus("loading", "loading…");
  const previous = state.engine;
  state.engine = null;
  try {
    const engine = await createEngine({ model, onProgress, engine: previous || undefined });
    if (engine.info.format === "pte") {
      // An ExecuTorch program ran one step: show its outputs; there is nothing to chat with.
      $("loader").hidden = true;
      showPteResult(label, engine.info);
      engine.terminate?.();
      setStatus("ready", `ran one step of ${label}`);
      return;
    }
    state.engine = engine;
    state.modelLabel = label;
    state.loadInfo = engine.info;
    const kv = engine.info.kv_cache === "float16" ? ", f16 KV cache" : "";
    // Weights of types the kernels do not read were transcoded at load (K-quants: see the README).
    const tc = Object.keys(engine.info.transcoded || {}).map((k) => k.replace("->", "→"));
    const weights = tc.length ? `, weights ${tc.join(", ")}` : "";
    $("model-name").textContent = `${label} (${engine.info.context} tokens of context${kv}${weights})`;
    $("loader").hidden = true;
    newChat(false);
    setStatus("ready", `ready: ${label}, ${engine.info.seconds.toFixed(1)} s to build`);
    setComposer(true);
    $("prompt").focus();
    refreshCacheState();
    drainQueued();
  } catch (err) {
    $("loader").hidden = true;
    if (previous && err.keptModel) {
      // The file failed its checks before the loaded model was let go: the chat goes on with it.
      state.engine = previous;
      setComposer(true);
      setStatus("ready", `${label} could not be loaded; still using ${state.modelLabel}`);
    } else {
      if (previous && !state.engine) previous.terminate?.();
      setStatus("error", "the model could not be loaded");
    }
    showProblem(err);
  }
}

async function refreshCacheState() {
  const url = $("model-url").value.trim();
  if (!url) return;
  try { $("cache-state").textContent = (await isModelCached(url)) ? "weights stored in this browser" : "not stored yet"; }
  catch (_) { $("cache-state").textContent = ""; }
}

// ---------- the conversation ----------
function setComposer(enabled) {
  $("prompt").disabled = !enabled;
  $("send").disabled = !enabled || state.generating;
  $("send").hidden = state.generating;
  $("stop").hidden = !state.generating;
}

function addMessage(role, text) {
  const wrap = document.createElement("article");
  wrap.className = `msg ${role}`;
  wrap.setAttribute("aria-label", role === "user" ? "You" : "Assistant");
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "body";
  wrap.append(who, body);
  if (role === "user") body.textContent = text;
  $("messages").append(wrap);
  scrollToEnd();
  return { wrap, body };
}

function showPteResult(label, info) {
  const r = info.pte;
  const lines = [`${label}: ExecuTorch program, method ${r.method}, ${r.ops.length} op calls, ${r.dispatches} dispatches`,
    `parse ${r.parse_ms} ms, build ${r.build_ms} ms, run ${r.run_ms} ms` + (r.inputs_generated ? " (random inputs)" : "")];
  const row = (kind, t) => `${kind} ${t.index}: ${t.dtype} [${t.shape.join(", ")}] first values ${JSON.stringify(t.first)}`;
  for (const t of r.inputs) lines.push(row("input", t));
  for (const t of r.outputs) lines.push(row("output", t));
  const { wrap, body } = addMessage("assistant", "");
  wrap.classList.add("pte-result");
  wrap.dataset.outputs = String(r.outputs.length);
  const pre = document.createElement("pre");
  pre.textContent = lines.join("\n");  // text only: nothing from the file becomes markup
  body.append(pre);
}

function scrollToEnd() {
  const box = $("messages");
  box.scrollTop = box.scrollHeight;
}

function settings() {
  const num = (id) => { const v = Number($(id).value); return Number.isFinite(v) ? v : undefined; };
  return { temperature: num("temperature"), top_k: num("top-k"), top_p: num("top-p"), max_tokens: Math.max(1, Math.round(num("max-tokens") || 256)) };
}

function showStats(s) {
  const tps = s.decode_tokens_per_s || 0;
  const stats = $("stats");
  stats.textContent = `${s.generated_tokens} tokens at ${tps.toFixed(1)} tokens/s · prompt: ${s.prefilled_tokens} new tokens` +
    (s.prompt_tokens !== undefined ? "" : "") + ` (${(s.prefill_tokens_per_s || 0).toFixed(1)} tokens/s) · ${s.finish_reason}`;
  Object.assign(stats.dataset, { prefilled: s.prefilled_tokens, generated: s.generated_tokens, tps: tps.toFixed(2), finish: s.finish_reason });
}

async function send(text) {
  text = text.trim();
  if (!text || !state.engine || state.generating) return false;
  clearProblem();
  state.history.push({ role: "user", content: text });
  addMessage("user", text);
  const { wrap, body } = addMessage("assistant");
  wrap.dataset.done = "false";
  body.classList.add("typing");
  state.generating = true;
  setComposer(true);
  setStatus("generating", "writing…");
  const controller = new AbortController();
  state.current = controller;
  const system = $("system-prompt").value.trim();
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...state.history];
  let reply = "", scheduled = false, stats = null, finished = null;
  const paint = () => { scheduled = false; body.replaceChildren(renderMarkdown(reply)); scrollToEnd(); };
  try {
    const stream = await state.engine.chat.completions.create({ messages, stream: true, ...settings(), signal: controller.signal });
    for await (const chunk of stream) {
      const piece = chunk.choices[0].delta.content;
      if (piece) {
        reply += piece;
        wrap.dataset.chunks = String(Number(wrap.dataset.chunks || 0) + 1);
        bridge.post({ type: "py-engine:chunk", text: piece });
        if (!scheduled) { scheduled = true; requestAnimationFrame(paint); }
      }
      if (chunk.stats) stats = chunk.stats;
    }
    paint();
    state.lastStats = stats;
    showStats(stats);
    wrap.dataset.finish = stats.finish_reason;
    if (stats.finish_reason === "abort") wrap.append(Object.assign(document.createElement("p"), { className: "stopped muted small", textContent: "stopped" }));
    // The KV cache now holds this reply (even a stopped one): keep history identical to it.
    state.history.push({ role: "assistant", content: reply });
    addReplyTools(wrap, reply, stats);
    finished = { type: "py-engine:reply", text: reply, stats };
  } catch (err) {
    paint();
    wrap.dataset.finish = "error";
    state.history.pop();  // the question was not answered: do not keep it
    showProblem(err);
    setStatus("error", err.kind === "device-lost" ? "the GPU device was lost" : "the reply failed");
  } finally {
    body.classList.remove("typing");
    wrap.dataset.done = "true";
    state.generating = false;
    state.current = null;
    setComposer(!!state.engine && !(state.problem && state.problem.kind === "device-lost"));
  }
  // Announced once the page can take the next message.
  if (finished) { setStatus("ready", "ready"); bridge.post(finished); }
  setTimeout(drainQueued, 0);
  return true;
}

function addReplyTools(wrap, reply, stats) {
  const tools = document.createElement("div");
  tools.className = "tools";
  tools.append(copyButton(() => reply, "Copy reply"));
  const meta = document.createElement("span");
  meta.className = "muted small";
  meta.textContent = `${stats.generated_tokens} tokens · ${(stats.decode_tokens_per_s || 0).toFixed(1)} tokens/s`;
  tools.append(meta);
  wrap.append(tools);
}

function stopReply() {
  if (state.current) state.current.abort();
}

async function newChat(resetEngine = true) {
  if (state.generating) stopReply();
  state.history = [];
  $("messages").replaceChildren();
  $("stats").textContent = "";
  if (resetEngine && state.engine) {
    try { await state.engine.reset(); } catch (err) { showProblem(err); }
  }
  $("prompt").focus();
}

// ---------- controls ----------
function wireControls() {
  const defaultModel = params.get("model") || DEFAULT_MODEL;
  $("model-url").value = defaultModel;
  // No form submission: the widget's sandboxed iframe (no allow-forms) would block it.
  const submitPrompt = () => {
    const text = $("prompt").value;
    if (!text.trim() || !state.engine || state.generating) return;
    $("prompt").value = "";
    autosize();
    send(text);
  };
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); submitPrompt(); });
  $("send").addEventListener("click", submitPrompt);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitPrompt(); }
  });
  $("prompt").addEventListener("input", autosize);
  $("stop").addEventListener("click", stopReply);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.generating) stopReply(); });
  $("new-chat").addEventListener("click", () => newChat(true));
  $("toggle-panel").addEventListener("click", () => {
    const open = document.body.classList.toggle("panel-open");
    $("toggle-panel").setAttribute("aria-expanded", String(open));
  });
  $("load-url").addEventListener("click", () => {
    const url = $("model-url").value.trim();
    if (url) loadModel(url, url.split("/").pop());
  });
  $("model-url").addEventListener("keydown", (e) => { if (e.key === "Enter") $("load-url").click(); });
  $("model-file").addEventListener("change", () => {
    const file = $("model-file").files[0];
    if (file) loadModel(file, file.name);
  });
  const zone = $("drop-zone");
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("model-file").click(); } });
  for (const target of [document.body]) {
    target.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
    target.addEventListener("dragleave", (e) => { if (!e.relatedTarget) document.body.classList.remove("dragging"); });
    target.addEventListener("drop", (e) => {
      e.preventDefault();
      document.body.classList.remove("dragging");
      const file = [...(e.dataTransfer?.files || [])].find((f) => /\.(gguf|pte)$/i.test(f.name)) || e.dataTransfer?.files?.[0];
      if (file) loadModel(file, file.name);
    });
  }
  $("clear-cache").addEventListener("click", async () => {
    const removed = await clearModelCache();
    $("cache-state").textContent = removed ? "stored weights deleted" : "nothing was stored";
  });
}

function autosize() {
  const area = $("prompt");
  area.style.height = "auto";
  area.style.height = Math.min(area.scrollHeight, 200) + "px";
}

// Messages sent by the host page before the model is ready (or while a reply is written) wait here.
const queued = [];
function drainQueued() {
  if (queued.length && state.engine && !state.generating) send(queued.shift());
}

// ---------- the widget bridge (embed=1): only the declared parent, only postMessage ----------
const bridge = (() => {
  let parentOrigin = null;
  if (embed && window.parent !== window) {
    try {
      const declared = params.get("parent") || "";
      if (new URL(declared).origin === declared) parentOrigin = declared;
    } catch (_) { /* no valid parent origin: talk to nobody */ }
  }
  let ignored = 0;
  window.addEventListener("message", (event) => {
    if (!parentOrigin || event.source !== window.parent || event.origin !== parentOrigin) {
      ignored += 1;
      document.body.dataset.ignoredMessages = String(ignored);
      return;
    }
    const msg = event.data || {};
    if (msg.type === "py-engine:send" && typeof msg.text === "string") { queued.push(msg.text); drainQueued(); }
    else if (msg.type === "py-engine:stop") stopReply();
    else if (msg.type === "py-engine:new-chat") newChat(true);
  });
  return {
    post(msg) { if (parentOrigin) window.parent.postMessage(msg, parentOrigin); },
  };
})();

// ---------- start ----------
function start() {
  if (embed) document.body.classList.add("embed");
  resetStages();
  wireControls();
  if (!webgpuAvailable()) {
    setStatus("error", "WebGPU is not available");
    showProblem(new EngineError({
      kind: "no-webgpu", message: "navigator.gpu is missing: this browser (or this page's context) does not offer WebGPU.",
      hint: "Use a recent Chrome or Edge (113 or newer) on a computer with a GPU, or turn on WebGPU in your browser's settings " +
            "(Firefox: dom.webgpu.enabled; Safari: Feature Flags → WebGPU). Open the page over https or from localhost.",
    }));
    return;
  }
  const model = $("model-url").value;
  if (params.get("autoload") === "0") { setStatus("idle", "choose a model to start"); refreshCacheState(); return; }
  loadModel(model, model.split("/").pop());
}

start();
