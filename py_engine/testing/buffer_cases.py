"""Buffers created with their data (weights, constants): the same bytes come back, zero padded to
a multiple of 4, on both backends; data longer than the buffer is refused."""
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
    before = backend.memory_stats()["buffers"]
    try:
        backend.create_buffer(8, "storage", "too_small", bytes(12))
    except GpuError as e:
        assert "12 bytes of data for 8 bytes" in str(e), e
    else:
        raise AssertionError("data longer than the buffer was accepted")
    assert backend.memory_stats()["buffers"] == before
    return sizes
