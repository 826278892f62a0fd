"""The GPU top-k candidate and sampler cases inside Pyodide (see tests/test_topk.py)."""
from pytest_pyodide import run_in_pyodide


@run_in_pyodide
async def test_topk_candidates_and_gpu_sampler_in_browser(selenium):
    from py_engine.testing.shared_backend import shared_backend
    from py_engine.testing.topk_cases import topk_cases

    got = await topk_cases(await shared_backend())
    assert got == {"vocab": (48 * 64, True), "ties": (5 * 64, True), "short": (37, True)}, got
