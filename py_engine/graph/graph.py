"""Graph: a Program turned into GPU buffers, pipelines, bind groups and a dispatch table.

Build once, step many times. `build` validates every op before allocating anything, then
allocates tensors at their upper-bound dims, builds each op and configures it for the live
shapes. `step` writes the inputs, lets the ops whose live inputs changed reconfigure
themselves (the resize hooks: the same `configure` the build used), flushes uniforms, runs
the whole dispatch table in one compute pass and reads back what was asked for.
"""
from __future__ import annotations

import heapq
import operator
import struct

import numpy as np

from ..gpu.base import GpuBackend, as_bytes
from ..program import DTYPES, Program, SymInt, Tensor
from .aliasing import plan_aliases, root
from .context import BuildContext
from .dispatch import fold
from .errors import OpError, StepError
from .pipelines import PipelineCache
from .registry import lookup
from .twins import LayerTwins
from .uniforms import SlotBytes, UniformArena, UniformSlot

# How each Program dtype is stored on the GPU. int64 is staged as int32 (the host converts).
GPU_DTYPE = {"float32": "float32", "float16": "float16", "int32": "int32", "int64": "int32",
             "int8": "int8", "uint8": "uint8", "bool": "int32"}


class TensorRef:
    """A tensor at run time: its buffer (sized for max_dims) and its live dims."""

    __slots__ = ("vid", "dtype", "gpu_dtype", "max_dims", "dims", "buffer", "constant")

    def __init__(self, vid: int, t: Tensor):
        self.vid = vid
        self.dtype = t.dtype
        self.gpu_dtype = GPU_DTYPE[t.dtype]
        self.max_dims = tuple(t.dims)
        self.dims = tuple(t.dims)
        self.buffer = None
        self.constant = t.constant_id >= 0

    @property
    def numel(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64))

    @property
    def itemsize(self) -> int:
        return np.dtype(DTYPES[self.gpu_dtype]).itemsize


class SymIntRef:
    """A live integer with its 16-byte uniform slot (value in the first u32/i32)."""

    __slots__ = ("vid", "value", "slot")

    def __init__(self, vid: int, value: int):
        self.vid = vid
        self.value = value
        self.slot = None


