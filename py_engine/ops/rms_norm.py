"""et_vk.rms_norm.default(x, weight, eps, out): RMSNorm over the last dim, fp32."""
from __future__ import annotations

import struct

from ..graph.registry import register
from .base import Op, numel, workgroup_size

PARAMS = struct.Struct("<IIfI")
assert PARAMS.size == 16  # matches `struct Params` in rms_norm.wgsl


def pow2_floor(n: int) -> int:
    return 1 << (n.bit_length() - 1)


# Threads of a row's reduction (rms_norm, add_rms_norm and the norm folded into a GEMV share it,
# so their sums run in the same order): up to 256 on GPUs. CPU adapters (SwiftShader, lavapipe)
# pay for every thread of a workgroup at each barrier: SwiftShader, SmolLM2 shapes, 60
# add_rms_norms per decode step 14.3 ms with 256 lanes, 3.5 with 64, 3.1 with 32.
NORM_LANES_CPU = 32


def norm_lanes(g, width: int) -> int:
    """The workgroup size of the norm of rows of `width` on this graph's device (a power of two)."""
    cap = NORM_LANES_CPU if getattr(g.backend, "is_cpu", False) else 256
    return pow2_floor(workgroup_size(g.limits, min(cap, max(32, width))))


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
