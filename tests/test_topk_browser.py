"""The GPU top-k candidate cases inside Pyodide (see tests/test_topk.py)."""
from pytest_pyodide import run_in_pyodide


@run_in_pyodide
async def test_topk_candidates_and_sampling_in_browser(selenium):
    from py_engine.testing.shared_backend import shared_backend
    from py_engine.testing.topk_cases import topk_cases

    got = await topk_cases(await shared_backend())
    assert got == {"vocab": 48 * 64, "ties": 5 * 64, "short": 37}, got
