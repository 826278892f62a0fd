"""aten.argmax.default(x, dim=-1, keepdim, out): per-row argmax on the GPU, so decode reads
back a 4-byte token id instead of the whole logits row."""
from __future__ import annotations

import struct

from ..graph.registry import register
from .base import Op, numel, workgroup_size
from .rms_norm import pow2_floor

PARAMS = struct.Struct("<4I")
assert PARAMS.size == 16  # matches `struct Params` in argmax.wgsl


@register("aten.argmax.default")
class Argmax(Op):
    def validate(self, ctx):
        self.expect_args(4)
        self.x, dim_id, keep_id, self.out = self.args
        x = ctx.tensor(self.name, self.x, "self", dtypes=("float32",))
        if not x.dims or x.dims[-1] == 0:
            raise self.error("needs a non-empty last dim")
        dim = ctx.int(self.name, dim_id, "dim")
        if dim not in (-1, len(x.dims) - 1):
            raise self.error(f"only the last dim is supported, got dim {dim}")
        keep = ctx.bool(self.name, keep_id, "keepdim", default=False)
        want = tuple(x.dims[:-1]) + ((1,) if keep else ())
        self.keep = keep
        out = ctx.tensor(self.name, self.out, "out", dtypes=("int32", "int64"))
        if tuple(out.dims) != want:
            raise self.error(f"out has dims {list(out.dims)}, expected {list(want)}")
        self.width = int(x.dims[-1])
        self.triggers = frozenset([self.x])

    def build(self, g):
        self.wg = pow2_floor(workgroup_size(g.limits, 256))
        pipe = g.pipelines.get("argmax", WG=self.wg)
        self.params = g.uniforms.alloc(PARAMS.size, self.name)
        self.d = g.add_dispatch(pipe, [g.tensor(self.x), g.tensor(self.out), self.params], self.name)

    def configure(self, g):
        dims = g.tensor(self.x).dims
        if dims[-1] != self.width:
            raise self.step_error(f"live row width {dims[-1]} differs from the built width {self.width}")
        rows = numel(dims[:-1])
        self.params.write(PARAMS.pack(rows, self.width, 0, 0))
        g.set_workgroups(self.d, rows)
        g.set_dims(self.out, tuple(dims[:-1]) + ((1,) if self.keep else ()))
