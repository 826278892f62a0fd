"""Linear layers (float, q4gsw, qcs4w) and 4-bit embeddings, with ExecuTorch's packings.

Checked against pytorch/executorch (mirror at commit cff6f4dd32e6, Aug 2026):

q4gsw (et_vk.linear_q4gsw, groupwise symmetric 4-bit)
    weight uint8 [N, K/2]: byte j of row n = (q[n, 2j+1] + 8) << 4 | (q[n, 2j] + 8),
    i.e. LOW nibble = even k, HIGH nibble = odd k; q in [-8, 7].
    scales f32 [K/G, N] (transposed from torchao's [N, K/G]); w[n, k] = q[n, k] * scales[k // G, n].
    out = x @ w.T (+ bias).
    Sources: backends/vulkan/patterns/weight_packing_utils.py::pack_4bit_weight_tensor
    ("packed_byte = (odd_val + 8) << 4 | (even_val + 8)"; pads K to a multiple of 8 with 0s),
    backends/vulkan/patterns/quantized_linear.py (scales transposed to [num_groups, N], and
    scales padded along N to a multiple of 4), backends/vulkan/custom_ops_lib.py::
    unpack_4bit_weight_tensor / linear_q4gsw (drops packed columns beyond x.shape[-1]),
    backends/webgpu/runtime/ops/quantized_linear/q4gsw_linear.wgsl
    ("even k -> low nibble", t_scales[(k / group_size) * padded_N + n]).
    So the unpackers here accept packed K padding (extra columns dropped) and scales padded
    along N (extra columns ignored).

qcs4w (et_vk.linear_qcs4w, per-channel symmetric 4-bit, no bias)
    weight uint8 [N, ceil(K/2)]: byte j of row n = (q[n, 2j] + 8) << 4 | (q[n, 2j+1] + 8),
    i.e. HIGH nibble = even k, LOW nibble = odd k (the opposite of q4gsw); odd K is padded
    with one q = 0 column. scales f32 [N]; w[n, k] = q[n, k] * scales[n].
    Sources: backends/vulkan/_passes/fuse_quantized_ops.py::pack_4bit_weight_tensor
    ("inp[::2] << 4 | inp[1::2]" after +8), backends/vulkan/test/op_tests/
    quantized_linear_test.cpp::dequantize_and_linear_qcs4w (first = high nibble - 8,
    second = low nibble - 8), backends/webgpu/runtime/ops/linear_qcs4w/qcs4w_linear.wgsl
    ("even k -> high nibble"). Note: the Python composite in custom_ops_lib.py::linear_qcs4w
    unpacks without subtracting 8 (arithmetic >> on int8); the runtimes and the C++ test
    reference subtract 8, and so do we.

embedding_q4gsw (et_vk.embedding_q4gsw(weight, weight_scales, group_size, indices,
    is_linear_weight=False))
    weight uint8 [V, E/2], scales f32 [V, E/G] in BOTH modes (row-major per token; never
    transposed); value = (nibble - 8) * scales[token, e // G].
    is_linear_weight=False: HIGH nibble = even e, LOW nibble = odd e (quantized_decomposed
        embedding_4bit packing).
    is_linear_weight=True: LOW nibble = even e, HIGH nibble = odd e (q4gsw linear packing,
        so a tied LM head can share the bytes).
    is_linear_weight changes only the nibble order. Sources: backends/vulkan/custom_ops_lib.py::
    embedding_q4gsw_impl, backends/vulkan/patterns/quantized_embedding.py (repacks to the
    linear convention and always passes is_linear_weight=True),
    backends/webgpu/runtime/ops/embedding_q4gsw/embedding_q4gsw.wgsl
    (t_scales[token * groups_per_row + dim / group_size]).
"""
from __future__ import annotations

import numpy as np

from ._util import F32, as_f64, check_ndim, to_f32
from .tensor_ops import check_indices


# ---- shared nibble helpers -------------------------------------------------------------

def quantize_symmetric_int4(w64: np.ndarray, absmax: np.ndarray):
    """q = clip(round(w / scale), -8, 7) with scale = absmax / 7 (f32), so |w - q*scale| <=
    scale/2. All-zero groups get scale 0 and q 0."""
    scale = (absmax / 7.0).astype(F32)
    safe = np.where(scale == 0, 1.0, scale.astype(np.float64))
    q = np.clip(np.rint(w64 / safe), -8, 7).astype(np.int8)
    return np.where(scale == 0, 0, q).astype(np.int8), scale


