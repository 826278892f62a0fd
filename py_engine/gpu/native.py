"""The GPU interface over wgpu-py, so the same graph runs in CPython (lavapipe or a real GPU)."""
from __future__ import annotations

import os

from .base import GpuBackend, GpuError, Limits

# The limits we ask the device for: as much as the adapter offers for the ones LLMs hit.
_WANTED = (
    "max-storage-buffer-binding-size",
    "max-buffer-size",
    "max-compute-invocations-per-workgroup",
    "max-compute-workgroup-size-x",
    "max-compute-workgroup-storage-size",
    "max-storage-buffers-per-shader-stage",
)


class NativeBackend(GpuBackend):
    name = "native"

    @classmethod
    async def create(cls, power_preference: str = "high-performance", features=()) -> "NativeBackend":
        os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
        try:
            import wgpu
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise GpuError("the native backend needs the 'wgpu' package (pip install wgpu)") from e
        adapter = wgpu.gpu.request_adapter_sync(power_preference=power_preference)
        if adapter is None:
            raise GpuError("no WebGPU adapter found (on a machine without a GPU install "
                           "Debian's mesa-vulkan-drivers for lavapipe)")
        offered = adapter.limits
        required = {k: offered[k] for k in _WANTED if k in offered}
        # Subgroups (wgpu calls the feature "subgroup") whenever offered; kernels also run without.
        wanted_features = [f for f in (*features, "subgroup") if f in adapter.features]
        device = adapter.request_device_sync(required_features=wanted_features, required_limits=required)
        return cls(wgpu, adapter, device)

    def __init__(self, wgpu, adapter, device):
        self._wgpu = wgpu
        self.device = device
        lim = device.limits
        limits = Limits.from_mapping(lambda js: lim.get(_kebab(js)))
        info = dict(adapter.info)
        features = frozenset(device.features)
        # wgpu-py 0.32 spells the key "stackgroup_min_size".
        sg_min = info.get("subgroup_min_size", info.get("stackgroup_min_size", 0)) if "subgroup" in features else 0
        super().__init__(limits, features, {
            "vendor": info.get("vendor", ""), "device": info.get("device", ""),
            "description": info.get("description", ""), "backend": info.get("backend_type", ""),
            "type": info.get("adapter_type", ""),
        }, int(sg_min or 0))

    def _create_buffer(self, size, usage, label):
        return self.device.create_buffer(size=size, usage=usage, label=label)

    def _destroy_buffer(self, handle):
        handle.destroy()

    def _write_buffer(self, handle, offset, mv):
        self.device.queue.write_buffer(handle, offset, mv)

    async def _read_buffer(self, handle, offset, nbytes):
        return self.device.queue.read_buffer(handle, offset, nbytes)

    def _create_pipeline(self, code, entry, overrides, label):
        try:
            module = self.device.create_shader_module(code=code, label=label)
            return self.device.create_compute_pipeline(
                layout="auto", label=label,
                compute={"module": module, "entry_point": entry, "constants": overrides})
        except Exception as e:
            raise GpuError(f"pipeline {label!r}: {e}") from e

    def _create_bind_group(self, pipeline, entries, label):
        layout = pipeline.get_bind_group_layout(0)
        wgpu_entries = []
        for binding, buf, offset, size in entries:
            resource = {"buffer": buf.handle, "offset": offset, "size": buf.nbytes - offset if size is None else size}
            wgpu_entries.append({"binding": binding, "resource": resource})
        try:
            return self.device.create_bind_group(layout=layout, entries=wgpu_entries, label=label)
        except Exception as e:
            raise GpuError(f"bind group {label!r}: {e}") from e

    def _run(self, pipelines, bind_groups, table, before, after):
        encoder = self.device.create_command_encoder()
        for src, so, dst, do, n in before:
            encoder.copy_buffer_to_buffer(src.handle, so, dst.handle, do, n)
        cpass = encoder.begin_compute_pass()
        # Every wgpu-py call costs microseconds: bind methods once, skip repeated pipelines.
        set_pipeline, set_bind_group, dispatch = cpass.set_pipeline, cpass.set_bind_group, cpass.dispatch_workgroups
        last = -1
        for p, g, x, y, z in table.tolist():
            if x == 0:
                continue
            if p != last:
                set_pipeline(pipelines[p])
                last = p
            set_bind_group(0, bind_groups[g])
            dispatch(x, y, z)
        cpass.end()
        for src, so, dst, do, n in after:
            encoder.copy_buffer_to_buffer(src.handle, so, dst.handle, do, n)
        self.device.queue.submit([encoder.finish()])

    def _start_map(self, handle):
        return None  # wgpu-py maps synchronously in finish_map; the GPU keeps running meanwhile

    async def _finish_map(self, handle, pending, nbytes):
        handle.map_sync(1)
        try:
            return bytes(handle.read_mapped(0, nbytes, copy=True))
        finally:
            handle.unmap()

    async def _finish(self):
        # A read forces completion of all queued work (on_submitted_work_done_sync is
        # unreliable across wgpu-py versions).
        if not hasattr(self, "_fence"):
            self._fence = self.create_buffer(4, "storage", "fence")
        self.device.queue.read_buffer(self._fence.handle, 0, 4)

    def destroy(self) -> None:
        self.device.destroy()


def _kebab(js_name: str) -> str:
    out = []
    for ch in js_name:
        if ch.isupper():
            out.append("-" + ch.lower())
        else:
            out.append(ch)
    return "".join(out)
