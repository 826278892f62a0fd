"""The engine's side of the browser benchmark: runs inside Pyodide on the page's WebGPU.

bench.js fetches this file, runs it, and awaits `run_engine_bench(cfg_json, get_model, log)`,
which returns JSON text. The figures mirror `python -m app bench` (app/bench.py) and add the
load from the Cache API and, when the adapter has 'timestamp-query', GPU time per token.
"""
import gc
import json
import time

import numpy as np
from pyodide.code import run_js  # type: ignore[import-not-found]

# Timestamp writes around every compute pass (BrowserBackend.set_pass_timing); gpuNs(): GPU ns of
# the last pass. Read with one step in flight, so the read buffer is never mapped during a submit.
_TIMESTAMPS_JS = """
(device) => {
  const qs = device.createQuerySet({ type: "timestamp", count: 2 });
  const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  return {
    pass: { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } },
    after: (enc) => {
      enc.resolveQuerySet(qs, 0, 2, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, read, 0, 16);
    },
    gpuNs: async () => {
      await read.mapAsync(GPUMapMode.READ);
      const a = new BigUint64Array(read.getMappedRange());
      const d = Number(a[1] - a[0]);
      read.unmap();
      return d;
    },
    destroy: () => { qs.destroy(); resolve.destroy(); read.destroy(); },
  };
}
"""

# Timestamps of every pass of a pipelined decode (as timed, `depth` steps in flight), one query
# pair per pass in submit order: whether the GPU waits between steps (host or browser-side
# encoding too slow) or runs them back to back. read() resolves them all after the run.
_PASS_RING_JS = """
(device, cap) => {
  const qs = device.createQuerySet({ type: "timestamp", count: 2 * cap });
  let n = 0;
  return {
    get pass() {
      const k = Math.min(n++, cap - 1);  // past cap the last pair is overwritten
      return { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * k, endOfPassWriteIndex: 2 * k + 1 } };
    },
    after: (enc) => {},
    read: async () => {
      const m = Math.min(n, cap);
      const resolve = device.createBuffer({ size: 16 * m, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      const read = device.createBuffer({ size: 16 * m, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const enc = device.createCommandEncoder();
      enc.resolveQuerySet(qs, 0, 2 * m, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * m);
      device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const a = new BigUint64Array(read.getMappedRange());
      const t0 = a[0];
      const out = Array.from(a, (t) => Number(t - t0));
      read.unmap(); read.destroy(); resolve.destroy(); qs.destroy();
      return out;
    },
  };
}
"""


# One decode step's table encoded `steps` times, `k` steps per submit (each its own compute pass, or
# all k in one pass), with no Python in between: wall and JS-side milliseconds for all of them.
# `encode`: ENCODE_TABLE_JS, as the engine's own submits use it.
# Tells what grouping several decode steps into one submit would save per step.
_SUBMIT_GROUPS_JS = """
(encode) => (device, pipelines, groups, table, n) => async (steps, k, onePass) => {
  await device.queue.onSubmittedWorkDone();
  const t0 = performance.now();
  let js = 0;
  for (let s = 0; s < steps; s += k) {
    const a = performance.now();
    const enc = device.createCommandEncoder();
    let pass = null;
    for (let j = 0; j < k; j++) {
      if (!pass) pass = enc.beginComputePass();
      encode(pass, pipelines, groups, table, n);
      if (!onePass) { pass.end(); pass = null; }
    }
    if (pass) pass.end();
    device.queue.submit([enc.finish()]);
    js += performance.now() - a;
  }
  await device.queue.onSubmittedWorkDone();
  return [performance.now() - t0, js];
}
"""


async def _submit_groups(backend, graph, steps: int) -> dict:
    """µs per decode step (wall, and JS encoding) with 1-8 steps per submit, alternated 3 times."""
    from py_engine.gpu.browser import ENCODE_TABLE_JS

    _, pipes, groups = backend._js_lists  # set by the graph's last submit
    table = graph.table
    run = run_js(_SUBMIT_GROUPS_JS)(run_js(ENCODE_TABLE_JS))(backend.device, pipes, groups,
                                                              backend._heap.int32_array(table), len(table))
    got: dict = {}
    for _ in range(3):
        for k, one in ((1, False), (2, False), (4, False), (8, False), (4, True), (8, True)):
            wall, js = (await run(steps, k, one)).to_py()
            got.setdefault(f"{k}{'_one_pass' if one else ''}", []).append(
                (round(1000 * wall / steps, 1), round(1000 * js / steps, 1)))
    return {"steps": steps, "us_per_step_wall_js": got}


