"""The GPU interface the graph is written against, with memory accounting shared by both backends.

A backend creates buffers, pipelines (WGSL + override constants) and bind groups, runs a
dispatch table in one compute pass, and reads buffers back. Reading back is async because
it is in the browser (mapAsync); everything else is synchronous and queue-ordered.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


class GpuError(RuntimeError):
    """A WebGPU validation, out-of-memory or internal error, raised as Python."""


class GpuDeviceLost(GpuError):
    """The device is gone; nothing more can run on it. Reload or create a new backend."""


@dataclass(frozen=True)
class Limits:
    max_workgroups_per_dim: int = 65535
    max_invocations_per_workgroup: int = 256
    max_workgroup_size_x: int = 256
    max_storage_binding_size: int = 128 << 20
    max_buffer_size: int = 256 << 20
    max_uniform_binding_size: int = 65536
    min_uniform_offset_alignment: int = 256
    min_storage_offset_alignment: int = 256
    max_storage_buffers_per_stage: int = 8
    max_workgroup_storage_size: int = 16384

    @classmethod
    def from_mapping(cls, get) -> "Limits":
        """Build from a lookup of WebGPU limit names (camelCase) that returns None when absent."""
        names = {
            "max_workgroups_per_dim": "maxComputeWorkgroupsPerDimension",
            "max_invocations_per_workgroup": "maxComputeInvocationsPerWorkgroup",
            "max_workgroup_size_x": "maxComputeWorkgroupSizeX",
            "max_storage_binding_size": "maxStorageBufferBindingSize",
            "max_buffer_size": "maxBufferSize",
            "max_uniform_binding_size": "maxUniformBufferBindingSize",
            "min_uniform_offset_alignment": "minUniformBufferOffsetAlignment",
            "min_storage_offset_alignment": "minStorageBufferOffsetAlignment",
            "max_storage_buffers_per_stage": "maxStorageBuffersPerShaderStage",
            "max_workgroup_storage_size": "maxComputeWorkgroupStorageSize",
        }
        kw = {}
        for field, js_name in names.items():
            v = get(js_name)
            if v is not None:
                kw[field] = int(v)
        return cls(**kw)


# WebGPU usage bits (the same numbers in the browser and in wgpu-py).
MAP_READ, COPY_SRC, COPY_DST, UNIFORM, STORAGE = 0x1, 0x4, 0x8, 0x40, 0x80
USAGES = {
    "storage": STORAGE | COPY_SRC | COPY_DST,
    "uniform": UNIFORM | COPY_DST,
    "readback": MAP_READ | COPY_DST,
}


class Buffer:
    """A GPU buffer with its size and kind; `handle` is the backend's object."""

    __slots__ = ("handle", "nbytes", "kind", "label", "destroyed")

    def __init__(self, handle, nbytes: int, kind: str, label: str):
        self.handle = handle
        self.nbytes = nbytes
        self.kind = kind
        self.label = label
        self.destroyed = False

    def __repr__(self) -> str:
        return f"Buffer({self.label!r}, {self.nbytes} bytes, {self.kind})"


def as_bytes(data) -> memoryview:
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
    return memoryview(data).cast("B")


