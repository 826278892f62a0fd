"""Running an ExecuTorch .pte: forward(*args) semantics on top of one Graph.

The delegate's VkGraph has its own input/output order and int32 where the plan says int64;
`PteSession` hides that and behaves like ExecuTorch's `Method.execute`:

- arguments are given in forward() order and mapped onto the Program's inputs;
- int64 arguments are staged as int32 by the graph (range-checked), float64 ones as float32;
- mutable buffers the delegate owns (KV caches lowered as delegate constants) stay inside
  the graph across calls, which is exactly ExecuTorch's semantics: they are written in place;
- mutable buffers fed from outside the delegate (`PteModule.state_inputs`) are held here,
  zero at start, and updated from their `copy_` write-backs after every call;
- a mutated forward argument (`aten::copy_` into a plan input) gets its new value written
  back into the caller's numpy array, as copy_ would, and is also kept in `self.mutated`;
- outputs come back in forward order, int32 widened to int64 (float32 to float64) where the
  plan says so.

`run_pte_once` opens a user's .pte and runs one step for the web page.
"""
from __future__ import annotations

import time

import numpy as np

from .graph import Graph
from .graph.errors import StepError
from .loaders.pte import PteError, PteModule, load_pte
from .program import DTYPES, SymInt, Tensor

_HOST_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16,
                "int64": np.int64, "int32": np.int32, "int8": np.int8, "uint8": np.uint8,
                "bool": np.bool_}


class PteSession:
    """A built Graph for one .pte's forward method; `await forward(*args)` runs one call."""

    def __init__(self, module: PteModule, graph: Graph):
        self.module = module
        self.graph = graph
        p = module.program
        self._arg_of = {}                 # Program input id -> forward arg index
        for fi in module.forward_inputs:
            if fi.program_input is not None:
                self._arg_of[fi.program_input] = fi.index
        # Host-held mutable buffers (delegate inputs that are no forward argument).
        self.state = {}
        self._state_of = {}               # Program input id -> plan value id
        for s in module.state_inputs:
            t = p.values[s.program_input]
            self.state[s.evalue] = np.zeros(t.dims, dtype=DTYPES[t.dtype])
            self._state_of[s.program_input] = s.evalue
        out_pos = {vid: j for j, vid in enumerate(p.output_ids)}
        self._read = sorted({out_pos[fo.program_output] for fo in module.forward_outputs
                             if fo.program_output is not None}
                            | {out_pos[w.source_program_output] for w in module.write_backs})
        self._out_pos = out_pos
        self.mutated: dict = {}           # forward arg index -> its new value (last call)
        self.calls = 0

    # ------------------------------------------------------------------ building
    @classmethod
    async def create(cls, pte, backend) -> "PteSession":
        """Parse (bytes) or take a PteModule, check it can run, build its Graph.

        Raises PteError for files the engine cannot run and OpError (from Graph.build,
        before any allocation) for ops it does not implement."""
        module = pte if isinstance(pte, PteModule) else load_pte(pte)
        _check_runnable(module)
        graph = await Graph.build(module.program, backend)
        return cls(module, graph)

    # ------------------------------------------------------------------ running
    async def forward(self, *args, include_mutated: bool = False) -> list:
        """Run one call. Returns the user outputs in forward order (what the eager module
        returns); with include_mutated=True every plan output, mutated arguments' new
        values included, in plan order."""
        m = self.module
        if len(args) != len(m.forward_inputs):
            raise StepError(f"forward: expected {len(m.forward_inputs)} arguments, got {len(args)}")
        staged = {}
        for fi, a in zip(m.forward_inputs, args):
            if fi.program_input is not None:
                staged[fi.program_input] = self._stage_arg(fi, a)
        inputs = []
        for vid in self.module.program.input_ids:
            inputs.append(staged[vid] if vid in staged else self.state[self._state_of[vid]])
        outs = await self.graph.step(inputs, read=self._read)
        self.calls += 1

        # copy_ write-backs: mutated forward args and host-held buffers
        self.mutated = {}
        for w in m.write_backs:
            new = self._widen(w.source_program_output, outs[self._out_pos[w.source_program_output]])
            if w.forward_input is not None:
                self.mutated[w.forward_input] = new
                dest = args[w.forward_input]
                if isinstance(dest, np.ndarray) and dest.flags.writeable and dest.shape == new.shape:
                    np.copyto(dest, new, casting="unsafe")
            else:
                self.state[w.dest_evalue] = new.astype(self.state[w.dest_evalue].dtype, copy=False)

        result = []
        for fo in m.forward_outputs:
            if fo.mutated_input is not None and not include_mutated:
                continue
            if fo.program_output is not None:
                result.append(self._widen(fo.program_output, outs[self._out_pos[fo.program_output]]))
            else:  # a forward argument returned as it is
                src = next(fi.index for fi in m.forward_inputs if fi.evalue == fo.evalue)
                result.append(np.array(args[src], copy=True))
        return result

    def _stage_arg(self, fi, a):
        """A forward argument checked against the plan (named by its forward index)."""
        target = self.module.program.values[fi.program_input]
        if isinstance(target, SymInt):
            if not isinstance(a, (int, np.integer)):
                raise StepError(f"forward: argument {fi.index} must be an int, got {type(a).__name__}")
            return int(a)
        a = np.asarray(a)
        if fi.kind == "tensor" and fi.dtype:
            want = np.dtype(_HOST_DTYPES.get(fi.dtype, np.float32))
            ok = a.dtype == want or (want.kind in "iu" and a.dtype.kind in "iu")
            if not ok:
                raise StepError(f"forward: argument {fi.index} has dtype {a.dtype}, expected {fi.dtype}")
            bad_rank = a.ndim != len(fi.sizes)
            if bad_rank or (not fi.dynamic and tuple(a.shape) != tuple(fi.sizes)) or \
                    any(d > s for d, s in zip(a.shape, fi.sizes)):
                what = "bounds are" if fi.dynamic else "expected"
                raise StepError(f"forward: argument {fi.index} has shape {list(a.shape)}, "
                                f"{what} {list(fi.sizes)}")
        if self.module.staged_from.get(fi.program_input) == "float64":
            a = a.astype(np.float32)
        elif isinstance(target, Tensor) and target.dtype == "bool" and a.dtype == np.bool_:
            a = a.astype(np.int32)
        return a

    def _widen(self, vid: int, value):
        host = self.module.staged_from.get(vid)
        if host is not None and isinstance(value, np.ndarray):
            return value.astype(_HOST_DTYPES[host])
        return value

    # ------------------------------------------------------------------ teardown
    def memory_stats(self) -> dict:
        return self.graph.memory_stats()

    def destroy(self) -> None:
        self.graph.destroy()