def _pass_gaps(stamps) -> dict:
    """Busy fraction and gaps of consecutive passes from [begin0, end0, begin1, end1, ...] ns."""
    t = np.asarray(stamps, np.float64).reshape(-1, 2)[2:]  # from the first decode step on
    if len(t) < 3 or not np.all(np.diff(t[:, 0]) > 0):
        return {"note": "timestamps missing or out of order"}
    busy, gaps = t[:, 1] - t[:, 0], t[1:, 0] - t[:-1, 1]
    span = t[-1, 1] - t[0, 0]
    return {"passes": len(t), "busy_fraction": round(float(busy.sum() / span), 3),
            "pass_us_median": round(float(np.median(busy)) / 1000, 1),
            "gap_us_median": round(float(np.median(gaps)) / 1000, 1),
            "gap_us_p90": round(float(np.percentile(gaps, 90)) / 1000, 1),
            "wall_us_per_pass": round(float(span / len(t)) / 1000, 1)}


def _median_ms(ns) -> float | None:
    """Median of the nonzero GPU times (ns) in ms; None when the adapter counted none."""
    ns = [t for t in ns if t > 0]
    return round(float(np.median(ns)) / 1e6, 4) if ns else None


def _now() -> float:
    return time.perf_counter()


async def _profile_ops(backend, graph, runner, ts, n_tokens: int, reps: int = 5) -> dict:
    """GPU microseconds per op kind (dispatch label) of one step of `n_tokens` at position 0 (1: a
    decode step after 16 tokens): each kind's rows of that step replayed `reps` times in one timed
    pass. The replays leave the caches scrambled; callers rewind and prefill again after it."""
    runner.rewind(0)
    if n_tokens == 1:
        await runner.feed(list(range(1, 17)))
    ids = (np.arange(n_tokens, dtype=np.int32) % runner.lp.config.vocab + 1).reshape(1, -1)
    graph.submit(graph.prepare([ids, np.array([runner.pos], np.int32)]))
    step_ns = await ts.gpuNs()
    groups: dict = {}
    for row, label in zip(graph.table.tolist(), graph.dispatch_labels):
        if row[2] > 0:
            groups.setdefault(label, []).append(row)
    ops = {}
    for label, rows in groups.items():
        backend.run(graph.pipelines.pipelines, graph.bind_groups, np.tile(np.array(rows, np.int32), (reps, 1)))
        ops[label] = {"n": len(rows), "us": round(await ts.gpuNs() / reps / 1000, 1)}
    runner.rewind(0)
    return {"step_us": round(step_ns / 1000, 1),
            "ops": dict(sorted(ops.items(), key=lambda kv: -kv[1]["us"]))}


class _HostClock:
    """Seconds spent in the graph's prepare (Python resize hooks) and submit (uniforms, inputs and
    the JS encoding of the table) while active: splits a prefill's wall time into host parts and
    the rest (GPU work and the readback round trip)."""

    def __init__(self, graph):
        self.graph, self.prepare, self.submit = graph, 0.0, 0.0
        self._orig = graph.prepare, graph.submit

    def __enter__(self):
        def timed(method, total: str):
            def run(*a, **k):
                t = _now()
                try:
                    return method(*a, **k)
                finally:
                    setattr(self, total, getattr(self, total) + _now() - t)
            return run

        prepare, submit = self._orig
        self.graph.prepare, self.graph.submit = timed(prepare, "prepare"), timed(submit, "submit")
        return self

    def __exit__(self, *exc):
        del self.graph.prepare, self.graph.submit  # back to the class's methods

    def split(self, wall: float) -> dict:
        return {"wall": round(1000 * wall, 3), "prepare": round(1000 * self.prepare, 3),
                "submit": round(1000 * self.submit, 3),
                "rest": round(1000 * (wall - self.prepare - self.submit), 3)}


async def _timed_feed(runner, ids) -> tuple:
    """(seconds, host split in ms) of one greedy feed of `ids` from position 0."""
    runner.rewind(0)
    with _HostClock(runner.graph) as clock:
        t = _now()
        await runner.feed(ids, greedy=True)
        dt = _now() - t
    return dt, clock.split(dt)


