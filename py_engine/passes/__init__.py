"""Program -> Program fusion passes: pure data, no GPU.

Each pass pattern-matches op calls it knows and rewrites them into fewer calls (fewer
dispatches per token), leaving everything it does not recognize unchanged; the input
Program is never modified. `optimize` runs them all in an order where each one still finds
its pattern: SwiGLU first (it consumes the gate/up linears that the parallel-linear pass
would otherwise group), then the parallel linears (q/k/v), then add + RMSNorm, then RoPE
of q and k in one dispatch, then that RoPE together with the attention's KV-cache write, then
each add + RMSNorm into the fused linear it feeds, then the RoPE op into the attention op (its
decode steps rotate and write the cache inside the attention kernel), then the cos/sin slices
by input_pos into the rotation (it reads the tables' rows on the GPU), then each layer's q/k/v
linear, attention and output projection into an attention block (with its switch on, decode
steps rotate and write the caches in the q/k/v GEMV and attend in the output projection).
"""
from __future__ import annotations

from ..program import Program
from .fuse_add_rms_norm import fuse_add_rms_norm
from .fuse_attention_block import fuse_attention_block
from .fuse_norm_linear import fuse_norm_linear
from .fuse_parallel_linears import fuse_parallel_linears
from .fuse_rope import fuse_rope
from .fuse_rope_kv import fuse_rope_kv
from .fuse_rope_sdpa import fuse_rope_sdpa
from .fuse_rope_table import fuse_rope_table
from .fuse_swiglu import fuse_swiglu

PASSES = (fuse_swiglu, fuse_parallel_linears, fuse_add_rms_norm, fuse_rope, fuse_rope_kv, fuse_norm_linear,
          fuse_rope_sdpa, fuse_rope_table, fuse_attention_block)
# CPU implementations of WebGPU (SwiftShader, lavapipe): every fusion but fuse_norm_linear,
# whose norm GEMV computes one row per thread there (the other fused GEMVs stream R rows per
# thread, as the plain GEMV does), and fuse_attention_block, which builds on it.
CPU_PASSES = (fuse_swiglu, fuse_parallel_linears, fuse_add_rms_norm, fuse_rope, fuse_rope_kv, fuse_rope_sdpa,
              fuse_rope_table)


def passes_for(backend) -> tuple:
    return CPU_PASSES if getattr(backend, "is_cpu", False) else PASSES


def optimize(program: Program, passes=PASSES) -> Program:
    for p in passes:
        program = p(program)
    return program


__all__ = ["optimize", "passes_for", "PASSES", "CPU_PASSES", "fuse_swiglu", "fuse_parallel_linears", "fuse_add_rms_norm", "fuse_rope", "fuse_rope_kv",
           "fuse_norm_linear", "fuse_rope_sdpa", "fuse_rope_table", "fuse_attention_block"]
