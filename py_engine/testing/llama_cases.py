"""Engine vs numpy reference for whole llama models, step by step (shared by CPython and browser)."""
from __future__ import annotations

import numpy as np

from ..generate import LlamaRunner
from ..graph import Graph
from ..loaders.gguf import read_gguf
from ..models.llama import build_llama_program
from ..reference.llama import LlamaReference


async def compare_with_reference(backend, gguf_bytes, prompt_ids, *, n_decode: int = 16, atol: float = 1e-3,
                                 context: int = 128, max_prefill: int = 32, reference=None) -> dict:
    """Prefill `prompt_ids`, then `n_decode` greedy steps, on the GPU and in numpy.

    After every step the last-row logits must agree within `atol` and both sides must pick
    the same greedy id. Returns {'max_err', 'ids', 'prefill_err'}.
    """
    gguf = read_gguf(gguf_bytes)
    lp = build_llama_program(gguf, context=context, max_prefill=max_prefill)
    ref = reference or LlamaReference.from_gguf(gguf, context=context)
    ref.reset()
    graph = await Graph.build(lp.program, backend)
    try:
        runner = LlamaRunner(graph, lp)
        got = await runner.feed(prompt_ids)
        want = ref.forward(prompt_ids)[-1]
        errs = [_check(got, want, atol, "prefill")]
        # The GPU's argmax agrees with the logits it produced.
        if int((await graph.read(lp.next_token_id))[0]) != int(np.argmax(got)):
            raise AssertionError("GPU argmax differs from the argmax of the GPU logits")
        ids = []
        for step in range(n_decode):
            tid, ref_tid = int(np.argmax(got)), int(np.argmax(want))
            if tid != ref_tid:
                raise AssertionError(f"decode step {step}: engine picked {tid}, reference {ref_tid} "
                                     f"(logits {got[tid]:.5f} vs {got[ref_tid]:.5f})")
            ids.append(tid)
            got = await runner.feed([tid])
            want = ref.forward([tid])[-1]
            errs.append(_check(got, want, atol, f"decode step {step}"))
        return {"max_err": max(errs), "prefill_err": errs[0], "ids": ids}
    finally:
        graph.destroy()


def _check(got, want, atol, where) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{where}: logits shape {got.shape}, expected {want.shape}")
    err = float(np.abs(got - want).max())
    if not err <= atol:
        raise AssertionError(f"{where}: max logit error {err:.3g} exceeds {atol}")
    return err
