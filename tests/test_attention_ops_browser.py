"""The same attention cases as test_attention_ops.py, inside Pyodide on the browser backend."""
import pytest
from pytest_pyodide import run_in_pyodide

from py_engine.testing.attention_cases import CASES, ERROR_CASES


@pytest.mark.parametrize("name", sorted(CASES))
@run_in_pyodide
async def test_case_in_browser(selenium, name):
    from py_engine.testing.attention_cases import CASES
    from py_engine.testing.harness import run_case
    from py_engine.testing.shared_backend import shared_backend

    result = await run_case(await shared_backend(), CASES[name](), name)
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
@run_in_pyodide
async def test_error_case_in_browser(selenium, name):
    from py_engine.testing.attention_cases import ERROR_CASES
    from py_engine.testing.harness import run_error_case
    from py_engine.testing.shared_backend import shared_backend

    await run_error_case(await shared_backend(), ERROR_CASES[name](), name)


@run_in_pyodide
async def test_prefill_cases_with_gpu_key_lanes_in_browser(selenium):
    # sdpa_prefill.wgsl as GPUs run it (several key lanes per row, merged); SwiftShader, a CPU
    # adapter, runs one thread per row by default.
    import py_engine.ops.sdpa as sdpa
    from py_engine.testing.attention_cases import CASES
    from py_engine.testing.harness import run_case
    from py_engine.testing.shared_backend import shared_backend

    backend = await shared_backend()
    saved = sdpa.PREFILL_CPU
    sdpa.PREFILL_CPU = sdpa.PREFILL_GPU
    try:
        for name in ("sdpa_prefill_blocks_nonzero_pos", "sdpa_prefill_mha_blocks", "sdpa_replay_big",
                     "sdpa_split_kv_small_prefill", "sdpa_explicit_scale_d4"):
            result = await run_case(backend, CASES[name](), name)
            assert result["after_destroy"]["buffers"] == 0, (name, result["after_destroy"])
    finally:
        sdpa.PREFILL_CPU = saved