def _pack_nibbles(q: np.ndarray, even_high: bool) -> np.ndarray:
    """q int [R, C] (C even) in [-8, 7] -> uint8 [R, C/2]."""
    u = (q.astype(np.int16) + 8).astype(np.uint8)
    even, odd = u[:, 0::2], u[:, 1::2]
    return (even << 4 | odd) if even_high else (odd << 4 | even)


def _unpack_nibbles(packed: np.ndarray, even_high: bool) -> np.ndarray:
    """uint8 [R, C/2] -> int8 [R, C] in [-8, 7]."""
    p = np.asarray(packed)
    if p.dtype != np.uint8:
        raise TypeError(f"4-bit weight must be uint8, got {p.dtype}")
    high = (p >> 4).astype(np.int8) - 8
    low = (p & 0x0F).astype(np.int8) - 8
    first, second = (high, low) if even_high else (low, high)
    out = np.empty((p.shape[0], p.shape[1] * 2), dtype=np.int8)
    out[:, 0::2] = first
    out[:, 1::2] = second
    return out


# ---- float linear ----------------------------------------------------------------------

def linear(x, weight, bias=None) -> np.ndarray:
    """aten.linear: x[..., K] @ weight[N, K].T (+ bias[N]), float64 math, float32 result."""
    x64, w64 = as_f64(x), as_f64(weight)
    check_ndim("linear", "weight", w64, 2)
    if x64.ndim == 0 or x64.shape[-1] != w64.shape[1]:
        raise ValueError(
            f"linear: input {tuple(x64.shape)} does not match weight {tuple(w64.shape)} (K)"
        )
    out = x64 @ w64.T
    if bias is not None:
        b64 = as_f64(bias)
        if b64.shape != (w64.shape[0],):
            raise ValueError(f"linear: bias shape {tuple(b64.shape)} != ({w64.shape[0]},)")
        out = out + b64
    return to_f32(out)


# ---- q4gsw -----------------------------------------------------------------------------

