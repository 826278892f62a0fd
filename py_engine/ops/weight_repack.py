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
(Imported with the op modules, it registers nothing.)
"""
from __future__ import annotations

import numpy as np

from ..loaders.gguf import GGML_BLOCKS, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0

REPACKED = {GGML_Q4_0: 4, GGML_Q4_1: 4, GGML_Q8_0: 8}  # ggml type -> quant words per block
LAYOUT_KEY = "blocks_v1"  # bump when the layout changes (graph buffers are keyed by it)


def repacked_words(type_id: int, rows: int, k: int) -> dict:
    """Word offsets of the regions: {'q_stride': words per row, 'd_off', 'm_off'}."""
    blocks = k // 32
    qw = REPACKED[type_id]
    d_off = rows * blocks * qw
    return {"q_stride": blocks * qw, "d_off": d_off, "m_off": d_off + rows * blocks}


def repack_gguf(type_id: int, raw, rows: int) -> np.ndarray:
    """GGUF blocks (bytes of [rows, row_bytes]) -> the repacked layout as uint32 words."""
    per_block, block_bytes = GGML_BLOCKS[type_id]
    a = np.frombuffer(raw, dtype=np.uint8)
    if rows == 0 or a.size % (rows * block_bytes):
        raise ValueError(f"repack: {a.size} bytes are not {rows} rows of {block_bytes}-byte blocks")
    blocks = a.size // (rows * block_bytes)
    b = a.reshape(rows, blocks, block_bytes)
    head = 4 if type_id == GGML_Q4_1 else 2
    d = b[:, :, 0:2].copy().view(np.float16).astype(np.float32).reshape(-1)
    qs = b[:, :, head:]
    if type_id == GGML_Q8_0:
        # [N, B, half, byte j, lane l] (element 4j + l) -> word l of the half has bytes j = 0..3.
        q = qs.reshape(rows, blocks, 2, 4, 4).transpose(0, 1, 2, 4, 3)
    else:
        nib = np.concatenate([qs & 15, qs >> 4], axis=2)  # [N, B, 32] in element order
        n = nib.reshape(rows, blocks, 8, 4)               # [.., i, l]: element 4i + l
        pairs = n[:, :, 0::2, :] | (n[:, :, 1::2, :] << 4)  # byte j of word l holds i = 2j, 2j+1
        q = pairs.transpose(0, 1, 3, 2)                    # [N, B, l, j]
    words = np.ascontiguousarray(q).reshape(-1).view("<u4")
    parts = [words, d.view("<u4")]
    if type_id == GGML_Q4_1:
        parts.append(b[:, :, 2:4].copy().view(np.float16).astype(np.float32).reshape(-1).view("<u4"))
    return np.concatenate(parts)
