"""py_engine.sdpa_merge_linear.default(attn, input_pos, x, weight, ggml_type, bias, out): the
linear_gguf of x = view(attn) where attn is a decode attention's output (emitted by
py_engine.passes.fuse_sdpa_merge_linear; bias must be None).

When a decode step splits the attention's keys (flash-decoding), the attention leaves partials
that its merge dispatch combines into attn. This op's `gemv_merge` (fused_linear.wgsl) instead
merges them in every workgroup's prologue, in the merge's order, and multiplies: the merge
dispatch and the plain GEMV idle, one dispatch per layer fewer. attn and x then stay stale,
which is why the pass requires this linear to be their only reader. Other steps (one split,
prefill) run the plain linear. Needs repacked GGUF weights and K = heads * head_dim.
"""
from __future__ import annotations

from ..graph.pipelines import subgroup_lanes
from ..graph.registry import register
from .base import ceil_div, numel
from .fused_linear import SHADER
from .linear_gguf import LinearGguf
from .quant_kernels import gemv_shape, weight_buffer

MAXS = 64  # `MAXS` of the merge prologue (sdpa.MAX_SPLITS)
# Off: the attention's merge dispatch and the plain GEMV, as unfused (a switch for benchmarks).
MERGE_IN_GEMV = True


@register("py_engine.sdpa_merge_linear.default")
class SdpaMergeLinear(LinearGguf):
    def validate(self, ctx):
        self.expect_args(7)
        self.attn, self.pos = self.args[0], self.args[1]
        attn = ctx.tensor(self.name, self.attn, "attn", dtypes=("float32",), rank=4)
        self.args = self.args[2:]
        try:
            super().validate(ctx)
        finally:
            self.args = (self.attn, self.pos) + tuple(self.args)
        heads, head_dim = int(attn.dims[2]), int(attn.dims[3])
        if self.bias is not None:
            raise self.error("a bias is not supported (the merge GEMV adds none)")
        if heads * head_dim != self.layout.width:
            raise self.error(f"attn has {heads} heads of {head_dim}, the linear's K is {self.layout.width}")
        self.heads, self.head_dim = heads, head_dim
        self.triggers = self.triggers | {self.pos}

    def build(self, g):
        super().build(g)
        self.d_merge_gemv = None
        self.sdpa = g.shared_state(("sdpa_out", self.attn), lambda: None)
        k = self.layout.width
        shape = gemv_shape(g.backend)
        shared = (shape.wg + k + self.heads * (MAXS + 1)) * 4  # red, xn, me_s, minv_s
        if (not MERGE_IN_GEMV or self.sdpa is None or not self.layout.repacked or k % 32
                or shared > g.limits.max_workgroup_storage_size):
            return
        self.cols = shape.wg // shape.tpr
        pipe = g.pipelines.get(SHADER, "gemv_merge", FMT=self.layout.fmt, WG=shape.wg, TPR=shape.tpr,
                               SG=subgroup_lanes(g.backend, shape.tpr), KV4=k // 4, HD=self.head_dim,
                               MHQ=self.heads, MSG=max(self.sdpa.merge_wg // self.head_dim, 1))
        w = weight_buffer(g, self.layout, self.weight)
        buffers = ([None, w, None, self.mm.params, None, g.tensor(self.out)] + [None] * 3 + [w] + [None] * 5
                   + [self.sdpa.scratch, self.sdpa.merge_params])
        self.d_merge_gemv = g.add_dispatch(pipe, buffers, f"{self.name}:gemv_merge")

    def configure(self, g):
        super().configure(g)
        if self.d_merge_gemv is None:
            return
        m = numel(g.tensor(self.x).dims[:-1])
        merging = m == 1 and g.workgroups(self.sdpa.d_merge) > 0
        g.set_workgroups(self.d_merge_gemv, ceil_div(self.layout.rows, self.cols) if merging else 0)
        if merging:
            g.set_workgroups(self.sdpa.d_merge, 0)
            g.set_workgroups(self.mm.d_gemv, 0)
