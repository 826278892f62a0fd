"""Rotary position embedding, interleaved (llama / GGUF / et_vk.apply_rotary_emb.default).

Pairs are adjacent elements (2i, 2i+1) of each head row, rotated by the angle
position * theta_i with theta_i = base^(-2i/D):
    out[2i]   = x[2i] * cos - x[2i+1] * sin
    out[2i+1] = x[2i] * sin + x[2i+1] * cos
"""
from __future__ import annotations

import numpy as np

from ._util import F64, as_f64, to_f32


def rope_freqs(head_dim: int, positions, base: float = 10000.0, scale: float = 1.0, factors=()):
    """(cos, sin), each float32 [len(positions), head_dim/2], as llama's precompute_freqs_cis;
    positions times `scale` (linear RoPE scaling), theta_i divided by `factors[i]` if given
    (Llama 3's rope_freqs)."""
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"rope_freqs: head_dim must be positive and even, got {head_dim}")
    pos = np.asarray(positions, dtype=F64).reshape(-1) * float(scale)
    theta = float(base) ** (-np.arange(0, head_dim, 2, dtype=F64) / head_dim)
    if len(factors):
        theta = theta / np.asarray(factors, dtype=F64)
    angles = np.outer(pos, theta)
    return to_f32(np.cos(angles)), to_f32(np.sin(angles))


def _rotate(name: str, x64: np.ndarray, cos64: np.ndarray, sin64: np.ndarray) -> np.ndarray:
    if x64.ndim != 4:
        raise ValueError(f"apply_rotary_emb: {name} must be 4-d [B, S, H, D], got {x64.shape}")
    _, s, _, d = x64.shape
    if d % 2:
        raise ValueError(f"apply_rotary_emb: {name} head_dim {d} is odd")
    if cos64.shape != (s, d // 2):
        raise ValueError(
            f"apply_rotary_emb: freqs shape {cos64.shape} does not match {name} "
            f"(expected [S={s}, D/2={d // 2}])"
        )
    even, odd = x64[..., 0::2], x64[..., 1::2]
    c, sn = cos64[None, :, None, :], sin64[None, :, None, :]
    out = np.empty_like(x64)
    out[..., 0::2] = even * c - odd * sn
    out[..., 1::2] = even * sn + odd * c
    return out


def apply_rotary_emb(xq, xk, freqs_cos, freqs_sin):
    """et_vk.apply_rotary_emb.default: (xq_out, xk_out), both rotated by the same freqs.
    xq [B, S, Hq, D], xk [B, S, Hkv, D], freqs_cos/sin [S, D/2]."""
    cos64, sin64 = as_f64(freqs_cos), as_f64(freqs_sin)
    if cos64.shape != sin64.shape:
        raise ValueError(
            f"apply_rotary_emb: freqs_cos {cos64.shape} and freqs_sin {sin64.shape} differ"
        )
    xq64, xk64 = as_f64(xq), as_f64(xk)
    if xq64.ndim == 4 and xk64.ndim == 4 and (
        xq64.shape[:2] != xk64.shape[:2] or xq64.shape[3] != xk64.shape[3]
    ):
        raise ValueError(
            f"apply_rotary_emb: xq {xq64.shape} and xk {xk64.shape} differ in batch, seq or head_dim"
        )
    return (
        to_f32(_rotate("xq", xq64, cos64, sin64)),
        to_f32(_rotate("xk", xk64, cos64, sin64)),
    )


def apply_rotary_emb_neox(xq, xk, freqs_cos, freqs_sin):
    """RoPE as GPT-NeoX / Qwen2 apply it (Hugging Face's rotate_half): pair i is (x[i], x[i + D/2])
    instead of (x[2i], x[2i+1]). Same arguments and shapes as apply_rotary_emb."""
    c, sn = as_f64(freqs_cos)[None, :, None, :], as_f64(freqs_sin)[None, :, None, :]

    def rotate(x):
        x = as_f64(x)
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        return to_f32(np.concatenate([a * c - b * sn, a * sn + b * c], axis=-1))

    return rotate(xq), rotate(xk)
