"""sdpa_with_kv_cache.default(q, k, v, k_cache, v_cache, input_pos, seq_len, attn_mask,
dropout_p, is_causal, scale, out): write k/v into the caches, then causal GQA attention, fp32
(float16 caches hold the keys and values rounded to f16: every kernel's KV16 variant).

One graph serves prefill (S = K) and decode (S = 1): S is q's live dims[1] (the exported
`seq_len` may be a constant 1 and is ignored), input_pos is an Int or a live SymInt.
`plan()` is the one function mapping the live (S, input_pos) to every dispatch's params and
workgroup counts; configure() (at build and as the resize hook) only applies it.

Dispatches:
1. one write of both caches (update_cache.wgsl's `write_kv` entry);
2. sdpa_attend.wgsl: one workgroup per (key split, kv head, block of query rows), where the
   rows of a kv head are its G = Hq/Hkv q heads times the S positions, so each K/V row read
   serves a whole block; tiles past the block's causal limit are skipped. Two pipelines of it,
   one dispatch each (the idle one gets 0 workgroups): blocks of BLOCK_ROWS rows, and blocks
   of exactly G rows for a decode step (S = 1) so no work is spent on empty rows; on GPUs (not
   CPU adapters) and when the shapes fit, a decode step instead runs sdpa_decode.wgsl, a kernel
   with threads cooperating on each key's dot product and parallel softmax reductions, in tiles
   of DECODE_TILE keys (the third dispatch; the other two then get 0 workgroups);
   Prefill chunks (S > 1) run sdpa_prefill.wgsl instead where the head fits (head_dim a multiple
   of 4, at most 64): K/V tiles in workgroup memory, each query row shared by a few threads
   ("key lanes", every lane-th key; their softmax states merged at the end) on GPUs, one thread
   per row on CPU adapters (its own dispatch; the attend dispatches then get 0 workgroups);
3. sdpa_merge.wgsl (flash-decoding): when the rows fit one block (decode) and the context spans
   several key tiles, the keys are split so many workgroups share the work; each leaves partial
   (acc, max, sum) rows in op-owned scratch (sized at build for the largest context, freed in
   destroy) and this dispatch combines them. With one split it gets 0 workgroups (skipped).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from ..graph.registry import register
from .base import Op, ceil_div, pow2_floor, workgroup_size
from .update_cache import (CACHE_DTYPES, U32_WORDS, CacheWriter, cache_is_f16, cache_write_params,
                           check_binding_sizes, check_cache_shapes)

ATTEND_PARAMS = struct.Struct("<7If4I")
assert ATTEND_PARAMS.size == 48  # matches `struct Params` in sdpa_attend.wgsl
DECODE_PARAMS = struct.Struct("<5If2I")
assert DECODE_PARAMS.size == 32  # matches `struct Params` in sdpa_decode.wgsl
PREFILL_PARAMS = struct.Struct("<5If2I")
assert PREFILL_PARAMS.size == 32  # matches `struct Params` in sdpa_prefill.wgsl
MERGE_PARAMS = struct.Struct("<8I")
assert MERGE_PARAMS.size == 32  # matches `struct Params` in sdpa_merge.wgsl

ATTEND_WG = 64    # threads per workgroup = keys per tile (a power of two)
BLOCK_ROWS = 8    # query rows per prefill workgroup (<= `BQ` in sdpa_attend.wgsl); 8 was best on an H100
DIMS_PER_THREAD = 4  # `DPT` in sdpa_attend.wgsl: head_dim <= DPT * workgroup size
MAX_SPLITS = 64   # key splits at most (`MAXS` in sdpa_merge.wgsl); longer contexts give each split several tiles
MERGE_WG = 256    # merge threads: split stats loaded at once, splits of a dim shared by WG / HD groups
MERGE_WG_CPU = 64  # lavapipe: 256 threads cost 2x (123 -> 275 us at 4 splits)
DECODE_WG = 128   # threads of a sdpa_decode.wgsl workgroup (a power of two, 8..256)
DECODE_TILE = 32  # `TILE` in sdpa_decode.wgsl: keys per tile (also the split granularity)
DECODE_LPK = 8    # `LPK` in sdpa_decode.wgsl: threads sharing one key's dot product
DECODE_BQ = 8     # `BQ` in sdpa_decode.wgsl: rows (G) at most
FAST_DECODE_ON_CPU = False  # lavapipe: ~2x slower than sdpa_attend.wgsl (327 -> 638 us at 17 keys)
# CPU adapters decode on sdpa_decode_cpu.wgsl (G <= 4 rows, head_dim a multiple of 4), one workgroup
# per kv head, no key splits. SwiftShader, SmolLM2 shapes, us per layer at 16 / 64 / 200 keys:
# 83 / 204 / 331 against sdpa_attend.wgsl's 250 / 577-760 (with its split merge) / 1608-1990.
CPU_DECODE = True
CPU_DECODE_ROWS = 4
# With subgroups, CPU adapters run every step on sdpa_decode_lanes.wgsl instead, prompts too
# (head_dim 16, 32 or 64 on SwiftShader's 4-lane subgroups): 16-float slices per lane, no
# barrier. SwiftShader, SmolLM2 shapes, us per layer at 16 / 200 keys: 45 / 174 against 78 / 329.
DECODE_LANES = True
ROPE_FOLD_STORAGE = 9  # storage buffers of sdpa_decode.wgsl's main_rope
DECODE_SOLO_TILES = 2  # up to this many tiles one workgroup per kv head walks them (no merge)
# sdpa_prefill.wgsl: (`RW` query rows per workgroup, `KL` threads sharing a row's keys). GPUs need
# the lanes to keep enough threads busy (H100, 512 tokens, per layer: 209 us with one thread per
# row, 112 with 8 lanes, 58 with the next tile loaded early); on lavapipe a thread is a SIMD lane
# and one per row is best (4.5 ms per layer at 32 tokens, 7.8 with lanes).
PREFILL_GPU = (8, 8)
PREFILL_CPU = (32, 1)
PREFILL_TILES = (32, 16)  # `TK` candidates, keys per tile: the largest whose memory fits the device
PREFILL_MAX_HD = 64  # 4 * `MAXV`
PREFILL_MAX_J = 16   # `MAXJ`: TK / KL at most
PREFILL_MAX_E = 8    # `MAXE`: tile vec4s per thread at most


_PLANS: dict = {}  # cached_plan(): (plan_key, S, input_pos) -> SdpaPlan
LAYER_GROUPS = True  # configure the attention of all layers at once (_LayerGroup); off: op by op


@dataclass(frozen=True)
class SdpaPlan:
    cache_write: tuple   # (n, dst_offset, cache_len) for update_cache.wgsl's write_kv
    attend_params: bytes    # for whichever attend dispatch runs
    attend_workgroups: int  # blocks of BLOCK_ROWS rows
    decode_workgroups: int  # blocks of G rows (S = 1), sdpa_attend.wgsl
    fast_params: bytes      # for sdpa_decode.wgsl
    fast_workgroups: int    # (key split, kv head) pairs of sdpa_decode.wgsl
    prefill_params: bytes   # for sdpa_prefill.wgsl
    prefill_workgroups: int  # (kv head, block of RW rows) pairs
    merge_params: bytes
    merge_workgroups: int  # 0 when there is one split
    block_params: bytes = b""  # decode steps of attention blocks (ops/attention_block.py)


@register("sdpa_with_kv_cache.default", "llama.sdpa_with_kv_cache.default")
class SdpaWithKvCache(Op):
    writes_cache = True
    rope_inputs = None  # (xq, cos, sin) value ids when py_engine.rope_sdpa_kv folds its RoPE in
    rope_table_rows = False  # ... and cos / sin are whole tables (py_engine.rope_sdpa_kv_at)
    block = None  # attention_block.BlockParams when py_engine.rope_sdpa_kv_block runs as a block

    def validate(self, ctx):
        self.expect_args(12)
        (self.q, self.k, self.v, self.k_cache, self.v_cache, pos_id, _seq_len, mask_id,
         dropout_id, causal_id, scale_id, self.out) = self.args
        f32 = ("float32",)
        tensors = {}
        for what, vid in (("q", self.q), ("k", self.k), ("v", self.v), ("k_cache", self.k_cache),
                          ("v_cache", self.v_cache), ("out", self.out)):
            tensors[what] = ctx.tensor(self.name, vid, what, dtypes=CACHE_DTYPES if "cache" in what else f32, rank=4)
        self.kv16 = cache_is_f16(self.error, tensors["k_cache"], tensors["v_cache"])
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
        if self.head_dim > DIMS_PER_THREAD * self.wg:
            raise self.error(f"head_dim {self.head_dim} exceeds {DIMS_PER_THREAD * self.wg} "
                             f"({DIMS_PER_THREAD} dims per thread of {self.wg})")
        if self.wg < BLOCK_ROWS:
            raise self.error(f"device workgroups of {self.wg} threads are smaller than {BLOCK_ROWS} rows")
        shared = (BLOCK_ROWS * (self.head_dim + self.wg) + 3 * BLOCK_ROWS) * 4
        if shared > ctx.limits.max_workgroup_storage_size:
            raise self.error(f"head_dim {self.head_dim} needs {shared} bytes of workgroup memory, "
                             f"device allows {ctx.limits.max_workgroup_storage_size}")
        # Split-KV scratch: every split of one block of rows per kv head, at the largest context.
        self.group = self.n_heads // self.n_kv_heads
        # A decode step's G rows make one block of their own pipeline (when G fits a block).
        self.decode_rows = self.group if self.group <= BLOCK_ROWS else None
        self.rows_cap = min(BLOCK_ROWS, q[1] * self.group)
        self.split_cap = min(MAX_SPLITS, ceil_div(self.cache_dims[1], self.wg))
        self.fast_wg = self.decode_kernel_wg(ctx)
        self.prefill_shape = None  # build() knows the adapter (see prefill_kernel_shape)
        self.use_prefill = False
        self.use_fast = bool(self.fast_wg)  # until build() knows the adapter
        self.cpu_decode = False  # likewise
        self.lanes = False  # likewise (sdpa_decode_lanes.wgsl for every step)
        if self.fast_wg:
            self.split_cap = max(self.split_cap, min(MAX_SPLITS, ceil_div(self.cache_dims[1], DECODE_TILE)))
        self.scratch_bytes = self.split_cap * self.n_kv_heads * self.rows_cap * (self.head_dim + 2) * 4
        if self.scratch_bytes > ctx.limits.max_storage_binding_size:
            raise self.error(f"split-KV scratch of {self.scratch_bytes} bytes exceeds the device's storage "
                             f"binding limit {ctx.limits.max_storage_binding_size}")
        self.scratch = None
        self.pos = ctx.int_or_symint(self.name, pos_id, "input_pos")
        if self.pos[0] == "int":
            self.plan(q[1], self.pos[1], self.error)  # a constant position must fit the largest S
        # q carries the live S; k/v follow it (listed too, so a lone k/v resize is caught).
        self.triggers = frozenset([self.q, self.k, self.v] + ([pos_id] if self.pos[0] == "symint" else []))

    def decode_kernel_wg(self, ctx) -> int:
        """Workgroup size of sdpa_decode.wgsl for this op, or 0 to decode with sdpa_attend.wgsl
        (shapes it does not fit; build() also turns it off on CPU adapters, see use_fast)."""
        wg = min(pow2_floor(workgroup_size(ctx.limits, DECODE_WG)), 256)
        if self.decode_rows is None or self.group > DECODE_BQ or wg < DECODE_LPK:
            return 0
        key_groups = max(wg // self.head_dim, 1)
        if self.head_dim > DIMS_PER_THREAD * wg or key_groups * self.head_dim > DECODE_TILE * DECODE_LPK:
            return 0
        rows = self.group
        tpr = min(wg // DECODE_BQ, 8)
        shared = (rows * self.head_dim + rows * DECODE_TILE * (DECODE_LPK + 1) + 2 * DECODE_BQ * tpr
                  + 2 * DECODE_BQ) * 4
        return wg if shared <= ctx.limits.max_workgroup_storage_size else 0

    def prefill_kernel_shape(self, g):
        """(RW, KL, TK, SUB) overrides of sdpa_prefill.wgsl for this head on this adapter, or None
        where it does not fit (prefill chunks then run on sdpa_attend.wgsl)."""
        rw, kl = PREFILL_CPU if getattr(g.backend, "is_cpu", False) else PREFILL_GPU
        threads = rw * kl
        hv = self.head_dim // 4
        if self.head_dim % 4 or self.head_dim > PREFILL_MAX_HD or workgroup_size(g.limits, threads) < threads:
            return None
        for tk in PREFILL_TILES:
            shared = 2 * tk * (hv + 1) * 16 + threads * 8  # K, V tiles and the lanes' (max, sum)
            sub = 1 if kl == 1 else min(kl // 2, tk * (hv + 1) // (rw * hv))  # lanes' rows k_s holds at once
            per_thread, rest = divmod(tk * hv, threads)  # tile vec4s each thread loads
            if rest or not 0 < per_thread <= PREFILL_MAX_E:
                continue
            if tk // kl <= PREFILL_MAX_J and sub >= 1 and shared <= g.limits.max_workgroup_storage_size:
                return rw, kl, tk, sub
        return None

    def cached_plan(self, seq: int, pos: int) -> SdpaPlan:
        """plan() shared by the layers of a model: every layer's attention has the same shapes
        and sees the same (S, input_pos), so a decode step computes the plan once, not 30 times."""
        key = (self._plan_key, seq, pos)
        plan = _PLANS.get(key)
        if plan is None:
            plan = self.plan(seq, pos, self.step_error)
            if len(_PLANS) >= 1024:
                _PLANS.clear()
            _PLANS[key] = plan
        return plan

    @property
    def plan_key(self) -> tuple:
        """Everything plan() reads besides (S, input_pos)."""
        return (self.cache_dims, self.group, self.n_heads, self.n_kv_heads, self.decode_rows, self.use_fast,
                self.cpu_decode, self.lanes, self.prefill_shape, self.wg, self.split_cap, self.rows_cap, self.scale,
                self.kv16, self.block.key if self.block is not None else None)

    def plan(self, seq: int, pos: int, err) -> SdpaPlan:
        """Every per-step quantity for live seq_len `seq` at `pos`; raises err(...) if out of range."""
        write = cache_write_params(err, seq, pos, self.cache_dims)
        rows = seq * self.group  # query rows per kv head
        decode = seq == 1 and self.decode_rows is not None
        if decode and self.use_fast:
            return self.plan_fast(write, pos + 1, err)
        if self.lanes:  # one workgroup per (query position, kv head), decode or prefill
            wgs = seq * self.n_kv_heads
            attend = ATTEND_PARAMS.pack(seq, self.group, self.n_kv_heads, 1, 1, 0, pos, self.scale, self.rows_cap,
                                        wgs, 0, 0)
            return SdpaPlan(write, attend, 0, wgs, b"\0" * DECODE_PARAMS.size, 0, b"\0" * PREFILL_PARAMS.size, 0,
                            b"\0" * MERGE_PARAMS.size, 0)
        if seq > 1 and self.use_prefill:
            n_blocks = ceil_div(rows, self.prefill_shape[0])
            wgs = self.n_kv_heads * n_blocks
            prefill = PREFILL_PARAMS.pack(seq, self.group, self.n_kv_heads, n_blocks, pos, self.scale, wgs, 0)
            return SdpaPlan(write, b"\0" * ATTEND_PARAMS.size, 0, 0, b"\0" * DECODE_PARAMS.size, 0, prefill, wgs,
                            b"\0" * MERGE_PARAMS.size, 0)
        n_blocks = 1 if decode else ceil_div(rows, BLOCK_ROWS)
        n_keys = pos + seq
        tiles = ceil_div(n_keys, self.wg)
        n_splits, split_len = 1, tiles * self.wg
        if n_blocks == 1 and tiles > 1 and not (decode and self.cpu_decode):
            # decode: too few workgroups unless the keys are split (a CPU has too few cores to gain)
            per_split = ceil_div(tiles, min(tiles, MAX_SPLITS))
            split_len = per_split * self.wg
            n_splits = ceil_div(n_keys, split_len)
            if n_splits > self.split_cap or rows > self.rows_cap:
                raise err(f"{n_splits} key splits of {rows} rows exceed the scratch built for "
                          f"{self.split_cap} splits of {self.rows_cap} rows")
        attend_wgs = n_splits * self.n_kv_heads * n_blocks
        attend = ATTEND_PARAMS.pack(seq, self.group, self.n_kv_heads, n_blocks, n_splits, split_len, pos,
                                    self.scale, self.rows_cap, attend_wgs, 0, 0)
        merge_rows = seq * self.n_heads if n_splits > 1 else 0
        merge = MERGE_PARAMS.pack(merge_rows, self.group, self.n_kv_heads, n_splits, self.rows_cap, seq, 0, 0)
        return SdpaPlan(write, attend, 0 if decode else attend_wgs, attend_wgs if decode else 0,
                        b"\0" * DECODE_PARAMS.size, 0, b"\0" * PREFILL_PARAMS.size, 0, merge, merge_rows)

    def plan_fast(self, write, n_keys: int, err) -> SdpaPlan:
        """A decode step on sdpa_decode.wgsl: short contexts in one workgroup per kv head (no
        merge dispatch); longer ones split into up to MAX_SPLITS key ranges of whole tiles, so
        there are enough workgroups (3 kv heads x 32 splits at 1024 keys) for a GPU."""
        tiles = ceil_div(n_keys, DECODE_TILE)
        n_splits, split_len = 1, tiles * DECODE_TILE
        if tiles > DECODE_SOLO_TILES:
            split_len = ceil_div(tiles, min(tiles, MAX_SPLITS)) * DECODE_TILE
            n_splits = ceil_div(n_keys, split_len)
            if n_splits > self.split_cap:
                raise err(f"{n_splits} key splits exceed the scratch built for {self.split_cap}")
        wgs = n_splits * self.n_kv_heads
        fast = DECODE_PARAMS.pack(self.n_kv_heads, self.group, n_splits, split_len, n_keys, self.scale,
                                  self.rows_cap, wgs)
        merge_rows = self.n_heads if n_splits > 1 else 0
        merge = MERGE_PARAMS.pack(merge_rows, self.group, self.n_kv_heads, n_splits, self.rows_cap, 1, 0, 0)
        block = b""
        if self.block is not None:
            # An attention block: up to its key limit the output projection attends (no dispatch here).
            attend = n_keys <= self.block.max_keys
            block = self.block.params(n_keys, attend, self.scale)
            if attend:
                wgs = merge_rows = 0
        return SdpaPlan(write, b"\0" * ATTEND_PARAMS.size, 0, 0, fast, wgs, b"\0" * PREFILL_PARAMS.size, 0,
                        merge, merge_rows, block)

    def decode_lanes(self, backend) -> bool:
        """Whether a CPU adapter's steps take sdpa_decode_lanes.wgsl: head_dim 16 L with L a power
        of two that the adapter's subgroups hold (its shuffles finish the scores)."""
        lanes, rest = divmod(self.head_dim, 16)
        return (DECODE_LANES and not rest and lanes & (lanes - 1) == 0
                and (lanes == 1 or getattr(backend, "subgroup_min_size", 0) >= lanes))

    def build(self, g):
        lbs = [g.shared_state_of(("attn_block_layer", c)) for c in (self.k_cache, self.v_cache)]
        if any(lb is not None and lb.enabled for lb in lbs) and self.block is None:  # ops/attention_block.py
            raise self.error("an attention block's q/k/v linear rotates q and writes these caches on decode "
                             "steps, but this attention is not the block's (py_engine.rope_sdpa_kv_block)")
        self._checked = None  # live (q, k, v) dims last validated
        # CPU adapters (lavapipe) run threads serially: the one-thread-per-key kernel is cheaper there.
        on_cpu = getattr(g.backend, "is_cpu", False)
        self.use_fast = bool(self.fast_wg) and (FAST_DECODE_ON_CPU or not on_cpu)
        self.cpu_decode = (CPU_DECODE and on_cpu and not self.use_fast and self.decode_rows is not None
                           and self.group <= CPU_DECODE_ROWS and self.head_dim % 4 == 0
                           and workgroup_size(g.limits, self.head_dim // 4) == self.head_dim // 4)
        # py_engine.rope_sdpa_kv sets rope_inputs (unrotated q, cos, sin): its decode steps then
        # rotate and write the cache in sdpa_decode.wgsl's main_rope (9 storage buffers).
        self.rope_folded = (self.use_fast and self.rope_inputs is not None
                            and g.limits.max_storage_buffers_per_stage >= ROPE_FOLD_STORAGE)
        # With sdpa_decode_lanes.wgsl prompts take it too (a workgroup per query position): no
        # sdpa_prefill pipeline, which took Chrome 0.6-0.95 s to compile on SwiftShader.
        self.lanes = self.cpu_decode and self.decode_lanes(g.backend)
        self.prefill_shape = None if self.lanes else self.prefill_kernel_shape(g)
        self.use_prefill = self.prefill_shape is not None
        kc, vc = g.tensor(self.k_cache), g.tensor(self.v_cache)
        kv16 = int(self.kv16)  # every kernel reading the caches takes their KV16 variant
        # Layers with equal shapes get equal params every step: one uniform slot each for all.
        self._plan_key = self.plan_key  # fixed from here on (use_fast is now known)
        share = (self._plan_key, self.pos)
        self.writer = None
        if self.writes_cache:
            self.writer = CacheWriter(g, g.tensor(self.k), kc, f"{self.name}:kv_cache",
                                      pair=(g.tensor(self.v), vc), share_key=share, kv16=self.kv16)
        # On CPU adapters with their own kernels (decode_cpu and prefill, or decode_lanes) no step
        # reaches sdpa_attend's blocks or splits the keys: no scratch, attend or merge to build.
        self.blocks_and_splits = not (self.cpu_decode and (self.use_prefill or self.lanes))
        if self.blocks_and_splits:
            self.scratch = g.backend.create_buffer(self.scratch_bytes, "storage", f"{self.name}:splits")
        out = g.tensor(self.out)
        self.attend_params = g.uniforms.shared(("sdpa_attend", share), ATTEND_PARAMS.size, self.name)
        bindings = [g.tensor(self.q), kc, vc, out, self.scratch, self.attend_params]
        self.d_attend = None
        if self.blocks_and_splits:
            attend = g.pipelines.get("sdpa_attend", WG=self.wg, HD=self.head_dim, RB=BLOCK_ROWS, KV16=kv16)
            self.d_attend = g.add_dispatch(attend, bindings, f"{self.name}:attend")
        self.d_decode = None
        if self.decode_rows is not None:
            if self.lanes:
                lanes = self.head_dim // 16
                decode = g.pipelines.get("sdpa_decode_lanes", HD=self.head_dim, RB=self.group, SG=lanes, KV16=kv16)
                self.d_decode = g.add_dispatch(decode, bindings[:4] + [None, self.attend_params],
                                               f"{self.name}:decode_lanes")
            elif self.cpu_decode:
                decode = g.pipelines.get("sdpa_decode_cpu", WG=self.head_dim // 4, HD=self.head_dim, RB=self.group,
                                          KV16=kv16)
                self.d_decode = g.add_dispatch(decode, bindings[:4] + [None, self.attend_params],
                                               f"{self.name}:decode_cpu")
            else:
                decode = g.pipelines.get("sdpa_attend", WG=self.wg, HD=self.head_dim, RB=self.decode_rows, KV16=kv16)
                self.d_decode = g.add_dispatch(decode, bindings, f"{self.name}:attend_decode")
        self.d_fast = None
        if self.use_fast:
            self.fast_params = g.uniforms.shared(("sdpa_decode", share), DECODE_PARAMS.size,
                                                 f"{self.name}:decode")
            if self.block is not None and self.rope_folded:
                # An attention block's q/k/v linear rotated q and wrote the caches: plain `main`.
                fast = g.pipelines.get("sdpa_decode", WG=self.fast_wg, HD=self.head_dim, RB=self.group, KV16=kv16)
                self.d_fast = g.add_dispatch(fast, [g.tensor(self.rope_inputs[0])] + bindings[1:5]
                                             + [self.fast_params], f"{self.name}:decode")
            elif self.rope_folded:
                rope = [g.tensor(self.k), g.tensor(self.v)] + [g.tensor(v) for v in self.rope_inputs[1:]]
                fast = g.pipelines.get("sdpa_decode", "main_rope", WG=self.fast_wg, HD=self.head_dim,
                                       RB=self.group, KV16=kv16, **({"POS_ROWS": 1} if self.rope_table_rows else {}))
                self.d_fast = g.add_dispatch(fast, [g.tensor(self.rope_inputs[0])] + bindings[1:5]
                                             + [self.fast_params] + rope, f"{self.name}:decode_rope")
            else:
                fast = g.pipelines.get("sdpa_decode", WG=self.fast_wg, HD=self.head_dim, RB=self.group, KV16=kv16)
                self.d_fast = g.add_dispatch(fast, bindings[:5] + [self.fast_params], f"{self.name}:decode")
        self.d_prefill = None
        if self.use_prefill:
            self.prefill_params = g.uniforms.shared(("sdpa_prefill", share), PREFILL_PARAMS.size,
                                                    f"{self.name}:prefill")
            rw, kl, tk, sub = self.prefill_shape
            prefill = g.pipelines.get("sdpa_prefill", RW=rw, KL=kl, HD=self.head_dim, TK=tk, SUB=sub, KV16=kv16)
            self.d_prefill = g.add_dispatch(prefill, bindings[:4] + [self.prefill_params], f"{self.name}:prefill")
        self.merge_params = g.uniforms.shared(("sdpa_merge", share), MERGE_PARAMS.size, f"{self.name}:merge")
        self.d_merge = None
        if self.blocks_and_splits:
            merge_wg = pow2_floor(workgroup_size(g.limits, MERGE_WG_CPU if on_cpu else MERGE_WG))
            merge = g.pipelines.get("sdpa_merge", WG=merge_wg, HD=self.head_dim)
            self.d_merge = g.add_dispatch(merge, [self.scratch, out, self.merge_params], f"{self.name}:merge")
        self.layers = g.shared_state(("sdpa", share), _LayerGroup)
        self.layers.add(self)
        first = self.layers.members[0]
        if LAYER_GROUPS and first is not self and first.pos == self.pos and self.pos[0] == "symint":
            # The first member, triggered by input_pos, configures the whole group: a step that
            # only moves input_pos (decode) leaves this op's hook out.
            self.triggers = self.triggers - {self.pos[1]}

    def configure(self, g):
        t = g.tensors
        q, k, v = t[self.q].dims, t[self.k].dims, t[self.v].dims
        if (q, k, v) != self._checked:  # a decode step re-runs this hook for input_pos alone
            if not q[1] == k[1] == v[1] or q[2:] != t[self.q].max_dims[2:] or k != v \
                    or k[2:] != self.cache_dims[2:]:
                raise self.step_error(f"live dims q {list(q)}, k {list(k)}, v {list(v)} disagree "
                                      f"(same seq_len, built heads and head_dim)")
            self._checked = (q, k, v)
        stamp = (g.uniforms.epoch, q[1], g.live_int(self.pos))
        grp = self.layers
        if grp.stamp == stamp:  # another layer configured the whole group this step
            g.set_dims(self.out, q)
            return
        plan = self.cached_plan(q[1], stamp[2])
        if LAYER_GROUPS and (grp.stamp is None or grp.stamp[0] != stamp[0]):
            grp.apply(g, plan)
            grp.stamp = stamp
        else:  # op by op; also when the group saw other inputs this step (its shared slots say so)
            _LayerGroup([self]).apply(g, plan)
        g.set_dims(self.out, q)

    def destroy(self, g):
        if self.scratch is not None and not self.scratch.destroyed:
            g.backend.destroy_buffer(self.scratch)
        self.scratch = None


@register("py_engine.sdpa_kv_written.default")
class SdpaKvWritten(SdpaWithKvCache):
    """sdpa_with_kv_cache's arguments and attention, for caches that already hold the new rows
    (py_engine.apply_rotary_emb_qk_kv wrote them): k and v only give the live shapes and are
    not read, and there is no cache-write dispatch. Emitted by py_engine.passes.fuse_rope_kv."""

    writes_cache = False


class _LayerGroup:
    """The attention ops of a graph that share a plan key and input_pos (every layer of a model):
    their params live in shared slots, so the first op configured in a step writes the plan and
    sets every member's workgroup counts, and the rest only restate their output dims. A decode
    step's host time was mostly 30 identical attention hooks."""

    def __init__(self, members=()):
        self.members: list = list(members)
        self.stamp = None  # (uniform epoch, seq_len, input_pos) of the last group-wide configure
        self.rows: dict = {}

    def add(self, op) -> None:
        """At build; the next configure applies the plan to every member again (Graph.build
        configures each op right after building it)."""
        self.members.append(op)
        self.rows = {}
        self.stamp = None

    def _rows(self, attr: str) -> list:
        rows = self.rows.get(attr)
        if rows is None:
            rows = self.rows[attr] = [getattr(m, attr) for m in self.members if getattr(m, attr) is not None]
        return rows

    def apply(self, g, plan: SdpaPlan) -> None:
        first = self.members[0]
        writers = self._rows("writer")
        if writers:
            CacheWriter.set_all(g, writers, plan.cache_write)
        if not first.blocks_and_splits and (plan.attend_workgroups or plan.merge_workgroups):
            raise first.step_error("a step needs sdpa_attend's blocks or key splits, which this "
                                   "adapter's build left out")
        first.attend_params.write(plan.attend_params)
        g.set_workgroups_rows(self._rows("d_attend"), plan.attend_workgroups)
        g.set_workgroups_rows(self._rows("d_decode"), plan.decode_workgroups)
        if first.d_fast is not None:
            first.fast_params.write(plan.fast_params)
            g.set_workgroups_rows(self._rows("d_fast"), plan.fast_workgroups)
        if first.d_prefill is not None:
            first.prefill_params.write(plan.prefill_params)
            g.set_workgroups_rows(self._rows("d_prefill"), plan.prefill_workgroups)
        first.merge_params.write(plan.merge_params)
        g.set_workgroups_rows(self._rows("d_merge"), plan.merge_workgroups)
        if plan.block_params:
            first.block.slot.write(plan.block_params)
