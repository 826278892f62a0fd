"""et_vk.prepack.default(constant, out) (and clone): copy a tensor into `out` of the same shape."""
from __future__ import annotations

from ..graph.registry import register
from .base import Op
from .copy import CopyKernel


@register("et_vk.prepack.default", "aten.clone.default", "aten.alias_copy.default")
class Prepack(Op):
    def validate(self, ctx):
        self.expect_args((2, 3))
        self.x, self.out = self.args[0], self.args[-1]
        x = ctx.tensor(self.name, self.x, "input")
        out = self.same_dims(ctx, self.out, x.dims, "out")
        if x.dtype != out.dtype:
            raise self.error(f"out dtype {out.dtype} differs from input dtype {x.dtype}")
        self.triggers = frozenset([self.x])

    def build(self, g):
        self.copy = CopyKernel(g, g.tensor(self.x), g.tensor(self.out), self.name)

    def configure(self, g):
        x = g.tensor(self.x)
        g.set_dims(self.out, x.dims)
        self.copy.set(g, x.numel * x.itemsize)
