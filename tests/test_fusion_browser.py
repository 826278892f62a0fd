"""The fusion cases of test_fusion.py inside Pyodide on the browser backend, and the whole
tiny llama fused vs unfused and against the numpy reference."""
import pytest
from pytest_pyodide import run_in_pyodide

from py_engine.loaders.gguf import GGML_Q4_1
from py_engine.testing.fusion_cases import CASES, ERROR_CASES
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf

UNIFORM = {k: GGML_Q4_1 for k in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")}


@pytest.fixture(scope="module")
def tiny_uniform():
    return make_tiny_llama_gguf(seed=0, weight_types=UNIFORM)


@pytest.mark.parametrize("name", sorted(CASES))
@run_in_pyodide
async def test_case_in_browser(selenium, name):
    from py_engine.testing.fusion_cases import CASES
    from py_engine.testing.harness import run_case
    from py_engine.testing.shared_backend import shared_backend

    result = await run_case(await shared_backend(), CASES[name](), name)
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("rope_kv")))
@run_in_pyodide
async def test_case_rope_folded_into_decode_attention_in_browser(selenium, name):
    from py_engine.testing.fusion_cases import run_rope_folded_case
    from py_engine.testing.shared_backend import shared_backend

    live = await run_rope_folded_case(await shared_backend(), name)
    assert any(s == 1 for s, _, _ in live)


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
@run_in_pyodide
async def test_error_case_in_browser(selenium, name):
    from py_engine.testing.fusion_cases import ERROR_CASES
    from py_engine.testing.harness import run_error_case
    from py_engine.testing.shared_backend import shared_backend

    await run_error_case(await shared_backend(), ERROR_CASES[name](), name)


@run_in_pyodide
async def test_tiny_llama_fused_in_browser(selenium, tiny_uniform):
    from py_engine.testing.fusion_cases import compare_fused_llama
    from py_engine.testing.llama_cases import compare_with_reference
    from py_engine.testing.shared_backend import shared_backend

    backend = await shared_backend()
    r = await compare_fused_llama(backend, tiny_uniform, list(range(3, 14)), n_decode=4)
    assert r["live_rows"][1] < r["live_rows"][0]
    ref = await compare_with_reference(backend, tiny_uniform, [1, 40, 41, 42, 43, 44, 45], n_decode=8)
    assert len(ref["ids"]) == 8


@run_in_pyodide
async def test_tiny_llama_fused_fast_decode_in_browser(selenium, tiny_uniform):
    # As GPUs decode: attention on sdpa_decode.wgsl, with the RoPE folded in when fused.
    from py_engine.ops import sdpa
    from py_engine.testing.fusion_cases import compare_fused_llama
    from py_engine.testing.shared_backend import shared_backend

    saved, sdpa.FAST_DECODE_ON_CPU = sdpa.FAST_DECODE_ON_CPU, True
    try:
        r = await compare_fused_llama(await shared_backend(), tiny_uniform, list(range(3, 14)), n_decode=4)
    finally:
        sdpa.FAST_DECODE_ON_CPU = saved
    assert r["live_rows"][1] < r["live_rows"][0]


@run_in_pyodide
async def test_tiny_llama_gpu_gemv_shapes_with_subgroups_in_browser(selenium, tiny_uniform):
    # As GPUs decode: 32 lanes per row whose sums subgroup shuffles finish (Chrome needs
    # `enable subgroups;`, which wgpu's naga rejects, so only this test compiles that text).
    from py_engine.ops import quant_kernels, sdpa
    from py_engine.testing.fusion_cases import compare_fused_llama
    from py_engine.testing.llama_cases import compare_with_reference
    from py_engine.testing.shared_backend import shared_backend

    backend = await shared_backend()
    assert backend.subgroup_min_size >= 2, f"this browser's adapter offers no subgroups ({backend.adapter_info})"
    saved = (quant_kernels.gemv_shape, sdpa.FAST_DECODE_ON_CPU)

    def gpu_shape(backend, rows=0):
        return quant_kernels.GPU_GEMV_NARROW if rows else quant_kernels.GPU_GEMV

    quant_kernels.gemv_shape = gpu_shape  # the fused linears' shape too
    sdpa.FAST_DECODE_ON_CPU = True
    try:
        r = await compare_fused_llama(backend, tiny_uniform, list(range(3, 14)), n_decode=4)
        ref = await compare_with_reference(backend, tiny_uniform, [1, 40, 41, 42, 43, 44, 45], n_decode=4)
    finally:
        quant_kernels.gemv_shape, sdpa.FAST_DECODE_ON_CPU = saved
    assert r["live_rows"][1] < r["live_rows"][0]
    assert len(ref["ids"]) == 4
