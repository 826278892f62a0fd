"""The only code that touches WebGPU: one small interface, two implementations.

`browser.py` drives `navigator.gpu` through pyodide.ffi; `native.py` drives wgpu-py.
"""
from .base import Buffer, GpuBackend, GpuDeviceLost, GpuError, Limits

__all__ = ["Buffer", "GpuBackend", "GpuDeviceLost", "GpuError", "Limits", "create_backend"]


async def create_backend(**options) -> GpuBackend:
    """The backend for where we run: the browser's WebGPU in Pyodide, wgpu-py elsewhere."""
    import sys

    if sys.platform == "emscripten":
        from .browser import BrowserBackend

        return await BrowserBackend.create(**options)
    from .native import NativeBackend

    return await NativeBackend.create(**options)
