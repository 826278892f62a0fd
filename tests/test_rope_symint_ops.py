"""apply_rotary_emb, the SymInt ops, slice_copy and select_copy in CPython on the native (wgpu) backend."""
import asyncio

import pytest

from py_engine.testing.rope_symint_cases import CASES, CHECKS, ERROR_CASES
from py_engine.testing.harness import run_case, run_error_case


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(native_backend, name):
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_error_case(native_backend, name):
    asyncio.run(run_error_case(native_backend, ERROR_CASES[name](), name))


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check(native_backend, name):
    asyncio.run(CHECKS[name](native_backend))
