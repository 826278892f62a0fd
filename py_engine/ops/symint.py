"""Ops that produce SymInts (live integers); none of them dispatches anything.

- `et_vk.select_as_symint.default(x, dim, index, out)`: out = x.select(dim, index), read on
  the host from a program input's staged data at every step (x must be a program input).
- `sym_size.int(x, dim, out)`: out = x's live size along dim; follows resizes of x.
- `add`, `sub`, `mul`, `floordiv` (args a, b, out; Int or SymInt each): Python's `operator`
  functions as ExecuTorch's Vulkan serialization names them (`node.target.__name__`).
A SymInt that changes marks itself resized, so only the ops that depend on it reconfigure.
"""
from __future__ import annotations

import operator

import numpy as np

from ..graph.context import SymInt
from ..program import ProgramError
from ..graph.registry import register
from .base import Op


def _symint_out(op: Op, ctx, vid: int) -> int:
    try:
        v = ctx.program.value(vid)
    except ProgramError as e:
        raise op.error(str(e)) from None
    if not isinstance(v, SymInt):
        raise op.error(f"out (value {vid}) must be a SymInt, got {type(v).__name__}")
    return vid


def _dim(op: Op, ctx, vid: int, rank: int) -> int:
    d = ctx.int(op.name, vid, "dim")
    if not -rank <= d < rank or rank == 0:
        raise op.error(f"dim {d} out of range for a {rank}-d tensor")
    return d % rank


@register("et_vk.select_as_symint.default")
class SelectAsSymInt(Op):
    reads_host_inputs = True

    def validate(self, ctx):
        self.expect_args(4)
        self.x, dim_id, index_id, self.out = self.args
        x = ctx.tensor(self.name, self.x, "self", dtypes=("int32", "int64"))
        if self.x not in ctx.program.input_ids:
            raise self.error(f"self (value {self.x}) must be a program input: its value is read from the "
                             "step's host inputs")
        self.dim = _dim(self, ctx, dim_id, len(x.dims))
        self.index = ctx.int(self.name, index_id, "index")
        _symint_out(self, ctx, self.out)

    def read_host_inputs(self, g, host):
        a = host[self.x]
        if a.ndim == 1 and 0 <= self.index < a.shape[0]:  # input_pos of every step: no numpy calls
            g.set_symint(self.out, int(a[self.index]))
            return
        size = a.shape[self.dim]
        if not -size <= self.index < size:
            raise self.step_error(f"index {self.index} out of range for dim {self.dim} of input value {self.x} "
                                  f"(live shape {list(a.shape)})")
        row = np.take(a, self.index % size, axis=self.dim)
        if row.size != 1:
            raise self.step_error(f"selection has {row.size} elements, expected exactly 1 "
                                  f"(input value {self.x}, live shape {list(a.shape)})")
        g.set_symint(self.out, int(row.reshape(-1)[0]))


@register("sym_size.int", "aten.sym_size.int")
class SymSize(Op):
    def validate(self, ctx):
        self.expect_args(3)
        self.x, dim_id, self.out = self.args
        x = ctx.tensor(self.name, self.x, "self")
        self.dim = _dim(self, ctx, dim_id, len(x.dims))
        _symint_out(self, ctx, self.out)
        self.triggers = frozenset([self.x])

    def configure(self, g):
        g.set_symint(self.out, g.tensor(self.x).dims[self.dim])


SYMINT_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv}


@register(*SYMINT_BINARY)
class SymIntBinary(Op):
    def validate(self, ctx):
        self.expect_args(3)
        a_id, b_id, self.out = self.args
        self.a = ctx.int_or_symint(self.name, a_id, "a")
        self.b = ctx.int_or_symint(self.name, b_id, "b")
        _symint_out(self, ctx, self.out)
        self.fn = SYMINT_BINARY[self.name]
        if self.name == "floordiv" and self.b == ("int", 0):
            raise self.error("division by zero")
        self.triggers = frozenset(v for k, v in (self.a, self.b) if k == "symint")

    def configure(self, g):
        a, b = g.live_int(self.a), g.live_int(self.b)
        if self.name == "floordiv" and b == 0:
            raise self.step_error(f"division by zero ({a} // 0)")
        g.set_symint(self.out, self.fn(a, b))
