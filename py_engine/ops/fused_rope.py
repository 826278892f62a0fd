"""py_engine.apply_rotary_emb_qk.default: et_vk.apply_rotary_emb with the same arguments
(xq, xk, freqs_cos, freqs_sin, out_list [xq_out, xk_out]) and the same validation, run as ONE
dispatch covering q and k (shaders/fused_rope.wgsl) instead of two. Emitted by
py_engine.passes.fuse_rope. Its variant py_engine.apply_rotary_emb_qk_kv also writes the KV
cache (below).
"""
from __future__ import annotations

import struct

from ..graph.dispatch import fold
from ..graph.registry import register
from .base import ceil_div
from .rope import ApplyRotaryEmb
from .update_cache import CACHE_DTYPES, cache_is_f16, check_binding_sizes, check_cache_shapes, cache_write_params

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


@register("py_engine.apply_rotary_emb_qk_kv.default")
class ApplyRotaryEmbQkKv(ApplyRotaryEmbQk):
    """py_engine.apply_rotary_emb_qk_kv.default(xq, xk, xv, freqs_cos, freqs_sin, k_cache, v_cache,
    input_pos, xq_out): RoPE of q into xq_out, and the KV-cache write that sdpa_with_kv_cache
    would do next, with k rotated on the way in, all in one dispatch (fused_rope.wgsl
    `rope_kv`). Emitted by py_engine.passes.fuse_rope_kv, paired with
    py_engine.sdpa_kv_written, which then attends without writing."""

    table_rows = False  # freqs are the rows of this step (a slice), not whole tables (see below)

    def validate(self, ctx):
        self.expect_args(9)
        self.xq, self.xk, self.xv, self.cos, self.sin, self.k_cache, self.v_cache, pos_id, self.xq_out = self.args
        self.xk_out = None
        self.check_rope(ctx, ((self.xq_out, "xq_out"),))
        xk = ctx.program.value(self.xk)
        xv = ctx.tensor(self.name, self.xv, "xv", dtypes=("float32",), rank=4)
        if tuple(xv.dims) != tuple(xk.dims):
            raise self.error(f"xv {list(xv.dims)} differs from xk {list(xk.dims)}")
        caches = {}
        for what, vid in (("k_cache", self.k_cache), ("v_cache", self.v_cache)):
            caches[what] = ctx.tensor(self.name, vid, what, dtypes=CACHE_DTYPES, rank=4)
        self.kv16 = cache_is_f16(self.error, *caches.values())
        if tuple(caches["k_cache"].dims) != tuple(caches["v_cache"].dims):
            raise self.error(f"k_cache {list(caches['k_cache'].dims)} and v_cache "
                             f"{list(caches['v_cache'].dims)} differ")
        self.cache_dims = tuple(caches["k_cache"].dims)
        check_cache_shapes(self.error, tuple(xk.dims), self.cache_dims, "xk", "k_cache")
        check_binding_sizes(self.error, ctx.limits, caches.items())
        self.pos = ctx.int_or_symint(self.name, pos_id, "input_pos")
        if self.pos[0] == "int":
            cache_write_params(self.error, xk.dims[1], self.pos[1], self.cache_dims)
        s_max = xk.dims[1]
        try:
            fold(ceil_div(s_max * (self.hq + self.hkv) * self.half, self.wg), ctx.limits)
        except ValueError as e:
            raise self.error(f"q + k dispatch: {e}") from None
        # Not input_pos: the shader reads it from the SymInt's uniform slot.
        self.triggers = frozenset([self.xq, self.xk, self.xv, self.cos, self.sin])

    def build(self, g):
        pipe = g.pipelines.get("fused_rope", "rope_kv", WG=self.wg, KV16=int(self.kv16),
                               **({"POS_ROWS": 1} if self.table_rows else {}))
        # Every layer's rotation has equal params: one shared slot.
        self.share_key = ("rope_kv", self.hq, self.hkv, self.half, self.cache_dims, self.pos, self.wg)
        self.params = g.uniforms.shared(self.share_key, PARAMS.size, self.name)
        self._checked = None  # live dims last validated
        t = g.tensor
        if self.pos[0] == "symint":
            pos_slot = g.symint(self.pos[1])
        else:  # a constant position: its own slot, written once
            pos_slot = g.uniforms.alloc(16, f"{self.name}:pos")
            pos_slot.write(struct.pack("<4i", self.pos[1], 0, 0, 0))
        self.d = g.add_dispatch(pipe, [t(self.xq), t(self.xk), t(self.cos), t(self.sin), t(self.xq_out),
                                       t(self.k_cache), self.params, t(self.xv), t(self.v_cache), pos_slot],
                                self.name)

    def configure(self, g):
        t = g.tensors
        live = (t[self.xq].dims, t[self.xk].dims, t[self.xv].dims, t[self.cos].dims, t[self.sin].dims)
        if live != self._checked:  # a decode step re-runs this hook for input_pos alone
            s = self.live_seq_len(g)
            if live[2] != live[1]:
                raise self.step_error(f"live xv {list(live[2])} differs from xk {list(live[1])}")
            self._checked = live
        s = live[0][1]
        q_pairs, k_pairs = s * self.hq * self.half, s * self.hkv * self.half
        cache_len = self.cache_dims[1] * self.cache_dims[2] * self.cache_dims[3]
        self.params.write(PARAMS.pack(q_pairs, k_pairs, self.hq, self.hkv, self.half,
                                      self.hkv * self.head_dim, cache_len, self.cache_dims[1]))
        g.set_workgroups(self.d, ceil_div(q_pairs + k_pairs, self.wg))
        g.set_dims(self.xq_out, (1, s, self.hq, self.head_dim))


@register("py_engine.apply_rotary_emb_qk_kv_at.default")
class ApplyRotaryEmbQkKvAt(ApplyRotaryEmbQkKv):
    """py_engine.apply_rotary_emb_qk_kv_at.default: apply_rotary_emb_qk_kv's arguments with
    freqs_cos / freqs_sin the whole tables [R, D/2], R >= the cache's positions: step row s
    rotates by table row input_pos + s, read on the GPU (the shader has input_pos), where the
    unfused program first slices rows input_pos .. input_pos + S (two dispatches and three resize
    hooks per step). Emitted by py_engine.passes.fuse_rope_table. input_pos + S <= R follows
    from the attention's own check input_pos + S <= the cache's positions."""

    table_rows = True

    def validate(self, ctx):
        super().validate(ctx)
        rows = ctx.program.value(self.cos).dims[-2]
        if rows < self.cache_dims[1]:
            raise self.error(f"freqs tables hold {rows} rows, fewer than the cache's {self.cache_dims[1]} positions")
