"""A layer's attention block on GPUs: the q/k/v linear, the attention and the output projection
of a decode step in 2 dispatches at short contexts (3-4 past them) instead of 3-4 (emitted by
py_engine.passes.fuse_attention_block; each op keeps its own arguments and adds a few):

py_engine.linear_gguf_multi_norm_rope.default(<linear_gguf_multi_norm's 11>, k_cache, v_cache, input_pos)
  The q/k/v linear with the residual add + RMSNorm folded in. Its decode GEMV (fused_linear.wgsl
  `gemv3_norm_rope`) also rotates q and k (RoPE) and writes the step's key and value into the
  caches, so the q output holds the rotated q and the k / v outputs stay stale.
py_engine.rope_sdpa_kv_block.default(<rope_sdpa_kv_at's 21>)
  The rotation + attention. A decode step attends here only past the block's key limit (the
  split kernels, reading the rotated q, no cache write); below it its dispatches idle.
py_engine.linear_gguf_attend.default(<linear_gguf's 5>, q, k_cache, v_cache, input_pos)
  The output projection. Its decode dispatch (attention_block.wgsl) computes the attention of
  every head in each of its workgroups from q and the caches when the step's keys fit (the plan
  says so in the block's uniform), else reads the attention's output.

Prefill steps run every part's own kernels, unchanged. Per decode step the attention plan
(ops/sdpa.py) writes one uniform for all layers: the key count, which kernel attends, the scale
and the RoPE row of input_pos. The three parts of a layer must agree on running as a block:
the q/k/v linear, built first, decides (`LayerBlock.enabled`) and the other two follow or fail
loudly. CPU adapters, float16 caches and shapes the kernels do not take keep the unfused path.

Off by default (`BLOCK`): it pays only at short contexts. On an H100 (c10e8f1, two runs each, GPU
time per decode token at 16 keys) 0.972-0.975 ms with 8 projection rows per workgroup against
1.007-1.009 unfused (1.035-1.036 with 16 rows, 1.117 with 32), but every workgroup reads all the
keys again (72 x the caches from L2), so over the bench's decode from 16 to 144 keys it ran
843-844 tokens/s against 902-904, and past the limit (the fallback) 1.222-1.226 ms against
1.215-1.218 at 1,024 keys. `--set ops.attention_block.BLOCK=1` (with `MAX_KEYS`, `ROWS_PER_WG`)
runs it; docs/benchmarks.md, session 12.
"""
from __future__ import annotations

import struct

import numpy as np

from ..graph.aliasing import root
from ..graph.pipelines import subgroup_lanes
from ..graph.registry import register
from .base import ceil_div, numel, pow2_floor, workgroup_size
from .fused_linear import SHADER as FUSED_SHADER
from .fused_linear import LinearGgufMultiNorm
from .linear_gguf import LinearGguf
from .quant_kernels import weight_buffer
from .rope_sdpa import RopeSdpaKvAt
from .update_cache import CACHE_DTYPES

SHADER = "attention_block"
BLOCK = False     # a switch for benchmarks (`--set ops.attention_block.BLOCK=1`); see above
MAX_KEYS = 32     # keys up to which the output projection attends (a power of two, >= 32)
WG = 256          # threads of the output projection's workgroups (a power of two, 256 .. 1024)
TPR = 32          # threads per weight row there
ROWS_PER_WG = 8   # weight rows per workgroup (WG / TPR .. 4 WG / TPR): each workgroup redoes the attention
MAX_HD = 128      # head_dim at most (the RoPE row in BlockParams)
MAX_G = 8         # q heads per kv head at most (the kernel's accumulator arrays)
STORAGE = 9       # storage buffers of gemv3_norm_rope
HEADER = struct.Struct("<IIIIfIII")
PARAMS_BYTES = HEADER.size + 4 * MAX_HD  # `struct BlockParams` in attention_block.wgsl


