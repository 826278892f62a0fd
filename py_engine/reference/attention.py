"""KV-cache write (llama.update_cache) and causal attention over the cache
(llama.sdpa_with_kv_cache), with the WebGPU/Vulkan backends' conventions:

- layouts are [batch=1, seq, heads, head_dim]; caches are [1, Cmax, H, D];
- the new rows are written at input_pos .. input_pos+S-1 before attending;
- query row s attends cache rows 0 .. input_pos+s inclusive (causal);
- query head h reads kv head h // (Hq / Hkv) (grouped-query attention);
- scale defaults to 1/sqrt(D).

Upstream signatures (pytorch/executorch extension/llm/custom_ops/custom_ops.py):
update_cache(value, cache, start_pos) mutates cache in place and returns a dummy [1] tensor;
sdpa_with_kv_cache(query, key, value, key_cache, value_cache, start_pos, seq_len,
attn_mask=None, drop_p=0.0, is_causal=False, scale=None). Here seq_len is taken from q's
shape (as the WebGPU backend does with q's live dims) and there is no mask/dropout.

These functions never modify their arguments: they return new caches, so a test can keep
the "before" state. Validation mirrors the host checks of the seeds (update_cache: batch 1,
matching heads/head_dim, 0 <= input_pos, input_pos + S <= Cmax) with messages naming the op.
"""
from __future__ import annotations

import math

import numpy as np

from ._util import as_f64, check_int, check_ndim, to_f32


def _check_cache_write(op: str, value: np.ndarray, cache: np.ndarray, input_pos) -> int:
    check_ndim(op, "value", value, 4)
    check_ndim(op, "cache", cache, 4)
    if value.shape[0] != 1 or cache.shape[0] != 1:
        raise ValueError(
            f"{op}: batch must be 1, got value {tuple(value.shape)} and cache {tuple(cache.shape)}"
        )
    if value.shape[2] != cache.shape[2]:
        raise ValueError(
            f"{op}: n_heads mismatch: value has {value.shape[2]}, cache has {cache.shape[2]}"
        )
    if value.shape[3] != cache.shape[3]:
        raise ValueError(
            f"{op}: head_dim mismatch: value has {value.shape[3]}, cache has {cache.shape[3]}"
        )
    pos = check_int(op, "input_pos", input_pos)
    if pos < 0:
        raise ValueError(f"{op}: input_pos must be non-negative, got {pos}")
    seq, cmax = value.shape[1], cache.shape[1]
    if pos + seq > cmax:
        raise ValueError(
            f"{op}: input_pos {pos} + seq_len {seq} exceeds cache capacity {cmax}"
        )
    return pos


def update_cache(value, cache, input_pos) -> np.ndarray:
    """llama.update_cache: a copy of cache with value[0, s] written at row input_pos + s."""
    value, cache = np.asarray(value), np.asarray(cache)
    pos = _check_cache_write("update_cache", value, cache, input_pos)
    out = np.array(cache, copy=True)
    out[0, pos : pos + value.shape[1]] = value[0]
    return out


def _check_sdpa_shapes(q, k, v, k_cache, v_cache) -> None:
    op = "sdpa_with_kv_cache"
    for name, t in (("q", q), ("k", k), ("v", v), ("k_cache", k_cache), ("v_cache", v_cache)):
        check_ndim(op, name, t, 4)
    if q.shape[0] != 1:
        raise ValueError(f"{op}: batch must be 1, got q {tuple(q.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"{op}: k {tuple(k.shape)} and v {tuple(v.shape)} differ")
    if k_cache.shape != v_cache.shape:
        raise ValueError(
            f"{op}: k_cache {tuple(k_cache.shape)} and v_cache {tuple(v_cache.shape)} differ"
        )
    if k.shape[1] != q.shape[1]:
        raise ValueError(f"{op}: q has seq_len {q.shape[1]}, k has {k.shape[1]}")
    if k.shape[3] != q.shape[3]:
        raise ValueError(f"{op}: q has head_dim {q.shape[3]}, k has {k.shape[3]}")
    n_q, n_kv = q.shape[2], k.shape[2]
    if n_kv == 0 or n_q % n_kv:
        raise ValueError(f"{op}: q heads {n_q} not a multiple of kv heads {n_kv}")


def attend_causal(q, k_cache, v_cache, input_pos: int, scale=None) -> np.ndarray:
    """Causal GQA attention of q [1, S, Hq, D] over cache rows 0..input_pos+S-1 (already
    written). Returns float64 [1, S, Hq, D]."""
    q64 = as_f64(q)
    _, seq, n_q, d = q64.shape
    n_kv = k_cache.shape[2]
    group = n_q // n_kv
    ctx = input_pos + seq
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    # Expand kv heads to query heads: q head h uses kv head h // group.
    keys = np.repeat(as_f64(k_cache[0, :ctx]), group, axis=1)  # [ctx, Hq, D]
    vals = np.repeat(as_f64(v_cache[0, :ctx]), group, axis=1)
    scores = np.einsum("shd,chd->hsc", q64[0], keys) * scale  # [Hq, S, ctx]
    # Row s may see cache column c only if c <= input_pos + s.
    allowed = np.arange(ctx)[None, :] <= (input_pos + np.arange(seq))[:, None]
    scores = np.where(allowed[None], scores, -np.inf)
    scores -= scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    out = np.einsum("hsc,chd->shd", weights, vals)
    return out[None]


def sdpa_with_kv_cache(q, k, v, k_cache, v_cache, input_pos, scale=None):
    """llama.sdpa_with_kv_cache: returns (out [1, S, Hq, D] f32, k_cache', v_cache')."""
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    k_cache, v_cache = np.asarray(k_cache), np.asarray(v_cache)
    _check_sdpa_shapes(q, k, v, k_cache, v_cache)
    new_k = update_cache(k, k_cache, input_pos)
    new_v = update_cache(v, v_cache, input_pos)
    out = attend_causal(q, new_k, new_v, int(input_pos), scale)
    return to_f32(out), new_k, new_v
