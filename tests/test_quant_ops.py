"""Quantized linears and embeddings (q4gsw, qcs4w, GGUF blocks, float) in CPython on the native backend."""
import asyncio

import pytest

from py_engine.testing.quant_cases import CASES, ERROR_CASES
from py_engine.testing.harness import run_case, run_error_case


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(native_backend, name):
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(n for n in CASES if not n.startswith("embedding")))
def test_case_tiled_prefetch(native_backend, monkeypatch, name):
    """The linears again with the tiled kernel as GPUs run it (`PF`: the next K step loaded while
    multiplying); this CPU adapter loads each step just before it by default."""
    import py_engine.ops.quant_kernels as qk

    monkeypatch.setattr(qk, "TILED_PREFETCH_ON_CPU", True)
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_error_case(native_backend, name):
    asyncio.run(run_error_case(native_backend, ERROR_CASES[name](), name))


def test_tied_weight_is_repacked_once_and_not_uploaded_raw(native_backend):
    """A weight read by an embedding and a linear: one repacked buffer, no raw copy on the GPU."""
    from py_engine.graph import Graph
    from py_engine.reference import gguf_quant as gq
    from py_engine.testing.quant_cases import tied_program

    p, iw, _ = tied_program(gq.GGML_Q4_1, 300, 64, 7)
    g = asyncio.run(Graph.build(p, native_backend))
    try:
        assert g.tensors[iw].buffer is None
        assert len(g._repacked) == 1
        (buf,) = g._repacked.values()
        # quants 300 x 2 blocks x 16 bytes + d and m as f32: 300 x 2 x 24 bytes.
        assert buf.nbytes == 300 * 2 * 24
    finally:
        g.destroy()
