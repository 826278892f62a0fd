"""py_engine.add_rms_norm.default(a, b, alpha, weight, eps, sum_out, norm_out), fp32.

sum_out = a + alpha * b; norm_out = rms_norm(sum_out, weight, eps) over the last dim, in one
dispatch (emitted by py_engine.passes.fuse_add_rms_norm for llama's residual add followed by
the next RMSNorm). a and b have the same dims (no broadcasting).
"""
from __future__ import annotations

import struct

from ..graph.registry import register
from .base import Op, numel
from .rms_norm import norm_lanes

PARAMS = struct.Struct("<IIff")
assert PARAMS.size == 16  # matches `struct Params` in fused_add_rms_norm.wgsl


@register("py_engine.add_rms_norm.default")
class AddRmsNorm(Op):
    def validate(self, ctx):
        self.expect_args(7)
        self.a, self.b, alpha_id, self.w, eps_id, self.sum_out, self.norm_out = self.args
        a = ctx.tensor(self.name, self.a, "a", dtypes=("float32",))
        if not a.dims or int(a.dims[-1]) == 0:
            raise self.error(f"a must have a nonzero last dim, got dims {list(a.dims)}")
        ctx.tensor(self.name, self.b, "b", dtypes=("float32",))
        self.same_dims(ctx, self.b, a.dims, "b")
        self.width = int(a.dims[-1])
        self.alpha = ctx.double(self.name, alpha_id, "alpha", default=1.0)
        ctx.tensor(self.name, self.w, "weight", dtypes=("float32",))
        self.same_dims(ctx, self.w, (self.width,), "weight")
        self.eps = ctx.double(self.name, eps_id, "eps")
        for vid, what in ((self.sum_out, "sum_out"), (self.norm_out, "norm_out")):
            ctx.tensor(self.name, vid, what, dtypes=("float32",))
            self.same_dims(ctx, vid, a.dims, what)
        self.triggers = frozenset([self.a, self.b])

    def build(self, g):
        self.wg = norm_lanes(g, self.width)  # rms_norm's: the same reduction order
        pipe = g.pipelines.get("fused_add_rms_norm", WG=self.wg)
        self.params = g.uniforms.alloc(PARAMS.size, self.name)
        t = g.tensor
        self.d = g.add_dispatch(pipe, [t(self.a), t(self.b), t(self.w), t(self.sum_out), t(self.norm_out),
                                       self.params], self.name)

    def configure(self, g):
        dims = g.tensor(self.a).dims
        if g.tensor(self.b).dims != dims:
            raise self.step_error(f"live a {list(dims)} and b {list(g.tensor(self.b).dims)} differ")
        if dims[-1] != self.width:
            raise self.step_error(f"live row width {dims[-1]} differs from the built width {self.width}")
        rows = numel(dims[:-1])
        self.params.write(PARAMS.pack(rows, self.width, self.eps, self.alpha))
        g.set_workgroups(self.d, rows)
        g.set_dims(self.sum_out, dims)
        g.set_dims(self.norm_out, dims)
