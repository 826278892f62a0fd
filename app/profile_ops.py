"""`python -m app profile`: GPU time per op kind for one step, on the native backend: a decode
step by default, or a prefill chunk with `--tokens N` (`--position 0 --tokens 512`: a 512-token prompt).

With `timestamp-query-inside-passes` (wgpu on Vulkan/Metal/DX12 offers it), a timestamp is
written before and after every dispatch of one decode step, so each op kind gets its own GPU
time. Otherwise each op kind's rows are replayed `--reps` times in one pass and the wall time
of that submission (encoding included) divided by the repetitions is reported instead.
Printed as JSON, most expensive first. Run on a real GPU; a CPU adapter only gives ratios.
"""
from __future__ import annotations

import asyncio
import collections
import json
import time

import numpy as np


async def _profile(args) -> dict:
    from py_engine.generate import LlamaRunner
    from py_engine.gpu import create_backend
    from py_engine.graph import Graph
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import build_llama_program, kv_dtype_for
    from py_engine.passes import passes_for
    from py_engine.settings import apply_setting

    from .bench import SMOLLM2_135M, synthetic_gguf

    for setting in args.set:
        apply_setting(setting)
    data = synthetic_gguf(**SMOLLM2_135M) if args.synthetic else open(args.model, "rb").read()
    backend = await create_backend(features=("timestamp-query", "timestamp-query-inside-passes"))
    lp = build_llama_program(read_gguf(memoryview(data)), context=args.context, max_prefill=512,
                             fuse=passes_for(backend), kv_dtype=kv_dtype_for())
    graph = await Graph.build(lp.program, backend)
    runner = LlamaRunner(graph, lp)
    if args.position:
        await runner.feed(list(range(1, args.position + 1)))
    ids = (np.arange(args.tokens, dtype=np.int32) % lp.config.vocab).reshape(1, -1)
    staged = graph.prepare([ids, np.array([runner.pos], np.int32)])
    graph.submit(staged)
    await backend.finish()
    full = graph.table.copy()
    live = full[full[:, 2] > 0]
    groups = collections.defaultdict(list)
    for row, label in zip(full, graph.dispatch_labels):
        if row[2] > 0:
            groups[label.split(":")[0] + (":" + label.split(":")[1] if ":" in label else "")].append(row)

    async def cost(rows) -> float:
        table = np.tile(np.array(rows, dtype=np.int32), (args.reps, 1))
        backend.run(graph.pipelines.pipelines, graph.bind_groups, table)
        await backend.finish()
        t = time.perf_counter()
        backend.run(graph.pipelines.pipelines, graph.bind_groups, table)
        await backend.finish()
        return (time.perf_counter() - t) / args.reps

    result = {"dispatches_executed": int(len(live)), "position": runner.pos, "tokens": args.tokens}
    if "timestamp-query-inside-passes" in backend.features:
        result.update(_timestamps(backend, graph, full))
        graph.destroy()
        return result
    per_kind = {}
    for label, rows in groups.items():
        per_kind[label] = {"n": len(rows), "us_per_step": round(1e6 * await cost(rows), 1)}
    result["whole_step_us"] = round(1e6 * await cost(live), 1)
    result["ops"] = dict(sorted(per_kind.items(), key=lambda kv: -kv[1]["us_per_step"]))
    graph.destroy()
    return result


def _timestamps(backend, graph, table) -> dict:
    """GPU ns of every live dispatch of `table`, from timestamps written around each one."""
    import wgpu
    from wgpu.backends.wgpu_native.extras import write_timestamp

    dev = backend.device
    rows = [(i, r) for i, r in enumerate(table.tolist()) if r[2] > 0]
    n = 2 * len(rows)
    qs = dev.create_query_set(type="timestamp", count=n)
    resolve = dev.create_buffer(size=8 * n, usage=wgpu.BufferUsage.QUERY_RESOLVE | wgpu.BufferUsage.COPY_SRC)
    samples = []
    for _ in range(3):  # the last of three runs (warm caches)
        enc = dev.create_command_encoder()
        cpass = enc.begin_compute_pass()
        for j, (i, (p, g, x, y, z)) in enumerate(rows):
            write_timestamp(cpass, qs, 2 * j)
            cpass.set_pipeline(graph.pipelines.pipelines[p])
            cpass.set_bind_group(0, graph.bind_groups[g])
            cpass.dispatch_workgroups(x, y, z)
            write_timestamp(cpass, qs, 2 * j + 1)
        cpass.end()
        enc.resolve_query_set(qs, 0, n, resolve, 0)
        dev.queue.submit([enc.finish()])
        samples = np.frombuffer(dev.queue.read_buffer(resolve), dtype=np.uint64).astype(np.int64)
    per = collections.defaultdict(lambda: [0, 0])
    for j, (i, _) in enumerate(rows):
        label = graph.dispatch_labels[i]
        per[label][0] += 1
        per[label][1] += int(samples[2 * j + 1] - samples[2 * j])
    span = int(samples[-1] - samples[0])
    ops = {k: {"n": c, "us_per_step": round(t / 1000, 1), "us_each": round(t / 1000 / c, 2)}
           for k, (c, t) in sorted(per.items(), key=lambda kv: -kv[1][1])}
    return {"method": "timestamps around each dispatch", "gpu_us_per_step": round(span / 1000, 1),
            "sum_of_dispatches_us": round(sum(v[1] for v in per.values()) / 1000, 1), "ops": ops}


def add_arguments(p) -> None:
    p.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--synthetic", action="store_true")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--position", type=int, default=16, help="step at this context length")
    p.add_argument("--tokens", type=int, default=1, help="tokens in the step (1: decode; up to 512: a prefill chunk)")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE",
                   help="set a switch of py_engine first, e.g. graph.pipelines.SUBGROUP_REDUCE=0 (repeatable)")


def run(args) -> None:
    print(json.dumps(asyncio.run(_profile(args)), indent=2))
