"""GGUF block types the kernels do not read, decoded, and turned into ones they do at load.

The GPU kernels read F32, F16, Q4_0, Q4_1 and Q8_0. Most GGUF files people download are
"K-quants" (Q4_K_M: Q4_K with some Q6_K tensors), so the llama builder transcodes each tensor
of another type when it takes it (`kernel_tensor`):

  Q4_K -> Q4_1   a Q4_K sub-block of 32 is already (d*scale)*q - dmin*min with 4-bit q: only the
                 two products are rounded to f16 (relative error 2^-11 of a scale); 5 bits per
                 weight instead of 4.5
  Q5_0 -> Q8_0   exact: d*(q-16) with q-16 in -16..15
  Q5_1, Q5_K, Q6_K -> Q8_0   re-quantized per 32 weights: adds at most half a Q8_0 step
                 (max|w| / 254 of its block), about a quarter of the source's own step
  BF16 -> F16    where every value of the tensor is exact in f16, else F32 (always exact)

Block layouts (little-endian; "sub-block" = the weights one scale covers):
  Q5_0 (32, 22 B): f16 d, u32 qh, 16 B nibbles; q_j = nibble_j | bit_j(qh) << 4, w = d*(q-16)
  Q5_1 (32, 24 B): f16 d, f16 m, u32 qh, 16 B nibbles;                          w = d*q + m
     (nibbles as Q4_0: element j<16 = low nibble of byte j, j+16 = high nibble)
  Q4_K (256, 144 B): f16 d, f16 dmin, 12 B of 6-bit scales and mins for 8 sub-blocks of 32,
     128 B: for chunk c (64 weights), byte 32c+l holds weight l of sub-block 2c (low nibble) and
     of sub-block 2c+1 (high);                                    w = d*scale*q - dmin*min
  Q5_K (256, 176 B): as Q4_K with 32 B qh before the nibbles: bit s of qh[l] is the fifth bit
     of weight l of sub-block s
  Q6_K (256, 210 B): 128 B low nibbles, 64 B of high 2-bit pairs, 16 int8 scales (one per 16
     weights), f16 d; per half of 128 weights (64 + 32 B): low-nibble byte l holds weights l
     (low) and 64+l (high), byte 32+l weights 32+l and 96+l; high byte l holds the two top bits
     of weights l, 32+l, 64+l, 96+l (bits 0-1, 2-3, 4-5, 6-7);   w = d*scale*(q-32)
Pure numpy, in row chunks so a large tensor never needs all its floats at once.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

GGML_F32, GGML_F16, GGML_Q4_1 = 0, 1, 3
GGML_Q5_0, GGML_Q5_1, GGML_Q8_0 = 6, 7, 8
GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_BF16 = 12, 13, 14, 30

# Types read from files and transcoded: id -> (weights per block, bytes per block)
TRANSCODED_BLOCKS = {GGML_Q5_0: (32, 22), GGML_Q5_1: (32, 24), GGML_Q4_K: (256, 144),
                     GGML_Q5_K: (256, 176), GGML_Q6_K: (256, 210), GGML_BF16: (1, 2)}
# What each becomes (BF16: F16, or F32 where f16 would round)
TARGET = {GGML_Q5_0: GGML_Q8_0, GGML_Q5_1: GGML_Q8_0, GGML_Q4_K: GGML_Q4_1,
          GGML_Q5_K: GGML_Q8_0, GGML_Q6_K: GGML_Q8_0, GGML_BF16: GGML_F16}

CHUNK_WEIGHTS = 1 << 20  # weights decoded at a time


def _f16(raw: np.ndarray, col: int) -> np.ndarray:
    """The f16 at byte `col` of each block row, as float32 [blocks, 1]."""
    return raw[:, col:col + 2].copy().view("<f2").astype(np.float32)


def nibbles32(qs: np.ndarray) -> np.ndarray:
    """[blocks, 16] bytes -> [blocks, 32] nibbles in Q4_0 order (low nibbles first)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _qh_bits(qh4: np.ndarray) -> np.ndarray:
    """[blocks, 4] bytes of a little-endian u32 -> [blocks, 32] bits, bit j for weight j."""
    return np.unpackbits(qh4, axis=1, bitorder="little")


def _k_scales(sc: np.ndarray) -> tuple:
    """[blocks, 12] packed 6-bit scales/mins of Q4_K / Q5_K -> (scales, mins), [blocks, 8]."""
    lo, hi = sc[:, 0:4], sc[:, 4:8]
    tail = sc[:, 8:12]
    scales = np.concatenate([lo & 63, (tail & 0x0F) | ((lo >> 6) << 4)], axis=1)
    mins = np.concatenate([hi & 63, (tail >> 4) | ((hi >> 6) << 4)], axis=1)
    return scales.astype(np.float32), mins.astype(np.float32)


