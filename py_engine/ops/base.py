"""The shape every op module follows.

An op is constructed from (BuildContext, name, args): the constructor validates and must
not allocate. `build(g)` creates its GPU objects (pipelines, params uniforms, dispatches).
`configure(g)` maps the live dims/SymInts of its inputs to params, workgroup counts and
output live dims; the graph calls it once at build and again as the resize hook whenever a
value in `triggers` changes, so the arithmetic exists once.
"""
from __future__ import annotations

import math

from ..graph.context import BuildContext, Tensor, ValueList
from ..graph.dispatch import ceil_div, workgroup_size
from ..graph.errors import OpError, StepError

__all__ = ["Op", "OpError", "StepError", "ceil_div", "workgroup_size", "numel", "pow2_floor", "reduction_lanes", "broadcast_shape"]


def pow2_floor(n: int) -> int:
    return 1 << (n.bit_length() - 1)


# Threads of a workgroup-wide tree reduction (norms, argmax) at most on CPU adapters (SwiftShader,
# lavapipe), which pay for every thread of a workgroup at each barrier. SwiftShader, SmolLM2
# shapes, per decode step: the 60 add_rms_norms 14.3 ms with 256 lanes, 3.5 with 64, 3.1 with
# 32 (later 2.7-3.3 ms with 32, 2.2-2.6 with 8 or 4); argmax over 49152 logits (its partial
# pass) 5.9 / 2.6 / 2.3 ms. lavapipe: add_rms_norm 88 -> 81 us with 8 lanes.
REDUCTION_LANES_CPU = 8


def reduction_lanes(g, wanted: int) -> int:
    """Threads of a tree-reduction workgroup on this graph's device: `wanted`, capped on CPU
    adapters and by the device limits, floored to a power of two."""
    if getattr(g.backend, "is_cpu", False):
        wanted = min(wanted, REDUCTION_LANES_CPU)
    return pow2_floor(workgroup_size(g.limits, wanted))


def numel(dims) -> int:
    return math.prod(map(int, dims))


def broadcast_shape(a, b, err) -> tuple:
    """numpy broadcasting of two shapes; `err(msg)` builds the exception."""
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and x != 1 and y != 1:
            raise err(f"shapes {list(a)} and {list(b)} do not broadcast")
        out.append(y if x == 1 else x)
    return tuple(out)


class Op:
    reads_host_inputs = False
    # `configure` depends only on the op's arguments: its inputs' live dims and SymInt values
    # (not its outputs' previous dims, no state of its own, nothing else of the graph), so a full
    # configure may copy the results of an earlier op with the same signature instead of
    # calling it (py_engine/graph/twins.py). Ops that break this set it False.
    twin_configure = True

    def __init__(self, ctx: BuildContext, name: str, args: tuple):
        self.name = name
        self.args = args
        self.triggers: frozenset = frozenset()
        ids = []
        for a in args:
            v = ctx.program.value(a) if isinstance(a, int) and 0 <= a < len(ctx.program.values) else None
            ids.append(a)
            if isinstance(v, ValueList):
                ids.extend(v.ids)
        self._ids = tuple(ids)
        self.validate(ctx)

    def error(self, msg: str) -> OpError:
        return OpError(f"{self.name}: {msg}")

    def step_error(self, msg: str) -> StepError:
        return StepError(f"{self.name}: {msg}")

    def expect_args(self, n) -> None:
        if len(self.args) not in ((n,) if isinstance(n, int) else n):
            raise self.error(f"expected {n} arguments, got {len(self.args)}")

    def value_ids(self) -> tuple:
        """Every value id the op touches (the graph allocates the tensors and SymInts among them)."""
        return self._ids

    def repacked_ids(self) -> frozenset:
        """Constant tensors this op reads only through `Graph.repacked` (never bound raw)."""
        return frozenset()

    def same_dims(self, ctx: BuildContext, vid: int, want, what: str) -> Tensor:
        t = ctx.tensor(self.name, vid, what)
        if tuple(t.dims) != tuple(want):
            raise self.error(f"{what} has dims {list(t.dims)}, expected {list(want)}")
        return t

    # -- overridden by ops --
    def validate(self, ctx: BuildContext) -> None:
        raise NotImplementedError

    def build(self, g) -> None:
        pass

    def configure(self, g) -> None:
        pass

    def read_host_inputs(self, g, host: dict) -> None:
        pass

    def destroy(self, g) -> None:
        pass
