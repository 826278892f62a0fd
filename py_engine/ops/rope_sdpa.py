"""py_engine.rope_sdpa_kv.default(<apply_rotary_emb_qk_kv's 9 arguments>, <sdpa_kv_written's 12>):
the rotation + KV-cache write of a layer and the attention that reads them, as one op (emitted
by py_engine.passes.fuse_rope_sdpa).

Prefill steps, and adapters where the decode attention kernel is not used, run the two parts'
own dispatches (fused_rope.wgsl `rope_kv`, then the attention). A decode step on
sdpa_decode.wgsl runs its `main_rope` entry alone: it rotates q as it loads it and writes the
new key (rotated) and value into the caches itself, so the rope_kv dispatch idles: one dispatch
per layer fewer. q_rot, which only the attention reads, then stays stale.
"""
from __future__ import annotations

from ..graph.registry import register
from .base import Op
from .fused_rope import ApplyRotaryEmbQkKv, ApplyRotaryEmbQkKvAt
from .sdpa import SdpaKvWritten


@register("py_engine.rope_sdpa_kv.default")
class RopeSdpaKv(Op):
    rope_op = ApplyRotaryEmbQkKv

    def validate(self, ctx):
        self.expect_args(21)
        self.rope = self.rope_op(ctx, f"{self.name}:rope", self.args[:9])
        self.attn = SdpaKvWritten(ctx, f"{self.name}:sdpa", self.args[9:])
        r, a = self.rope, self.attn
        pairs = ((r.xq_out, a.q, "rope's q_out and the attention's q"), (r.xk, a.k, "k"), (r.xv, a.v, "v"),
                 (r.k_cache, a.k_cache, "k_cache"), (r.v_cache, a.v_cache, "v_cache"),
                 (r.pos, a.pos, "input_pos"))
        for x, y, what in pairs:
            if x != y:
                raise self.error(f"the rotation and the attention disagree on {what}")
        a.rope_inputs = (r.xq, r.cos, r.sin)
        a.rope_table_rows = r.table_rows

    def build(self, g):
        self.rope.build(g)
        self.attn.build(g)
        self.triggers = self.rope.triggers | self.attn.triggers  # set at build: the attention's may shrink

    def configure(self, g):
        if g.triggered(self.rope.triggers):
            self.rope.configure(g)
            if self.attn.rope_folded and g.tensor(self.rope.xq).dims[1] == 1:
                g.set_workgroups(self.rope.d, 0)  # main_rope rotates and writes the cache
        if g.triggered(self.attn.triggers):
            self.attn.configure(g)

    def destroy(self, g):
        self.rope.destroy(g)
        self.attn.destroy(g)


@register("py_engine.rope_sdpa_kv_at.default")
class RopeSdpaKvAt(RopeSdpaKv):
    """rope_sdpa_kv whose rotation is py_engine.apply_rotary_emb_qk_kv_at (cos / sin the whole
    tables, rows from input_pos on the GPU). Emitted by py_engine.passes.fuse_rope_table."""

    rope_op = ApplyRotaryEmbQkKvAt
