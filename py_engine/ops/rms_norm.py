"""et_vk.rms_norm.default(x, weight, eps, out): RMSNorm over the last dim, fp32."""
from __future__ import annotations

import struct

from ..graph.registry import register
from .base import Op, numel, reduction_lanes

PARAMS = struct.Struct("<IIfI")
assert PARAMS.size == 16  # matches `struct Params` in rms_norm.wgsl


def norm_lanes(g, width: int) -> int:
    """Threads of the reduction of rows of `width`: rms_norm, add_rms_norm and the norm folded
    into a GEMV all take this, so their sums run in the same order."""
    return reduction_lanes(g, min(256, max(32, width)))


@register("et_vk.rms_norm.default", "aten.rms_norm.default")
class RmsNorm(Op):
    def validate(self, ctx):
        self.expect_args(4)
        self.x, self.w, eps_id, self.out = self.args
        x = ctx.tensor(self.name, self.x, "input", dtypes=("float32",))
        if not x.dims:
            raise self.error("input must have at least one dim")
        self.width = int(x.dims[-1])
        if self.width == 0:
            raise self.error("zero row width")
        ctx.tensor(self.name, self.w, "weight", dtypes=("float32",))
        self.same_dims(ctx, self.w, (self.width,), "weight")
        self.eps = ctx.double(self.name, eps_id, "eps")
        ctx.tensor(self.name, self.out, "out", dtypes=("float32",))
        self.same_dims(ctx, self.out, x.dims, "out")
        self.triggers = frozenset([self.x])

    def build(self, g):
        self.wg = norm_lanes(g, self.width)
        pipe = g.pipelines.get("rms_norm", WG=self.wg)
        self.params = g.uniforms.alloc(PARAMS.size, self.name)
        self.d = g.add_dispatch(pipe, [g.tensor(self.x), g.tensor(self.w), g.tensor(self.out), self.params],
                                self.name)

    def configure(self, g):
        dims = g.tensor(self.x).dims
        if dims[-1] != self.width:
            raise self.step_error(f"live row width {dims[-1]} differs from the built width {self.width}")
        rows = numel(dims[:-1])
        self.params.write(PARAMS.pack(rows, self.width, self.eps, 0))
        g.set_workgroups(self.d, rows)
        g.set_dims(self.out, dims)