def pack_q4gsw(w, group_size: int):
    """w f32 [N, K] -> (weight uint8 [N, K/2], scales f32 [K/G, N]), symmetric int4 groups
    of `group_size` along K. Requires K even and K % group_size == 0."""
    w64 = as_f64(w)
    check_ndim("pack_q4gsw", "w", w64, 2)
    n, k = w64.shape
    if group_size <= 0 or k % group_size:
        raise ValueError(f"pack_q4gsw: K={k} is not a multiple of group_size {group_size}")
    if k % 2:
        raise ValueError(f"pack_q4gsw: K={k} must be even")
    groups = w64.reshape(n, k // group_size, group_size)
    q, scale = quantize_symmetric_int4(groups, np.abs(groups).max(axis=-1, keepdims=True))
    packed = _pack_nibbles(q.reshape(n, k), even_high=False)
    return packed, np.ascontiguousarray(scale[..., 0].T)


def unpack_q4gsw(weight, scales, group_size: int) -> np.ndarray:
    """Inverse of pack_q4gsw: -> w f32 [N, K] with K = scales.shape[0] * group_size.
    Packed columns beyond K/2 (ExecuTorch pads K to a multiple of 8) and scale columns
    beyond N (padded to a multiple of 4) are ignored."""
    weight, scales = np.asarray(weight), np.asarray(scales)
    check_ndim("unpack_q4gsw", "weight", weight, 2)
    check_ndim("unpack_q4gsw", "scales", scales, 2)
    n = weight.shape[0]
    k = scales.shape[0] * group_size
    if weight.shape[1] * 2 < k:
        raise ValueError(
            f"unpack_q4gsw: weight {tuple(weight.shape)} holds fewer than K={k} columns "
            f"(scales {tuple(scales.shape)}, group_size {group_size})"
        )
    if scales.shape[1] < n:
        raise ValueError(f"unpack_q4gsw: scales {tuple(scales.shape)} cover fewer than N={n} rows")
    q = _unpack_nibbles(weight, even_high=False)[:, :k]
    per_k = as_f64(scales[:, :n]).T.repeat(group_size, axis=1)  # [N, K]
    return to_f32(q * per_k)


def linear_q4gsw(x, weight, scales, group_size: int, bias=None) -> np.ndarray:
    """et_vk.linear_q4gsw: x[..., K] @ unpack_q4gsw(weight, scales).T (+ bias)."""
    k = np.shape(x)[-1]
    if np.shape(scales)[0] * group_size != k:
        raise ValueError(
            f"linear_q4gsw: input K={k} != scales groups {np.shape(scales)[0]} * group_size {group_size}"
        )
    return linear(x, unpack_q4gsw(weight, scales, group_size), bias)


# ---- qcs4w -----------------------------------------------------------------------------

def pack_qcs4w(w):
    """w f32 [N, K] -> (weight uint8 [N, ceil(K/2)], scales f32 [N]); even k in the HIGH
    nibble; odd K padded with a zero column."""
    w64 = as_f64(w)
    check_ndim("pack_qcs4w", "w", w64, 2)
    q, scale = quantize_symmetric_int4(w64, np.abs(w64).max(axis=1, keepdims=True))
    if q.shape[1] % 2:
        q = np.concatenate([q, np.zeros((q.shape[0], 1), np.int8)], axis=1)
    return _pack_nibbles(q, even_high=True), np.ascontiguousarray(scale[:, 0])


def unpack_qcs4w(weight, scales, k=None) -> np.ndarray:
    """Inverse of pack_qcs4w -> w f32 [N, k] (k defaults to 2 * packed columns)."""
    weight, scales = np.asarray(weight), np.asarray(scales)
    check_ndim("unpack_qcs4w", "weight", weight, 2)
    n = weight.shape[0]
    if scales.shape != (n,):
        raise ValueError(f"unpack_qcs4w: scales shape {tuple(scales.shape)} != ({n},)")
    full = weight.shape[1] * 2
    k = full if k is None else int(k)
    if not 0 < k <= full or full - k > 1:
        raise ValueError(f"unpack_qcs4w: K={k} does not fit packed weight {tuple(weight.shape)}")
    q = _unpack_nibbles(weight, even_high=True)[:, :k]
    return to_f32(q * as_f64(scales)[:, None])


def linear_qcs4w(x, weight, scales) -> np.ndarray:
    """et_vk.linear_qcs4w: x[..., K] @ unpack_qcs4w(weight, scales, K).T."""
    return linear(x, unpack_qcs4w(weight, scales, np.shape(x)[-1]))


# ---- 4-bit embedding -------------------------------------------------------------------

def pack_embedding_q4gsw(w, group_size: int, is_linear_weight: bool = False):
    """w f32 [V, E] -> (weight uint8 [V, E/2], scales f32 [V, E/G]) for embedding_q4gsw."""
    w64 = as_f64(w)
    check_ndim("pack_embedding_q4gsw", "w", w64, 2)
    v, e = w64.shape
    if group_size <= 0 or e % group_size or e % 2:
        raise ValueError(
            f"pack_embedding_q4gsw: E={e} must be even and a multiple of group_size {group_size}"
        )
    groups = w64.reshape(v, e // group_size, group_size)
    q, scale = quantize_symmetric_int4(groups, np.abs(groups).max(axis=-1, keepdims=True))
    packed = _pack_nibbles(q.reshape(v, e), even_high=not is_linear_weight)
    return packed, np.ascontiguousarray(scale[..., 0])


def unpack_embedding_q4gsw(weight, scales, group_size: int, is_linear_weight: bool = False):
    """The whole dequantized table f32 [V, E]."""
    weight, scales = np.asarray(weight), np.asarray(scales)
    op = "embedding_q4gsw"
    check_ndim(op, "weight", weight, 2)
    check_ndim(op, "weight_scales", scales, 2)
    v, e = weight.shape[0], weight.shape[1] * 2
    if group_size <= 0 or e % group_size:
        raise ValueError(f"{op}: embed_dim {e} is not a multiple of group_size {group_size}")
    if scales.shape != (v, e // group_size):
        raise ValueError(
            f"{op}: weight_scales shape {tuple(scales.shape)} != [V={v}, E/G={e // group_size}]"
        )
    q = _unpack_nibbles(weight, even_high=not is_linear_weight)
    return to_f32(q * as_f64(scales).repeat(group_size, axis=1))


def embedding_q4gsw(weight, scales, group_size: int, indices, is_linear_weight: bool = False):
    """et_vk.embedding_q4gsw: rows of the dequantized table, out shape indices.shape + [E]."""
    indices = np.asarray(indices)
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"embedding_q4gsw: indices must be integers, got {indices.dtype}")
    weight, scales = np.asarray(weight), np.asarray(scales)
    unpack_embedding_q4gsw(weight[:1], scales[:1], group_size, is_linear_weight)  # validates
    if scales.shape[0] != weight.shape[0]:
        raise ValueError(
            f"embedding_q4gsw: weight has {weight.shape[0]} rows, weight_scales {scales.shape[0]}"
        )
    check_indices("embedding_q4gsw", indices, weight.shape[0])
    # Dequantize only the gathered rows: the table can be a whole vocabulary.
    flat = indices.reshape(-1)
    rows = unpack_embedding_q4gsw(weight[flat], scales[flat], group_size, is_linear_weight)
    return rows.reshape(indices.shape + (rows.shape[1],))
