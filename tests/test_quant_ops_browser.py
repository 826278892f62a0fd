"""The same quantized linear / embedding cases as test_quant_ops.py, inside Pyodide on the browser backend."""
import pytest
from pytest_pyodide import run_in_pyodide

from py_engine.testing.quant_cases import CASES, ERROR_CASES


@pytest.mark.parametrize("name", sorted(CASES))
@run_in_pyodide
async def test_case_in_browser(selenium, name):
    from py_engine.testing.quant_cases import CASES
    from py_engine.testing.harness import run_case
    from py_engine.testing.shared_backend import shared_backend

    result = await run_case(await shared_backend(), CASES[name](), name)
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
@run_in_pyodide
async def test_error_case_in_browser(selenium, name):
    from py_engine.testing.quant_cases import ERROR_CASES
    from py_engine.testing.harness import run_error_case
    from py_engine.testing.shared_backend import shared_backend

    await run_error_case(await shared_backend(), ERROR_CASES[name](), name)


@run_in_pyodide
async def test_tiled_prefetch_cases_in_browser(selenium):
    # The tiled kernels as GPUs run them (`PF`: next K step loaded while multiplying), compiled by
    # the browser; SwiftShader, a CPU adapter, loads each step just before it by default.
    import py_engine.ops.quant_kernels as qk
    from py_engine.testing.harness import run_case
    from py_engine.testing.quant_cases import CASES
    from py_engine.testing.shared_backend import shared_backend

    backend = await shared_backend()
    saved = qk.TILED_PREFETCH_ON_CPU
    qk.TILED_PREFETCH_ON_CPU = True
    try:
        for name in ("linear_gguf_q4_1", "linear_gguf_q8_0", "linear_gguf_f16_odd_k", "q4gsw_m70_g128_bias",
                     "qcs4w_m17_odd_k"):
            result = await run_case(backend, CASES[name](), name)
            assert result["after_destroy"]["buffers"] == 0, (name, result["after_destroy"])
    finally:
        qk.TILED_PREFETCH_ON_CPU = saved
