"""A GGUF with a real model's layer shapes and random weight blocks, for load-time and memory
checks of sizes no test fixture has (docs/benchmarks.md, session 14):

    python -m py_engine.testing.synthetic_gguf OUT.gguf [--layers 16]

Llama-3.2-1B's shapes (dim 2048, 32/8 heads of 64, ffn 8192) in the Q4_K_M mix (Q4_K; Q6_K for
the tied embedding and for attn_v / ffn_down of every other layer), with the tokenizer and chat
template of setup's SmolLM2 file (so vocab 49152, not 128256). Its replies are noise."""
from __future__ import annotations

import argparse

import numpy as np

from ..loaders.gguf import T_ARRAY, GGUFValue, TensorSpec, read_gguf, write_gguf
from ..loaders.gguf_transcode import GGML_F32, GGML_Q4_K, GGML_Q6_K, f16_bytes

DEFAULT_TOKENIZER_FILE = "models/SmolLM2-135M-Instruct.Q4_1.gguf"


def _q4_k(rng, rows: int, cols: int) -> bytes:
    b = rng.integers(0, 256, (rows * cols // 256, 144), dtype=np.uint8)
    b[:, 0:2] = f16_bytes(np.full(len(b), 2e-4))  # d: weights of ~0.1
    b[:, 2:4] = f16_bytes(np.full(len(b), 1e-4))  # dmin
    return b.tobytes()


def _q6_k(rng, rows: int, cols: int) -> bytes:
    b = rng.integers(0, 256, (rows * cols // 256, 210), dtype=np.uint8)
    b[:, 192:208] = rng.integers(0, 64, (len(b), 16), dtype=np.uint8)  # positive scales < 64
    b[:, 208:210] = f16_bytes(np.full(len(b), 2e-5))
    return b.tobytes()


def llama_1b_shaped_gguf(tokenizer_file: bytes, *, n_layers: int = 16, seed: int = 0) -> bytes:
    src = read_gguf(tokenizer_file)
    metadata = {}
    for key, value in src.metadata.items():
        t = src.metadata_types[key]
        metadata[key] = GGUFValue(value, T_ARRAY, t[1]) if isinstance(t, tuple) else GGUFValue(value, t)
    dim, heads, kv_heads, ffn = 2048, 32, 8, 8192
    vocab = len(src.get("tokenizer.ggml.tokens"))
    for key, v in (("embedding_length", dim), ("block_count", n_layers), ("attention.head_count", heads),
                   ("attention.head_count_kv", kv_heads), ("feed_forward_length", ffn),
                   ("rope.dimension_count", dim // heads)):
        metadata["llama." + key] = GGUFValue(v, src.metadata_types["llama." + key])
    metadata["general.name"] = GGUFValue("synthetic 1B-shaped", src.metadata_types["general.name"])
    rng = np.random.default_rng(seed)
    ones = np.ones(dim, np.float32).tobytes()
    kv = kv_heads * (dim // heads)
    tensors = {"token_embd.weight": TensorSpec(GGML_Q6_K, (dim, vocab), _q6_k(rng, vocab, dim)),
               "output_norm.weight": TensorSpec(GGML_F32, (dim,), ones)}
    for i in range(n_layers):
        p, six = f"blk.{i}.", i % 2 == 0
        tensors[p + "attn_norm.weight"] = TensorSpec(GGML_F32, (dim,), ones)
        tensors[p + "ffn_norm.weight"] = TensorSpec(GGML_F32, (dim,), ones)
        for name, rows, cols, q6 in (("attn_q", dim, dim, False), ("attn_k", kv, dim, False),
                                     ("attn_v", kv, dim, six), ("attn_output", dim, dim, False),
                                     ("ffn_gate", ffn, dim, False), ("ffn_up", ffn, dim, False),
                                     ("ffn_down", dim, ffn, six)):
            make, t = (_q6_k, GGML_Q6_K) if q6 else (_q4_k, GGML_Q4_K)
            tensors[p + name + ".weight"] = TensorSpec(t, (cols, rows), make(rng, rows, cols))
    return write_gguf(metadata, tensors, alignment=src.alignment)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--tokenizer-from", default=DEFAULT_TOKENIZER_FILE, help="a GGUF whose tokenizer is taken")
    args = ap.parse_args()
    with open(args.tokenizer_from, "rb") as f:
        data = llama_1b_shaped_gguf(f.read(), n_layers=args.layers)
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"{args.out}: {len(data) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()


__all__ = ["llama_1b_shaped_gguf"]
