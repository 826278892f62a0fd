"""Llama hyper-parameters, read from GGUF metadata with clear errors for missing keys."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LlamaConfig:
    n_layers: int
    dim: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    vocab: int
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    context: int = 2048

    def __post_init__(self):
        for name in ("n_layers", "dim", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "vocab", "context"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"LlamaConfig: {name} must be positive, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"LlamaConfig: n_heads {self.n_heads} not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig: head_dim {self.head_dim} must be even for RoPE")


def config_from_gguf(gguf, context: int | None = None) -> LlamaConfig:
    """Config from `{arch}.*` keys; `context` caps the model's context length."""
    arch = gguf.get("general.architecture", "llama")
    k = arch + "."
    dim = int(gguf.require(k + "embedding_length", int))
    n_heads = int(gguf.require(k + "attention.head_count", int))
    n_kv = int(gguf.get(k + "attention.head_count_kv", n_heads))
    head_dim = int(gguf.get(k + "attention.key_length", dim // n_heads))
    rot = gguf.get(k + "rope.dimension_count", head_dim)
    if int(rot) != head_dim:
        raise ValueError(f"llama: partial rotary embeddings (rope.dimension_count {rot} != head_dim {head_dim}) "
                         "are not supported")
    vocab = gguf.get(k + "vocab_size")
    if not vocab:
        embd = gguf.tensor("token_embd.weight")
        vocab = embd.shape[0]
    ctx = int(gguf.require(k + "context_length", int))
    if context is not None:
        ctx = min(ctx, int(context))
    return LlamaConfig(
        n_layers=int(gguf.require(k + "block_count", int)),
        dim=dim, n_heads=n_heads, n_kv_heads=n_kv, head_dim=head_dim,
        ffn_dim=int(gguf.require(k + "feed_forward_length", int)),
        vocab=int(vocab),
        rope_base=float(gguf.get(k + "rope.freq_base", 10000.0)),
        rms_eps=float(gguf.require(k + "attention.layer_norm_rms_epsilon", float)),
        context=ctx,
    )
