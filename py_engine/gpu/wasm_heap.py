"""Bytes between Python's WebAssembly memory and JS, at any address (browser backend only).

Pyodide 0.27 hands buffer addresses to JS as signed 32-bit integers, so for memory past 2 GiB,
where a model of a billion parameters puts its weights, `PyProxy.getBuffer` throws,
`to_js(memoryview)` silently copies other bytes (a slice counted from the heap's end) and
`JsProxy.to_bytes` throws; and a JsProxy of a typed array or ArrayBuffer that Pyodide allocates
up there fails to be made ("Unknown typed array type": its format is written to a signed address). Here Python takes addresses as unsigned
integers, JS reads and writes the module's HEAPU8 itself, and typed arrays cross only inside
plain JS objects (tests/test_wasm_heap_browser.py)."""
from __future__ import annotations

import ctypes

import numpy as np

_JS = """
(module) => ({
  writeBuffer(queue, handle, offset, addr, n) { queue.writeBuffer(handle, offset, module.HEAPU8.buffer, addr, n); },
  memoryBytes() { return module.HEAPU8.length; },
  boxLength(box) { return box.bytes.byteLength; },
  copyIn(addr, box, start, n) {
    const s = box.bytes;
    const u8 = s instanceof ArrayBuffer ? new Uint8Array(s) : new Uint8Array(s.buffer, s.byteOffset, s.byteLength);
    module.HEAPU8.set(u8.subarray(start, start + n), addr);
  },
  readMapped(handle, offset, n, addr) { module.HEAPU8.set(new Uint8Array(handle.getMappedRange(offset, n)), addr); },
  int32Copy(addr, n) { return { rows: new Int32Array(module.HEAPU8.buffer.slice(addr, addr + 4 * n)) }; },
})
"""


def address(mv: memoryview) -> int:
    """The unsigned address of a C-contiguous buffer's first byte (it must not be empty)."""
    try:  # writable buffers: the fast way (0.6 us in Pyodide, against 2.4 through numpy)
        return ctypes.addressof(ctypes.c_char.from_buffer(mv))
    except TypeError:  # read-only (bytes)
        return np.frombuffer(mv, np.uint8).ctypes.data & 0xFFFFFFFF


class WasmHeap:
    """The JS side, made once per backend (run_js needs Pyodide)."""

    def __init__(self):
        import pyodide_js  # type: ignore[import-not-found]
        from pyodide.code import run_js  # type: ignore[import-not-found]

        self._js = run_js(_JS)(pyodide_js._module)

    def write_buffer(self, queue, handle, offset: int, mv: memoryview) -> None:
        """queue.writeBuffer of `mv` (non-empty, bytes) straight from WebAssembly memory."""
        self._js.writeBuffer(queue, handle, offset, address(mv), mv.nbytes)

    def memory_bytes(self) -> int:
        """The size of Pyodide's WebAssembly memory now (it only grows)."""
        return int(self._js.memoryBytes())

    def box_length(self, box) -> int:
        return int(self._js.boxLength(box))

    def read_box(self, box, start: int, n: int) -> np.ndarray:
        """A uint8 copy of bytes start .. start + n of box.bytes."""
        out = np.empty(n, np.uint8)
        if out.size:
            self._js.copyIn(address(memoryview(out)), box, start, n)
        return out

    def read_mapped(self, handle, offset: int, nbytes: int) -> bytes:
        """The bytes of a mapped GPUBuffer's range (never a JsProxy of the ArrayBuffer: in a
        heap past 2 GiB Chromium's worker refused to make one, "Unknown typed array type")."""
        out = np.empty(nbytes, np.uint8)
        if nbytes:
            self._js.readMapped(handle, offset, nbytes, address(memoryview(out)))
        return out.tobytes()

    def int32_array(self, a: np.ndarray):
        """{rows: Int32Array}, a JS copy of an int32 numpy array (boxed: a JsProxy of the typed
        array itself would be a buffer proxy, which Pyodide fails to make past 2 GiB)."""
        a = np.ascontiguousarray(a, np.int32)
        if not a.size:
            return self._js.int32Copy(0, 0)
        return self._js.int32Copy(address(memoryview(a.reshape(-1)).cast("B")), a.size)


class JsFile:
    """A model file that stays in JS ({bytes} box), read into Python a range at a time: the
    GGUF loader copies its header, then each tensor when the graph uploads it (never the whole
    file, which would take that much of Pyodide's 4 GiB for the whole load). Its length is
    `size`: no __len__, as len() stops at 2^31 - 1 in 32-bit WebAssembly."""

    def __init__(self, box, heap: WasmHeap | None = None):
        self._box, self._heap = box, heap or WasmHeap()
        self.size = self._heap.box_length(box)

    def read(self, start: int, n: int) -> memoryview:
        if start < 0 or n < 0 or start + n > self.size:
            raise ValueError(f"bytes {start}..{start + n} are past the file's {self.size}")
        return memoryview(self._heap.read_box(self._box, start, n))


__all__ = ["WasmHeap", "JsFile", "address"]
