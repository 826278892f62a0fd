"""Host-side repacking of GGUF block weights into the layout quant_weights.wgsl reads fast.

GGUF blocks are 18 (Q4_0), 20 (Q4_1) or 34 (Q8_0) bytes: not word aligned, scales as f16 in
between the quants. Repacked, one weight tensor [N rows, B = K/32 blocks] becomes one buffer
of u32 words (so a tied embedding and output head share it):

    quants  [N, B, QW] words   QW = 4 (Q4_x) or 8 (Q8_0); every block starts 16-byte aligned
    d       [N, B] f32         at word N*B*QW
    m       [N, B] f32         Q4_1 only, after d

Quants are ordered so that one vec4<u32> load and one shift give four consecutive elements:
  Q4_x: block element e is nibble e // 4 of word e % 4 (vec4 q: (q >> 4i) & 15 = elements 4i..4i+3).
  Q8_0: element e of half h (e < 16) is byte e // 4 of word 4h + e % 4.

CPU adapters read the same blocks as records of two blocks each (`repack_records`), one record
per load: WebGPU on a CPU (SwiftShader) loads every 32-bit word of a storage read lane by lane,
and one load of a 48-byte record costs about a third as much per word as a vec4 and two scalars.
Record j of a row holds blocks 2j and 2j + 1; a row of an odd block count ends with a
half-empty record (the second block all zeros).
  Q4_x: 12 words: the two blocks' quants (4 words each), then d0, m0, d1, m1 (Q4_0: m = 0).
  Q8_0: 20 words: the two blocks' quants (8 words each), then d0, d1 and 2 zero words.
(Imported with the op modules, it registers nothing.)
"""
from __future__ import annotations

import numpy as np

from ..loaders.gguf import GGML_BLOCKS, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0

REPACKED = {GGML_Q4_0: 4, GGML_Q4_1: 4, GGML_Q8_0: 8}  # ggml type -> quant words per block
LAYOUT_KEY = "blocks_v1"  # bump when the layout changes (graph buffers are keyed by it)
RECORDS_KEY = "records_v2"
RECORD_WORDS = {GGML_Q4_0: 12, GGML_Q4_1: 12, GGML_Q8_0: 20}


def repacked_words(type_id: int, rows: int, k: int) -> dict:
    """Word offsets of the regions: {'q_stride': words per row, 'd_off', 'm_off'}."""
    blocks = k // 32
    qw = REPACKED[type_id]
    d_off = rows * blocks * qw
    return {"q_stride": blocks * qw, "d_off": d_off, "m_off": d_off + rows * blocks}