def attend_shape(limits, hq: int, hkv: int, hd: int) -> dict | None:
    """attention_block.wgsl's overrides for these heads on this device, or None where they do not fit."""
    if hd % 16 or hd > MAX_HD or not hkv or hq % hkv or hq // hkv > MAX_G or (hq * hd) % 32:
        return None
    if workgroup_size(limits, WG) < WG or hkv * hd // 4 > WG or hq > WG:
        return None
    tt = min(32, pow2_floor(WG // hq))
    maxk = pow2_floor(MAX_KEYS)
    while maxk >= 32 and (2 * hq * hd + hq * maxk + 2 * hq * tt + WG) * 4 > limits.max_workgroup_storage_size:
        maxk //= 2
    if maxk < 32:
        return None
    return {"WG": WG, "TPR": TPR, "RP": min(4, max(1, ROWS_PER_WG // (WG // TPR))), "HD": hd, "HQ": hq, "HKV": hkv,
            "MAXK": maxk, "TT": tt}


def block_slot(g, pos: int, hq: int, hkv: int, hd: int):
    """The one uniform slot of `struct BlockParams` that every block of these heads binds."""
    return g.uniforms.shared(("attn_block", pos, hq, hkv, hd), PARAMS_BYTES, "attn_block")


class BlockParams:
    """The uniform every block of a graph reads (one slot, written once per decode step by the
    attention plan) and the RoPE tables its rows come from."""

    def __init__(self, g, key, cos_vid: int, sin_vid: int, half: int, max_keys: int):
        self.slot = block_slot(g, *key)
        self.cos = np.frombuffer(g.program.constant_bytes(cos_vid), dtype=np.float32).reshape(-1, half)
        self.sin = np.frombuffer(g.program.constant_bytes(sin_vid), dtype=np.float32).reshape(-1, half)
        self.max_keys = max_keys
        self.key = key + (cos_vid, sin_vid, max_keys)

    def params(self, n_keys: int, attend: bool, scale: float) -> bytes:
        rope = np.zeros(MAX_HD, dtype=np.float32)
        half = self.cos.shape[1]
        rope[:half] = self.cos[n_keys - 1]
        rope[half: 2 * half] = self.sin[n_keys - 1]
        return HEADER.pack(n_keys, int(attend), 0, 0, scale, 0, 0, 0) + rope.tobytes()


class LayerBlock:
    """Whether one layer's three parts run as a block (decided by the q/k/v linear at build)."""

    def __init__(self):
        self.enabled = False
        self.shape = None  # attend_shape's overrides
        self.values = None  # the linear's (q output, k_cache, v_cache, input_pos), which the others must share

    def check(self, op, q: int, k_cache: int, v_cache: int, pos: int) -> None:
        """The attention and the projection of an enabled block read what its linear writes."""
        if self.enabled and self.values != (q, k_cache, v_cache, pos):
            raise op.error("attention block: q, the caches or input_pos differ from its q/k/v linear's")


def layer_block(g, q: int, k_cache: int, v_cache: int) -> LayerBlock:
    """The block state of the layer reading these values: the linear's (registered under each of
    its q output and caches), or a disabled one."""
    for vid in (q, k_cache, v_cache):
        lb = g.shared_state_of(("attn_block_layer", vid))
        if lb is not None and lb.enabled:
            return lb
    return LayerBlock()


def _cache_heads(op, ctx, k_cache: int, v_cache: int) -> tuple:
    """(kv heads, head_dim, kv16) of a pair of caches [1, C, Hkv, D]."""
    kc = ctx.tensor(op.name, k_cache, "k_cache", dtypes=CACHE_DTYPES, rank=4)
    vc = ctx.tensor(op.name, v_cache, "v_cache", dtypes=CACHE_DTYPES, rank=4)
    if tuple(kc.dims) != tuple(vc.dims) or kc.dtype != vc.dtype:
        raise op.error(f"k_cache {kc.dtype} {list(kc.dims)} and v_cache {vc.dtype} {list(vc.dims)} differ")
    return int(kc.dims[2]), int(kc.dims[3]), kc.dtype != "float32"


def _validate_base(op, ctx, base, n: int, added: tuple) -> tuple:
    """`base.validate` on the op's first n arguments (the unfused op's); returns the others,
    which must be the `added` ones."""
    if len(op.args) != n + len(added):
        raise op.error(f"expected the {n} arguments of {base.__name__}, then {', '.join(added)}; got {len(op.args)}")
    args = op.args
    op.args = args[:n]
    try:
        base.validate(op, ctx)
    finally:
        op.args = args
    return args[n:]


@register("py_engine.linear_gguf_multi_norm_rope.default")
class LinearGgufMultiNormRope(LinearGgufMultiNorm):
    def validate(self, ctx):
        self.k_cache, self.v_cache, pos_id = _validate_base(self, ctx, LinearGgufMultiNorm, 11,
                                                            ("k_cache", "v_cache", "input_pos"))
        self.hkv, self.hd, self.kv16 = _cache_heads(self, ctx, self.k_cache, self.v_cache)
        n0, n1 = self.split
        n2 = self.n_total - n0 - n1
        if len(self.outs) != 3 or n1 != self.hkv * self.hd or n2 != n1 or n0 % self.hd:
            raise self.error(f"outputs of {[n for _, n in self.outs]} rows are not q / k / v of "
                             f"{self.hkv} kv heads x head_dim {self.hd}")
        self.hq = n0 // self.hd
        if self.hd % 2:
            raise self.error(f"head_dim {self.hd} must be even (RoPE pairs)")
        self.pos = ctx.int_or_symint(self.name, pos_id, "input_pos")

    def build(self, g):
        super().build(g)
        self.d_block = None
        lb = LayerBlock()
        lb.shape = attend_shape(g.limits, self.hq, self.hkv, self.hd)
        lb.enabled = (BLOCK and not getattr(g.backend, "is_cpu", False) and not self.kv16 and self.d_norm_gemv is not None
                      and self.pos[0] == "symint" and lb.shape is not None
                      and g.limits.max_storage_buffers_per_stage >= STORAGE and self._partners_in(g.program))
        if not lb.enabled:
            return
        lb.values = (self.outs[0][0], self.k_cache, self.v_cache, self.pos[1])
        for vid in lb.values[:3]:
            if g.shared_state(("attn_block_layer", vid), lambda: lb) is not lb:
                raise self.error("attention block: another block already writes this q or these caches")
        t = g.tensor
        bp = block_slot(g, self.pos[1], self.hq, self.hkv, self.hd)
        buffers = list(self.norm_buffers)
        buffers[6], buffers[7] = t(self.k_cache), t(self.v_cache)  # out1 / out2: the caches at input_pos
        pipe = g.pipelines.get(FUSED_SHADER, "gemv3_norm_rope", FMT=self.layout.fmt, WG=self.shape.wg,
                               TPR=self.shape.tpr, VL=self.vl, KV4=self.layout.width // 4, RHD=self.hd,
                               SG=subgroup_lanes(g.backend, min(self.shape.tpr, self.vl)))
        self.d_block = g.add_dispatch(pipe, buffers + [None, None, bp], f"{self.name}:gemv_norm_rope")

    def _partners_in(self, program) -> bool:
        """Whether the program holds this block's attention and projection (the pass emits the
        three together; without them the linear must not rotate q or write the caches)."""
        kc, vc, q = self.k_cache, self.v_cache, self.outs[0][0]
        return (any(c.name == "py_engine.rope_sdpa_kv_block.default" and tuple(c.args[5:7]) == (kc, vc)
                    for c in program.chain)
                and any(c.name == "py_engine.linear_gguf_attend.default" and tuple(c.args[5:8]) == (q, kc, vc)
                        for c in program.chain))

    def configure(self, g):
        super().configure(g)
        if self.d_block is None:
            return
        gemv, _ = self.workgroups(numel(g.tensor(self.x).dims[:-1]), self.shape, norm=True)
        g.set_workgroups(self.d_block, gemv)
        g.set_workgroups(self.d_norm_gemv, 0)


@register("py_engine.rope_sdpa_kv_block.default")
class RopeSdpaKvBlock(RopeSdpaKvAt):
    def build(self, g):
        a = self.attn
        q = root(g.aliases, a.rope_inputs[0])  # the linear's q output, through its view
        lb = layer_block(g, q, a.k_cache, a.v_cache)
        lb.check(self, q, a.k_cache, a.v_cache, a.pos[1])
        if lb.enabled:
            key = (a.pos[1], a.n_heads, a.n_kv_heads, a.head_dim)
            a.block = g.shared_state(("attn_block_params",) + key, lambda: BlockParams(
                g, key, self.rope.cos, self.rope.sin, a.head_dim // 2, lb.shape["MAXK"]))
        super().build(g)
        if lb.enabled and not (a.rope_folded and a.d_fast is not None):
            raise self.error("attention block: the q/k/v linear writes the caches, but this device's decode "
                             "attention has no kernel that reads them (sdpa_decode.wgsl with the rotation folded)")


@register("py_engine.linear_gguf_attend.default")
class LinearGgufAttend(LinearGguf):
    def validate(self, ctx):
        self.q, self.k_cache, self.v_cache, pos_id = _validate_base(self, ctx, LinearGguf, 5,
                                                                    ("q", "k_cache", "v_cache", "input_pos"))
        self.hkv, self.hd, _ = _cache_heads(self, ctx, self.k_cache, self.v_cache)
        q = ctx.tensor(self.name, self.q, "q", dtypes=("float32",))
        k = self.layout.width
        if int(q.dims[-1]) != k or k % self.hd:
            raise self.error(f"q {list(q.dims)} does not hold the {k} attention outputs of head_dim {self.hd}")
        self.hq = k // self.hd
        self.pos = ctx.int_or_symint(self.name, pos_id, "input_pos")

    def build(self, g):
        super().build(g)
        self.d_block = None
        lb = layer_block(g, self.q, self.k_cache, self.v_cache)
        if not lb.enabled:
            return
        lb.check(self, self.q, self.k_cache, self.v_cache, self.pos[1])
        if not self.layout.repacked or self.layout.records or self.bias is not None:
            raise self.error("attention block: the output projection needs a repacked GGUF weight and no bias")
        t = g.tensor
        shape = dict(lb.shape, FMT=self.layout.fmt, SG=subgroup_lanes(g.backend, TPR))
        bp = block_slot(g, self.pos[1], self.hq, self.hkv, self.hd)
        weight = weight_buffer(g, self.layout, self.weight)  # the GEMV's buffer (shared per layout)
        pipe = g.pipelines.get(SHADER, **shape)
        self.rows_per_wg = shape["RP"] * shape["WG"] // shape["TPR"]
        self.d_block = g.add_dispatch(pipe, [t(self.q), weight, t(self.k_cache), t(self.v_cache), t(self.out),
                                             self.mm.params, t(self.x), weight, bp], f"{self.name}:attend")

    def configure(self, g):
        super().configure(g)
        if self.d_block is None:
            return
        m = numel(g.tensor(self.x).dims[:-1])
        g.set_workgroups(self.d_block, ceil_div(self.layout.rows, self.rows_per_wg) if m == 1 else 0)
        if m == 1:
            g.set_workgroups(self.mm.d_gemv, 0)
