"""Quantized linears and embeddings (q4gsw, qcs4w, GGUF blocks, float) in CPython on the native backend."""
import asyncio

import pytest

from py_engine.testing.quant_cases import CASES, ERROR_CASES
from py_engine.testing.harness import run_case, run_error_case


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(native_backend, name):
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_error_case(native_backend, name):
    asyncio.run(run_error_case(native_backend, ERROR_CASES[name](), name))
