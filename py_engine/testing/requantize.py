"""A GGUF file re-encoded into other block types (tests: a real model in the types people
download, from the one model setup fetches)."""
from __future__ import annotations

from ..loaders.gguf import TensorSpec, read_gguf, tensor_from_array, write_gguf
from ..loaders.gguf_transcode import GGML_Q4_K, GGML_Q5_0, GGML_Q5_1, GGML_Q6_K


def requantize_gguf(data: bytes, rule) -> bytes:
    """`data` with each tensor for which rule(name, GGUFTensor) gives a ggml type id re-encoded
    into it (from its dequantized values); None keeps a tensor's bytes. Metadata is kept with
    its GGUF types."""
    g = read_gguf(data)
    tensors = {}
    for name, t in g.tensors.items():
        new = rule(name, t)
        tensors[name] = TensorSpec(t.ggml_type, t.dims, bytes(t.data)) if new is None \
            else tensor_from_array(t.to_numpy(), new)
    return write_gguf(g.typed_metadata(), tensors, alignment=g.alignment, version=g.version)


def smollm2_like_q4_k_m(name: str, t):
    """The mix llama.cpp's Q4_K_M gives SmolLM2-135M, whose 576-wide rows are not whole K-quant
    blocks (K-quants need multiples of 256): Q5_0 / Q5_1 for those, Q4_K / Q6_K for ffn_down
    (1,536-wide rows), the rest (Q8_0 embedding, F32 norms) kept."""
    if not name.startswith("blk.") or not name.endswith(".weight") or len(t.dims) != 2:
        return None
    layer = int(name.split(".")[1])
    if "ffn_down" in name:
        return GGML_Q6_K if layer % 2 == 0 else GGML_Q4_K
    return GGML_Q5_1 if "ffn_gate" in name else GGML_Q5_0


__all__ = ["requantize_gguf", "smollm2_like_q4_k_m"]
