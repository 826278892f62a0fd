"""GGUF llama -> Program, with the ops ExecuTorch's llama export emits.

One graph serves prefill and decode. Inputs: `tokens` int32 [1, S] (S live, up to
`max_prefill`) and `input_pos` int32 [1]. `pos = select_as_symint(input_pos)` and
`S = sym_size(tokens, 1)` are SymInts; the views take their sizes from them, RoPE reads
rows pos..pos+S of a precomputed cos/sin table through slice_copy, and sdpa_with_kv_cache
writes the S new rows of each layer's KV cache (held inside the graph) at pos. The output
is the logits of the last row, [1, vocab], and their argmax (so greedy decoding reads back
4 bytes per token).

GGUF weights are uploaded as their raw blocks (uint8 [N, row_bytes]) and consumed by
`py_engine.linear_gguf` / `py_engine.embedding_gguf`; the output head reuses token_embd
when output.weight is absent (tied). Tensors of types the kernels do not read (K-quants,
Q5_0/Q5_1, BF16) are transcoded as they are taken (py_engine.loaders.gguf_transcode).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..loaders.gguf import FileRange, GGUFError, GGUFFile
from ..loaders.gguf_transcode import TRANSCODED_BLOCKS, kernel_tensor
from ..passes import optimize
from ..program import Bool, Double, Int, LazyBytes, Null, Program, SymInt, ValueList
from .llama_config import LlamaConfig, config_from_gguf

SYMINT_ADD = "add"
F32 = "float32"
GGML_F32, GGML_F16 = 0, 1


@dataclass(frozen=True)
class LlamaProgram:
    program: Program
    config: LlamaConfig
    max_prefill: int
    tokens_id: int
    input_pos_id: int
    logits_id: int
    next_token_id: int  # argmax of the logits, computed on the GPU
    kv_dtype: str = F32  # the KV caches' dtype
    transcoded: dict = field(default_factory=dict)  # "Q4_K->Q4_1" -> tensors transcoded at load


KV_DTYPES = {"float32": 4, "float16": 2}  # KV-cache dtype -> bytes per element
# The KV caches' dtype when the caller does not choose: "auto" (see kv_dtype_for), or one of
# KV_DTYPES (a switch for benchmarks: `--set models.llama.KV_CACHE=float16`).
KV_CACHE = "auto"


def kv_dtype_for(requested: str | None = None) -> str:
    """The KV caches' dtype asked for: `requested`, else KV_CACHE ("auto" or one of KV_DTYPES;
    build_llama_program checks it). "auto" means float32, unless the memory budget would cut the
    model's context and float16 caches (packed pairs, half the bytes) fit more of it. float32
    is the faster one: on an H200 float16 caches took 1.18 ms of GPU time per decode token
    against 0.99 (the unpacking costs more than the halved reads save at SmolLM2's size), on
    SwiftShader 76-84 ms per step against 67-70."""
    return requested or KV_CACHE


def resolve_kv_dtype(config: LlamaConfig, requested_context: int | None, kv_dtype: str, kv_budget_bytes: int) -> str:
    """"auto" -> float32, or float16 where the budget holds fewer float32 positions than the
    model's context and no context was asked for (float16 then fits twice as many)."""
    if kv_dtype != "auto":
        return kv_dtype
    per_pos = 2 * config.n_layers * config.n_kv_heads * config.head_dim * KV_DTYPES[F32]
    if requested_context is None and kv_budget_bytes // per_pos < config.context:
        return "float16"
    return F32


def default_context(config: LlamaConfig, requested: int | None, *, kv_budget_bytes: int,
                    max_buffer_bytes: int, kv_dtype: str = F32) -> int:
    """KV cache length: the request, else the model's context capped by the memory budget."""
    per_pos_layer = config.n_kv_heads * config.head_dim * KV_DTYPES[kv_dtype]  # one row of one cache, bytes
    if requested is not None:
        ctx = int(requested)
        if ctx <= 0:
            raise ValueError(f"llama: context must be positive, got {ctx}")
        if ctx > config.context:
            raise ValueError(f"llama: context {ctx} exceeds the model's context length {config.context}")
    else:
        ctx = config.context
        fit = kv_budget_bytes // (2 * config.n_layers * per_pos_layer)
        ctx = min(ctx, max(1, fit))
    if ctx * per_pos_layer > max_buffer_bytes:
        raise ValueError(f"llama: a KV cache of {ctx} positions needs {ctx * per_pos_layer} bytes per "
                         f"buffer, over the device's limit of {max_buffer_bytes}; ask for a shorter context")
    need = 2 * config.n_layers * ctx * per_pos_layer
    if need > kv_budget_bytes and requested is not None:
        raise ValueError(f"llama: KV caches for {ctx} positions need {need >> 20} MiB, over the budget of "
                         f"{kv_budget_bytes >> 20} MiB")
    return ctx


def neox_to_interleaved(n_heads: int, head_dim: int) -> np.ndarray:
    """Row order of a q or k projection (n_heads heads of head_dim rows) putting each head's
    rows i and i + head_dim/2 at 2i and 2i + 1."""
    half = head_dim // 2
    within = np.stack([np.arange(half), np.arange(half) + half], axis=1).reshape(-1)
    return (np.arange(n_heads)[:, None] * head_dim + within[None, :]).reshape(-1)


def rope_table(config: LlamaConfig, context: int) -> tuple:
    """cos/sin [context, head_dim/2] for interleaved RoPE: theta_i = base^(-2i/D), times the
    linear scale, over Llama 3's frequency factors where the file has them."""
    half = config.head_dim // 2
    theta = config.rope_base ** (-np.arange(half, dtype=np.float64) * 2.0 / config.head_dim) * config.rope_scale
    if config.rope_freq_factors:
        theta = theta / np.asarray(config.rope_freq_factors, dtype=np.float64)
    angles = np.arange(context, dtype=np.float64)[:, None] * theta[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def build_llama_program(gguf: GGUFFile, *, context: int | None = None, max_prefill: int = 512,
                        kv_budget_bytes: int = 512 << 20, max_buffer_bytes: int = 1 << 30,
                        fuse: bool | tuple = True, kv_dtype: str = F32, on_transcode=None) -> LlamaProgram:
    """`fuse`: run py_engine.passes.optimize (fewer dispatches per token), or only the passes
    given as a tuple (see passes.passes_for); False keeps the plain ExecuTorch-style op chain,
    e.g. to test the fused graph against it. `kv_dtype`: "float32", or "float16" for KV caches
    holding keys and values rounded to f16 (half the memory, half the attention's reads), or
    "auto" (resolve_kv_dtype). `on_transcode(done, total)`: called after each tensor transcoded
    at load (K-quants etc.; a large model's take seconds)."""
    if kv_dtype != "auto" and kv_dtype not in KV_DTYPES:
        raise ValueError(f"llama: kv cache dtype must be auto, {' or '.join(KV_DTYPES)}; got {kv_dtype!r}")
    c = config_from_gguf(gguf)
    kv_dtype = resolve_kv_dtype(c, context, kv_dtype, kv_budget_bytes)
    ctx = default_context(c, context, kv_budget_bytes=kv_budget_bytes, max_buffer_bytes=max_buffer_bytes,
                          kv_dtype=kv_dtype)
    s_max = max(1, min(int(max_prefill), ctx))
    p = Program()
    b = _Builder(p, gguf, on_transcode)

    tokens = p.tensor("int32", (1, s_max))
    input_pos = p.tensor("int32", (1,))
    p.input_ids = [tokens, input_pos]
    pos = p.add(SymInt(0))
    p.call("et_vk.select_as_symint.default", input_pos, p.add(Int(0)), p.add(Int(0)), pos)
    seq = p.add(SymInt(s_max))
    p.call("sym_size.int", tokens, p.add(Int(1)), seq)
    end = p.add(SymInt(s_max))
    p.call(SYMINT_ADD, pos, seq, end)

    cos_np, sin_np = rope_table(c, ctx)
    half = c.head_dim // 2
    cos = b.slice_rows(p.tensor(F32, cos_np.shape, cos_np), pos, end, (s_max, half))
    sin = b.slice_rows(p.tensor(F32, sin_np.shape, sin_np), pos, end, (s_max, half))

    embd = b.weight("token_embd.weight")
    x = p.tensor(F32, (1, s_max, c.dim))
    p.call("py_engine.embedding_gguf.default", embd, p.add(Int(b.types["token_embd.weight"])), tokens, x)

    eps = p.add(Double(c.rms_eps))
    one = p.add(Double(1.0))
    i1 = p.add(Int(1))
    q_dim, kv_dim = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    q_shape = p.add(ValueList((i1, seq, p.add(Int(c.n_heads)), p.add(Int(c.head_dim)))))
    kv_shape = p.add(ValueList((i1, seq, p.add(Int(c.n_kv_heads)), p.add(Int(c.head_dim)))))
    flat_shape = p.add(ValueList((i1, seq, p.add(Int(q_dim)))))
    scale = p.add(Double(1.0 / np.sqrt(c.head_dim)))
    # NeoX-style models (Qwen2) rotate pairs (i, i + D/2): reordering q's and k's rows (and
    # biases) per head makes them the interleaved pairs the RoPE ops rotate. Scores q.k are
    # unchanged (both sides reordered alike); the caches hold the reordered keys.
    q_rows = neox_to_interleaved(c.n_heads, c.head_dim) if c.rope_neox else None
    k_rows = neox_to_interleaved(c.n_kv_heads, c.head_dim) if c.rope_neox else None
    for i in range(c.n_layers):
        blk = f"blk.{i}."
        h = b.rms_norm(x, blk + "attn_norm.weight", eps, c.dim, s_max)
        q = b.linear(h, blk + "attn_q", (1, s_max, q_dim), q_rows)
        k = b.linear(h, blk + "attn_k", (1, s_max, kv_dim), k_rows)
        v = b.linear(h, blk + "attn_v", (1, s_max, kv_dim))
        q4 = b.view(q, q_shape, (1, s_max, c.n_heads, c.head_dim))
        k4 = b.view(k, kv_shape, (1, s_max, c.n_kv_heads, c.head_dim))
        v4 = b.view(v, kv_shape, (1, s_max, c.n_kv_heads, c.head_dim))
        q_rot = p.tensor(F32, (1, s_max, c.n_heads, c.head_dim))
        k_rot = p.tensor(F32, (1, s_max, c.n_kv_heads, c.head_dim))
        p.call("et_vk.apply_rotary_emb.default", q4, k4, cos, sin, p.add(ValueList((q_rot, k_rot))))
        k_cache = p.tensor(kv_dtype, (1, ctx, c.n_kv_heads, c.head_dim))
        v_cache = p.tensor(kv_dtype, (1, ctx, c.n_kv_heads, c.head_dim))
        attn = p.tensor(F32, (1, s_max, c.n_heads, c.head_dim))
        p.call("sdpa_with_kv_cache.default", q_rot, k_rot, v4, k_cache, v_cache, pos, seq,
               p.add(Null()), p.add(Double(0.0)), p.add(Null()), scale, attn)
        attn_flat = b.view(attn, flat_shape, (1, s_max, q_dim))
        o = b.linear(attn_flat, blk + "attn_output", (1, s_max, c.dim))
        x = b.add(x, o, one, (1, s_max, c.dim))
        h = b.rms_norm(x, blk + "ffn_norm.weight", eps, c.dim, s_max)
        gate = b.linear(h, blk + "ffn_gate", (1, s_max, c.ffn_dim))
        up = b.linear(h, blk + "ffn_up", (1, s_max, c.ffn_dim))
        sig = p.tensor(F32, (1, s_max, c.ffn_dim))
        p.call("aten.sigmoid.default", gate, sig)
        silu = p.tensor(F32, (1, s_max, c.ffn_dim))
        p.call("aten.mul.Tensor", gate, sig, silu)
        gated = p.tensor(F32, (1, s_max, c.ffn_dim))
        p.call("aten.mul.Tensor", silu, up, gated)
        down = b.linear(gated, blk + "ffn_down", (1, s_max, c.dim))
        x = b.add(x, down, one, (1, s_max, c.dim))

    x = b.rms_norm(x, "output_norm.weight", eps, c.dim, s_max)
    last = p.tensor(F32, (1, c.dim))
    p.call("aten.select_copy.int", x, p.add(Int(1)), p.add(Int(-1)), last)
    head = "output.weight" if "output.weight" in gguf.tensors else "token_embd.weight"
    logits = b.linear(last, head[:-len(".weight")], (1, c.vocab))
    next_token = p.tensor("int32", (1,))
    p.call("aten.argmax.default", logits, p.add(Int(-1)), p.add(Bool(False)), next_token)
    p.output_ids = [logits, next_token]
    if fuse:
        p = optimize(p) if fuse is True else optimize(p, fuse)
    return LlamaProgram(p, c, s_max, tokens, input_pos, logits, next_token, kv_dtype, b.transcoded)


def _rows_of(data, n_rows: int, rows):
    """`data` ([n_rows, row_bytes] bytes, or a LazyBytes of them) with its rows in order `rows`."""
    def reorder(raw):
        return np.frombuffer(raw, np.uint8).reshape(n_rows, -1)[rows].tobytes()
    if isinstance(data, LazyBytes):
        return LazyBytes(data.nbytes, lambda: reorder(data.make()))
    return reorder(data)


class _Builder:
    """Small helpers that add one op call each; weights become constants once."""

    def __init__(self, p: Program, gguf: GGUFFile, on_transcode=None):
        self.p = p
        self.gguf = gguf
        self.on_transcode = on_transcode
        self.to_transcode = sum(t.ggml_type in TRANSCODED_BLOCKS for t in gguf.tensors.values())
        self.weights: dict = {}
        self.types: dict = {}
        self.transcoded: dict = {}  # "Q4_K->Q4_1" -> tensors
        self.made = 0  # tensors transcoded so far (the weights' when the graph uploads them)

    def _made_one(self) -> None:
        self.made += 1
        if self.on_transcode is not None:
            self.on_transcode(min(self.made, self.to_transcode), self.to_transcode)

    def tensor(self, name: str, lazy: bool = False):
        """The GGUF tensor in a type the kernels read (K-quants etc. transcoded, and counted);
        `lazy`: see kernel_tensor."""
        t = self.gguf.tensor(name)
        k = kernel_tensor(t, lazy=lazy, on_made=self._made_one)
        if k is not t:
            key = f"{t.type_name}->{k.type_name}"
            self.transcoded[key] = self.transcoded.get(key, 0) + 1
        return k

    def weight(self, name: str, rows=None) -> int:
        """A weight's raw blocks as a uint8 constant [rows, row_bytes]; `rows`: reorder them.
        Transcoded weights are made when the graph uploads them (LazyBytes)."""
        if name not in self.weights:
            t = self.tensor(name, lazy=True)
            n_rows = int(np.prod(t.shape[:-1]))
            data = t.data
            if isinstance(data, FileRange):  # still in the file (JS): read in when uploaded
                data = LazyBytes(len(data), data.read)
            if rows is not None:
                data = _rows_of(data, n_rows, rows)
            self.weights[name] = self.p.tensor("uint8", (n_rows, t.nbytes // n_rows), data)
            self.types[name] = t.ggml_type
        return self.weights[name]

    def vector(self, name: str, width: int, kind: str = "norm") -> np.ndarray:
        t = self.tensor(name)
        if t.n_elements != width:
            raise GGUFError(f"gguf: tensor '{name}' has {t.n_elements} elements, expected {width}")
        if t.ggml_type == GGML_F32:
            return np.frombuffer(t.raw(), np.float32)
        if t.ggml_type == GGML_F16:
            return np.frombuffer(t.raw(), np.float16).astype(np.float32)
        raise GGUFError(f"gguf: {kind} tensor '{name}' has type {t.type_name}; expected F32 or F16")

    def norm_weight(self, name: str, width: int) -> int:
        return self.p.tensor(F32, (width,), self.vector(name, width))

    def linear(self, x: int, name: str, out_dims, rows=None) -> int:
        """`name`.weight (and `name`.bias where the file has one) applied to x; `rows`: reorder
        the outputs (weight rows and bias alike)."""
        w = self.weight(name + ".weight", rows)
        if name + ".bias" in self.gguf.tensors:
            v = self.vector(name + ".bias", out_dims[-1], "bias")
            bias = self.p.tensor(F32, (out_dims[-1],), v if rows is None else v[rows])
        else:
            bias = self.p.add(Null())
        out = self.p.tensor(F32, out_dims)
        self.p.call("py_engine.linear_gguf.default", x, w, self.p.add(Int(self.types[name + ".weight"])), bias, out)
        return out

    def rms_norm(self, x: int, name: str, eps: int, width: int, s_max: int) -> int:
        out = self.p.tensor(F32, (1, s_max, width))
        self.p.call("et_vk.rms_norm.default", x, self.norm_weight(name, width), eps, out)
        return out

    def view(self, x: int, sizes: int, dims) -> int:
        out = self.p.tensor(F32, dims)
        self.p.call("aten.view_copy.default", x, sizes, out)
        return out

    def add(self, a: int, b: int, alpha: int, dims) -> int:
        out = self.p.tensor(F32, dims)
        self.p.call("aten.add.Tensor", a, b, alpha, out)
        return out

    def slice_rows(self, table: int, start: int, end: int, dims) -> int:
        out = self.p.tensor(F32, dims)
        self.p.call("aten.slice_copy.Tensor", table, self.p.add(Int(0)), start, end, self.p.add(Int(1)), out)
        return out
