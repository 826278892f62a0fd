"""Buffers created with their data (weights, constants): the same bytes come back, zero padded to
a multiple of 4, on both backends, as do writes at an offset; data longer than the buffer is
refused."""
from __future__ import annotations

import numpy as np

from ..gpu.base import GpuError


async def buffer_data_cases(backend) -> dict:
    rng = np.random.default_rng(3)
    sizes = {}
    for n, size in ((7, 7), (16, 64), (1 << 20, (1 << 20) + 12), (0, 16)):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        buf = backend.create_buffer(size, "storage", f"with{n}", data)
        try:
            got = np.frombuffer(await backend.read_buffer(buf), np.uint8)
        finally:
            backend.destroy_buffer(buf)
        want = np.zeros(buf.nbytes, np.uint8)
        want[:n] = data
        assert got.shape == want.shape and np.array_equal(got, want), f"{n} bytes in a {size}-byte buffer"
        sizes[n] = buf.nbytes
    # Writes at an offset, small (a step's uniforms) and large (weights: the browser passes a
    # view of the Python buffer instead of a JS copy): the bytes around them stay as they were.
    buf = backend.create_buffer(1 << 18, "storage", "offset_writes", bytes(1 << 18))
    try:
        want = np.zeros(1 << 18, np.uint8)
        for offset, n in ((4, 12), (4096, 100_000)):
            data = rng.integers(0, 256, n, dtype=np.uint8)
            backend.write_buffer(buf, offset, data)
            want[offset: offset + n] = data
        got = np.frombuffer(await backend.read_buffer(buf), np.uint8)
        assert np.array_equal(got, want), "writes at an offset"
    finally:
        backend.destroy_buffer(buf)
    before = backend.memory_stats()["buffers"]
    try:
        backend.create_buffer(8, "storage", "too_small", bytes(12))
    except GpuError as e:
        assert "12 bytes of data for 8 bytes" in str(e), e
    else:
        raise AssertionError("data longer than the buffer was accepted")
    assert backend.memory_stats()["buffers"] == before
    return sizes
