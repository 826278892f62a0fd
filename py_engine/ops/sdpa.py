"""sdpa_with_kv_cache.default(q, k, v, k_cache, v_cache, input_pos, seq_len, attn_mask,
dropout_p, is_causal, scale, out): write k/v into the caches, then causal GQA attention, fp32.

One graph serves prefill (S = K) and decode (S = 1): S is q's live dims[1] (the exported
`seq_len` may be a constant 1 and is ignored), input_pos is an Int or a live SymInt.
`plan()` is the one function mapping the live (S, input_pos) to every dispatch's params and
workgroup counts; configure() (at build and as the resize hook) only applies it.

Dispatches: two cache writes (update_cache.wgsl, the pipeline update_cache.default uses) and
one flash-style attention kernel (sdpa_attend.wgsl: one workgroup per (row, head), online
softmax over key chunks), so there is no scores scratch buffer to size or guard.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from ..graph.registry import register
from .base import Op, workgroup_size
from .rms_norm import pow2_floor
from .update_cache import (U32_WORDS, CacheWriter, cache_write_params, check_binding_sizes,
                           check_cache_shapes)

PARAMS = struct.Struct("<5If2I")
assert PARAMS.size == 32  # matches `struct Params` in sdpa_attend.wgsl

ATTEND_WG = 64  # keys per chunk: small enough for decode, a power of two for the reductions


@dataclass(frozen=True)
class SdpaPlan:
    k_write: tuple       # (n, dst_offset, cache_len) for update_cache.wgsl
    v_write: tuple
    attend_params: bytes
    attend_workgroups: int


@register("sdpa_with_kv_cache.default", "llama.sdpa_with_kv_cache.default")
class SdpaWithKvCache(Op):
    def validate(self, ctx):
        self.expect_args(12)
        (self.q, self.k, self.v, self.k_cache, self.v_cache, pos_id, _seq_len, mask_id,
         dropout_id, causal_id, scale_id, self.out) = self.args
        f32 = ("float32",)
        tensors = {}
        for what, vid in (("q", self.q), ("k", self.k), ("v", self.v), ("k_cache", self.k_cache),
                          ("v_cache", self.v_cache), ("out", self.out)):
            tensors[what] = ctx.tensor(self.name, vid, what, dtypes=f32, rank=4)
        dims = {what: tuple(t.dims) for what, t in tensors.items()}
        q = dims["q"]
        if q[0] != 1:
            raise self.error(f"batch must be 1, got q {list(q)}")
        if dims["k"] != dims["v"]:
            raise self.error(f"k {list(dims['k'])} and v {list(dims['v'])} differ")
        if dims["k_cache"] != dims["v_cache"]:
            raise self.error(f"k_cache {list(dims['k_cache'])} and v_cache {list(dims['v_cache'])} differ")
        if dims["k"][1] != q[1]:
            raise self.error(f"q has seq_len {q[1]}, k has {dims['k'][1]}")
        if dims["k"][3] != q[3]:
            raise self.error(f"head_dim mismatch: q has {q[3]}, k has {dims['k'][3]}")
        check_cache_shapes(self.error, dims["k"], dims["k_cache"], "k", "k_cache")
        if dims["out"] != q:
            raise self.error(f"out has dims {list(dims['out'])}, expected q's {list(q)}")
        self.n_heads, self.head_dim = q[2], q[3]
        self.n_kv_heads = dims["k"][2]
        if self.n_kv_heads == 0 or self.n_heads % self.n_kv_heads:
            raise self.error(f"q heads {self.n_heads} not a multiple of kv heads {self.n_kv_heads}")
        if self.head_dim == 0:
            raise self.error("zero head_dim")
        self.cache_dims = dims["k_cache"]
        check_binding_sizes(self.error, ctx.limits, tensors.items())
        if q[1] * self.n_heads * self.head_dim >= U32_WORDS:
            raise self.error(f"q {list(q)} holds too many words for u32 offsets")

        if not ctx.is_null(mask_id):
            raise self.error("attn_mask is not supported (only None: the causal mask is built in)")
        dropout = ctx.double(self.name, dropout_id, "dropout_p", default=0.0)
        if dropout != 0.0:
            raise self.error(f"dropout_p must be 0, got {dropout}")
        if not ctx.bool(self.name, causal_id, "is_causal", default=True):
            raise self.error("is_causal must be true (non-causal attention is not supported)")
        self.scale = ctx.double(self.name, scale_id, "scale", default=1.0 / math.sqrt(self.head_dim))

        self.wg = pow2_floor(workgroup_size(ctx.limits, ATTEND_WG))
        shared = (2 * self.head_dim + 2 * self.wg) * 4
        if shared > ctx.limits.max_workgroup_storage_size:
            raise self.error(f"head_dim {self.head_dim} needs {shared} bytes of workgroup memory, "
                             f"device allows {ctx.limits.max_workgroup_storage_size}")
        self.pos = ctx.int_or_symint(self.name, pos_id, "input_pos")
        if self.pos[0] == "int":
            self.plan(q[1], self.pos[1], self.error)  # a constant position must fit the largest S
        # q carries the live S; k/v follow it (listed too, so a lone k/v resize is caught).
        self.triggers = frozenset([self.q, self.k, self.v] + ([pos_id] if self.pos[0] == "symint" else []))

    def plan(self, seq: int, pos: int, err) -> SdpaPlan:
        """Every per-step quantity for live seq_len `seq` at `pos`; raises err(...) if out of range."""
        write = cache_write_params(err, seq, pos, self.cache_dims)
        rows = seq * self.n_heads
        params = PARAMS.pack(rows, self.n_heads, self.n_heads // self.n_kv_heads,
                             self.n_kv_heads * self.head_dim, pos, self.scale, 0, 0)
        return SdpaPlan(write, write, params, rows)

    def build(self, g):
        kc, vc = g.tensor(self.k_cache), g.tensor(self.v_cache)
        self.k_writer = CacheWriter(g, g.tensor(self.k), kc, f"{self.name}:k_cache")
        self.v_writer = CacheWriter(g, g.tensor(self.v), vc, f"{self.name}:v_cache")
        pipe = g.pipelines.get("sdpa_attend", WG=self.wg, HD=self.head_dim)
        self.params = g.uniforms.alloc(PARAMS.size, self.name)
        self.d_attend = g.add_dispatch(
            pipe, [g.tensor(self.q), kc, vc, g.tensor(self.out), self.params], f"{self.name}:attend")

    def configure(self, g):
        q, k, v = g.tensor(self.q).dims, g.tensor(self.k).dims, g.tensor(self.v).dims
        if not q[1] == k[1] == v[1] or q[2:] != g.tensor(self.q).max_dims[2:] or k != v \
                or k[2:] != self.cache_dims[2:]:
            raise self.step_error(f"live dims q {list(q)}, k {list(k)}, v {list(v)} disagree "
                                  f"(same seq_len, built heads and head_dim)")
        plan = self.plan(q[1], g.live_int(self.pos), self.step_error)
        self.k_writer.set(g, plan.k_write)
        self.v_writer.set(g, plan.v_write)
        self.params.write(plan.attend_params)
        g.set_workgroups(self.d_attend, plan.attend_workgroups)
        g.set_dims(self.out, q)
