"""Micro-benchmark of the quantized matmul kernels on the native backend (wgpu-py).

    python -m app.bench_kernels [--reps 20] [--only q4_1_1536x576_m1,...]

Each case builds a one-op Program (py_engine.linear_gguf), runs one step, then replays the op's
live dispatch rows `reps` times in one compute pass. With 'timestamp-query' the pass's own GPU
time is used (the decode step's situation: back-to-back dispatches); otherwise the wall time
of the submission with `await backend.finish()`, which on wgpu-py includes ~8 us of Python
encoding per dispatch. Prints JSON: microseconds per dispatch and GMAC/s per case.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

# name: (ggml type name, N outputs, K, M activation rows)
CASES = {
    "q4_1_576x576_m1": ("q4_1", 576, 576, 1),
    "q4_1_960x576_m1": ("q4_1", 960, 576, 1),
    "q4_1_1536x576_m1": ("q4_1", 1536, 576, 1),
    "q4_1_576x1536_m1": ("q4_1", 576, 1536, 1),
    "q8_0_49152x576_m1": ("q8_0", 49152, 576, 1),
    "q4_0_1536x576_m1": ("q4_0", 1536, 576, 1),
    "f32_1536x576_m1": ("f32", 1536, 576, 1),
    "f16_1536x576_m1": ("f16", 1536, 576, 1),
    "q4_1_1536x576_m16": ("q4_1", 1536, 576, 16),
    "q4_1_576x1536_m16": ("q4_1", 576, 1536, 16),
    "q4_1_1536x576_m64": ("q4_1", 1536, 576, 64),
    "q8_0_1536x576_m64": ("q8_0", 1536, 576, 64),
}


def _program(type_name: str, n: int, k: int, m: int):
    from py_engine.program import Int, Null, Program
    from py_engine.reference import gguf_quant as gq
    from py_engine.testing.quant_cases import GGUF_TYPES

    type_id = GGUF_TYPES[type_name]
    w = (np.random.default_rng(0).standard_normal((n, k)) * 0.5).astype(np.float32)
    raw = np.frombuffer(gq.quantize(type_id, w), dtype=np.uint8).reshape(n, -1)
    p = Program()
    ix = p.tensor("float32", (m, k))
    o = p.tensor("float32", (m, n))
    p.call("py_engine.linear_gguf.default", ix, p.tensor("uint8", raw.shape, raw), p.add(Int(type_id)),
           p.add(Null()), o)
    p.input_ids, p.output_ids = [ix], [o]
    return p


async def _time_rows(backend, graph, rows, reps: int) -> tuple:
    """(seconds per dispatch row, method)."""
    table = np.tile(np.asarray(rows, dtype=np.int32), (reps, 1))
    if "timestamp-query" in backend.features and backend.name == "native":
        return _pass_seconds(backend, graph, table) / reps, "pass timestamps"
    backend.run(graph.pipelines.pipelines, graph.bind_groups, table)
    await backend.finish()
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        backend.run(graph.pipelines.pipelines, graph.bind_groups, table)
        await backend.finish()
        best = min(best, time.perf_counter() - t)
    return best / reps, "wall time"


def _pass_seconds(backend, graph, table) -> float:
    """GPU time of one compute pass replaying `table` (best of 3), from its timestamp writes."""
    import wgpu

    dev = backend.device
    qs = dev.create_query_set(type="timestamp", count=2)
    res = dev.create_buffer(size=16, usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
    best = float("inf")
    for _ in range(3):
        enc = dev.create_command_encoder()
        cp = enc.begin_compute_pass(timestamp_writes={"query_set": qs, "beginning_of_pass_write_index": 0,
                                                      "end_of_pass_write_index": 1})
        for p, g, x, y, z in table.tolist():
            cp.set_pipeline(graph.pipelines.pipelines[p])
            cp.set_bind_group(0, graph.bind_groups[g])
            cp.dispatch_workgroups(x, y, z)
        cp.end()
        enc.resolve_query_set(qs, 0, 2, res, 0)
        dev.queue.submit([enc.finish()])
        a = np.frombuffer(dev.queue.read_buffer(res), np.uint64)
        best = min(best, int(a[1] - a[0]) / 1e9)
    qs.destroy()
    res.destroy()
    return best


async def bench(names, reps: int) -> dict:
    from py_engine.gpu import create_backend
    from py_engine.graph import Graph

    backend = await create_backend(features=("timestamp-query",))
    result = {"adapter": str(getattr(backend, "adapter_info", "")), "reps": reps, "cases": {}}
    for name in names:
        type_name, n, k, m = CASES[name]
        graph = await Graph.build(_program(type_name, n, k, m), backend)
        try:
            x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
            await graph.step([x])
            live = graph.table[graph.table[:, 2] > 0]
            sec, result["method"] = await _time_rows(backend, graph, live, reps)
            result["cases"][name] = {"us": round(1e6 * sec, 2), "gmac_s": round(m * n * k / sec / 1e9, 3),
                                     "dispatches": int(len(live))}
        finally:
            graph.destroy()
        print(name, result["cases"][name], flush=True)
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m app.bench_kernels", description=__doc__)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--shape", default="", help="GEMV shape WG,TPR,R (default: the adapter's, see quant_kernels)")
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args(argv)
    names = [s for s in args.only.split(",") if s] or list(CASES)
    for s in names:
        if s not in CASES:
            raise SystemExit(f"bench_kernels: unknown case {s!r}; known: {', '.join(CASES)}")
    if args.shape:
        from py_engine.ops import fused_linear, quant_kernels

        shape = quant_kernels.GemvShape(*(int(v) for v in args.shape.split(",")))
        quant_kernels.gemv_shape = fused_linear.gemv_shape = lambda backend, rows=0: shape
    print(json.dumps(asyncio.run(bench(names, args.reps)), indent=2))


if __name__ == "__main__":
    main()
