"""The whole llama model in numpy, built only from the reference ops.

Per block (GGUF names, weights [out, in] as numpy arrays):
    h = rms_norm(x, attn_norm); q, k, v = h @ Wq.T, h @ Wk.T, h @ Wv.T
    q, k = apply_rotary_emb(q, k, cos, sin)       # interleaved pairs, positions pos..pos+S-1
    a, Kc, Vc = sdpa_with_kv_cache(q, k, v, Kc, Vc, pos)
    x = x + a @ Wo.T
    h = rms_norm(x, ffn_norm); x = x + (silu(h @ Wg.T) * (h @ Wu.T)) @ Wd.T
then logits = rms_norm(x, output_norm) @ W_out.T, with W_out = token_embd when output.weight
is absent (tied). GGUF's llama q/k weights are already permuted for interleaved RoPE; Qwen2
rotates NeoX-style pairs (x[i], x[i + D/2]) and adds q/k/v biases.
"""
from __future__ import annotations

import numpy as np

from ..models.llama_config import LlamaConfig, config_from_gguf
from . import ops


def weight_shapes(config: LlamaConfig) -> dict:
    """Every weight name (GGUF naming) -> numpy shape; output.weight is optional (tied)."""
    c = config
    q_out, kv_out = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    shapes = {
        "token_embd.weight": (c.vocab, c.dim),
        "output_norm.weight": (c.dim,),
        "output.weight": (c.vocab, c.dim),
    }
    for i in range(c.n_layers):
        b = f"blk.{i}."
        shapes.update({
            b + "attn_norm.weight": (c.dim,),
            b + "attn_q.weight": (q_out, c.dim),
            b + "attn_k.weight": (kv_out, c.dim),
            b + "attn_v.weight": (kv_out, c.dim),
            b + "attn_output.weight": (c.dim, q_out),
            b + "ffn_norm.weight": (c.dim,),
            b + "ffn_gate.weight": (c.ffn_dim, c.dim),
            b + "ffn_up.weight": (c.ffn_dim, c.dim),
            b + "ffn_down.weight": (c.dim, c.ffn_dim),
        })
    return shapes


def bias_shapes(config: LlamaConfig) -> dict:
    """q/k/v biases (Qwen2 has them; llama files usually not): name -> shape."""
    c = config
    q_out, kv_out = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    out = {}
    for i in range(c.n_layers):
        b = f"blk.{i}."
        out.update({b + "attn_q.bias": (q_out,), b + "attn_k.bias": (kv_out,), b + "attn_v.bias": (kv_out,)})
    return out


OPTIONAL_WEIGHTS = ("output.weight",)


