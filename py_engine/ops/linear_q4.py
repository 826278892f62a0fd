"""ExecuTorch's 4-bit weight-only linears, fp32 activations (kernels in quant_kernels.py).

et_vk.linear_q4gsw.default(x[..., K], weight u8 [N, K/2], scales f32 [K/G, N], group_size, bias, out)
    groupwise symmetric; byte j of row n = (q[2j+1] + 8) << 4 | (q[2j] + 8) (low nibble = even k).
    ExecuTorch may pad the packed K to a multiple of 8 and scales' N to a multiple of 4: the
    row strides come from the tensors' dims, the extra columns are never read.
et_vk.linear_qcs4w.default(x[..., K], weight u8 [N, ceil(K/2)], scales f32 [N], out)
    per-channel symmetric; high nibble = even k (see reference/quant_linear.py).
"""
from __future__ import annotations

from ..graph.registry import register
from .base import ceil_div
from .quant_kernels import (CHUNK, FMT_Q4_HIGH_EVEN, FMT_Q4_LOW_EVEN, QuantLinearOp, WeightLayout,
                            check_group_size)

# K may be padded up to a multiple of 8 in the packed weight (pack_4bit_weight_tensor).
MAX_K_PAD = 8


def packed_row_bytes(op, weight_dims, k: int) -> int:
    """The packed weight's row stride, checked against the activation's K."""
    kp = int(weight_dims[1])
    need = ceil_div(k, 2)
    if not need <= kp < need + MAX_K_PAD // 2:
        raise op.error(f"weight {list(weight_dims)} does not fit input K={k} "
                       f"(needs {need} packed bytes per row, padding of at most {MAX_K_PAD // 2 - 1})")
    return kp


@register("et_vk.linear_q4gsw.default")
class LinearQ4gsw(QuantLinearOp):
    def validate(self, ctx):
        self.expect_args(6)
        self.x, self.weight, self.scales, gs_id, bias_id, self.out = self.args
        k = self.check_activation(ctx)
        w = ctx.tensor(self.name, self.weight, "weight", dtypes=("uint8",), rank=2)
        s = ctx.tensor(self.name, self.scales, "weight_scales", dtypes=("float32",), rank=2)
        g = ctx.int(self.name, gs_id, "group_size")
        check_group_size(self, g)
        n = int(w.dims[0])
        kp = packed_row_bytes(self, w.dims, k)
        groups, padded_n = int(s.dims[0]), int(s.dims[1])
        if groups != ceil_div(k, g):
            raise self.error(f"weight_scales {list(s.dims)} has {groups} groups; K={k} with "
                             f"group_size {g} needs {ceil_div(k, g)}")
        if padded_n < n:
            raise self.error(f"weight_scales {list(s.dims)} covers fewer than N={n} outputs")
        self.bias = None if ctx.is_null(bias_id) else bias_id
        self.check_bias_and_out(ctx, WeightLayout(FMT_Q4_LOW_EVEN, n, k, kp, g, padded_n, 1))


@register("et_vk.linear_qcs4w.default")
class LinearQcs4w(QuantLinearOp):
    def validate(self, ctx):
        self.expect_args(4)
        self.x, self.weight, self.scales, self.out = self.args
        self.bias = None
        k = self.check_activation(ctx)
        w = ctx.tensor(self.name, self.weight, "weight", dtypes=("uint8",), rank=2)
        n = int(w.dims[0])
        kp = packed_row_bytes(self, w.dims, k)
        ctx.tensor(self.name, self.scales, "weight_scales", dtypes=("float32",))
        self.same_dims(ctx, self.scales, (n,), "weight_scales")
        # One group spanning the whole row: scale index = n.
        whole_row = ceil_div(k, CHUNK) * CHUNK
        self.check_bias_and_out(ctx, WeightLayout(FMT_Q4_HIGH_EVEN, n, k, kp, whole_row, 0, 1))
