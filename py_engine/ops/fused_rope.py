"""py_engine.apply_rotary_emb_qk.default: et_vk.apply_rotary_emb with the same arguments
(xq, xk, freqs_cos, freqs_sin, out_list [xq_out, xk_out]) and the same validation, run as ONE
dispatch covering q and k (shaders/fused_rope.wgsl) instead of two. Emitted by
py_engine.passes.fuse_rope.
"""
from __future__ import annotations

import struct

from ..graph.dispatch import fold
from ..graph.registry import register
from .base import ceil_div
from .rope import ApplyRotaryEmb

PARAMS = struct.Struct("<8I")
assert PARAMS.size == 32  # matches `struct Params` in fused_rope.wgsl


@register("py_engine.apply_rotary_emb_qk.default")
class ApplyRotaryEmbQk(ApplyRotaryEmb):
    def validate(self, ctx):
        super().validate(ctx)
        s_max = ctx.program.value(self.xq).dims[1]
        try:
            fold(ceil_div(s_max * (self.hq + self.hkv) * self.half, self.wg), ctx.limits)
        except ValueError as e:
            raise self.error(f"q + k dispatch: {e}") from None

    def build(self, g):
        pipe = g.pipelines.get("fused_rope", WG=self.wg)
        self.params = g.uniforms.alloc(PARAMS.size, self.name)
        t = g.tensor
        self.d = g.add_dispatch(pipe, [t(self.xq), t(self.xk), t(self.cos), t(self.sin), t(self.xq_out),
                                       t(self.xk_out), self.params], self.name)

    def configure(self, g):
        s = self.live_seq_len(g)
        q_pairs, k_pairs = s * self.hq * self.half, s * self.hkv * self.half
        self.params.write(PARAMS.pack(q_pairs, k_pairs, self.hq, self.hkv, self.half, 0, 0, 0))
        g.set_workgroups(self.d, ceil_div(q_pairs + k_pairs, self.wg))
        g.set_dims(self.xq_out, (1, s, self.hq, self.head_dim))
        g.set_dims(self.xk_out, (1, s, self.hkv, self.head_dim))