def _k_nibbles(qs: np.ndarray) -> np.ndarray:
    """[blocks, 128] Q4_K / Q5_K nibble bytes -> [blocks, 8, 32] 4-bit values per sub-block."""
    q = qs.reshape(-1, 4, 1, 32)
    return np.concatenate([q & 0x0F, q >> 4], axis=2).reshape(-1, 8, 32)


def _q6_k_ints(raw: np.ndarray) -> tuple:
    """Q6_K blocks [b, 210] -> (scale * (q - 32) as int16 [b, 16, 16], one row per scale; d as
    float32 [b, 1, 1]). Weights are d times the integers, exactly in float32 (24 bits)."""
    ql, qh = raw[:, 0:128].reshape(-1, 2, 1, 64), raw[:, 128:192].reshape(-1, 2, 1, 32)
    low = np.concatenate([ql & 0x0F, ql >> 4], axis=2).reshape(-1, 2, 128)      # [b, half, 128]
    high = ((qh >> _Q6_SHIFTS) & 3).reshape(-1, 2, 128)
    q = ((low | (high << 4)) - np.uint8(32)).view(np.int8)                         # q - 32, wrapped
    v = q.reshape(-1, 16, 16).astype(np.int16) * raw[:, 192:208].view(np.int8)[:, :, None]
    return v, _f16(raw, 208)[:, :, None]


_Q6_SHIFTS = np.arange(0, 8, 2, dtype=np.uint8).reshape(1, 1, 4, 1)


def _decode_blocks(t: int, raw: np.ndarray) -> np.ndarray:
    """[blocks, block bytes] of type t -> float32 [blocks, weights per block]."""
    if t == GGML_BF16:
        return (raw.copy().view("<u2").astype(np.uint32) << 16).view(np.float32)
    if t in (GGML_Q5_0, GGML_Q5_1):
        off = 2 if t == GGML_Q5_0 else 4
        q = nibbles32(raw[:, off + 4:]) | (_qh_bits(raw[:, off:off + 4]) << 4)
        d = _f16(raw, 0)
        if t == GGML_Q5_0:
            return d * (q.astype(np.float32) - 16.0)
        return d * q.astype(np.float32) + _f16(raw, 2)
    if t in (GGML_Q4_K, GGML_Q5_K):
        scales, mins = _k_scales(raw[:, 4:16])
        if t == GGML_Q4_K:
            q = _k_nibbles(raw[:, 16:144])
        else:
            bits = np.unpackbits(raw[:, 16:48].reshape(-1, 1, 32), axis=1, bitorder="little")  # [b, 8, 32]
            q = _k_nibbles(raw[:, 48:176]) | (bits << 4)
        d = _f16(raw, 0)[:, :, None] * scales[:, :, None]
        m = _f16(raw, 2)[:, :, None] * mins[:, :, None]
        return (d * q.astype(np.float32) - m).reshape(-1, 256)
    if t == GGML_Q6_K:
        v, d = _q6_k_ints(raw)
        return (v.astype(np.float32) * d).reshape(-1, 256)
    raise ValueError(f"gguf transcode: no decoder for ggml type {t}")


def _blocks_of(t: int, data, n_elements: int) -> np.ndarray:
    per, size = TRANSCODED_BLOCKS[t]
    raw = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if n_elements % per or raw.size != n_elements // per * size:
        raise ValueError(f"gguf transcode: {n_elements} weights of type {t} need "
                         f"{n_elements // per * size} bytes in whole blocks of {per}, got {raw.size}")
    return raw.reshape(-1, size)


