"""Bytes between Python and WebGPU once Pyodide's memory is past 2 GiB, where a model of a billion
parameters puts its weights (py_engine/gpu/wasm_heap.py). This module's page fills its heap
first, so it has a page of its own (the fixtures are module-scoped)."""
import pytest
from pytest_pyodide import run_in_pyodide

pytestmark = pytest.mark.timeout(600)


@run_in_pyodide
async def test_buffers_and_ops_past_2_gib(selenium):
    import numpy as np
    from pyodide.code import run_js
    from pyodide.ffi import to_js

    from py_engine.gpu.wasm_heap import address
    from py_engine.testing.foundation_cases import CASES
    from py_engine.testing.harness import run_case
    from py_engine.testing.shared_backend import shared_backend
    from py_engine.web_worker import _as_file

    backend = await shared_backend()
    high = 1 << 31
    filler = []
    while address(memoryview(np.empty(1 << 20, np.uint8))) < high:  # fill until new arrays land past 2 GiB
        assert len(filler) < 12, "the heap did not grow past 2 GiB"
        filler.append(np.empty(256 << 20, np.uint8))
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 1 << 20, dtype=np.uint8)
    assert address(memoryview(data)) >= high

    # The hazard itself: Pyodide's own conversion fails or copies other bytes from there (if this
    # fails, Pyodide was fixed and wasm_heap's detour could go).
    def pyodide_copies_right() -> bool:
        try:
            got = run_js("(t) => Array.from(t)")(to_js(memoryview(data[:64])))
        except Exception:
            return False
        return list(got) == data[:64].tolist()

    assert not pyodide_copies_right(), "to_js copied the right bytes past 2 GiB"

    # Writes (large and small) and reads of buffers, exact.
    buf = backend.create_buffer(data.size, "storage", "high", data)
    assert np.array_equal(np.frombuffer(await backend.read_buffer(buf), np.uint8), data)
    small = rng.integers(0, 256, 64, dtype=np.uint8)
    backend.write_buffer(buf, 4096, small)
    got = np.frombuffer(await backend.read_buffer(buf, 4000, 200), np.uint8)
    assert np.array_equal(got, np.concatenate([data[4000:4096], small, data[4160:4200]]))
    backend.destroy_buffer(buf)

    # Whole ops: graph tables, uniforms, inputs and readbacks all allocated up there now.
    for name in ("chain_dynamic_rows", "add_broadcast", "argmax_vocab_row"):
        result = await run_case(backend, CASES[name](), name)
        assert result["after_destroy"]["buffers"] == 0, (name, result["after_destroy"])

    # The worker's model file stays in JS (JsFile); its ranges are copied up there, exactly.
    box = run_js("(n) => ({ bytes: Uint8Array.from({ length: n }, (_, i) => (i * 7) % 256) })")(3 << 20)
    f = _as_file(box)
    assert f.size == 3 << 20
    want = (np.arange(3 << 20) * 7 % 256).astype(np.uint8)
    got = np.frombuffer(f.read(0, f.size), np.uint8)
    assert address(memoryview(got)) >= high and np.array_equal(got, want)
    assert np.array_equal(np.frombuffer(f.read(12345, 678), np.uint8), want[12345:12345 + 678])
    assert len(f.read(f.size, 0)) == 0
    try:
        f.read(f.size - 1, 2)
    except ValueError as e:
        assert "past the file" in str(e)
    else:
        raise AssertionError("a read past the file's end was not refused")