class LlamaReference:
    """A llama with its own KV cache; forward(tokens) runs at the current position."""

    def __init__(self, config: LlamaConfig, weights: dict, kv_dtype: str = "float32"):
        """`kv_dtype`: the caches' dtype; "float16" rounds every key and value written (as the
        engine's float16 caches do)."""
        self.config = config
        self.kv_dtype = np.dtype(kv_dtype)
        self.weights = {}
        for name, shape in (weight_shapes(config) | bias_shapes(config)).items():
            if name not in weights:
                if name in OPTIONAL_WEIGHTS or name.endswith(".bias"):
                    continue
                raise KeyError(f"llama reference: missing weight '{name}'")
            w = np.asarray(weights[name], dtype=np.float32)
            if w.shape != shape:
                raise ValueError(
                    f"llama reference: weight '{name}' has shape {w.shape}, expected {shape}"
                )
            self.weights[name] = w
        if "output.weight" not in self.weights:
            self.weights["output.weight"] = self.weights["token_embd.weight"]
        self.reset()

    def reset(self) -> None:
        """Empty the KV caches and go back to position 0."""
        c = self.config
        shape = (1, c.context, c.n_kv_heads, c.head_dim)
        self.k_caches = [np.zeros(shape, self.kv_dtype) for _ in range(c.n_layers)]
        self.v_caches = [np.zeros(shape, self.kv_dtype) for _ in range(c.n_layers)]
        self.pos = 0

    def forward(self, tokens) -> np.ndarray:
        """Logits float32 [S, vocab] for tokens placed at positions pos..pos+S-1; advances pos."""
        c, w = self.config, self.weights
        tokens = np.asarray(list(tokens), dtype=np.int64)
        seq = tokens.shape[0]
        if seq == 0:
            raise ValueError("llama reference: forward needs at least one token")
        if self.pos + seq > c.context:
            raise ValueError(
                f"llama reference: position {self.pos} + {seq} tokens exceeds context {c.context}"
            )
        cos, sin = ops.rope_freqs(c.head_dim, np.arange(self.pos, self.pos + seq), c.rope_base,
                                  c.rope_scale, c.rope_freq_factors)
        x = ops.embedding(w["token_embd.weight"], tokens)  # [S, dim]
        for i in range(c.n_layers):
            x = self._block(i, x, cos, sin)
        x = ops.rms_norm(x, w["output_norm.weight"], c.rms_eps)
        logits = ops.linear(x, w["output.weight"])
        self.pos += seq
        return logits

    def _block(self, i: int, x: np.ndarray, cos, sin) -> np.ndarray:
        c, w, b = self.config, self.weights, f"blk.{i}."
        seq = x.shape[0]
        h = ops.rms_norm(x, w[b + "attn_norm.weight"], c.rms_eps)
        q, k, v = (ops.linear(h, w[b + f"attn_{n}.weight"], w.get(b + f"attn_{n}.bias")) for n in "qkv")
        q = ops.view_copy(q, [1, seq, c.n_heads, c.head_dim])
        k = ops.view_copy(k, [1, seq, c.n_kv_heads, c.head_dim])
        v = ops.view_copy(v, [1, seq, c.n_kv_heads, c.head_dim])
        rope = ops.apply_rotary_emb_neox if c.rope_neox else ops.apply_rotary_emb
        q, k = rope(q, k, cos, sin)
        attn, self.k_caches[i], self.v_caches[i] = ops.sdpa_with_kv_cache(
            q, k, v, self.k_caches[i], self.v_caches[i], self.pos
        )
        attn = ops.linear(ops.view_copy(attn, [seq, c.n_heads * c.head_dim]),
                          w[b + "attn_output.weight"])
        x = ops.add(x, attn)
        h = ops.rms_norm(x, w[b + "ffn_norm.weight"], c.rms_eps)
        gate = ops.silu(ops.linear(h, w[b + "ffn_gate.weight"]))
        up = ops.linear(h, w[b + "ffn_up.weight"])
        return ops.add(x, ops.linear(ops.mul(gate, up), w[b + "ffn_down.weight"]))

    # ---- GGUF ------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, gguf_file, context: int | None = None, kv_dtype: str = "float32",
                  as_loaded: bool = False) -> "LlamaReference":
        """Config from `{arch}.*` metadata, weights dequantized to float32 with
        py_engine.reference.gguf_quant.dequantize. `context` caps the KV cache length
        (default: the model's context_length). `as_loaded`: the weights the engine runs, i.e.
        after the load's transcoding of K-quants etc. (else the file's own values)."""
        from ..loaders.gguf_transcode import kernel_tensor
        from .gguf_quant import dequantize

        config = config_from_gguf(gguf_file, context)
        weights = {}
        for name, shape in (weight_shapes(config) | bias_shapes(config)).items():
            info = gguf_file.tensors.get(name)
            if info is None:
                if name in OPTIONAL_WEIGHTS or name.endswith(".bias"):
                    continue
                raise KeyError(f"gguf: tensor '{name}' not found")
            # .shape is numpy order (the reverse of GGUF's ne0-first dims).
            if tuple(info.shape) != shape:
                raise ValueError(
                    f"gguf: tensor '{name}' has shape {tuple(info.shape)}, expected {shape}"
                )
            if as_loaded:
                info = kernel_tensor(info)
            data = dequantize(info.ggml_type, info.data, info.shape)
            weights[name] = np.asarray(data, dtype=np.float32).reshape(shape)
        return cls(config, weights, kv_dtype)
