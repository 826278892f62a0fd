"""Every reference op in one namespace (the implementations live in one module per family).

    from py_engine.reference import ops
    out, k_cache, v_cache = ops.sdpa_with_kv_cache(q, k, v, k_cache, v_cache, input_pos)
"""
from .attention import attend_causal, sdpa_with_kv_cache, update_cache
from .elementwise import add, mul, sigmoid, silu
from .norm import rms_norm
from .quant_linear import (
    embedding_q4gsw,
    linear,
    linear_q4gsw,
    linear_qcs4w,
    pack_embedding_q4gsw,
    pack_q4gsw,
    pack_qcs4w,
    unpack_embedding_q4gsw,
    unpack_q4gsw,
    unpack_qcs4w,
)
from .rope import apply_rotary_emb, apply_rotary_emb_neox, rope_freqs
from .tensor_ops import embedding, select_as_symint, select_copy, slice_copy, view_copy

__all__ = [
    "add", "mul", "sigmoid", "silu",
    "view_copy", "slice_copy", "select_copy", "select_as_symint", "embedding",
    "rms_norm", "apply_rotary_emb", "apply_rotary_emb_neox", "rope_freqs",
    "update_cache", "sdpa_with_kv_cache", "attend_causal",
    "linear", "pack_q4gsw", "unpack_q4gsw", "linear_q4gsw",
    "pack_qcs4w", "unpack_qcs4w", "linear_qcs4w",
    "pack_embedding_q4gsw", "unpack_embedding_q4gsw", "embedding_q4gsw",
]
