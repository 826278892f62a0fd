"""GPU top-k candidates and the GPU sampler (py_engine/ops/topk.py) against numpy (shared by
CPython and browser tests). Exact: candidate ids and values, the candidates' distribution equal to
the whole row's, and the token the GPU draws for each uniform number equal to numpy's draw (the
numbers are chosen at least 1e-4 from every cumulative boundary, since the GPU sums in float32)."""
from __future__ import annotations

import numpy as np

from ..graph import Graph
from ..ops.topk import NO_TOKEN, TopKSampler
from ..program import Bool, Int, Program
from ..sampling import SamplingParams, candidate_probs, candidate_probs_from, draw


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


MARGIN = 1e-4  # how far each uniform number stays from a cumulative boundary


def _uniforms(probs: np.ndarray, rng) -> list:
    """Midpoints of a few of the draw's intervals, and random numbers away from every boundary."""
    c = np.concatenate([[0.0], np.cumsum(probs) / probs.sum()])
    mids = [(c[i] + c[i + 1]) / 2 for i in np.unique(np.linspace(0, probs.size - 1, 5).astype(int))
            if c[i + 1] - c[i] > 2 * MARGIN]
    rand = [u for u in rng.random(8) if np.abs(c - u).min() > MARGIN]
    return mids + rand[:3]


async def _run(graph, rows) -> None:
    graph.uniforms.flush()
    graph.backend.run(graph.pipelines.pipelines, graph.bind_groups, rows)


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
            sampler = TopKSampler(graph, x)
            top = sampler.candidates
            await _run(graph, top.row)
            raw = np.frombuffer(await backend.read_buffer(top.out), np.uint32).reshape(-1, 2)
            keep = raw[:, 1] < top.width  # chunk padding past the row end
            ids, vals = raw[keep, 1].astype(np.int64), raw[keep, 0].view(np.float32)
            want_ids, want_vals = _expected(row, 4 * top.wg, top.k)
            assert np.array_equal(ids, want_ids), f"{name}: candidate ids differ"
            assert np.array_equal(vals.view(np.uint32), want_vals.view(np.uint32)), f"{name}: values differ"
            draws = 0
            for params in (SamplingParams(temperature=0.7, top_k=40, top_p=0.9),
                           SamplingParams(temperature=1.3, top_k=64, min_p=0.05),
                           SamplingParams(temperature=0.5, top_k=2),
                           SamplingParams(temperature=2.0, top_k=64, top_p=0.5, min_p=0.1)):
                # The candidates give the whole row's distribution ...
                c_ids, c_probs = candidate_probs_from(ids, vals, params)
                r_ids, r_probs = candidate_probs(row, params)
                assert np.array_equal(c_ids, r_ids) and np.allclose(c_probs, r_probs, rtol=1e-12), \
                    f"{name} {params}: candidates' distribution differs from the row's"
                # ... and the GPU draws from it what numpy draws, for each uniform number.
                for u in _uniforms(c_probs, rng):
                    sampler.set_draw(params, u)
                    await _run(graph, sampler.rows[1:])  # the sample dispatch alone
                    got = int(np.frombuffer(await backend.read_buffer(sampler.token, 0, 4), np.int32)[0])
                    want = draw(c_ids, c_probs, u)
                    assert got == want, f"{name} {params} u={u:.6f}: GPU drew {got}, numpy {want}"
                    draws += 1
            checked[name] = (int(ids.size), draws > 20)
            # NaN anywhere, +inf, or no finite logit: the sampler writes NO_TOKEN.
            params = SamplingParams(temperature=0.7, top_k=40)
            for bad_name, value in (("NaN", np.nan), ("+inf", np.inf), ("all -inf", None)):
                bad = np.full_like(row, -np.inf) if value is None else row.copy()
                if value is not None:
                    bad[row.size // 2] = value
                await graph.step([bad.reshape(1, -1)])
                sampler.set_draw(params, 0.5)
                await _run(graph, sampler.rows)
                got = int(np.frombuffer(await backend.read_buffer(sampler.token, 0, 4), np.int32)[0])
                assert got == NO_TOKEN, f"{name}, {bad_name}: the GPU sampler drew {got}"
        finally:
            graph.destroy()
    return checked
