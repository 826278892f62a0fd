"""aten.add/sub/mul/div.Tensor: elementwise with numpy broadcasting (up to 8 dims), fp32."""
from __future__ import annotations

import struct

from ..graph.context import Double, Int
from .base import Op, broadcast_shape, ceil_div, numel, workgroup_size
from ..graph.registry import register

MAX_RANK = 8
PARAMS = struct.Struct("<IIffIIII8I8I8I")
assert PARAMS.size == 128  # matches `struct Params` in binary.wgsl

OPCODES = {"aten.add.Tensor": 0, "aten.mul.Tensor": 1, "aten.sub.Tensor": 2, "aten.div.Tensor": 3}


def contiguous_strides(dims) -> list:
    strides, s = [], 1
    for d in reversed(dims):
        strides.append(s)
        s *= d
    return strides[::-1]


def broadcast_strides(in_dims, out_dims) -> list:
    """Strides of `in_dims` viewed at `out_dims` (0 along broadcast dims)."""
    pad = len(out_dims) - len(in_dims)
    dims = (1,) * pad + tuple(in_dims)
    strides = contiguous_strides(dims)
    return [0 if d == 1 and o != 1 else s for d, s, o in zip(dims, strides, out_dims)]


@register(*OPCODES)
class BinaryOp(Op):
    def validate(self, ctx):
        # add/sub: (a, b, alpha, out); mul/div: (a, b, out)
        has_alpha = self.name in ("aten.add.Tensor", "aten.sub.Tensor")
        self.expect_args((4,) if has_alpha else (3,))
        self.a, self.b, self.out = self.args[0], self.args[1], self.args[-1]
        self.alpha = ctx.double(self.name, self.args[2], "alpha", default=1.0) if has_alpha else 1.0
        a = ctx.tensor(self.name, self.a, "self", dtypes=("float32",))
        bv = ctx.program.value(self.b)
        self.b_scalar = None
        if isinstance(bv, (Int, Double)):
            self.b_scalar = float(bv.value)
            b_dims = ()
        else:
            b_dims = ctx.tensor(self.name, self.b, "other", dtypes=("float32",)).dims
        out = ctx.tensor(self.name, self.out, "out", dtypes=("float32",))
        want = broadcast_shape(a.dims, b_dims, self.error)
        if len(want) > MAX_RANK:
            raise self.error(f"rank {len(want)} exceeds {MAX_RANK}")
        if tuple(out.dims) != want:
            raise self.error(f"out has dims {list(out.dims)}, broadcasting gives {list(want)}")
        self.triggers = frozenset([self.a] if self.b_scalar is not None else [self.a, self.b])

    def build(self, g):
        self.wg = workgroup_size(g.limits)
        pipe = g.pipelines.get("binary", WG=self.wg, OP=OPCODES[self.name])
        self.params = g.uniforms.alloc(PARAMS.size, self.name)
        a = g.tensor(self.a)
        b = a if self.b_scalar is not None else g.tensor(self.b)
        self.d = g.add_dispatch(pipe, [a, b, g.tensor(self.out), self.params], self.name)

    def configure(self, g):
        a_dims = g.tensor(self.a).dims
        b_dims = () if self.b_scalar is not None else g.tensor(self.b).dims
        out_dims = broadcast_shape(a_dims, b_dims, self.step_error)
        n = numel(out_dims)
        pad = [0] * (MAX_RANK - len(out_dims))
        a_str = broadcast_strides(a_dims, out_dims)
        b_str = broadcast_strides(b_dims, out_dims) if self.b_scalar is None else [0] * len(out_dims)
        self.params.write(PARAMS.pack(
            n, len(out_dims), self.alpha, self.b_scalar or 0.0, int(self.b_scalar is not None), 0, 0, 0,
            *out_dims, *pad, *a_str, *pad, *b_str, *pad))
        g.set_workgroups(self.d, ceil_div(n, self.wg))
        g.set_dims(self.out, out_dims)
