"""aten.sigmoid.default and aten.silu.default, fp32."""
from __future__ import annotations

import struct

from ..graph.registry import register
from .base import Op, ceil_div, numel, workgroup_size

PARAMS = struct.Struct("<4I")
assert PARAMS.size == 16  # matches `struct Params` in unary.wgsl
OPCODES = {"aten.sigmoid.default": 0, "aten.silu.default": 1}


@register(*OPCODES)
class UnaryOp(Op):
    def validate(self, ctx):
        self.expect_args(2)
        self.x, self.out = self.args
        x = ctx.tensor(self.name, self.x, "self", dtypes=("float32",))
        self.same_dims(ctx, self.out, x.dims, "out")
        ctx.tensor(self.name, self.out, "out", dtypes=("float32",))
        self.triggers = frozenset([self.x])

    def build(self, g):
        self.wg = workgroup_size(g.limits)
        pipe = g.pipelines.get("unary", WG=self.wg, OP=OPCODES[self.name])
        self.params = g.uniforms.alloc(PARAMS.size, self.name)
        self.d = g.add_dispatch(pipe, [g.tensor(self.x), g.tensor(self.out), self.params], self.name)

    def configure(self, g):
        dims = g.tensor(self.x).dims
        n = numel(dims)
        self.params.write(PARAMS.pack(n, 0, 0, 0))
        g.set_workgroups(self.d, ceil_div(n, self.wg))
        g.set_dims(self.out, dims)
