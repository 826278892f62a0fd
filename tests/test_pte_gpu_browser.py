"""The .pte fixtures of test_pte_gpu.py inside Pyodide on the browser backend (WebGPU).

The page has no access to tests/fixtures: the host reads each fixture (fixture `pte_fixture`)
and run_in_pyodide pickles the .pte bytes and the npz contents ({key: ndarray}) into the page."""
from pathlib import Path

import pytest
from pytest_pyodide import run_in_pyodide

from py_engine.testing import pte_cases

FIXTURES = Path(__file__).parent / "fixtures" / "pte"


@pytest.fixture
def pte_fixture(name):
    """(name, pte bytes, inputs, expected) of the parametrized fixture `name`."""
    return (name, *pte_cases.load_fixture_files(FIXTURES, name))


@pytest.fixture
def add_mul_sigmoid():
    return pte_cases.load_fixture_files(FIXTURES, "add_mul_sigmoid")


@pytest.fixture
def error_fixtures():
    return {n: (FIXTURES / f"{n}.pte").read_bytes() for n in sorted(pte_cases.ERROR_FIXTURES)}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", pte_cases.FIXTURES)
@run_in_pyodide
async def test_fixture_in_browser(selenium, name, pte_fixture):
    from py_engine.testing import pte_cases
    from py_engine.testing.shared_backend import shared_backend

    fx_name, data, inputs, expected = pte_fixture
    assert fx_name == name
    result = await pte_cases.run_fixture(await shared_backend(), name, data, inputs, expected)
    if name in pte_cases.GREEDY:
        assert len(result["greedy_ids"]) == result["steps"] == 5
    print(result)


@run_in_pyodide
async def test_unknown_ops_in_browser(selenium, add_mul_sigmoid):
    from py_engine.testing import pte_cases
    from py_engine.testing.shared_backend import shared_backend

    msg = await pte_cases.run_unknown_ops_case(await shared_backend(), add_mul_sigmoid[0])
    assert msg.startswith("graph: 2 op(s) not implemented"), msg


@run_in_pyodide
async def test_error_fixtures_in_browser(selenium, error_fixtures):
    from py_engine.testing import pte_cases
    from py_engine.testing.shared_backend import shared_backend

    for name, data in error_fixtures.items():
        await pte_cases.run_error_fixture(await shared_backend(), name, data)


@run_in_pyodide
async def test_bad_calls_in_browser(selenium, add_mul_sigmoid):
    from py_engine.testing import pte_cases
    from py_engine.testing.shared_backend import shared_backend

    data, inputs, _ = add_mul_sigmoid
    assert len(await pte_cases.run_bad_call_case(await shared_backend(), data, inputs)) == 3


@run_in_pyodide
async def test_run_pte_once_in_browser(selenium, add_mul_sigmoid):
    import json

    from py_engine.pte_runner import run_pte_once
    from py_engine.testing.shared_backend import shared_backend

    info = await run_pte_once(add_mul_sigmoid[0], backend=await shared_backend())
    assert info["outputs"][0]["shape"] == [2, 8] and info["outputs"][0]["finite"]
    json.dumps(info)
