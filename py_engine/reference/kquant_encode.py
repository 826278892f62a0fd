"""Float arrays -> the GGUF types the engine transcodes at load (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K,
BF16), for synthetic test files. Layouts: py_engine/loaders/gguf_transcode.py.

Plain min/max rounding (no search for the best scales, unlike llama.cpp's quantizers): the
files are test inputs, and tests compare the engine with these files' own decoded weights.
Pure numpy, row-major with the last dim = ggml ne0.
"""
from __future__ import annotations

import numpy as np

from ..loaders.gguf_transcode import f16_bytes
from .gguf_quant import _pack_nibbles  # [n, 32] 4-bit values -> [n, 16] bytes, Q4_0 order


def _blocks(x, per: int, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 0 or x.shape[-1] % per:
        raise ValueError(f"kquant_encode: {name} needs the last dim to be a multiple of {per}, got shape {x.shape}")
    return x.reshape(-1, per)


def _f16(v: np.ndarray) -> tuple:
    """(f16 bytes [n, 2], the f16 values as float32 [n])."""
    h = np.asarray(v, np.float32).astype(np.float16).reshape(-1)
    return f16_bytes(h), h.astype(np.float32)


def _inv(d: np.ndarray) -> np.ndarray:
    return np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)


def _pack_bits(bit: np.ndarray) -> np.ndarray:
    """[n, 32] bits -> [n, 4] bytes of a little-endian u32."""
    return np.packbits(bit.astype(np.uint8), axis=1, bitorder="little")


def quantize_q5_0(x) -> bytes:
    b = _blocks(x, 32, "Q5_0")
    idx = np.abs(b).argmax(axis=1)
    dh, d = _f16(b[np.arange(len(b)), idx] / -16.0)  # the largest magnitude maps to -16
    q = np.clip(np.rint(b * _inv(d)[:, None]) + 16, 0, 31).astype(np.uint8)
    return np.concatenate([dh, _pack_bits(q >> 4), _pack_nibbles(q & 15)], axis=1).tobytes()


def quantize_q5_1(x) -> bytes:
    b = _blocks(x, 32, "Q5_1")
    mh, m = _f16(b.min(axis=1))
    dh, d = _f16((b.max(axis=1) - m) / 31.0)
    q = np.clip(np.rint((b - m[:, None]) * _inv(d)[:, None]), 0, 31).astype(np.uint8)
    return np.concatenate([dh, mh, _pack_bits(q >> 4), _pack_nibbles(q & 15)], axis=1).tobytes()


def _pack_k_scales(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """6-bit scales and mins [n, 8] -> the 12 packed bytes of Q4_K / Q5_K."""
    lo = sc[:, :4] | ((sc[:, 4:] >> 4) << 6)
    hi = mn[:, :4] | ((mn[:, 4:] >> 4) << 6)
    tail = (sc[:, 4:] & 15) | ((mn[:, 4:] & 15) << 4)
    return np.concatenate([lo, hi, tail], axis=1).astype(np.uint8)


def _quantize_k(x, bits: int, name: str) -> tuple:
    """Shared by Q4_K / Q5_K: (header + scales bytes [n, 16], q [n, 8, 32])."""
    b = _blocks(x, 256, name).reshape(-1, 8, 32)
    top = (1 << bits) - 1
    lo = np.minimum(b.min(axis=2), 0.0)            # w = a*q - c, c = -lo >= 0
    a = (b.max(axis=2) - lo) / top
    dh, d = _f16(a.max(axis=1) / 63.0)
    mh, dmin = _f16((-lo).max(axis=1) / 63.0)
    sc = np.clip(np.rint(a * _inv(d)[:, None]), 0, 63).astype(np.uint8)
    mn = np.clip(np.rint(-lo * _inv(dmin)[:, None]), 0, 63).astype(np.uint8)
    step = d[:, None] * sc
    q = np.rint((b + (dmin[:, None] * mn)[:, :, None]) * _inv(step)[:, :, None])
    q = np.clip(q, 0, top).astype(np.uint8)
    return np.concatenate([dh, mh, _pack_k_scales(sc, mn)], axis=1), q


def _k_nibble_bytes(q: np.ndarray) -> np.ndarray:
    """[n, 8, 32] 4-bit values -> [n, 128]: chunk c holds sub-blocks 2c (low) and 2c+1 (high)."""
    q = q.reshape(-1, 4, 2, 32)
    return (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128).astype(np.uint8)


def quantize_q4_k(x) -> bytes:
    head, q = _quantize_k(x, 4, "Q4_K")
    return np.concatenate([head, _k_nibble_bytes(q)], axis=1).tobytes()


def quantize_q5_k(x) -> bytes:
    head, q = _quantize_k(x, 5, "Q5_K")
    qh = np.packbits((q >> 4).transpose(0, 2, 1), axis=2, bitorder="little").reshape(-1, 32)
    return np.concatenate([head, qh, _k_nibble_bytes(q & 15)], axis=1).tobytes()


def quantize_q6_k(x) -> bytes:
    b = _blocks(x, 256, "Q6_K").reshape(-1, 16, 16)
    idx = np.abs(b).argmax(axis=2)
    big = np.take_along_axis(b, idx[:, :, None], axis=2)[:, :, 0]
    a = big / -32.0                                  # per 16: the largest magnitude maps to -32
    dh, d = _f16(np.abs(a).max(axis=1) / 127.0)
    sc = np.clip(np.rint(a * _inv(d)[:, None]), -127, 127).astype(np.int8)
    step = d[:, None] * sc
    q = np.clip(np.rint(b * _inv(step)[:, :, None]) + 32, 0, 63).astype(np.uint8).reshape(-1, 2, 4, 32)
    low, high = q & 15, q >> 4
    ql = (low[:, :, 0:2] | (low[:, :, 2:4] << 4)).reshape(-1, 128)
    qh = (high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)).reshape(-1, 64)
    return np.concatenate([ql, qh, sc.view(np.uint8), dh], axis=1).astype(np.uint8).tobytes()


def quantize_bf16(x) -> bytes:
    """Round to nearest even, as the converters do."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype("<u2").tobytes()


ENCODERS = {6: quantize_q5_0, 7: quantize_q5_1, 12: quantize_q4_k, 13: quantize_q5_k,
            14: quantize_q6_k, 30: quantize_bf16}

__all__ = ["ENCODERS"]
