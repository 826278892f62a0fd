"""GGUF block formats in numpy: quantize float arrays to Q4_0/Q4_1/Q8_0 (and, through
kquant_encode, to the types transcoded at load), dequantize back.

Block layouts (32 weights per block, DESIGN.md "Facts about formats"):
  Q4_0: f16 d, 16 bytes; element j<16 = low nibble of byte j, j+16 = high nibble; v = d*(q-8)
  Q4_1: f16 d, f16 m, 16 bytes (same nibble order);                                 v = d*q + m
  Q8_0: f16 d, 32 x int8;                                                           v = d*q
The quantizers follow llama.cpp's reference (non-imatrix) rounding so files we write look
like files llama.cpp writes. Pure numpy: runs in CPython and Pyodide.
"""
from __future__ import annotations

import numpy as np

from ..loaders.gguf_transcode import TRANSCODED_BLOCKS, decode, f16_bytes, nibbles32

QK = 32  # weights per block for every block type here

# ggml type id -> (name, elements per block, bytes per block)
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0 = 0, 1, 2, 3, 8
BLOCK_INFO = {
    GGML_F32: ("F32", 1, 4),
    GGML_F16: ("F16", 1, 2),
    GGML_Q4_0: ("Q4_0", QK, 2 + QK // 2),
    GGML_Q4_1: ("Q4_1", QK, 4 + QK // 2),
    GGML_Q8_0: ("Q8_0", QK, 2 + QK),
}


class QuantError(ValueError):
    """A shape or buffer that does not fit the requested block format."""


def _type_info(ggml_type: int):
    try:
        return BLOCK_INFO[ggml_type]
    except KeyError:
        raise QuantError(f"gguf_quant: unsupported ggml type {ggml_type}") from None


def nbytes_for(ggml_type: int, shape) -> int:
    """Bytes taken by a tensor of `shape` (numpy order; last dim = ggml ne0) in `ggml_type`."""
    name, blk, size = _type_info(ggml_type)
    shape = tuple(int(s) for s in shape)
    row = shape[-1] if shape else 1
    if row % blk:
        raise QuantError(f"gguf_quant: {name} needs the last dim to be a multiple of {blk}, got {row}")
    n = 1
    for s in shape:
        n *= s
    return n // blk * size


def _blocks(x, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 0 or x.shape[-1] % QK:
        raise QuantError(f"gguf_quant: {name} needs the last dim to be a multiple of {QK}, got shape {x.shape}")
    return x.reshape(-1, QK)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.uint8)
    return q[:, : QK // 2] | (q[:, QK // 2 :] << 4)


def quantize_q8_0(x) -> bytes:
    b = _blocks(x, "Q8_0")
    amax = np.abs(b).max(axis=1)
    d = amax / 127.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    v = b * inv[:, None]
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)  # roundf: half away from zero
    return np.concatenate([f16_bytes(d), q.view(np.uint8)], axis=1).tobytes()


def quantize_q4_0(x) -> bytes:
    b = _blocks(x, "Q4_0")
    # d comes from the signed value of largest magnitude so that it maps exactly to -8.
    idx = np.abs(b).argmax(axis=1)
    vmax = b[np.arange(len(b)), idx]
    d = vmax / -8.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.trunc(b * inv[:, None] + 8.5), 0, 15)
    return np.concatenate([f16_bytes(d), _pack_nibbles(q)], axis=1).tobytes()


def quantize_q4_1(x) -> bytes:
    b = _blocks(x, "Q4_1")
    lo, hi = b.min(axis=1), b.max(axis=1)
    d = (hi - lo) / 15.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.trunc((b - lo[:, None]) * inv[:, None] + 0.5), 0, 15)
    return np.concatenate([f16_bytes(d), f16_bytes(lo), _pack_nibbles(q)], axis=1).tobytes()


def quantize(ggml_type: int, x) -> bytes:
    """Float array -> raw GGUF bytes of `ggml_type` (row-major, last dim = ggml ne0)."""
    if ggml_type == GGML_F32:
        return np.ascontiguousarray(x, dtype="<f4").tobytes()
    if ggml_type == GGML_F16:
        return np.ascontiguousarray(x, dtype="<f2").tobytes()
    if ggml_type == GGML_Q4_0:
        return quantize_q4_0(x)
    if ggml_type == GGML_Q4_1:
        return quantize_q4_1(x)
    if ggml_type == GGML_Q8_0:
        return quantize_q8_0(x)
    from .kquant_encode import ENCODERS  # (it builds on this module's helpers)

    if ggml_type in ENCODERS:
        try:
            return ENCODERS[ggml_type](x)
        except ValueError as e:
            raise QuantError(str(e)) from None
    _type_info(ggml_type)  # raises for unknown types
    raise AssertionError("unreachable")


def dequantize(ggml_type: int, data, shape) -> np.ndarray:
    """Raw GGUF bytes of `ggml_type` -> float32 array of `shape` (numpy order). Types the
    kernels do not read (K-quants, Q5_*, BF16) decode through py_engine.loaders.gguf_transcode."""
    shape = tuple(int(s) for s in shape)
    if ggml_type in TRANSCODED_BLOCKS:
        try:
            return decode(ggml_type, data, int(np.prod(shape))).reshape(shape)
        except ValueError as e:
            raise QuantError(str(e)) from None
    need = nbytes_for(ggml_type, shape)
    raw = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if raw.size != need:
        name = BLOCK_INFO[ggml_type][0]
        raise QuantError(f"gguf_quant: {name} tensor of shape {shape} needs {need} bytes, got {raw.size}")
    if ggml_type == GGML_F32:
        return raw.view("<f4").astype(np.float32).reshape(shape)
    if ggml_type == GGML_F16:
        return raw.view("<f2").astype(np.float32).reshape(shape)
    size = BLOCK_INFO[ggml_type][2]
    blk = raw.reshape(-1, size)
    d = blk[:, 0:2].copy().view("<f2").astype(np.float32)  # (nblocks, 1)
    if ggml_type == GGML_Q4_0:
        out = d * (nibbles32(blk[:, 2:]).astype(np.float32) - 8.0)
    elif ggml_type == GGML_Q4_1:
        m = blk[:, 2:4].copy().view("<f2").astype(np.float32)
        out = d * nibbles32(blk[:, 4:]).astype(np.float32) + m
    else:  # Q8_0
        out = d * blk[:, 2:].view(np.int8).astype(np.float32)
    return out.reshape(shape)
