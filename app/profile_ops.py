"""`python -m app profile`: GPU time per op kind for one decode step, on the native backend.

Each op kind's dispatch rows are replayed `--reps` times in one compute pass; the wall time
of that submission (after a warm-up), divided by the repetitions, is the kind's cost per
step. Printed as JSON, most expensive first. Run on a real GPU; a CPU adapter only gives ratios.
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
    from py_engine.models.llama import build_llama_program

    from .bench import SMOLLM2_135M, synthetic_gguf

    data = synthetic_gguf(**SMOLLM2_135M) if args.synthetic else open(args.model, "rb").read()
    backend = await create_backend()
    lp = build_llama_program(read_gguf(memoryview(data)), context=args.context, max_prefill=512)
    graph = await Graph.build(lp.program, backend)
    runner = LlamaRunner(graph, lp)
    await runner.feed(list(range(1, args.position + 1)))
    staged = graph.prepare([np.array([[1]], np.int32), np.array([runner.pos], np.int32)])
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

    result = {"dispatches_executed": int(len(live)), "position": runner.pos}
    per_kind = {}
    for label, rows in groups.items():
        per_kind[label] = {"n": len(rows), "us_per_step": round(1e6 * await cost(rows), 1)}
    result["whole_step_us"] = round(1e6 * await cost(live), 1)
    result["ops"] = dict(sorted(per_kind.items(), key=lambda kv: -kv[1]["us_per_step"]))
    graph.destroy()
    return result


def add_arguments(p) -> None:
    p.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--synthetic", action="store_true")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--position", type=int, default=16, help="decode at this context length")
    p.add_argument("--reps", type=int, default=20)


def run(args) -> None:
    print(json.dumps(asyncio.run(_profile(args)), indent=2))
