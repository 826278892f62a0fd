"""A tiny synthetic llama GGUF for tests: real byte-level BPE vocabulary, random weights.

Shapes (defaults): 2 blocks, dim 64, 4 heads, 2 KV heads, head_dim 16, ffn 128, context 128,
vocab 384 (3 ChatML control tokens + 256 byte tokens + 125 merges learned from a small
built-in corpus with the same "smollm" pre-tokenizer as SmolLM2). Weights mix Q4_0, Q4_1,
Q8_0 and F32; token_embd is Q8_0 and there is no output.weight (tied), like SmolLM2.
Tensor names and metadata keys are exactly llama.cpp's. Deterministic for a seed.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from py_engine.loaders.gguf import (GGML_F32, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0, T_ARRAY,
                                    T_INT32, GGUFValue, tensor_from_array, write_gguf)
from py_engine.loaders.gguf_transcode import GGML_BF16, GGML_Q4_K, GGML_Q5_0, GGML_Q5_1, GGML_Q5_K, GGML_Q6_K
from py_engine.tokenizer import TOKEN_CONTROL, TOKEN_NORMAL, Tokenizer, byte_to_unicode

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# ChatML, in the shape Hugging Face templates are written.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun, and the fox runs
into the forest. Hello world! Hello there, how are you today? I am fine, thank you.
What is the capital of France? The capital of France is Paris. What is two plus two?
Two plus two is 4. Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14.
def main():
    for i in range(10):
        print("hello", i)
    return None

if __name__ == "__main__":
    main()
A language model reads tokens and writes tokens. The model is small and the weights are
random, so the text it writes is not meaningful, but the shapes and the formats are real.
user assistant system: you are a helpful assistant. Please answer the question.
"""


def learn_merges(corpus: str, n_merges: int, pre: str = "smollm") -> list:
    """Classic byte-level BPE training: repeatedly merge the most frequent adjacent pair
    (ties: the lexicographically smallest pair), within pre-tokenized words."""
    # A throwaway tokenizer gives us the exact pre-tokenizer the model will use.
    probe = Tokenizer(model="gpt2", tokens=["a"], merges=["a a"], pre=pre)
    b2u = byte_to_unicode()
    words = Counter(tuple(b2u[b] for b in piece.encode("utf-8")) for piece in probe.pre_tokenize(corpus))
    merges = []
    for _ in range(n_merges):
        pairs: Counter = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        new_words: Counter = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] += c
        words = new_words
    return merges


def tiny_vocab(vocab_size: int = 384) -> tuple:
    """(tokens, token_types, merges) of a byte-level BPE vocabulary of `vocab_size`."""
    n_merges = vocab_size - len(SPECIAL_TOKENS) - 256
    if n_merges < 0:
        raise ValueError(f"tiny_gguf: vocab_size must be >= {len(SPECIAL_TOKENS) + 256}")
    merges = learn_merges(_CORPUS, n_merges)
    tokens = list(SPECIAL_TOKENS) + list(byte_to_unicode())
    tokens += [a + b for a, b in merges]
    if len(set(tokens)) != len(tokens) or len(tokens) != vocab_size:
        raise ValueError(f"tiny_gguf: corpus too small for vocab_size {vocab_size}")
    types = [TOKEN_CONTROL] * len(SPECIAL_TOKENS) + [TOKEN_NORMAL] * (len(tokens) - len(SPECIAL_TOKENS))
    return tokens, types, [f"{a} {b}" for a, b in merges]


# Which block format each weight uses: every supported format appears at least once.
DEFAULT_WEIGHT_TYPES = {
    "attn_q": GGML_Q4_0, "attn_k": GGML_Q4_1, "attn_v": GGML_Q8_0, "attn_output": GGML_Q4_0,
    "ffn_gate": GGML_Q4_1, "ffn_up": GGML_Q4_0, "ffn_down": GGML_Q8_0,
}


