"""py_engine.linear_gguf.default(x[..., K], weight u8 [N, row_bytes], ggml_type, bias, out[..., N]).

The weight is a GGUF tensor's raw bytes, one row per output: F32 (0), F16 (1), Q4_0 (2),
Q4_1 (3), Q8_0 (8). K = row_bytes / block_bytes * 32 (F32: row_bytes / 4, F16: / 2) and must
equal x's last dim. The same weight tensor may also feed embedding_gguf (tied output head).
"""
from __future__ import annotations

from ..graph.context import BuildContext
from ..graph.registry import register
from ..loaders.gguf import GGML_BLOCKS, GGML_TYPE_IDS, ggml_type_name
from .base import Op
from .quant_kernels import FMT_REPACKED, QuantLinearOp, WeightLayout
from .weight_repack import REPACKED, repacked_words


def gguf_layout(op: Op, ctx: BuildContext, weight_id: int, type_id: int) -> WeightLayout:
    """Layout of a GGUF weight tensor u8 [rows, row_bytes] of the ggml type in value `type_id`."""
    t = ctx.int(op.name, type_id, "ggml_type")
    if t not in GGML_BLOCKS:
        raise op.error(f"unsupported ggml type {t} ({ggml_type_name(t)}); supported: "
                       + ", ".join(f"{name} ({i})" for name, i in GGML_TYPE_IDS.items()))
    w = ctx.tensor(op.name, weight_id, "weight", dtypes=("uint8",), rank=2)
    rows, row_bytes = int(w.dims[0]), int(w.dims[1])
    per_block, block_bytes = GGML_BLOCKS[t]
    if row_bytes == 0 or row_bytes % block_bytes:
        raise op.error(f"weight row of {row_bytes} bytes is not a whole number of "
                       f"{ggml_type_name(t)} blocks ({block_bytes} bytes)")
    k = row_bytes // block_bytes * per_block
    if t in REPACKED:
        # Read through weight_repack's layout (built once per tensor at graph build).
        words = repacked_words(t, rows, k)
        return WeightLayout(FMT_REPACKED + t, rows, k, row_bytes, **words)
    return WeightLayout(t, rows, k, row_bytes)


@register("py_engine.linear_gguf.default")
class LinearGguf(QuantLinearOp):
    def validate(self, ctx):
        self.expect_args(5)
        self.x, self.weight, type_id, bias_id, self.out = self.args
        self.scales = None
        k = self.check_activation(ctx)
        layout = gguf_layout(self, ctx, self.weight, type_id)
        if layout.width != k:
            raise self.error(f"input K={k} differs from the weight's K={layout.width} "
                             f"({layout.row_bytes} bytes per row of {ggml_type_name(layout.fmt % FMT_REPACKED)})")
        self.bias = None if ctx.is_null(bias_id) else bias_id
        self.check_bias_and_out(ctx, layout)
