"""The same cases as test_rope_symint_ops.py, inside Pyodide on the browser backend."""
import pytest
from pytest_pyodide import run_in_pyodide

from py_engine.testing.rope_symint_cases import CASES, CHECKS, ERROR_CASES


@pytest.mark.parametrize("name", sorted(CASES))
@run_in_pyodide
async def test_case_in_browser(selenium, name):
    from py_engine.testing.harness import run_case
    from py_engine.testing.rope_symint_cases import CASES
    from py_engine.testing.shared_backend import shared_backend

    result = await run_case(await shared_backend(), CASES[name](), name)
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
@run_in_pyodide
async def test_error_case_in_browser(selenium, name):
    from py_engine.testing.harness import run_error_case
    from py_engine.testing.rope_symint_cases import ERROR_CASES
    from py_engine.testing.shared_backend import shared_backend

    await run_error_case(await shared_backend(), ERROR_CASES[name](), name)


@pytest.mark.parametrize("name", sorted(CHECKS))
@run_in_pyodide
async def test_check_in_browser(selenium, name):
    from py_engine.testing.rope_symint_cases import CHECKS
    from py_engine.testing.shared_backend import shared_backend

    await CHECKS[name](await shared_backend())
