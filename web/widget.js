// One line puts the chat on any page:
//   <script src="http://HOST/widget.js" data-model="models/SmolLM2-135M-Instruct.Q4_1.gguf"></script>
// Optional: data-title="Ask me", data-open="true" (open at once), data-position="left".
// The chat runs in a sandboxed iframe from HOST (its own origin: its worker, WebGPU and stored
// weights stay there). The host page and the frame talk only through postMessage, and each side
// checks the other's origin and window. The host page gets `window.pyEngineWidget`:
//   send(text), stop(), newChat(), open(), close(), on(type, callback)
//   events: status {state, text}, chunk {text}, reply {text, stats}, error {kind, message, hint}
(() => {
  "use strict";
  const script = document.currentScript;
  if (!script) return;
  const src = new URL(script.src, location.href);
  const frameOrigin = src.origin;
  const opts = script.dataset;
  const frameURL = new URL("index.html", src);
  frameURL.searchParams.set("embed", "1");
  frameURL.searchParams.set("parent", location.origin);
  if (opts.model) frameURL.searchParams.set("model", opts.model);

  const left = opts.position === "left";
  const root = document.createElement("div");
  root.setAttribute("data-py-engine-widget", "");
  root.style.cssText = `position:fixed;bottom:16px;${left ? "left" : "right"}:16px;z-index:2147483000;display:flex;` +
    `flex-direction:column;align-items:${left ? "flex-start" : "flex-end"};gap:8px;font:14px system-ui,sans-serif`;
  const panel = document.createElement("div");
  panel.style.cssText = "display:none;width:min(420px,calc(100vw - 32px));height:min(620px,calc(100vh - 96px));" +
    "border-radius:12px;overflow:hidden;box-shadow:0 8px 30px rgba(0,0,0,.25);background:#fff";
  const frame = document.createElement("iframe");
  // allow-scripts: the chat; allow-same-origin: its own origin for the worker, WebGPU and the Cache API.
  frame.setAttribute("sandbox", "allow-scripts allow-same-origin");
  frame.setAttribute("allow", "clipboard-write");
  frame.title = opts.title || "Chat with a local language model";
  frame.style.cssText = "width:100%;height:100%;border:0";
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = opts.title || "Chat";
  button.setAttribute("aria-expanded", "false");
  button.style.cssText = "border:0;border-radius:999px;padding:10px 18px;background:#2457c5;color:#fff;" +
    "font:600 14px system-ui,sans-serif;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25)";
  panel.append(frame);
  root.append(panel, button);

  const listeners = {};
  const pendingOut = [];
  let frameReady = false;  // the frame answers once it runs; messages wait for that
  let ignored = 0;
  const emit = (type, data) => (listeners[type] || []).forEach((cb) => { try { cb(data); } catch (e) { console.error(e); } });
  const toFrame = (msg) => {
    if (!frameReady) { pendingOut.push(msg); return; }
    frame.contentWindow.postMessage(msg, frameOrigin);
  };

  window.addEventListener("message", (event) => {
    if (event.origin !== frameOrigin || event.source !== frame.contentWindow) {
      const msg = event.data;
      if (msg && typeof msg.type === "string" && msg.type.startsWith("py-engine:")) {
        ignored += 1;
        root.dataset.ignoredMessages = String(ignored);
      }
      return;
    }
    const msg = event.data || {};
    if (typeof msg.type !== "string" || !msg.type.startsWith("py-engine:")) return;
    const type = msg.type.slice("py-engine:".length);
    if (!frameReady) {
      frameReady = true;
      for (const m of pendingOut.splice(0)) frame.contentWindow.postMessage(m, frameOrigin);
    }
    if (type === "status") root.dataset.state = msg.state;
    emit(type, msg);
  });

  let loaded = false;
  const api = {
    open() {
      if (!loaded) { frame.src = frameURL.href; loaded = true; }
      panel.style.display = "block";
      button.setAttribute("aria-expanded", "true");
      button.textContent = "Close chat";
    },
    close() {
      panel.style.display = "none";
      button.setAttribute("aria-expanded", "false");
      button.textContent = opts.title || "Chat";
    },
    toggle() { panel.style.display === "none" ? api.open() : api.close(); },
    send(text) { api.open(); toFrame({ type: "py-engine:send", text: String(text) }); },
    stop() { toFrame({ type: "py-engine:stop" }); },
    newChat() { toFrame({ type: "py-engine:new-chat" }); },
    on(type, callback) { (listeners[type] ||= []).push(callback); return api; },
    frame,
    get ignoredMessages() { return ignored; },
  };
  button.addEventListener("click", api.toggle);
  window.pyEngineWidget = api;
  const mount = () => { document.body.append(root); if (opts.open === "true") api.open(); };
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