def _check_runnable(module: PteModule) -> None:
    """Structural problems a Graph cannot catch, raised before anything is allocated."""
    for fo in module.forward_outputs:
        if fo.program_output is None and not fo.note.startswith("forward input"):
            raise PteError(f"pte: forward output {fo.index} (plan value {fo.evalue}) is "
                           f"{fo.note}; the engine can only return delegate outputs")
    for fi in module.forward_inputs:
        if fi.program_input is None and fi.kind not in ("tensor", "int", "double", "bool", "none"):
            raise PteError(f"pte: forward argument {fi.index} has unsupported kind {fi.kind!r}")


# ---------------------------------------------------------------- one-shot for the web page
_backend = None


async def _default_backend():
    global _backend
    if _backend is None:
        from .gpu import create_backend

        _backend = await create_backend()
    return _backend


def example_inputs(module: PteModule, seed: int = 0) -> list:
    """Inputs of the plan's shapes (upper bounds for dynamic dims) and dtypes: normal
    random floats, zero integers (safe as token ids and positions), False booleans."""
    rng = np.random.default_rng(seed)
    args = []
    for fi in module.forward_inputs:
        if fi.kind == "tensor":
            dt = np.dtype(_HOST_DTYPES.get(fi.dtype, np.float32))
            if dt.kind == "f":
                args.append(rng.standard_normal(fi.sizes).astype(dt))
            else:
                args.append(np.zeros(fi.sizes, dtype=dt))
        elif fi.kind == "double":
            args.append(0.0)
        elif fi.kind == "bool":
            args.append(False)
        elif fi.kind == "none":
            args.append(None)
        else:
            args.append(0)
    return args


def _summary(i: int, x, first: int = 8) -> dict:
    a = np.asarray(x)
    flat = a.reshape(-1)
    head = flat[:first].tolist()
    info = {"index": i, "shape": list(a.shape), "dtype": str(a.dtype), "first": head}
    if flat.size and a.dtype.kind in "fiub":
        info["min"] = float(flat.min())
        info["max"] = float(flat.max())
    if flat.size and a.dtype.kind == "f":
        info["mean"] = float(flat.astype(np.float64).mean())
        info["finite"] = bool(np.isfinite(flat).all())
    return info


async def run_pte_once(pte_bytes, inputs=None, backend=None) -> dict:
    """Open a .pte, run forward once, return printable facts (plain Python values).

    `inputs`: forward arguments in order (numpy arrays or scalars); None makes example
    inputs (see `example_inputs`). Errors propagate (PteError, OpError, StepError)."""
    backend = backend or await _default_backend()
    t0 = time.perf_counter()
    module = load_pte(pte_bytes)
    t1 = time.perf_counter()
    session = await PteSession.create(module, backend)
    try:
        t2 = time.perf_counter()
        args = example_inputs(module) if inputs is None else list(inputs)
        outs = await session.forward(*args)
        t3 = time.perf_counter()
        return {
            "method": module.method,
            "ops": [c.name for c in module.program.chain],
            "inputs": [_summary(i, a) for i, a in enumerate(args) if a is not None],
            "inputs_generated": inputs is None,
            "outputs": [_summary(i, o) for i, o in enumerate(outs)],
            "mutated": [_summary(i, v) for i, v in sorted(session.mutated.items())],
            "dispatches": session.memory_stats()["dispatches"],
            "parse_ms": round((t1 - t0) * 1000, 2),
            "build_ms": round((t2 - t1) * 1000, 2),
            "run_ms": round((t3 - t2) * 1000, 2),
        }
    finally:
        session.destroy()
