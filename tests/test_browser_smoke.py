"""Smoke test of the in-browser harness: offline Pyodide, numpy, the engine wheel, WebGPU."""
from pathlib import Path

import pytest
from pytest_pyodide import run_in_pyodide

SHADERS = Path(__file__).resolve().parent.parent / "shaders"


@pytest.fixture
def tree_shader_names():
    return sorted(p.name for p in SHADERS.glob("*.wgsl"))


@run_in_pyodide
def test_pyodide_runs_offline_from_the_local_server(selenium):
    import sys

    from js import location, performance

    assert sys.platform == "emscripten"
    assert sys.version_info[:2] == (3, 12)
    origin = location.origin
    assert origin.startswith("http://127.0.0.1:")
    # Every file the page fetched (pyodide.asm.wasm, stdlib, wheels) came from our server.
    urls = [entry.name for entry in performance.getEntriesByType("resource")]
    assert any(u.endswith("pyodide.asm.wasm") for u in urls), urls
    foreign = [u for u in urls if not u.startswith(origin)]
    assert not foreign, f"fetched from elsewhere: {foreign}"


@run_in_pyodide
def test_numpy_imports_and_computes(selenium):
    import numpy as np

    assert np.__version__ == "2.0.2"
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert float((a @ a.T)[2, 2]) == 8 * 8 + 9 * 9 + 10 * 10 + 11 * 11


@run_in_pyodide
def test_engine_wheel_is_installed_with_its_shaders(selenium, tree_shader_names):
    from importlib.resources import files

    import py_engine.program

    # Imported from the installed wheel, not from a copy of the source tree.
    assert "site-packages" in py_engine.program.__file__, py_engine.program.__file__
    shipped = sorted(p.name for p in files("py_engine.shaders").iterdir() if p.name.endswith(".wgsl"))
    assert shipped == tree_shader_names


@run_in_pyodide
async def test_webgpu_adapter_and_device(selenium):
    from js import navigator

    assert navigator.gpu, "navigator.gpu is missing: WebGPU is not enabled in this browser"
    adapter = await navigator.gpu.requestAdapter()
    assert adapter is not None, "navigator.gpu.requestAdapter() returned null"
    info = adapter.info
    print(f"adapter: vendor={info.vendor!r} architecture={info.architecture!r} "
          f"description={info.description!r} features={sorted(adapter.features.keys())}")
    assert info.vendor or info.architecture
    device = await adapter.requestDevice()
    try:
        assert device.limits.maxComputeWorkgroupsPerDimension >= 65535
        assert device.limits.maxStorageBufferBindingSize >= 128 << 20
    finally:
        device.destroy()
