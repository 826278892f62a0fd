"""The GPU interface over the browser's `navigator.gpu`, through pyodide.ffi.

WebGPU reports errors asynchronously: build-time errors are caught with error scopes
(`push_error_scopes` / `pop_error_scopes`), errors from later steps with the device's
uncaptured-error event, and a lost device with `device.lost`; each becomes a Python
exception on the next call.
"""
from __future__ import annotations

import js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy, to_js  # type: ignore[import-not-found]

from .base import GpuBackend, GpuDeviceLost, GpuError, Limits
from .wasm_heap import WasmHeap

_WANTED_LIMITS = (
    "maxStorageBufferBindingSize",
    "maxBufferSize",
    "maxComputeInvocationsPerWorkgroup",
    "maxComputeWorkgroupSizeX",
    "maxComputeWorkgroupStorageSize",
    "maxStorageBuffersPerShaderStage",
)

# The rows (pipeline, bind group, x, y, z) of a dispatch table into a compute pass; rows with x = 0
# have nothing to do at the live shape. `box`: {rows: Int32Array} (WasmHeap.int32_array). Shared
# with the benchmark's JS-only replays.
ENCODE_TABLE_JS = """
(pass, pipelines, groups, box, n) => {
  const table = box.rows;
  let last = -1;
  for (let i = 0; i < n; i++) {
    const o = i * 5;
    const x = table[o + 2];
    if (x === 0) continue;
    const p = table[o];
    if (p !== last) { pass.setPipeline(pipelines[p]); last = p; }
    pass.setBindGroup(0, groups[table[o + 1]]);
    pass.dispatchWorkgroups(x, table[o + 3], table[o + 4]);
  }
}
"""

# Encodes a whole dispatch table in one compute pass: one JS call per step, not per dispatch.
# `copies` (or null): [when, src, srcOffset, dst, dstOffset, size]*, when 0 = before the pass,
# 1 = after it. `timing` (or null, set once per backend): { pass: descriptor of the compute
# pass (timestamp writes), after(encoder): commands that resolve them }.
_RUN_JS = """
(encodeTable) => (timing) => (device, pipelines, groups, table, n, copies) => {
  const enc = device.createCommandEncoder();
  const copy = (when) => {
    if (!copies) return;
    for (let i = 0; i < copies.length; i += 6) {
      if (copies[i] === when) enc.copyBufferToBuffer(copies[i + 1], copies[i + 2], copies[i + 3], copies[i + 4], copies[i + 5]);
    }
  };
  copy(0);
  const pass = enc.beginComputePass(timing ? timing.pass : {});
  encodeTable(pass, pipelines, groups, table, n);
  pass.end();
  copy(1);
  if (timing) timing.after(enc);
  device.queue.submit([enc.finish()]);
}
"""


MMA_FEATURE = "chromium-experimental-subgroup-matrix"


def _mma_shape_offered(adapter) -> bool:
    """The adapter multiplies f16 16 x 16 x 16 subgroup matrices into f32 (tiled_mma's pieces),
    in subgroups of exactly 32 invocations (its workgroup is one subgroup of 32)."""
    info = getattr(adapter, "info", None)
    if _is_null(info) or not {"shader-f16", MMA_FEATURE, "subgroups"} <= set(js.Array.from_(adapter.features).to_py()):
        return False
    if int(getattr(info, "subgroupMinSize", 0) or 0) != 32 or int(getattr(info, "subgroupMaxSize", 0) or 0) != 32:
        return False
    configs = getattr(info, "subgroupMatrixConfigs", None)
    return not _is_null(configs) and any(
        str(c.componentType) == "f16" and str(c.resultComponentType) == "f32" and int(c.M) == int(c.N) == int(c.K) == 16
        for c in js.Array.from_(configs))


def _obj(d: dict):
    return to_js(d, dict_converter=js.Object.fromEntries)


def _is_null(x) -> bool:
    # JS null arrives as pyodide's jsnull (not None) in recent Pyodide; undefined as None.
    return x is None or type(x).__name__ in ("JsNull",) or str(x) == "null"