def make_tiny_llama_gguf(seed: int = 0, *, n_layers: int = 2, dim: int = 64, n_heads: int = 4,
                         n_kv_heads: int = 2, ffn: int = 128, vocab_size: int = 384,
                         context: int = 128, rope_base: float = 10000.0, rms_eps: float = 1e-5,
                         weight_types: dict | None = None, embd_type: int = GGML_Q8_0,
                         norm_type: int = GGML_F32, embd_scale: float = 0.5,
                         rope_freq_factors=None, extra_metadata: dict | None = None,
                         arch: str = "llama", qkv_bias: bool = False) -> bytes:
    """`rope_freq_factors`: a rope_freqs.weight tensor (Llama 3's RoPE divisors, head_dim / 2);
    `extra_metadata`: more keys (or replacements); `arch`: general.architecture and the key
    prefix ("qwen2": NeoX-style RoPE); `qkv_bias`: attn_q/k/v.bias tensors (F32), as Qwen2 has."""
    head_dim = dim // n_heads
    if head_dim * n_heads != dim or n_heads % n_kv_heads:
        raise ValueError("tiny_gguf: dim must split into n_heads, n_heads into n_kv_heads")
    types = dict(DEFAULT_WEIGHT_TYPES, **(weight_types or {}))
    rng = np.random.default_rng(seed)
    tokens, token_types, merges = tiny_vocab(vocab_size)

    metadata = {
        "general.architecture": arch,
        "general.name": "tiny-llama",
        "general.file_type": 3,
        "general.quantization_version": 2,
        f"{arch}.block_count": n_layers,
        f"{arch}.context_length": context,
        f"{arch}.embedding_length": dim,
        f"{arch}.feed_forward_length": ffn,
        f"{arch}.attention.head_count": n_heads,
        f"{arch}.attention.head_count_kv": n_kv_heads,
        f"{arch}.rope.freq_base": float(rope_base),
        f"{arch}.attention.layer_norm_rms_epsilon": float(rms_eps),
        f"{arch}.vocab_size": vocab_size,
        f"{arch}.rope.dimension_count": head_dim,
        "tokenizer.ggml.add_space_prefix": False,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": GGUFValue(token_types, T_ARRAY, T_INT32),
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.padding_token_id": 2,
        "tokenizer.chat_template": TINY_CHAT_TEMPLATE,
        **(extra_metadata or {}),
    }

    def linear(n_out, n_in):
        return rng.standard_normal((n_out, n_in), dtype=np.float32) / np.float32(np.sqrt(n_in))

    def norm():
        return (1.0 + 0.1 * rng.standard_normal(dim)).astype(np.float32)

    # Same tensor order as llama.cpp's converter: embeddings, then per block, then output norm.
    tensors = {"token_embd.weight": tensor_from_array(
        embd_scale * rng.standard_normal((vocab_size, dim), dtype=np.float32), embd_type)}
    kv = n_kv_heads * head_dim
    for i in range(n_layers):
        p = f"blk.{i}."
        tensors[p + "attn_norm.weight"] = tensor_from_array(norm(), norm_type)
        tensors[p + "attn_q.weight"] = tensor_from_array(linear(dim, dim), types["attn_q"])
        tensors[p + "attn_k.weight"] = tensor_from_array(linear(kv, dim), types["attn_k"])
        tensors[p + "attn_v.weight"] = tensor_from_array(linear(kv, dim), types["attn_v"])
        if qkv_bias:
            for n, width in (("q", dim), ("k", kv), ("v", kv)):
                tensors[p + f"attn_{n}.bias"] = tensor_from_array(0.5 * rng.standard_normal(width), GGML_F32)
        tensors[p + "attn_output.weight"] = tensor_from_array(linear(dim, dim), types["attn_output"])
        tensors[p + "ffn_norm.weight"] = tensor_from_array(norm(), norm_type)
        tensors[p + "ffn_gate.weight"] = tensor_from_array(linear(ffn, dim), types["ffn_gate"])
        tensors[p + "ffn_up.weight"] = tensor_from_array(linear(ffn, dim), types["ffn_up"])
        tensors[p + "ffn_down.weight"] = tensor_from_array(linear(dim, ffn), types["ffn_down"])
    tensors["output_norm.weight"] = tensor_from_array(norm(), norm_type)
    if rope_freq_factors is not None:
        tensors["rope_freqs.weight"] = tensor_from_array(np.asarray(rope_freq_factors, np.float32), GGML_F32)
    return write_gguf(metadata, tensors)


# A Q4_K_M-like mix of the types the load transcodes (py_engine/loaders/gguf_transcode.py),
# each at least once; K-quant rows are multiples of 256 weights, hence the wider tiny model.
TRANSCODED_WEIGHT_TYPES = {
    "attn_q": GGML_Q4_K, "attn_k": GGML_Q4_K, "attn_v": GGML_Q6_K, "attn_output": GGML_Q5_0,
    "ffn_gate": GGML_Q5_K, "ffn_up": GGML_Q5_1, "ffn_down": GGML_Q6_K,
}


def make_tiny_transcoded_gguf(seed: int = 0) -> bytes:
    """2 blocks, dim 256, 4 heads of 64, 2 KV heads, ffn 512; weights in TRANSCODED_WEIGHT_TYPES,
    the tied embedding Q6_K (scaled so that greedy ids vary) and the norms BF16."""
    return make_tiny_llama_gguf(seed, dim=256, ffn=512, weight_types=TRANSCODED_WEIGHT_TYPES,
                                embd_type=GGML_Q6_K, norm_type=GGML_BF16, embd_scale=0.1)


__all__ = ["make_tiny_llama_gguf", "make_tiny_transcoded_gguf", "tiny_vocab", "learn_merges", "TINY_CHAT_TEMPLATE"]