def decode(t: int, data, n_elements: int) -> np.ndarray:
    """Raw bytes of transcoded type `t` -> float32 [n_elements] (the weights the file means)."""
    blocks = _blocks_of(t, data, n_elements)
    step = max(1, CHUNK_WEIGHTS // TRANSCODED_BLOCKS[t][0])
    return np.concatenate([_decode_blocks(t, blocks[i:i + step]).reshape(-1)
                           for i in range(0, len(blocks), step)] or [np.zeros(0, np.float32)])


def f16_bytes(v: np.ndarray) -> np.ndarray:
    """Values [n] -> their little-endian f16 bytes [n, 2]."""
    return v.astype("<f2").reshape(-1, 1).view(np.uint8)


def _finite(scales: np.ndarray, target: str) -> None:
    if not np.isfinite(scales).all():
        raise ValueError(f"a block's scale is not a finite f16 in {target} (the file holds NaN or inf, or "
                         "weights past f16's range)")


def _q8_0(w: np.ndarray, amax: np.ndarray | None = None) -> np.ndarray:
    """float32 [blocks, 32] -> Q8_0 bytes [blocks, 34]: d = f16(max|w| / 127), q = round(w / d).
    `amax`: max|w| per block where the caller has it exactly (cheaper in integers)."""
    if amax is None:
        amax = np.abs(w).max(axis=1)
    with np.errstate(over="ignore"):  # refused just below
        d = (amax / np.float32(127.0)).astype("<f2")
    _finite(d, "Q8_0")
    d32 = d.astype(np.float32)
    inv = np.divide(np.float32(1.0), d32, out=np.zeros_like(d32), where=d32 != 0)
    q = np.multiply(w, inv[:, None], out=w if w.flags.writeable else None)
    np.rint(q, out=q)
    np.clip(q, -127, 127, out=q)
    out = np.empty((len(w), 34), np.uint8)
    out[:, 0:2] = d.view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.astype(np.int8).view(np.uint8)
    return out


_LOW4, _HIGH4 = np.uint64(0x0F0F0F0F0F0F0F0F), np.uint64(0xF0F0F0F0F0F0F0F0)


def _q4_k_to_q4_1(raw: np.ndarray) -> np.ndarray:
    """Q4_K blocks [b, 144] -> Q4_1 blocks [8b, 20] holding the same sub-blocks."""
    scales, mins = _k_scales(raw[:, 4:16])
    with np.errstate(over="ignore"):  # refused just below
        d = (_f16(raw, 0) * scales).astype("<f2")
        m = (-(_f16(raw, 2) * mins)).astype("<f2")
    _finite(d, "Q4_1")
    _finite(m, "Q4_1")
    # Chunk c's bytes l (A, l < 16) and 16 + l (B) hold weights l and 16 + l of sub-block 2c in
    # their low nibbles and of 2c + 1 in their high ones; a Q4_1 byte j holds weights j (low) and
    # j + 16 (high). So, eight bytes at a time: 2c = A.low | B.low << 4, 2c + 1 = A.high >> 4 | B.high.
    qs = np.ascontiguousarray(raw[:, 16:144]).view("<u8").reshape(-1, 4, 2, 2)  # [b, chunk, A/B, 2 words]
    a, b = qs[:, :, 0], qs[:, :, 1]
    out = np.empty((len(raw), 4, 2, 20), np.uint8)  # [b, chunk, sub-block 2c / 2c + 1, Q4_1 block]
    out[:, :, :, 0:2] = d.view(np.uint8).reshape(-1, 4, 2, 2)
    out[:, :, :, 2:4] = m.view(np.uint8).reshape(-1, 4, 2, 2)
    out[:, :, 0, 4:] = ((a & _LOW4) | ((b << np.uint64(4)) & _HIGH4)).view(np.uint8).reshape(-1, 4, 16)
    out[:, :, 1, 4:] = (((a >> np.uint64(4)) & _LOW4) | (b & _HIGH4)).view(np.uint8).reshape(-1, 4, 16)
    return out.reshape(-1, 20)


def _q5_0_to_q8_0(raw: np.ndarray) -> np.ndarray:
    q = (nibbles32(raw[:, 6:]) | (_qh_bits(raw[:, 2:6]) << 4)).astype(np.int16) - 16
    return np.concatenate([raw[:, 0:2], q.astype(np.int8).view(np.uint8)], axis=1)


def transcode(t: int, data, n_elements: int) -> tuple:
    """(kernel type, bytes-like) for `n_elements` weights of transcoded type `t`."""
    blocks = _blocks_of(t, data, n_elements)
    if t == GGML_BF16:
        w = decode(t, data, n_elements)
        with np.errstate(over="ignore"):  # an overflow is not exact: F32 below
            half = w.astype(np.float16)
        if np.array_equal(half.astype(np.float32), w, equal_nan=True):
            return GGML_F16, half.astype("<f2").tobytes()
        return GGML_F32, w.astype("<f4").tobytes()
    per = TRANSCODED_BLOCKS[t][0]
    step = max(1, CHUNK_WEIGHTS // per)
    out = np.empty((n_elements // 32, 20 if TARGET[t] == GGML_Q4_1 else 34), np.uint8)  # 32 weights a row
    for i in range(0, len(blocks), step):
        chunk = blocks[i:i + step]
        rows = slice(i * per // 32, (i + len(chunk)) * per // 32)
        if t == GGML_Q4_K:
            out[rows] = _q4_k_to_q4_1(chunk)
        elif t == GGML_Q5_0:
            out[rows] = _q5_0_to_q8_0(chunk)
        elif t == GGML_Q6_K:  # max|w| of 32 is |d| times an integer max: exact, and cheaper
            v, d = _q6_k_ints(chunk)
            v = v.reshape(-1, 32)
            amax = np.abs(v).max(axis=1).reshape(-1, 8) * np.abs(d[:, :, 0])
            with np.errstate(invalid="ignore", over="ignore"):  # a non-finite d: refused in _q8_0
                w = (v.reshape(-1, 8, 32).astype(np.float32) * d).reshape(-1, 32)
            out[rows] = _q8_0(w, amax.reshape(-1))
        else:
            out[rows] = _q8_0(_decode_blocks(t, chunk).reshape(-1, 32))
    return TARGET[t], memoryview(out).cast("B")


F16_MAX = 65504.0


def cannot_fail(t: int, data, n_elements: int) -> bool:
    """Whether transcoding these blocks surely makes finite scales, from their own scales alone
    (a bound on each block's max|w|; the quants are bounded integers). True for any file whose
    weights are far from f16's limits, as trained weights are; a False calls for `transcode`
    itself, which then decides (and may refuse). Raises ValueError for a wrong byte count."""
    blocks = _blocks_of(t, data, n_elements)
    with np.errstate(over="ignore", invalid="ignore"):
        if t == GGML_Q5_0:  # the scale is copied
            bound = np.abs(_f16(blocks, 0))
        elif t == GGML_Q5_1:  # w = d*q + m, q < 32; the new scale is max|w| / 127
            bound = (np.abs(_f16(blocks, 0)) * 31 + np.abs(_f16(blocks, 2))) / 127
        elif t == GGML_Q4_K:  # d*scale and dmin*min, both 6-bit
            bound = np.maximum(np.abs(_f16(blocks, 0)), np.abs(_f16(blocks, 2))) * 63
        elif t == GGML_Q5_K:  # w = d*scale*q - dmin*min, q < 32
            bound = (np.abs(_f16(blocks, 0)) * 63 * 31 + np.abs(_f16(blocks, 2)) * 63) / 127
        elif t == GGML_Q6_K:  # w = d*scale*(q - 32), int8 scale
            bound = np.abs(_f16(blocks, 208)) * 128 * 32 / 127
        else:
            return False
    return bool(np.all(bound < F16_MAX))  # NaN compares False


def _transcode_tensor(tensor) -> tuple:
    try:
        return transcode(tensor.ggml_type, tensor.raw(), tensor.n_elements)
    except ValueError as e:
        from .gguf import GGUFError
        raise GGUFError(f"gguf: tensor '{tensor.name}' ({tensor.type_name}) cannot be transcoded: {e}") from None


def kernel_tensor(tensor, lazy: bool = False, on_made=None):
    """`tensor` (a GGUFTensor) if the kernels read its type, else a transcoded copy (same name
    and dims, new type and bytes). `lazy`: where `cannot_fail`, the copy's data is a LazyBytes
    that transcodes when read (the graph's upload: never all weights in both forms at once),
    calling `on_made()` each time; else the bytes now, so a file that fails fails here."""
    if tensor.ggml_type not in TRANSCODED_BLOCKS:
        return tensor
    t = tensor.ggml_type
    if lazy and t != GGML_BF16:  # BF16's target type depends on every value
        try:
            sure = cannot_fail(t, tensor.raw(), tensor.n_elements)
        except ValueError:
            sure = False  # the byte count: refused just below, with the tensor's name
        if sure:
            from ..program import LazyBytes

            def make():
                data = _transcode_tensor(tensor)[1]
                if on_made is not None:
                    on_made()
                return data

            nbytes = tensor.n_elements // 32 * (20 if TARGET[t] == GGML_Q4_1 else 34)
            return replace(tensor, ggml_type=TARGET[t], data=LazyBytes(nbytes, make))
    kind, data = _transcode_tensor(tensor)
    if on_made is not None:
        on_made()
    return replace(tensor, ggml_type=kind, data=memoryview(data))


__all__ = ["TRANSCODED_BLOCKS", "TARGET", "decode", "transcode", "cannot_fail", "kernel_tensor", "f16_bytes", "nibbles32"]
