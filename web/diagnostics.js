// Diagnostics page (diagnostics.html): load Pyodide from vendor/ (never a CDN), numpy and the engine wheel from
// this server, then run py_engine.testing.demo.run_demo and show
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
import json

from py_engine.testing.demo import run_demo


async def page_main(log):
    return json.dumps(await run_demo(log), default=str)
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
  const parts = [`ok: ${result.ok}`];
  for (const [k, v] of Object.entries(result)) {
    if (!["adapter", "ok"].includes(k)) parts.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
  $("result").textContent = parts.join(", ");
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  if (result.ok !== true) setStatus("error", `the graph ran but its check failed (${seconds}s)`);
  else setStatus("done", `done in ${seconds}s`);
}

main().catch((err) => {
  setStatus("error", "error: " + (err && err.message ? err.message : String(err)));
  log(err && err.stack ? err.stack : String(err));
});
