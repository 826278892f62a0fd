"""Embeddings: rows of a weight table gathered by int32/int64 indices, fp32 out[..., E].

aten.embedding.default(weight f32 [V, E], indices, [padding_idx, scale_grad_by_freq, sparse], out)
    (padding_idx and the rest only matter for gradients).
et_vk.embedding_q4gsw.default(weight u8 [V, E/2], scales f32 [V, E/G], group_size, indices,
    is_linear_weight, out): groupwise 4-bit; is_linear_weight picks the nibble order (True: low
    nibble = even e, the q4gsw linear packing, so a tied head can share the bytes).

An index outside [0, V) gives a zero row on the GPU (the kernel never reads out of bounds);
when the indices are a program input the host also rejects it with a StepError naming it.
"""
from __future__ import annotations

from ..graph.registry import register
from .base import Op, numel
from .quant_kernels import (FMT_F32, FMT_Q4_HIGH_EVEN, FMT_Q4_LOW_EVEN, QuantGather, WeightLayout,
                            check_dispatch, check_group_size, device_layout, gather_workgroups, weight_buffer)


class GatherOp(Op):
    """Shared validation, build and resize hook; subclasses set weight/scales/indices/out."""

    reads_host_inputs = True

    def check_indices_and_out(self, ctx, layout: WeightLayout) -> None:
        idx = ctx.tensor(self.name, self.indices, "indices", dtypes=("int32", "int64"))
        ctx.tensor(self.name, self.out, "out", dtypes=("float32",))
        self.same_dims(ctx, self.out, tuple(idx.dims) + (layout.width,), "out")
        check_dispatch(self, ctx, gather_workgroups(numel(idx.dims), layout.width), "the gather")
        self.layout = layout
        self.triggers = frozenset([self.indices])

    def repacked_ids(self) -> frozenset:
        return frozenset([self.weight]) if self.layout.repacked else frozenset()

    def build(self, g):
        t = g.tensor
        self.layout = device_layout(g.backend, self.layout)
        self.gather = QuantGather(g, self.layout, t(self.indices), weight_buffer(g, self.layout, self.weight),
                                  t(self.scales) if self.scales is not None else None, t(self.out), self.name)

    def configure(self, g):
        dims = g.tensor(self.indices).dims
        self.gather.set_count(g, numel(dims))
        g.set_dims(self.out, tuple(dims) + (self.layout.width,))

    def read_host_inputs(self, g, host):
        idx = host.get(self.indices)
        if idx is not None and idx.size:
            v = self.layout.rows
            if idx.size == 1 and 0 <= int(idx.flat[0]) < v:  # a decode step: one id, no array ops
                return
            bad = (idx < 0) | (idx >= v)
            if bad.any():
                raise self.step_error(f"index {int(idx[bad].ravel()[0])} out of range for {v} rows")


@register("aten.embedding.default")
class Embedding(GatherOp):
    def validate(self, ctx):
        self.expect_args((3, 4, 5, 6))
        self.weight, self.indices, self.out = self.args[0], self.args[1], self.args[-1]
        self.scales = None
        w = ctx.tensor(self.name, self.weight, "weight", dtypes=("float32",), rank=2)
        v, e = int(w.dims[0]), int(w.dims[1])
        if e == 0:
            raise self.error("weight has embedding dim 0")
        self.check_indices_and_out(ctx, WeightLayout(FMT_F32, v, e, 4 * e))


@register("et_vk.embedding_q4gsw.default")
class EmbeddingQ4gsw(GatherOp):
    def validate(self, ctx):
        self.expect_args((5, 6))
        self.weight, self.scales, gs_id, self.indices = self.args[:4]
        self.out = self.args[-1]
        linear = ctx.bool(self.name, self.args[4], "is_linear_weight") if len(self.args) == 6 else False
        w = ctx.tensor(self.name, self.weight, "weight", dtypes=("uint8",), rank=2)
        s = ctx.tensor(self.name, self.scales, "weight_scales", dtypes=("float32",), rank=2)
        g = ctx.int(self.name, gs_id, "group_size")
        check_group_size(self, g)
        v, e = int(w.dims[0]), 2 * int(w.dims[1])
        if e == 0 or e % g:
            raise self.error(f"embedding dim {e} is not a positive multiple of group_size {g}")
        if tuple(s.dims) != (v, e // g):
            raise self.error(f"weight_scales has dims {list(s.dims)}, expected [V={v}, E/G={e // g}]")
        fmt = FMT_Q4_LOW_EVEN if linear else FMT_Q4_HIGH_EVEN
        self.check_indices_and_out(ctx, WeightLayout(fmt, v, e, e // 2, g, 1, e // g))