class GpuBackend:
    """Common part: validation of requests, memory accounting, free-exactly-once."""

    name = "abstract"
    # Whether WGSL using subgroup builtins must say `enable subgroups;` (Chrome's Tint requires
    # it; wgpu's naga rejects it and takes the builtins without it).
    subgroups_directive = False

    def __init__(self, limits: Limits, features: frozenset, adapter_info: dict, subgroup_min_size: int = 0):
        self.limits = limits
        self.features = features
        self.adapter_info = adapter_info
        # The smallest subgroup the device may run a pipeline with (0: no subgroup builtins).
        # Shaders use subgroup shuffles only across this many consecutive invocations.
        self.subgroup_min_size = subgroup_min_size
        # CPU implementations of WebGPU (SwiftShader, lavapipe) want other kernel shapes than GPUs.
        text = " ".join(str(v) for v in adapter_info.values()).lower()
        self.is_cpu = adapter_info.get("type") == "CPU" or any(
            name in text for name in ("swiftshader", "llvmpipe", "lavapipe"))
        # Cores a CPU adapter spreads workgroups over (the browser backend asks navigator).
        self.cpu_cores = os.cpu_count() or 1
        # Threads a CPU adapter runs in one SIMD row: SwiftShader's JIT emits SSE (4 lanes),
        # lavapipe's LLVM 256-bit vectors (8).
        self.cpu_simd_lanes = 4 if "swiftshader" in text else 8
        # Whether prompts' tiled linears may run on the matrix units (ops.quant_kernels.uses_mma):
        # f16 x f16 -> f32 subgroup matrices of 16 x 16 x 16 in subgroups of exactly 32.
        self.mma_f16 = False
        self._live = {"storage": 0, "uniform": 0, "readback": 0}
        self._counts = {"buffers": 0, "pipelines": 0, "bind_groups": 0}

    # -- accounting --
    def memory_stats(self) -> dict:
        return {"bytes": dict(self._live), "total_bytes": sum(self._live.values()), **self._counts}

    # -- buffers --
    def create_buffer(self, nbytes: int, kind: str = "storage", label: str = "", data=None) -> Buffer:
        """A buffer of at least `nbytes`; with `data` (bytes-like, at most that long), holding it
        from the start. (Filling weights through mappedAtCreation instead of queue.writeBuffer
        made the H200's graph build slower in Chromium: 2.14-2.45 s against 1.92-1.93.)"""
        if kind not in USAGES:
            raise ValueError(f"unknown buffer kind {kind!r}")
        # WebGPU needs sizes that are multiples of 4; a zero-size binding is invalid.
        size = max(4, (int(nbytes) + 3) & ~3)
        if size > self.limits.max_buffer_size:
            raise GpuError(f"buffer {label!r}: {size} bytes exceeds the device's maxBufferSize "
                           f"({self.limits.max_buffer_size})")
        mv = None if data is None else as_bytes(data)
        if mv is not None and len(mv) > size:
            raise GpuError(f"buffer {label!r}: {len(mv)} bytes of data for {size} bytes")
        buf = Buffer(self._create_buffer(size, USAGES[kind], label), size, kind, label)
        self._live[kind] += size
        self._counts["buffers"] += 1
        if mv is not None:
            self.write_buffer(buf, 0, mv)
        return buf

    def destroy_buffer(self, buf: Buffer) -> None:
        if buf.destroyed:
            raise GpuError(f"buffer {buf.label!r} destroyed twice")
        buf.destroyed = True
        self._destroy_buffer(buf.handle)
        self._live[buf.kind] -= buf.nbytes
        self._counts["buffers"] -= 1

    def write_buffer(self, buf: Buffer, offset: int, data) -> None:
        mv = as_bytes(data)
        if offset < 0 or offset + len(mv) > buf.nbytes:
            raise GpuError(f"write of {len(mv)} bytes at {offset} overflows buffer {buf.label!r} "
                           f"({buf.nbytes} bytes)")
        if len(mv) % 4:
            # WebGPU writes must be multiples of 4 bytes.
            padded = bytearray(len(mv) + (-len(mv)) % 4)
            padded[: len(mv)] = mv
            mv = memoryview(padded)
        if len(mv):
            self._write_buffer(buf.handle, offset, mv)

    async def read_buffer(self, buf: Buffer, offset: int = 0, nbytes: int | None = None) -> bytes:
        nbytes = buf.nbytes - offset if nbytes is None else nbytes
        if offset < 0 or offset + nbytes > buf.nbytes:
            raise GpuError(f"read of {nbytes} bytes at {offset} overflows buffer {buf.label!r}")
        aligned = (nbytes + 3) & ~3
        if offset + aligned > buf.nbytes:
            offset_fix = offset + aligned - buf.nbytes
            data = await self._read_buffer(buf.handle, offset - offset_fix, aligned)
            return bytes(data[offset_fix: offset_fix + nbytes])
        data = await self._read_buffer(buf.handle, offset, aligned)
        return bytes(data[:nbytes])

    # -- pipelines and bind groups --
    def create_pipeline(self, code: str, entry: str, overrides: dict, label: str = ""):
        p = self._create_pipeline(code, entry, dict(overrides), label)
        self._counts["pipelines"] += 1
        return p

    def release_pipeline(self, pipeline) -> None:
        self._counts["pipelines"] -= 1

    def create_bind_group(self, pipeline, entries, label: str = ""):
        """entries: list of (binding, Buffer, offset, size) with size None meaning the rest."""
        for binding, buf, offset, size in entries:
            if buf.destroyed:
                raise GpuError(f"bind group {label!r}: buffer {buf.label!r} was destroyed")
        g = self._create_bind_group(pipeline, entries, label)
        self._counts["bind_groups"] += 1
        return g

    def release_bind_group(self, group) -> None:
        self._counts["bind_groups"] -= 1

    def run(self, pipelines, bind_groups, table: np.ndarray, before=(), after=()) -> None:
        """Encode every row (pipeline, bind group, x, y, z) of `table` in one compute pass and
        submit once. Rows whose x is 0 are skipped (nothing to do at the live shape).
        `before` / `after`: buffer copies (src Buffer, src offset, dst Buffer, dst offset,
        nbytes) encoded in the same submit around the pass, e.g. the last step's argmax into
        this step's token input, so decoding never waits for the host."""
        for src, so, dst, do, n in (*before, *after):
            if n % 4 or so % 4 or do % 4 or so + n > src.nbytes or do + n > dst.nbytes:
                raise GpuError(f"copy of {n} bytes {src.label!r}+{so} -> {dst.label!r}+{do}: "
                               f"out of range or not 4-byte aligned")
        self._run(pipelines, bind_groups, table, before, after)

    def start_map(self, buf: Buffer):
        """Begin mapping a 'readback' buffer (after the submit that fills it); returns what
        `finish_map` awaits. Several maps may be in flight at once."""
        if buf.kind != "readback":
            raise GpuError(f"buffer {buf.label!r} is not a readback buffer")
        return self._start_map(buf.handle)

    async def finish_map(self, buf: Buffer, pending, nbytes: int) -> bytes:
        """Wait for a map begun by `start_map`, copy out `nbytes`, unmap."""
        return await self._finish_map(buf.handle, pending, nbytes)

    async def finish(self) -> None:
        """Wait until submitted work is done and raise any error it produced."""
        await self._finish()

    def push_error_scopes(self) -> None:
        """Start collecting asynchronous validation / out-of-memory errors (browser)."""

    async def pop_error_scopes(self, context: str) -> None:
        """Raise GpuError for anything collected since push_error_scopes."""

    def destroy(self) -> None:
        pass

    # -- implemented by backends --
    def _create_buffer(self, size, usage, label):
        raise NotImplementedError

    def _destroy_buffer(self, handle):
        raise NotImplementedError

    def _write_buffer(self, handle, offset, mv):
        raise NotImplementedError

    async def _read_buffer(self, handle, offset, nbytes):
        raise NotImplementedError

    def _create_pipeline(self, code, entry, overrides, label):
        raise NotImplementedError

    def _create_bind_group(self, pipeline, entries, label):
        raise NotImplementedError

    def _run(self, pipelines, bind_groups, table, before, after):
        raise NotImplementedError

    def _start_map(self, handle):
        raise NotImplementedError

    async def _finish_map(self, handle, pending, nbytes):
        raise NotImplementedError

    async def _finish(self):
        raise NotImplementedError
