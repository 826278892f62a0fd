"""aten.view_copy.default(x, sizes, out): a reshape, done as a word copy into `out`.

sizes is an IntList (one -1 allowed) or a ValueList mixing Ints and SymInts. At a live
shape, -1 is inferred from the live element count; a fixed size equal to a resized input
dim's bound follows that dim's live value (how static exports express a dynamic S).
"""
from __future__ import annotations

from ..graph.context import IntList, ValueList
from ..graph.registry import register
from .base import Op, numel
from .copy import CopyKernel


def resolve_sizes(sizes, in_dims, in_max_dims, err) -> tuple:
    """Live output dims of a view: `sizes` holds ints (maybe one -1)."""
    sizes = list(sizes)
    n = numel(in_dims)
    if sizes.count(-1) > 1:
        raise err(f"sizes {sizes} have more than one -1")
    if -1 in sizes:
        rest = numel(s for s in sizes if s != -1)
        if rest == 0 or n % rest:
            raise err(f"cannot view {n} elements as {sizes}")
        sizes[sizes.index(-1)] = n // rest
    if numel(sizes) != n:
        # Replace, leftmost first, one size equal to a resized dim's bound by its live value.
        resized = [(m, d) for d, m in zip(in_dims, in_max_dims) if d != m]
        for bound, live in resized:
            if bound in sizes:
                sizes[sizes.index(bound)] = live
        if numel(sizes) != n:
            raise err(f"cannot view {n} elements (dims {list(in_dims)}) as {sizes}")
    return tuple(sizes)


@register("aten.view_copy.default", "aten._unsafe_view.default", "aten.reshape.default")
class ViewCopy(Op):
    def validate(self, ctx):
        self.expect_args(3)
        self.x, sizes_id, self.out = self.args
        x = ctx.tensor(self.name, self.x, "self")
        out = ctx.tensor(self.name, self.out, "out")
        if x.dtype != out.dtype:
            raise self.error(f"out dtype {out.dtype} differs from input dtype {x.dtype}")
        sv = ctx.program.value(sizes_id)
        if isinstance(sv, IntList):
            self.sizes = [("int", int(s)) for s in sv.values]
        elif isinstance(sv, ValueList):
            self.sizes = [ctx.int_or_symint(self.name, i, "size") for i in sv.ids]
        else:
            raise self.error(f"sizes (value {sizes_id}) must be an IntList or ValueList")
        if x.numel != out.numel:
            raise self.error(f"out dims {list(out.dims)} hold {out.numel} elements, input has {x.numel}")
        self.triggers = frozenset([self.x] + [v for k, v in self.sizes if k == "symint"])
        # The graph may let out share x's buffer (graph/aliasing.py); then no copy runs.
        self.alias_pair = (self.x, self.out)

    def build(self, g):
        self.copy = None if self.out in g.aliases else CopyKernel(g, g.tensor(self.x), g.tensor(self.out), self.name)

    def configure(self, g):
        x = g.tensor(self.x)
        sizes = [g.live_int(s) for s in self.sizes]
        dims = resolve_sizes(sizes, x.dims, x.max_dims, self.step_error)
        g.set_dims(self.out, dims)
        if self.copy is not None:
            self.copy.set(g, x.numel * x.itemsize)