async def _load(get_model, url, mode, cfg, log):
    """Bytes (from the network or the Cache API) -> built graph, timed; first step included
    because it is where the browser finishes compiling pipelines."""
    from py_engine.generate import LlamaRunner
    from py_engine.gpu import create_backend
    from py_engine.gpu.wasm_heap import JsFile
    from py_engine.graph import Graph
    from py_engine.loaders.gguf import read_gguf_from
    from py_engine.models.llama import build_llama_program, kv_dtype_for
    from py_engine.passes import passes_for

    t0 = _now()
    got = await get_model(url, mode)
    data = JsFile(got)  # got: {bytes}, left in JS as the page's worker leaves it
    t_bytes = _now()
    backend = await create_backend(features=("timestamp-query",))
    t_device = _now()
    gguf = read_gguf_from(data.size, data.read)
    lp = build_llama_program(gguf, context=cfg["context"], max_prefill=cfg["max_prefill"],
                             fuse=passes_for(backend), max_buffer_bytes=backend.limits.max_storage_binding_size,
                             kv_dtype=kv_dtype_for())
    t_program = _now()
    graph = await Graph.build(lp.program, backend)
    lp.program.release_constants()  # as Engine.build: the weights live on the GPU only
    t_graph = _now()
    runner = LlamaRunner(graph, lp)
    await runner.feed([1], greedy=True)
    t1 = _now()
    log(f"engine: loaded from {mode} in {t1 - t0:.2f}s (bytes {t_bytes - t0:.2f}s, {data.size} bytes)")
    phases = {"bytes": t_bytes - t0, "device": t_device - t_bytes, "program": t_program - t_device,
              "graph_build": t_graph - t_program, "first_step": t1 - t_graph}
    return backend, graph, lp, runner, {"seconds": round(t1 - t0, 3), "bytes_seconds": round(t_bytes - t0, 3),
                                        "model_bytes": data.size,
                                        "phases": {k: round(v, 3) for k, v in phases.items()}}


async def _decode(lp, runner, start, n, rng, depth, group, ts=None, sampler=None):
    """n decode tokens after a prompt of `start` tokens (py_engine.token_stream.timed_decode),
    greedy or drawn by the GPU sampler: (seconds, the stream, GPU ns per step or [] without `ts`)."""
    from py_engine.token_stream import timed_decode

    gpu = []

    async def read_gpu():
        gpu.append(await ts.gpuNs())

    runner.rewind(0)
    dt, stream = await timed_decode(runner, rng.integers(0, lp.config.vocab, start).tolist(), n, depth=depth,
                                    group=group, after_token=read_gpu if ts is not None else None, sampler=sampler)
    return dt, stream, gpu


async def _run_cases(modules, log) -> dict:
    """The test cases of py_engine.testing.<module>_cases on this page's GPU (the GPU machine has
    no pytest): per module the names that passed with their max error, and the failures."""
    import importlib

    from py_engine.gpu import create_backend
    from py_engine.testing.harness import run_case

    backend = await create_backend()
    res = {"mma_f16": backend.mma_f16}
    try:
        for mod in modules:
            m = importlib.import_module(f"py_engine.testing.{mod}_cases")
            cases, checks = getattr(m, "CASES", {}), getattr(m, "CHECKS", {})
            passed, failed = {}, {}
            for name in sorted(cases) + sorted(checks):
                try:
                    if name in cases:
                        passed[name] = (await run_case(backend, cases[name](), name))["max_err"]
                    else:
                        passed[name] = await checks[name](backend)
                except Exception as e:  # noqa: BLE001 (every failure is reported, none stops the run)
                    failed[name] = f"{type(e).__name__}: {e}"[:400]
            log(f"cases: {mod}: {len(passed)} passed, {len(failed)} failed")
            res[mod] = {"passed": passed, "failed": failed}
    finally:
        backend.destroy()
    return res


