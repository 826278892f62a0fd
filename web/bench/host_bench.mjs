// Host time of the engine's decode steps in Pyodide, on a stub WebGPU device that does nothing:
// what the Python side (resize hooks, uniforms, the JS encoding call) costs per step, without a
// browser or a GPU. `node web/bench/host_bench.mjs [steps] [--set module.NAME=value ...]` prints
// JSON: median / mean / p90 ms per decode step (prepare, and prepare + submit) over the steps of
// a greedy token stream after a 16-token and a 1024-token prompt, on a synthetic SmolLM2-135M.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const args = process.argv.slice(2);
const steps = Number(args.find((a) => /^\d+$/.test(a)) ?? 256);
const settings = args.filter((a, i) => args[i - 1] === "--set");

// The stub device: every call succeeds at once; maps read back zeros (token 0).
const noop = () => {};
const limits = {
  maxComputeWorkgroupsPerDimension: 65535, maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024, maxStorageBufferBindingSize: 2 ** 31 - 4, maxBufferSize: 2 ** 31,
  maxUniformBufferBindingSize: 65536, minUniformBufferOffsetAlignment: 256, minStorageBufferOffsetAlignment: 256,
  maxStorageBuffersPerShaderStage: 10, maxComputeWorkgroupStorageSize: 32768,
};
const features = new Set(["subgroups", "timestamp-query"]);
const pass = { setPipeline: noop, setBindGroup: noop, dispatchWorkgroups: noop, end: noop };
const device = {
  limits, features,
  queue: { writeBuffer: noop, submit: noop, onSubmittedWorkDone: async () => {} },
  lost: new Promise(noop),
  addEventListener: noop, pushErrorScope: noop, popErrorScope: async () => null, destroy: noop,
  createBuffer: (d) => ({ size: d.size, destroy: noop, unmap: noop, mapAsync: async () => {},
                          getMappedRange: (o, n) => new ArrayBuffer(n ?? d.size) }),
  createShaderModule: () => ({}),
  createComputePipeline: () => ({ getBindGroupLayout: () => ({}) }),
  createBindGroup: () => ({}),
  createQuerySet: () => ({ destroy: noop }),
  createCommandEncoder: () => ({ beginComputePass: () => pass, copyBufferToBuffer: noop, resolveQuerySet: noop,
                                 finish: () => ({}) }),
};
const adapter = { limits, features, info: { vendor: "stub", architecture: "", device: "", description: "",
                                           subgroupMinSize: 32 }, requestDevice: async () => device };

const { loadPyodide } = await import(join(repo, "web/vendor/pyodide/pyodide.mjs"));
const py = await loadPyodide({ indexURL: join(repo, "web/vendor/pyodide") + "/" });
// After Pyodide has started (it reads navigator to tell browsers from Node).
Object.defineProperty(globalThis, "navigator", { value: { gpu: { requestAdapter: async () => adapter } },
                                                 configurable: true });
await py.loadPackage("numpy", { messageCallback: noop });
const copyTree = (dir) => {
  for (const name of readdirSync(join(repo, dir))) {
    const rel = join(dir, name);
    if (statSync(join(repo, rel)).isDirectory()) {
      if (name !== "__pycache__") { py.FS.mkdirTree("/src/" + rel); copyTree(rel); }
    } else if (/\.(py|wgsl)$/.test(name)) {
      py.FS.writeFile("/src/" + rel, readFileSync(join(repo, rel)));
    }
  }
};
for (const d of ["py_engine", "shaders", "app"]) { py.FS.mkdirTree("/src/" + d); copyTree(d); }
py.globals.set("steps", steps);
py.globals.set("settings", py.toPy(settings));
const out = await py.runPythonAsync(`
import sys, json, time
sys.path.insert(0, "/src")
import numpy as np
from app.bench import SMOLLM2_135M, synthetic_gguf
from py_engine.settings import apply_setting
from py_engine.gpu import create_backend
from py_engine.graph import Graph
from py_engine.generate import LlamaRunner
from py_engine.loaders.gguf import read_gguf
from py_engine.models.llama import build_llama_program
from py_engine.passes import passes_for

for s in settings:
    apply_setting(s)
backend = await create_backend()
lp = build_llama_program(read_gguf(memoryview(synthetic_gguf(**SMOLLM2_135M))), context=2048, max_prefill=512,
                         fuse=passes_for(backend))
graph = await Graph.build(lp.program, backend)
runner = LlamaRunner(graph, lp)
res = {}
for label, start in (("short", 16), ("long", 1024)):
    runner.rewind(0)
    first = await runner.feed(list(range(1, start + 1)), greedy=True)
    stream = await runner.stream([first], max_new=steps + 1)
    t = time.perf_counter()
    for _ in range(steps):
        await stream.next()
    wall = time.perf_counter() - t
    await stream.aclose()
    for what, xs in (("prepare", stream.prepare_seconds), ("step", stream.host_seconds)):
        a = np.asarray(xs[-steps:]) * 1000
        res[f"{label}_{what}_ms_median_mean_p90"] = [round(float(v), 4) for v in (np.median(a), a.mean(), np.percentile(a, 90))]
    res[f"{label}_wall_ms_per_token"] = round(1000 * wall / steps, 4)
res["dispatches_per_step"] = int(len(graph.table))
json.dumps(res)
`);
console.log(out);