class Graph:
    def __init__(self, program: Program, backend: GpuBackend, ops: list):
        self.program = program
        self.backend = backend
        self.limits = backend.limits
        self.ops = ops
        self.tensors: dict = {}
        self.symints: dict = {}
        self.pipelines = PipelineCache(backend)
        self.uniforms = UniformArena(backend)
        self.bind_groups: list = []
        self.table = np.zeros((0, 5), dtype=np.int32)
        self.dispatch_labels: list = []
        self._wg_total: list = []  # per dispatch: the total last given to set_workgroups
        self.aliases: dict = {}  # view output id -> source id sharing one buffer
        self._repacked: dict = {}  # (constant id, layout key) -> Buffer (see `repacked`)
        self._shared_state: dict = {}  # key -> object shared by ops (see `shared_state`)
        self._attached: list = []  # see attach
        self._readback_all: list = []   # every buffer of take_readback's pool
        self._readback_free: list = []
        self._resized: set = set()
        self._trigger_index: dict = {}  # value id -> indices of the ops it triggers (see _index_triggers)
        self._host_readers: list = []
        self._queue = None  # ops still to visit during _configure_triggered
        self._needs_full_configure = False
        self._destroyed = False
        self.steps = 0
        self._shape_key = None      # live dims of the tensor inputs at the last prepare
        self._snapshots: dict = {}  # shape key -> _Snapshot (most recent last)
        self._input_fast: dict = {}  # input id -> (dtype, shape) last accepted: checked again cheaply
        self._deferred: list = []  # (row, make pipeline, buffers, label): see defer_dispatch
        self._twins = None  # LayerTwins: ops whose full configure copies an earlier op's
        self._rec_dims = None  # while a twin leader configures: the value ids it sets dims of
        self._rec_rows = None  # ... and the dispatch rows it sets

    # ------------------------------------------------------------------ build
    @classmethod
    async def build(cls, program: Program, backend: GpuBackend) -> "Graph":
        ctx = BuildContext(program, backend.limits, backend.features)
        unknown = sorted({c.name for c in program.chain if lookup(c.name) is None})
        if unknown:
            raise OpError(f"graph: {len(unknown)} op(s) not implemented: {', '.join(unknown)}")
        ops = [lookup(c.name)(ctx, c.name, tuple(c.args)) for c in program.chain]
        for vid in list(program.input_ids) + list(program.output_ids):
            kind = ctx.kind(vid)
            if kind not in (Tensor, SymInt):
                raise OpError(f"graph: input/output value {vid} is a {kind.__name__}, not a tensor or SymInt")
        for vid in program.input_ids:
            if isinstance(program.values[vid], Tensor) and program.values[vid].constant_id >= 0:
                raise OpError(f"graph: input value {vid} is a constant tensor")
        g = cls(program, backend, ops)
        backend.push_error_scopes()
        try:
            try:
                g._allocate()
                rows_by_op, slots_by_op = [], []
                for op in ops:
                    first_row = len(g.table)
                    g.uniforms.claims = []
                    try:
                        op.build(g)
                    finally:
                        slots_by_op.append(g.uniforms.claims)
                        g.uniforms.claims = None
                    rows_by_op.append(list(range(first_row, len(g.table))))
                    op.configure(g)
                g._twins = LayerTwins(g, rows_by_op, slots_by_op)
                g._index_triggers()
                g._resized.clear()
                # Configured at the inputs' largest shapes: a first step at them changes nothing.
                g._shape_key = tuple(g.tensors[vid].dims for vid in program.input_ids if vid not in g.symints)
                g.uniforms.flush()
            finally:
                await backend.pop_error_scopes("graph build")
        except BaseException:
            g.destroy()
            raise
        return g

    def _allocate(self) -> None:
        used = set(self.program.input_ids) | set(self.program.output_ids)
        for op in self.ops:
            used.update(op.value_ids())
        self.aliases = plan_aliases(self.program, self.ops)
        # Constants that every op reads only through `repacked` get no buffer of their own.
        direct = set(self.program.input_ids) | set(self.program.output_ids)
        for op in self.ops:
            direct.update(set(op.value_ids()) - op.repacked_ids())
        repack_only = {vid for op in self.ops for vid in op.repacked_ids()} - direct
        for vid in sorted(used):
            v = self.program.values[vid]
            if isinstance(v, Tensor):
                ref = TensorRef(vid, v)
                if vid not in self.aliases and vid not in repack_only:
                    # At least 16 bytes: kernels may bind any tensor as an array of vec4s.
                    nbytes = self._bindable(max(16, ref.numel * ref.itemsize), f"tensor {vid} {list(v.dims)}")
                    ref.buffer = self.backend.create_buffer(nbytes, "storage", f"t{vid}",
                                                            self._constant_for_gpu(vid, ref) if ref.constant else None)
                self.tensors[vid] = ref
            elif isinstance(v, SymInt):
                ref = SymIntRef(vid, int(v.value))
                ref.slot = self.uniforms.alloc(16, f"symint{vid}")
                ref.slot.write(np.array([ref.value, 0, 0, 0], dtype=np.int32).tobytes())
                self.symints[vid] = ref

        for vid in self.aliases:
            self.tensors[vid].buffer = self.tensors[root(self.aliases, vid)].buffer

    def _bindable(self, nbytes: int, what: str) -> int:
        """`nbytes`, if a storage binding of that size is allowed here (every tensor is bound
        whole), else an OpError before WebGPU's validation would fail less clearly."""
        limit = self.backend.limits.max_storage_binding_size
        if nbytes > limit:
            raise OpError(f"graph: {what} needs {nbytes} bytes, past this GPU's storage binding limit of "
                          f"{limit} bytes (a smaller model, or a smaller context for KV caches)")
        return nbytes

    def _constant_for_gpu(self, vid: int, ref: TensorRef):
        data = self.program.constant_bytes(vid)
        if ref.dtype == "int64":
            a = np.frombuffer(data, dtype=np.int64)
            if a.size and (a.min() < -2**31 or a.max() >= 2**31):
                raise OpError(f"graph: int64 constant {vid} does not fit int32")
            return a.astype(np.int32)
        if ref.dtype == "bool":
            return np.frombuffer(data, dtype=np.bool_).astype(np.int32)
        return data

    # ------------------------------------------------ used by op builders
    def shared_state(self, key, make):
        """One object per `key` for this graph, made by `make()` on first use: state that ops
        configured together share (the attention of every layer, see ops/sdpa.py)."""
        obj = self._shared_state.get(key)
        if obj is None:
            obj = self._shared_state[key] = make()
        return obj

    def shared_state_of(self, key):
        """The object shared_state made for `key`, or None where none was made."""
        return self._shared_state.get(key)

    def repacked(self, vid: int, key, make):
        """A GPU buffer holding constant `vid` converted by `make(raw bytes) -> bytes/ndarray`,
        created once per (vid, key): ops sharing a weight (a tied embedding and output head)
        and asking for the same layout key share one buffer. Ops that read a constant only
        this way list it in `repacked_ids()`, so the raw bytes are never uploaded."""
        buf = self._repacked.get((vid, key))
        if buf is None:
            if self.tensors[vid].constant is False:
                raise OpError(f"graph: value {vid} is not a constant, it cannot be repacked")
            data = as_bytes(make(self.program.constant_bytes(vid)))  # no copy of an ndarray
            # Sized to whole 16 bytes so the buffer can be bound as array<vec4<...>>.
            nbytes = self._bindable(max(16, -(-len(data) // 16) * 16), f"constant {vid} as {key[0]}")
            buf = self.backend.create_buffer(nbytes, "storage", f"t{vid}:{key[0]}", data)
            self._repacked[(vid, key)] = buf
        return buf

    def tensor(self, vid: int) -> TensorRef:
        return self.tensors[vid]

    def symint(self, vid: int) -> SymIntRef:
        return self.symints[vid]

    def live_int(self, ref) -> int:
        """Value of an ('int', v) / ('symint', vid) reference from BuildContext.int_or_symint."""
        kind, v = ref
        return v if kind == "int" else self.symints[v].value

    def add_dispatch(self, pipeline: int, buffers, label: str) -> int:
        """Record a dispatch of pipeline index `pipeline` binding `buffers` in order
        (each a Buffer, a TensorRef, a SymIntRef or a UniformSlot; None leaves that binding
        out, for entry points that do not use it); returns its index."""
        row = self.side_dispatch(pipeline, buffers, label, (0, 1, 1))
        self.table = np.concatenate([self.table, row])
        self._wg_total.append(None)
        self.dispatch_labels.append(label)
        return len(self.table) - 1

    def defer_dispatch(self, make_pipeline, buffers, label: str, like: int) -> int:
        """A dispatch whose pipeline is compiled later, by `warm`: kernels only some steps use
        (CPU adapters' prompt kernels) stay out of the load. Until then its row holds dispatch
        `like`'s pipeline and bind group and must get no workgroups before a warm; `submit`
        warms first when one has some. `make_pipeline()` returns the pipeline index."""
        self.table = np.concatenate([self.table, self.table[like:like + 1]])
        self.table[-1, 2:5] = (0, 1, 1)
        self._wg_total.append(None)
        self.dispatch_labels.append(label)
        self._deferred.append((len(self.table) - 1, make_pipeline, buffers, label))
        return len(self.table) - 1

    def warm(self) -> None:
        """Create the deferred dispatches' pipelines and bind groups (browsers compile them in the
        GPU process meanwhile: call it when the page waits for the user, e.g. after a load).
        Their errors come back from the next GPU call."""
        deferred, self._deferred = self._deferred, []
        for row, make_pipeline, buffers, label in deferred:
            pb = self.side_dispatch(make_pipeline(), buffers, label, (0, 1, 1))[0, :2]
            self.table[row, :2] = pb
            for snap in self._snapshots.values():  # a shape configured before now restores it too
                snap.table[row, :2] = pb

    def side_dispatch(self, pipeline: int, buffers, label: str, workgroups) -> np.ndarray:
        """A dispatch table row (shape [1, 5]) outside the step's table, for helpers that run
        only some steps (`submit(tail=...)`); its bind group is freed with the graph."""
        entries = []
        for binding, b in enumerate(buffers):
            if b is None:
                continue
            if isinstance(b, TensorRef):
                entries.append((binding, b.buffer, 0, None))
            elif isinstance(b, SymIntRef):
                entries.append((binding, b.slot.buffer, b.slot.offset, 16))
            elif hasattr(b, "page"):
                entries.append((binding, b.buffer, b.offset, b.size))
            else:
                entries.append((binding, b, 0, None))
        bg = self.backend.create_bind_group(self.pipelines.pipelines[pipeline], entries, label)
        self.bind_groups.append(bg)
        return np.array([[pipeline, len(self.bind_groups) - 1, *workgroups]], dtype=np.int32)

    def set_workgroups(self, d: int, total: int) -> None:
        """Set dispatch `d` to `total` workgroups, folded into 2D when needed."""
        if self._rec_rows is not None:
            self._rec_rows.append(d)
        if self._wg_total[d] != total:  # most hooks set the count they set last time
            self.table[d, 2:5] = fold(total, self.limits)
            self._wg_total[d] = total

    def triggered(self, triggers) -> bool:
        """Inside a resize hook: whether any of `triggers` changed this step (always, in a full
        configure). Ops made of parts run only the parts whose own triggers changed."""
        return self._queue is None or not self._resized.isdisjoint(triggers)

    def set_workgroups_rows(self, rows, total: int) -> None:
        """set_workgroups for several dispatches that get the same count (one fold)."""
        if self._rec_rows is not None:
            self._rec_rows.extend(rows)
        wg = self._wg_total
        stale = [d for d in rows if wg[d] != total]
        if stale:
            self.table[stale, 2:5] = fold(total, self.limits)
            for d in stale:
                wg[d] = total

    def set_workgroups_xyz(self, d: int, x: int, y: int, z: int) -> None:
        if self._rec_rows is not None:
            self._rec_rows.append(d)
        cap = self.limits.max_workgroups_per_dim
        if max(x, y, z) > cap:
            raise OpError(f"{self.dispatch_labels[d]}: workgroups ({x},{y},{z}) exceed the device limit {cap}")
        self.table[d, 2:5] = (x, y, z)
        self._wg_total[d] = None

    def set_dims(self, vid: int, dims) -> None:
        if self._rec_dims is not None:
            self._rec_dims.append(vid)
        ref = self.tensors[vid]
        if dims == ref.dims:  # the common case: a hook re-stating unchanged dims
            return
        dims = tuple(map(int, dims))
        if dims != ref.dims:
            bounds = ref.max_dims
            if len(dims) != len(bounds) or any(map(operator.gt, dims, bounds)) or (dims and min(dims) < 0):
                raise StepError(f"tensor {vid}: live dims {list(dims)} exceed its bounds {list(ref.max_dims)}")
            ref.dims = dims
            self._resized.add(vid)
            if self._queue is not None:
                for i in self._trigger_index.get(vid, ()):
                    heapq.heappush(self._queue, i)

    def set_symint(self, vid: int, value: int) -> None:
        ref = self.symints[vid]
        value = int(value)
        if value != ref.value:
            if not -2**31 <= value < 2**31:
                raise StepError(f"symint {vid}: value {value} does not fit int32")
            ref.value = value
            ref.slot.write(_SYMINT.pack(value, 0, 0, 0))
            self._resized.add(vid)
            if self._queue is not None:
                for i in self._trigger_index.get(vid, ()):
                    heapq.heappush(self._queue, i)

    # ------------------------------------------------------------------ step
    def _check_inputs(self, inputs) -> list:
        ids = self.program.input_ids
        if len(inputs) != len(ids):
            raise StepError(f"step: expected {len(ids)} inputs, got {len(inputs)}")
        staged = []
        for i, (vid, x) in enumerate(zip(ids, inputs)):
            if vid in self.symints:
                staged.append(int(x))
                continue
            fast = self._input_fast.get(vid)
            if (fast is not None and type(x) is np.ndarray and x.dtype is fast[0] and x.flags.c_contiguous
                    and x.shape == fast[1]):
                staged.append(x)  # a decode step's input: exactly the dtype and shape checked before
                continue
            ref = self.tensors[vid]
            a = np.asarray(x)
            want = np.dtype(DTYPES[ref.dtype])
            # Integer inputs of another width (e.g. int64 token ids for an int32 tensor) are
            # converted here after a range check; anything else must match exactly.
            int_cast = ref.gpu_dtype == "int32" and a.dtype.kind in "iu"
            if a.dtype != want and not int_cast:
                raise StepError(f"step: input {i} has dtype {a.dtype}, expected {want}")
            if a.ndim != len(ref.max_dims) or any(d > m for d, m in zip(a.shape, ref.max_dims)):
                raise StepError(f"step: input {i} has shape {list(a.shape)}, bounds are {list(ref.max_dims)}")
            if a.dtype != np.int32 and int_cast:
                if a.size and (a.min() < -2**31 or a.max() >= 2**31):
                    raise StepError(f"step: input {i} has values that do not fit int32")
                a = a.astype(np.int32)
            a = np.ascontiguousarray(a)
            self._input_fast[vid] = (a.dtype, a.shape)
            staged.append(a)
        return staged

    def prepare(self, inputs) -> list:
        """Host half of a step: check inputs, update live dims and SymInts, reconfigure ops.

        Nothing reaches the GPU here, so an error leaves the GPU state as it was; the next
        step then reconfigures every op from scratch.
        """
        if self._destroyed:
            raise StepError("step: graph was destroyed")
        staged = self._check_inputs(inputs)
        self.uniforms.epoch += 1
        key = tuple(a.shape for vid, a in zip(self.program.input_ids, staged) if vid not in self.symints)
        new_shape = key != self._shape_key
        snap = self._snapshots.get(key) if new_shape and SHAPE_SNAPSHOTS else None
        restore = snap is not None and not self._needs_full_configure
        full = self._needs_full_configure or (new_shape and snap is None and SHAPE_SNAPSHOTS)
        # Until this prepare completes, the state is not known to match any shape.
        self._needs_full_configure = True
        self._shape_key = None
        try:
            if restore:
                snap.restore(self)  # as after a full configure at this shape; SymInts then update it
                self._snapshots[key] = self._snapshots.pop(key)  # most recently used last
            for vid, a in zip(self.program.input_ids, staged):
                if vid in self.symints:
                    self.set_symint(vid, a)
                else:
                    self.set_dims(vid, a.shape)
            host = dict(zip(self.program.input_ids, staged))
            if full:
                self.uniforms.record(True)
                try:
                    self._twins.configure_all(self, host)
                finally:
                    writes = self.uniforms.record(False)
                if SHAPE_SNAPSHOTS:
                    self._snapshots.pop(key, None)
                    self._snapshots[key] = _Snapshot(self, writes)
                    while len(self._snapshots) > MAX_SNAPSHOTS:
                        self._snapshots.pop(next(iter(self._snapshots)))
            else:
                self._configure_triggered(host)
            self._needs_full_configure = False
            self._shape_key = key
        finally:
            self._resized.clear()
        return staged

    def _index_triggers(self) -> None:
        """At build (not in the first step's time): which ops each value triggers."""
        self._trigger_index = {}
        for i, op in enumerate(self.ops):
            for vid in op.triggers:
                self._trigger_index.setdefault(vid, []).append(i)
        self._host_readers = [i for i, op in enumerate(self.ops) if op.reads_host_inputs]

    def _configure_triggered(self, host) -> None:
        """Run the resize hooks of the ops whose triggers changed, in op order, visiting only
        those ops (a decode step touches ~30 of ~500): set_dims / set_symint queue the ops a
        resized value triggers, and a hook that resizes its outputs queues later ops."""
        queue = list(self._host_readers)
        for vid in self._resized:
            queue.extend(self._trigger_index.get(vid, ()))
        heapq.heapify(queue)
        self._queue = queue
        try:
            done = -1
            while queue:
                i = heapq.heappop(queue)
                if i <= done:
                    continue
                done = i
                op = self.ops[i]
                if op.reads_host_inputs:
                    op.read_host_inputs(self, host)
                if not self._resized.isdisjoint(op.triggers):
                    op.configure(self)
        finally:
            self._queue = None

    def submit(self, staged, *, gpu_inputs=(), before=(), after=(), tail=None) -> None:
        """Device half of a step: write the inputs and uniforms, run the table. Inputs in
        `gpu_inputs` (value ids) are not written from the host: a copy in `before` fills
        them on the GPU (their staged arrays only gave the live dims). `before` / `after`:
        buffer copies around the pass, see GpuBackend.run. `tail`: rows of `side_dispatch`
        run after the table, in the same pass."""
        if self._deferred and any(self.table[row, 2] for row, *_ in self._deferred):
            self.warm()
        for vid, a in zip(self.program.input_ids, staged):
            if vid in self.tensors and a.size and vid not in gpu_inputs:
                self.backend.write_buffer(self.tensors[vid].buffer, 0, a)
        self.uniforms.flush()
        table = self.table if tail is None else np.concatenate([self.table, tail])
        self.backend.run(self.pipelines.pipelines, self.bind_groups, table, before, after)
        self.steps += 1

    def take_readback(self, nbytes: int):
        """A mappable buffer of at least `nbytes` from the graph's pool (freed with the graph);
        hand it back with `give_readback` once its map is finished."""
        for i, buf in enumerate(self._readback_free):
            if buf.nbytes >= nbytes:
                return self._readback_free.pop(i)
        buf = self.backend.create_buffer(nbytes, "readback", f"readback{len(self._readback_all)}")
        self._readback_all.append(buf)
        return buf

    def give_readback(self, buf) -> None:
        self._readback_free.append(buf)

    def attach(self, helper) -> None:
        """Something built on this graph's buffers outside the op chain (with a
        `destroy(graph)`), freed with the graph."""
        self._attached.append(helper)

    async def step(self, inputs, read=None) -> list:
        """Run one step. `read`: which outputs to read back (indices into output_ids);
        default all. Returns numpy arrays (ints for SymInt outputs), None where not read."""
        staged = self.prepare(inputs)
        self.submit(staged)
        ids = self.program.output_ids
        which = range(len(ids)) if read is None else read
        out = [None] * len(ids)
        for i in which:
            out[i] = await self.read(ids[i])
        return out

    async def read(self, vid: int):
        """The live contents of a tensor (numpy, at its live dims) or a SymInt's value."""
        if vid in self.symints:
            return self.symints[vid].value
        ref = self.tensors[vid]
        n = ref.numel
        if n == 0:
            return np.zeros(ref.dims, dtype=DTYPES[ref.gpu_dtype])
        data = await self.backend.read_buffer(ref.buffer, 0, n * ref.itemsize)
        return np.frombuffer(data, dtype=DTYPES[ref.gpu_dtype]).reshape(ref.dims).copy()

    # ------------------------------------------------------------- teardown
    def memory_stats(self) -> dict:
        buffers = {id(t.buffer): t.buffer for t in self.tensors.values() if t.buffer and not t.buffer.destroyed}
        buffers.update({id(b): b for b in self._repacked.values() if not b.destroyed})
        tensor_bytes = sum(b.nbytes for b in buffers.values())
        return {
            "tensors": len(self.tensors),
            "tensor_bytes": tensor_bytes,
            "uniform_bytes": sum(p.buffer.nbytes for p in self.uniforms.pages),
            "pipelines": len(self.pipelines),
            "bind_groups": len(self.bind_groups),
            "dispatches": len(self.table),
            "backend": self.backend.memory_stats(),
        }

    def destroy(self) -> None:
        """Free every GPU object exactly once; safe to call twice."""
        if self._destroyed:
            return
        self._destroyed = True
        for op in self.ops:
            op.destroy(self)
        for helper in self._attached:
            helper.destroy(self)
        self._attached = []
        for bg in self.bind_groups:
            self.backend.release_bind_group(bg)
        self.bind_groups = []
        for t in self.tensors.values():
            if t.buffer is not None and not t.buffer.destroyed:
                self.backend.destroy_buffer(t.buffer)
        for b in self._repacked.values():
            if not b.destroyed:
                self.backend.destroy_buffer(b)
        self._repacked = {}
        for b in self._readback_all:
            self.backend.destroy_buffer(b)
        self._readback_all, self._readback_free = [], []
        self.uniforms.destroy()
        self.pipelines.destroy()


# Shape snapshots: a step whose input shapes differ from the last one reconfigures most ops
# (~3 ms in CPython, ~12 ms in Pyodide for a 512-token chunk of a 30-layer model). The state a
# full configure leaves at a shape is kept, and a later step at that shape restores it and then
# runs only the hooks its SymInts (input_pos) trigger: the first decode step after a prompt, and
# every prompt chunk of a size seen before, skip the full pass.
SHAPE_SNAPSHOTS = True
MAX_SNAPSHOTS = 8
_SYMINT = struct.Struct("<4i")


class _Snapshot:
    """The dispatch table, live dims, SymInt values and op uniforms after a full configure."""

    __slots__ = ("table", "wg_total", "dims", "symints", "uniforms")

    def __init__(self, g: "Graph", written: SlotBytes):
        self.table = g.table.copy()
        self.wg_total = list(g._wg_total)
        self.dims = [(ref, ref.dims) for ref in g.tensors.values() if not ref.constant]
        self.symints = [(ref, ref.value) for ref in g.symints.values()]
        self.uniforms = written  # the bytes of every slot the full configure wrote

    def restore(self, g: "Graph") -> None:
        np.copyto(g.table, self.table)
        g._wg_total[:] = self.wg_total
        for ref, dims in self.dims:
            ref.dims = dims
        for ref, value in self.symints:
            ref.value = value
            UniformSlot.write(ref.slot, _SYMINT.pack(value, 0, 0, 0))  # as set_symint writes it
        self.uniforms.write()  # straight into the mirrors: no per-step check of shared slots