async def run_engine_bench(cfg_json, get_model, log):
    cfg = json.loads(cfg_json)
    log = (lambda f: (lambda msg: f(str(msg))))(log)
    from py_engine.settings import apply_setting

    for setting in cfg.get("set", []):
        apply_setting(setting)
        log(f"engine: switch {setting}")
    url = cfg["model"]
    out = {}
    if cfg.get("cases"):
        out["cases"] = await _run_cases(cfg["cases"], log)
    # Cold: from the network (the page cleared the cache entry); the bytes are then cached.
    backend, graph, lp, runner, cold = await _load(get_model, url, "network", cfg, log)
    wasm_cold = backend._heap.memory_bytes()
    graph.destroy()
    backend.destroy()
    del backend, graph, lp, runner  # the cached load starts without the first copy in memory
    gc.collect()  # nor the first file, which JS frees once no proxy of it is left here
    backend, graph, lp, runner, cached = await _load(get_model, url, "cache", cfg, log)
    # As Engine.load: the kernels left out of the load start compiling now (not after the cold
    # load, whose graph goes at once); the first prompt waits for what is left of it.
    graph.warm()
    out["load_cold_seconds"] = cold["seconds"]
    out["load_cold_fetch_seconds"] = cold["bytes_seconds"]
    out["load_cached_seconds"] = cached["seconds"]
    out["load_cached_read_seconds"] = cached["bytes_seconds"]
    out["load_cold_phases_seconds"] = cold["phases"]  # bytes, device, program (GGUF -> ops), graph build, first step
    out["load_cached_phases_seconds"] = cached["phases"]
    out["model_bytes"] = cold["model_bytes"]
    # Pyodide's memory (it never shrinks) after the cold load, and after the cached one too
    out["wasm_memory_bytes_cold_cached"] = [wasm_cold, backend._heap.memory_bytes()]
    out["adapter"] = backend.adapter_info
    out["adapter_features"] = sorted(backend.adapter_features)
    out["subgroup_matrix_configs"] = backend.subgroup_matrix_configs
    out["timestamp_query"] = "timestamp-query" in backend.features
    out["subgroup_min_size"] = backend.subgroup_min_size  # 0: no subgroups (reductions in workgroup memory)
    out["context"] = runner.context
    out["dispatches_per_step"] = int(len(graph.table))
    out["kv_cache"] = lp.kv_dtype
    rng = np.random.default_rng(0)
    vocab = lp.config.vocab

    for n in cfg["prefill"]:
        if n > min(runner.context - 1, lp.max_prefill):
            log(f"engine: prefill {n} skipped (context {runner.context}, max_prefill {lp.max_prefill})")
            continue
        ids = rng.integers(0, vocab, n).tolist()
        dt, out[f"prefill_{n}_first_ms"] = await _timed_feed(runner, ids)  # every op reconfigures
        out[f"prefill_{n}_first_tokens_per_s"] = round(n / dt, 2)
        dt, out[f"prefill_{n}_ms"] = await _timed_feed(runner, ids)  # the graph restores its snapshot
        out[f"prefill_{n}_tokens_per_s"] = round(n / dt, 2)
        log(f"engine: prefill {n}: {out[f'prefill_{n}_tokens_per_s']} tokens/s "
            f"(first at this size {out[f'prefill_{n}_first_tokens_per_s']})")

    n = cfg["decode"]
    depth, group = int(cfg.get("depth", 8)), int(cfg.get("group", 4))
    out["decode_depth"], out["decode_group"] = depth, group
    out["dispatches_per_token"] = None
    long_start = max(16, min(runner.context - n - 1, cfg["long_context"]))
    for label, start in (("short", min(16, runner.context - n - 1)), ("long", long_start)):
        dt, stream, _ = await _decode(lp, runner, start, n, rng, depth, group)
        if out["dispatches_per_token"] is None:
            out["dispatches_per_token"] = int(np.count_nonzero(graph.table[:, 2]))
        out[f"decode_{label}_context"] = start
        out[f"decode_{label}_tokens_per_s"] = round(n / dt, 2)
        out[f"host_ms_per_decode_step_{label}"] = round(1000 * float(np.median(stream.host_seconds[-n:])), 4)
        out[f"host_ms_prepare_{label}"] = round(1000 * float(np.median(stream.prepare_seconds[-n:])), 4)
        host = np.asarray(stream.host_seconds[-n:]) * 1000  # outliers (GC, JIT tiering) hide from the median
        out[f"host_ms_per_decode_step_{label}_mean_p90_max"] = [round(float(x), 3) for x in
                                                                (host.mean(), np.percentile(host, 90), host.max())]
        out[f"wall_ms_per_token_{label}"] = round(1000 * dt / n, 4)
        # Waiting for readbacks: near the wall time when the GPU sets the pace, near 0 when the host does.
        out[f"wait_ms_per_token_{label}"] = round(1000 * stream.span_wait_seconds / n, 4)
        log(f"engine: decode {label} (context {start}): {out[f'decode_{label}_tokens_per_s']} tokens/s")

    # The chat page's default sampling (temperature 0.7, top-k 40, top-p 0.9), as generate_tokens
    # runs it: drawn on the GPU and streamed (GPUs), or the logits row read back and sampled on the
    # host each step (CPU adapters).
    from py_engine.generate import gpu_sampling
    from py_engine.sampling import Sampler, SamplingParams

    sampler = Sampler(SamplingParams(temperature=0.7, top_k=40, top_p=0.9), seed=0)
    out["decode_sampled_on_gpu"] = gpu_sampling(runner, sampler.params)
    if out["decode_sampled_on_gpu"]:
        # Twice: the first run also builds the sampler's pipelines (once per page).
        dt, _, _ = await _decode(lp, runner, 16, n, rng, depth, group, sampler=sampler)
        out["decode_sampled_first_run_tokens_per_s"] = round(n / dt, 2)
        dt, _, _ = await _decode(lp, runner, 16, n, rng, depth, group, sampler=sampler)
        out["decode_sampled_short_tokens_per_s"] = round(n / dt, 2)
    else:
        n_sampled = min(n, 64)
        runner.rewind(0)
        tid = sampler.sample(await runner.feed(rng.integers(0, vocab, 16).tolist()))
        t = _now()
        for _ in range(n_sampled):
            tid = sampler.sample(await runner.feed([tid]))
        out["decode_sampled_short_tokens_per_s"] = round(n_sampled / (_now() - t), 2)
    log(f"engine: sampled decode (context 16): {out['decode_sampled_short_tokens_per_s']} tokens/s")

    if out["timestamp_query"]:
        # A separate run with one step in flight, so reading timestamps never slows the timed decode.
        ring = run_js(_PASS_RING_JS)(backend.device, n + 64)
        backend.set_pass_timing(ring)
        try:
            dt, _, _ = await _decode(lp, runner, 16, n, rng, depth, group)
        finally:
            backend.set_pass_timing(None)
        out["decode_pass_timeline_16"] = _pass_gaps((await ring.read()).to_py())
        out["decode_pass_timeline_16"]["tokens_per_s"] = round(n / dt, 2)  # the same decode as decode_short, later
        # One decode step's table submitted again and again with no host work in between: the
        # gaps left are the browser's own cost per submit (encoding in JS, the GPU process).
        runner.rewind(0)
        await runner.feed(rng.integers(0, vocab, 16).tolist(), greedy=True)
        staged = graph.prepare([np.zeros((1, 1), np.int32), np.array([runner.pos], np.int32)])
        ring = run_js(_PASS_RING_JS)(backend.device, 72)
        backend.set_pass_timing(ring)
        try:
            for _ in range(64):
                graph.submit(staged)
        finally:
            backend.set_pass_timing(None)
        out["decode_replay_timeline_16"] = _pass_gaps((await ring.read()).to_py())
        # 18 x 64 steps take ~1.2 s on an H200 and minutes on a CPU adapter: there only when asked.
        steps = cfg.get("submit_groups_steps")
        steps = int(steps) if steps is not None else (0 if backend.is_cpu else 64)
        if steps > 0:
            out["decode_submit_groups_16"] = await _submit_groups(backend, graph, steps)
        runner.rewind(0)
        ts = run_js(_TIMESTAMPS_JS)(backend.device)
        backend.set_pass_timing(ts)
        try:
            _, _, gpu = await _decode(lp, runner, 16, min(n, 32), rng, 1, 1, ts)
            out["gpu_ms_per_token_short"] = _median_ms(gpu)
            if out["gpu_ms_per_token_short"] is not None:
                _, _, gpu_long = await _decode(lp, runner, long_start, min(n, 32), rng, 1, 1, ts)
                out["gpu_ms_per_token_long"] = _median_ms(gpu_long)
                for n in cfg["prefill"]:  # the prefill's own pass (its size seen before)
                    if n <= min(runner.context - 1, lp.max_prefill):
                        await _timed_feed(runner, rng.integers(0, vocab, n).tolist())
                        out[f"prefill_{n}_gpu_ms"] = round(await ts.gpuNs() / 1e6, 3)
                # Where the GPU time goes, per op kind (replayed passes; the last step rewinds).
                out["profile_decode_16"] = await _profile_ops(backend, graph, runner, ts, 1)
                big = max((t for t in cfg["prefill"] if t <= runner.max_prefill and t < runner.context), default=0)
                if big > 1:
                    out[f"profile_prefill_{big}"] = await _profile_ops(backend, graph, runner, ts, big)
        finally:
            backend.set_pass_timing(None)
            ts.destroy()
        if out["gpu_ms_per_token_short"] is None:
            out["gpu_ms_note"] = "timestamps read back as zero (the adapter does not count them)"
    else:
        out["gpu_ms_per_token_short"] = None
        out["gpu_ms_note"] = "adapter has no 'timestamp-query'"
    graph.destroy()
    backend.destroy()
    return json.dumps(out)