class BrowserBackend(GpuBackend):
    name = "browser"
    subgroups_directive = True

    @classmethod
    async def create(cls, power_preference: str = "high-performance", features=()) -> "BrowserBackend":
        gpu = getattr(js.navigator, "gpu", None)
        if _is_null(gpu):
            raise GpuError("WebGPU is not available in this browser (navigator.gpu is missing): "
                           "use a recent Chrome, Edge or Firefox with WebGPU enabled")
        adapter = await gpu.requestAdapter(_obj({"powerPreference": power_preference}))
        if _is_null(adapter):
            raise GpuError("WebGPU found no GPU adapter: the GPU may be blocklisted or disabled")
        offered = adapter.limits
        required = {}
        for name in _WANTED_LIMITS:
            v = getattr(offered, name, None)
            if v is not None:
                required[name] = v
        have = set(js.Array.from_(adapter.features).to_py())
        # Subgroups (reductions by shuffles) whenever offered; the kernels also run without.
        # Subgroup matrices (and f16, their inputs' type) where the tiled kernels can use them
        # (ops.quant_kernels.MMA, off by default).
        extra = ("shader-f16", MMA_FEATURE) if _mma_shape_offered(adapter) else ()
        wanted = [f for f in (*features, "subgroups", *extra) if f in have]
        device = await adapter.requestDevice(_obj({"requiredLimits": required, "requiredFeatures": wanted}))
        return cls(adapter, device)

    def __init__(self, adapter, device):
        self.device = device
        self.queue = device.queue
        lim = device.limits
        limits = Limits.from_mapping(lambda name: getattr(lim, name, None))
        features = frozenset(js.Array.from_(device.features).to_py())
        info = getattr(adapter, "info", None)
        adapter_info = {}
        sg_min = 0
        if not _is_null(info):
            for k in ("vendor", "architecture", "device", "description"):
                adapter_info[k] = str(getattr(info, k, "") or "")
            if "subgroups" in features:
                sg_min = int(getattr(info, "subgroupMinSize", 0) or 0)
        super().__init__(limits, features, adapter_info, sg_min)
        self.cpu_cores = int(getattr(js.navigator, "hardwareConcurrency", 0) or 1)
        # What the adapter offers beyond what was requested (the bench records it): every feature
        # name, and the subgroup-matrix shapes of 'chromium-experimental-subgroup-matrix'.
        self.adapter_features = frozenset(js.Array.from_(adapter.features).to_py())
        configs = getattr(info, "subgroupMatrixConfigs", None) if not _is_null(info) else None
        self.subgroup_matrix_configs = [] if _is_null(configs) else [
            {k: (str(getattr(c, k)) if k.endswith("Type") else int(getattr(c, k)))
             for k in ("componentType", "resultComponentType", "M", "N", "K")}
            for c in js.Array.from_(configs)]
        self.mma_f16 = {"shader-f16", MMA_FEATURE, "subgroups"} <= features and _mma_shape_offered(adapter)
        self._lost = None
        self._errors: list = []
        self._staging: dict = {}
        self._js_lists = (None, None, None)
        self._js_copies: dict = {}  # copy lists already converted to JS (see _run)
        self._js_table = (None, None)  # (bytes, JS array) of the last table run (see _run)
        from pyodide.code import run_js  # type: ignore[import-not-found]

        self._make_run_js = run_js(_RUN_JS)(run_js(ENCODE_TABLE_JS))
        self._heap = WasmHeap()  # every byte between WebAssembly memory and JS goes through it
        self._run_js = self._make_run_js(None)
        self._on_lost = create_proxy(self._record_lost)
        device.lost.then(self._on_lost)
        self._on_error = create_proxy(self._record_error)
        device.addEventListener("uncapturederror", self._on_error)

    # -- error plumbing --
    def _record_lost(self, info):
        reason = getattr(info, "reason", "unknown")
        message = getattr(info, "message", "")
        self._lost = f"{reason}: {message}".strip(": ")

    def _record_error(self, event):
        err = getattr(event, "error", None)
        self._errors.append(str(getattr(err, "message", err)))

    def _check(self) -> None:
        if self._lost is not None:
            raise GpuDeviceLost(f"the GPU device was lost ({self._lost}); reload the page to start again")
        if self._errors:
            msgs, self._errors = self._errors, []
            raise GpuError("WebGPU error: " + " | ".join(msgs))

    def push_error_scopes(self) -> None:
        self.device.pushErrorScope("validation")
        self.device.pushErrorScope("out-of-memory")

    async def pop_error_scopes(self, context: str) -> None:
        oom = await self.device.popErrorScope()
        val = await self.device.popErrorScope()
        self._check()
        if not _is_null(oom):
            raise GpuError(f"{context}: out of GPU memory ({oom.message})")
        if not _is_null(val):
            raise GpuError(f"{context}: {val.message}")

    # -- the interface --
    def _create_buffer(self, size, usage, label):
        self._check()
        return self.device.createBuffer(_obj({"size": size, "usage": usage, "label": label}))

    def _destroy_buffer(self, handle):
        handle.destroy()

    def _write_buffer(self, handle, offset, mv):
        self._check()
        self._heap.write_buffer(self.queue, handle, offset, mv)

    async def _read_buffer(self, handle, offset, nbytes):
        self._check()
        staging = self._staging.pop(nbytes, None)
        if staging is None:
            staging = self.device.createBuffer(_obj({"size": nbytes, "usage": 0x1 | 0x8, "label": "readback"}))
        enc = self.device.createCommandEncoder()
        enc.copyBufferToBuffer(handle, offset, staging, 0, nbytes)
        self.queue.submit(to_js([enc.finish()]))
        try:
            await staging.mapAsync(1)
        except Exception as e:
            self._check()
            raise GpuError(f"reading back {nbytes} bytes failed: {e}") from e
        data = self._heap.read_mapped(staging, 0, nbytes)
        staging.unmap()
        old = self._staging.get(nbytes)
        if old is not None:
            old.destroy()
        self._staging[nbytes] = staging
        self._check()
        return data

    def _create_pipeline(self, code, entry, overrides, label):
        self._check()
        module = self.device.createShaderModule(_obj({"code": code, "label": label}))
        compute = {"module": module, "entryPoint": entry}
        if overrides:
            compute["constants"] = overrides
        return self.device.createComputePipeline(_obj({"layout": "auto", "compute": compute, "label": label}))

    def _create_bind_group(self, pipeline, entries, label):
        js_entries = []
        for binding, buf, offset, size in entries:
            res = {"buffer": buf.handle, "offset": offset, "size": buf.nbytes - offset if size is None else size}
            js_entries.append({"binding": binding, "resource": res})
        layout = pipeline.getBindGroupLayout(0)
        return self.device.createBindGroup(_obj({"layout": layout, "entries": js_entries, "label": label}))

    def set_pass_timing(self, timing) -> None:
        """Bracket every compute pass with `timing` (a JS object, see _RUN_JS), or None."""
        self._run_js = self._make_run_js(timing)

    def _run(self, pipelines, bind_groups, table, before, after):
        self._check()
        # JS arrays of the handles are rebuilt only when the graph's lists change.
        key = (id(pipelines), id(bind_groups), len(pipelines), len(bind_groups))
        if self._js_lists[0] != key:
            self._js_lists = (key, to_js(list(pipelines)), to_js(list(bind_groups)))
        _, js_pipes, js_groups = self._js_lists
        # Decode steps mostly run the table of the step before: compare the bytes (cheap) rather
        # than convert again (the conversion costs ~3x the comparison in Pyodide).
        raw = table.tobytes()
        if raw != self._js_table[0]:
            self._js_table = (raw, self._heap.int32_array(table))  # {rows: Int32Array} (a copy)
        js_table = self._js_table[1]
        copies = None
        if before or after:
            # The same few copies recur every decode step (feed, readback slots): converted once.
            key = tuple((when, id(src), so, id(dst), do, n) for when, group in ((0, before), (1, after))
                        for src, so, dst, do, n in group)
            hit = self._js_copies.get(key)
            if hit is None:
                flat_copies, refs = [], []
                for when, group in ((0, before), (1, after)):
                    for src, so, dst, do, n in group:
                        flat_copies += [when, src.handle, so, dst.handle, do, n]
                        refs += [src, dst]
                if len(self._js_copies) >= 256:
                    self._js_copies.clear()
                # The entry keeps its Buffers alive, so their ids in the key cannot be reused.
                hit = self._js_copies[key] = (to_js(flat_copies), refs)
            copies = hit[0]
        self._run_js(self.device, js_pipes, js_groups, js_table, len(table), copies)

    def _start_map(self, handle):
        self._check()
        return handle.mapAsync(1)  # a JS promise, awaited by finish_map

    async def _finish_map(self, handle, pending, nbytes):
        try:
            await pending
        except Exception as e:
            self._check()
            raise GpuError(f"reading back {nbytes} bytes failed: {e}") from e
        data = self._heap.read_mapped(handle, 0, nbytes)
        handle.unmap()
        self._check()
        return data

    async def _finish(self):
        await self.queue.onSubmittedWorkDone()
        self._check()

    def destroy(self) -> None:
        for b in self._staging.values():
            b.destroy()
        self._staging = {}
        self.device.destroy()
