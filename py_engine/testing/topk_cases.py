"""GPU top-k candidates (py_engine/ops/topk.py) against numpy, and sampling from them against
sampling from the whole row (shared by CPython and browser tests). Exact: ids, values and
sampled tokens must be identical."""
from __future__ import annotations

import numpy as np

from ..graph import Graph
from ..ops.topk import TopKCandidates
from ..program import Bool, Int, Program
from ..sampling import Sampler, SamplingError, SamplingParams


def _row_graph_program(width: int):
    p = Program()
    x = p.tensor("float32", (1, width))
    out = p.tensor("int32", (1,))
    p.call("aten.argmax.default", x, p.add(Int(-1)), p.add(Bool(False)), out)
    p.input_ids, p.output_ids = [x], [out]
    return p, x


def _expected(row: np.ndarray, chunk: int, k: int):
    """Per chunk, its k largest (value desc, id asc); NaN first (as the kernel orders it)."""
    ids, vals = [], []
    for c0 in range(0, row.size, chunk):
        seg = row[c0:c0 + chunk]
        key = np.where(np.isnan(seg), np.inf, seg)
        order = np.lexsort((np.arange(seg.size), -key, ~np.isnan(seg)))[:k]
        ids.append(c0 + order)
        vals.append(seg[order])
    return np.concatenate(ids), np.concatenate(vals)


async def topk_cases(backend) -> dict:
    rng = np.random.default_rng(5)
    rows = {
        "vocab": rng.standard_normal(49152).astype(np.float32),
        # not a multiple of the chunk; many ties (rounded) and -inf entries
        "ties": np.where(rng.random(5000) < 0.1, -np.inf, np.round(rng.standard_normal(5000))).astype(np.float32),
        "short": rng.standard_normal(37).astype(np.float32),  # fewer than K in the only chunk
    }
    checked = {}
    for name, row in rows.items():
        prog, x = _row_graph_program(row.size)
        graph = await Graph.build(prog, backend)
        try:
            await graph.step([row.reshape(1, -1)])
            topk = TopKCandidates(graph, x)
            ids, vals = await topk.read()
            want_ids, want_vals = _expected(row, 4 * topk.wg, topk.k)
            assert np.array_equal(ids, want_ids), f"{name}: candidate ids differ"
            assert np.array_equal(vals.view(np.uint32), want_vals.view(np.uint32)), f"{name}: values differ"
            # Sampling from the candidates draws exactly what sampling from the row draws.
            for params in (SamplingParams(temperature=0.7, top_k=40, top_p=0.9),
                           SamplingParams(temperature=1.3, top_k=min(64, row.size), min_p=0.05),
                           SamplingParams(temperature=0.5, top_k=1 + int(row.size > 40))):
                a, b = Sampler(params, seed=3), Sampler(params, seed=3)
                got = [a.sample_candidates(ids, vals) for _ in range(200)]
                ref = [b.sample(row) for _ in range(200)]
                assert got == ref, f"{name} {params}: candidate sampling differs from whole-row sampling"
            checked[name] = int(ids.size)
            # A NaN logit is always a candidate, so the host's check still sees it.
            bad = row.copy()
            bad[row.size // 2] = np.nan
            await graph.step([bad.reshape(1, -1)])
            ids, vals = await topk.read()
            try:
                Sampler(SamplingParams(temperature=0.7, top_k=40)).sample_candidates(ids, vals)
            except SamplingError:
                pass
            else:
                raise AssertionError(f"{name}: a NaN logit was not reported")
        finally:
            graph.destroy()
    return checked
