"""Llama hyper-parameters, read from GGUF metadata with clear errors for missing keys."""
from __future__ import annotations

from dataclasses import dataclass

from ..loaders.gguf import GGUFError


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
    # RoPE angle of pair i at position p: p * rope_scale * base^(-2i/D) / rope_freq_factors[i]
    rope_scale: float = 1.0           # linear scaling: 1 / rope.scaling.factor
    rope_freq_factors: tuple = ()     # Llama 3's rope_freqs.weight (D/2 divisors), or none
    rope_neox: bool = False           # pairs (i, i + D/2) as Qwen2 rotates them, not (2i, 2i+1)

    def __post_init__(self):
        for name in ("n_layers", "dim", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "vocab", "context"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"LlamaConfig: {name} must be positive, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"LlamaConfig: n_heads {self.n_heads} not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig: head_dim {self.head_dim} must be even for RoPE")
        if self.rope_freq_factors and len(self.rope_freq_factors) != self.head_dim // 2:
            raise ValueError(f"LlamaConfig: {len(self.rope_freq_factors)} RoPE frequency factors, expected "
                             f"head_dim / 2 = {self.head_dim // 2}")
        if not self.rope_scale > 0 or not all(f > 0 for f in self.rope_freq_factors):
            raise ValueError("LlamaConfig: RoPE scale and frequency factors must be positive")


# Architectures of the llama family the builder runs: the same blocks, with q/k/v biases where
# the file has them; -> whether the model rotates NeoX-style pairs (llama.cpp's rope type).
ARCHITECTURES = {"llama": False, "qwen2": True}


def config_from_gguf(gguf, context: int | None = None) -> LlamaConfig:
    """Config from `{arch}.*` keys; `context` caps the model's context length."""
    arch = gguf.get("general.architecture", "llama")
    if arch not in ARCHITECTURES:
        raise GGUFError(f"gguf: architecture '{arch}' is not supported (supported: {', '.join(ARCHITECTURES)})")
    k = arch + "."
    dim = int(gguf.require(k + "embedding_length", int))
    n_heads = int(gguf.require(k + "attention.head_count", int))
    n_kv = int(gguf.get(k + "attention.head_count_kv", n_heads))
    head_dim = int(gguf.get(k + "attention.key_length", dim // n_heads))
    rot = gguf.get(k + "rope.dimension_count", head_dim)
    if int(rot) != head_dim:
        raise GGUFError(f"llama: partial rotary embeddings (rope.dimension_count {rot} != head_dim {head_dim}) "
                         "are not supported")
    vocab = gguf.get(k + "vocab_size")
    if not vocab:
        embd = gguf.tensor("token_embd.weight")
        vocab = embd.shape[0]
    scale, factors = _rope_scaling(gguf, k, head_dim)
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
        context=ctx, rope_scale=scale, rope_freq_factors=factors, rope_neox=ARCHITECTURES[arch],
    )


def _rope_scaling(gguf, k: str, head_dim: int) -> tuple:
    """(position scale, frequency factors) as llama.cpp reads them: linear scaling from
    rope.scaling.factor (or the older rope.scale_linear), Llama 3's per-frequency divisors from
    the tensor rope_freqs.weight. Other schemes (YaRN, LongRoPE) change more than the angles and
    are refused rather than run wrong."""
    kind = gguf.get(k + "rope.scaling.type", "none")
    if kind not in ("none", "linear"):
        raise GGUFError(f"llama: RoPE scaling '{kind}' is not supported (only none, linear, and Llama 3's "
                         "rope_freqs)")
    factor = float(gguf.get(k + "rope.scaling.factor", 0.0) or gguf.get(k + "rope.scale_linear", 0.0) or 0.0)
    if factor < 0:
        raise GGUFError(f"llama: rope scaling factor must be positive, got {factor}")
    scale = 1.0 / factor if factor else 1.0
    factors = ()
    t = gguf.tensors.get("rope_freqs.weight")
    if t is not None:
        if t.n_elements != head_dim // 2:
            raise GGUFError(f"llama: rope_freqs.weight has {t.n_elements} elements, expected head_dim / 2 = "
                             f"{head_dim // 2}")
        factors = tuple(float(f) for f in t.to_numpy().reshape(-1))
    return scale, factors