def record_count(k: int) -> int:
    """Records per row of K elements (two blocks each)."""
    return (k // 32 + 1) // 2


def repack_records(type_id: int, raw, rows: int) -> np.ndarray:
    """GGUF blocks -> the CPU records (uint32 words [rows, record_count, RECORD_WORDS])."""
    words = repack_gguf(type_id, raw, rows)
    qw = REPACKED[type_id]
    blocks = len(raw) // (rows * GGML_BLOCKS[type_id][1])
    at = repacked_words(type_id, rows, blocks * 32)
    q = words[: at["d_off"]].reshape(rows, blocks, qw)
    d = words[at["d_off"]: at["m_off"]].reshape(rows, blocks)
    m = words[at["m_off"]:].reshape(rows, blocks) if type_id == GGML_Q4_1 else None
    out = np.zeros((rows, record_count(blocks * 32), RECORD_WORDS[type_id]), np.uint32)
    scales = 2 * qw  # word of the first scale
    for half in (0, 1):  # blocks 2j (half 0) and 2j + 1 (half 1) of record j
        count = (blocks + 1 - half) // 2
        out[:, :count, qw * half: qw * half + qw] = q[:, half::2]
        if type_id == GGML_Q8_0:
            out[:, :count, scales + half] = d[:, half::2]
            continue
        out[:, :count, scales + 2 * half] = d[:, half::2]
        if m is not None:
            out[:, :count, scales + 2 * half + 1] = m[:, half::2]
    # Kernels bind the buffer as both record types: at least one record of the larger.
    return np.pad(out.reshape(-1), (0, max(0, max(RECORD_WORDS.values()) - out.size)))


def repack_gguf(type_id: int, raw, rows: int) -> np.ndarray:
    """GGUF blocks (bytes of [rows, row_bytes]) -> the repacked layout as uint32 words."""
    per_block, block_bytes = GGML_BLOCKS[type_id]
    a = np.frombuffer(raw, dtype=np.uint8)
    if rows == 0 or a.size % (rows * block_bytes):
        raise ValueError(f"repack: {a.size} bytes are not {rows} rows of {block_bytes}-byte blocks")
    blocks = a.size // (rows * block_bytes)
    if type_id == GGML_Q4_1:
        return _repack_q4_1(a.view("<u4").reshape(rows, blocks, 5))
    b = a.reshape(rows, blocks, block_bytes)
    d = b[:, :, 0:2].copy().view(np.float16).astype(np.float32).reshape(-1)
    qs = b[:, :, 2:]
    if type_id == GGML_Q8_0:
        # [N, B, half, byte j, lane l] (element 4j + l) -> word l of the half has bytes j = 0..3.
        q = qs.reshape(rows, blocks, 2, 4, 4).transpose(0, 1, 2, 4, 3)
    else:
        nib = np.concatenate([qs & 15, qs >> 4], axis=2)  # [N, B, 32] in element order
        n = nib.reshape(rows, blocks, 8, 4)               # [.., i, l]: element 4i + l
        pairs = n[:, :, 0::2, :] | (n[:, :, 1::2, :] << 4)  # byte j of word l holds i = 2j, 2j+1
        q = pairs.transpose(0, 1, 3, 2)                    # [N, B, l, j]
    words = np.ascontiguousarray(q).reshape(-1).view("<u4")
    return np.concatenate([words, d.view("<u4")])


LO, HI = np.uint32(0x0F0F0F0F), np.uint32(0xF0F0F0F0)
LO8, LO16 = np.uint32(0x00FF00FF), np.uint32(0x0000FFFF)


def _repack_q4_1(w: np.ndarray) -> np.ndarray:
    """Q4_1 blocks as words [N, B, 5] (d and m as f16, then 16 bytes of nibbles: element e < 16
    is the low nibble of byte e, e + 16 the high one), whole words at a time (Pyodide's numpy
    runs byte-wise and strided copies several times slower). Byte j of output word l holds
    elements 8j + l (low nibble) and 8j + 4 + l, so with q0..q3 the quant words (bytes 4c ..
    4c + 3), byte l of t_j is that byte: t_0 from the low nibbles of q0 and q1, t_1 of q2 and q3,
    t_2 and t_3 from their high nibbles; a 4 x 4 byte transpose (pairs of bytes, then pairs of
    halves) turns the t_j into the output words."""
    rows, blocks, _ = w.shape
    n = rows * blocks
    out = np.empty(n * 6, np.uint32)  # 4 quant words per block, then d, then m
    q0, q1, q2, q3 = (w[:, :, c] for c in range(1, 5))
    t0 = (q0 & LO) | ((q1 << 4) & HI)
    t1 = (q2 & LO) | ((q3 << 4) & HI)
    t2 = ((q0 >> 4) & LO) | (q1 & HI)
    t3 = ((q2 >> 4) & LO) | (q3 & HI)
    a = (t0 & LO8) | ((t1 << 8) & ~LO8)  # bytes 0, 1, 2, 3: t0[0] t1[0] t0[2] t1[2]
    b = ((t0 >> 8) & LO8) | (t1 & ~LO8)  # t0[1] t1[1] t0[3] t1[3]
    c = (t2 & LO8) | ((t3 << 8) & ~LO8)
    d = ((t2 >> 8) & LO8) | (t3 & ~LO8)
    q = out[: 4 * n].reshape(rows, blocks, 4)
    q[:, :, 0] = (a & LO16) | (c << 16)
    q[:, :, 1] = (b & LO16) | (d << 16)
    q[:, :, 2] = (a >> 16) | (c & ~LO16)
    q[:, :, 3] = (b >> 16) | (d & ~LO16)
    dm = w.view(np.float16)[:, :, 0:2]  # little endian: d, then m
    out[4 * n: 5 * n].view(np.float32).reshape(rows, blocks)[:] = dm[:, :, 0]
    out[5 * n:].view(np.float32).reshape(rows, blocks)[:] = dm[:, :, 1]
    return out
