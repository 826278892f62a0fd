"""The GEMV kernels in each of their shapes: each adapter gets some (CPU Vulkan: whole rows per
thread; GPUs: 32 lanes per row, or 4 lanes x 4 rows for a vocabulary head), so all of them run
here whatever this machine's adapter is."""
import asyncio

import pytest

from py_engine.ops import fused_linear, quant_kernels
from py_engine.testing import fusion_cases, quant_cases
from py_engine.testing.harness import run_case

GEMV_CASES = sorted(n for n in quant_cases.CASES if "gguf" in n or "q4gsw" in n or "qcs4w" in n)
FUSED_CASES = sorted(fusion_cases.CASES)


SHAPES = {"cpu": quant_kernels.CPU_GEMV, "gpu": quant_kernels.GPU_GEMV,
          "gpu_narrow": quant_kernels.GPU_GEMV_NARROW, "gpu_wide": quant_kernels.GPU_GEMV_WIDE}
# The fused linears take the shape without a row count: CPU_GEMV or GPU_GEMV only.
FUSED_SHAPES = ("cpu", "gpu")


def _use(monkeypatch, chosen):
    monkeypatch.setattr(quant_kernels, "gemv_shape", lambda backend, rows=0: chosen)
    monkeypatch.setattr(fused_linear, "gemv_shape", lambda backend, rows=0: chosen)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("name", GEMV_CASES)
def test_gemv_case_in_every_shape(native_backend, monkeypatch, shape, name):
    _use(monkeypatch, SHAPES[shape])
    asyncio.run(run_case(native_backend, quant_cases.CASES[name](), f"{name} ({shape})"))


@pytest.mark.parametrize("shape", FUSED_SHAPES)
@pytest.mark.parametrize("name", FUSED_CASES)
def test_fused_case_in_both_shapes(native_backend, monkeypatch, shape, name):
    _use(monkeypatch, SHAPES[shape])
    asyncio.run(run_case(native_backend, fusion_cases.CASES[name](), f"{name} ({shape})"))
