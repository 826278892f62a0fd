// Diagnostics page (diagnostics.html): load Pyodide from vendor/ (never a CDN), numpy and the engine wheel from
// this server, then run py_engine.testing.demo.run_demo (when the engine has it) and show
// the adapter and the checked result. Tests read #status[data-state], #adapter and #result.
import { loadPyodide } from "./vendor/pyodide/pyodide.mjs";

const ENGINE_WHEEL = "engine/py_engine-0.1.0-py3-none-any.whl";
const $ = (id) => document.getElementById(id);

function log(message) {
  const line = `[${(performance.now() / 1000).toFixed(2)}s] ${message}`;
  $("log").textContent += line + "\n";
  console.log(line);
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

// Runs in Pyodide. Returns JSON text so nothing depends on proxy conversion rules.
const PAGE_MAIN = `
import importlib.util
import json

from js import navigator


async def describe_adapter():
    if not navigator.gpu:
        return "no WebGPU (navigator.gpu is missing)"
    adapter = await navigator.gpu.requestAdapter()
    if adapter is None:
        return "no adapter (requestAdapter returned null)"
    info = adapter.info
    return " / ".join(x for x in (info.vendor, info.architecture, info.description) if x) or "unnamed adapter"


def demo_module_exists():
    try:
        return importlib.util.find_spec("py_engine.testing.demo") is not None
    except ModuleNotFoundError:
        return False


async def page_main(log):
    if not demo_module_exists():
        return json.dumps({"available": False, "adapter": await describe_adapter()})
    from py_engine.testing.demo import run_demo

    result = await run_demo(log)
    return json.dumps({"available": True, **result}, default=str)
`;

async function main() {
  const t0 = performance.now();
  const indexURL = new URL("vendor/pyodide/", location.href).href;
  const pyodide = await loadPyodide({ indexURL });
  log(`Pyodide ${pyodide.version} loaded`);
  setStatus("loading", "loading numpy and the engine…");
  const errors = [];
  await pyodide.loadPackage(["numpy", new URL(ENGINE_WHEEL, location.href).href], {
    messageCallback: log,
    errorCallback: (msg) => errors.push(msg),
  });
  if (errors.length) throw new Error("loading packages failed: " + errors.join("; "));
  setStatus("running", "running the demo…");
  pyodide.runPython(PAGE_MAIN);
  const text = await pyodide.globals.get("page_main")((msg) => log(String(msg)));
  const result = JSON.parse(text);
  $("adapter").textContent = result.adapter ?? "–";
  if (!result.available) {
    $("result").textContent = "demo not available (py_engine.testing.demo is not in this engine build)";
  } else {
    const parts = [`ok: ${result.ok}`];
    if (result.max_err !== undefined) parts.push(`max_err: ${result.max_err}`);
    for (const [k, v] of Object.entries(result)) {
      if (!["available", "adapter", "ok", "max_err"].includes(k)) parts.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
    }
    $("result").textContent = parts.join(", ");
  }
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  if (result.available && result.ok !== true) setStatus("error", `demo ran but its check failed (${seconds}s)`);
  else setStatus("done", `done in ${seconds}s`);
}

main().catch((err) => {
  setStatus("error", "error: " + (err && err.message ? err.message : String(err)));
  log(err && err.stack ? err.stack : String(err));
});
