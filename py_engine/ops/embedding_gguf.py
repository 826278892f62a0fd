"""py_engine.embedding_gguf.default(weight u8 [V, row_bytes], ggml_type, indices, out[..., E]).

Rows of a GGUF tensor (F32, F16, Q4_0, Q4_1, Q8_0) gathered by int32/int64 indices and
dequantized to fp32; E = elements per row. Kernel and index checks shared with embedding.py.
"""
from __future__ import annotations

from ..graph.registry import register
from .embedding import GatherOp
from .linear_gguf import gguf_layout


@register("py_engine.embedding_gguf.default")
class EmbeddingGguf(GatherOp):
    def validate(self, ctx):
        self.expect_args(4)
        self.weight, type_id, self.indices, self.out = self.args
        self.scales = None
        self.check_indices_and_out(ctx, gguf_layout(self, ctx, self.weight, type_id))
