"""The GEMV kernels in both of their shapes: each adapter gets one (CPU Vulkan: whole rows per
thread; GPUs: 16 lanes per row), so both run here whatever this machine's adapter is."""
import asyncio

import pytest

from py_engine.ops import fused_linear, quant_kernels
from py_engine.testing import fusion_cases, quant_cases
from py_engine.testing.harness import run_case

GEMV_CASES = sorted(n for n in quant_cases.CASES if "gguf" in n or "q4gsw" in n or "qcs4w" in n)
FUSED_CASES = sorted(fusion_cases.CASES)


@pytest.fixture(params=["cpu", "gpu"])
def shape(request, monkeypatch):
    chosen = quant_kernels.CPU_GEMV if request.param == "cpu" else quant_kernels.GPU_GEMV
    monkeypatch.setattr(quant_kernels, "gemv_shape", lambda backend: chosen)
    monkeypatch.setattr(fused_linear, "gemv_shape", lambda backend: chosen)
    return chosen


@pytest.mark.parametrize("name", GEMV_CASES + FUSED_CASES)
def test_case_in_both_gemv_shapes(native_backend, shape, name):
    cases = quant_cases.CASES if name in quant_cases.CASES else fusion_cases.CASES
    asyncio.run(run_case(native_backend, cases[name](), f"{name} ({shape})"))
