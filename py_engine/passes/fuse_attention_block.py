"""A layer's q/k/v linear, rotation + attention and output projection -> an attention block.

Matches py_engine.linear_gguf_multi_norm (q, k, v: three outputs) whose outputs are viewed into
the py_engine.rope_sdpa_kv_at that follows (its xq, xk, xv), whose attention output is viewed
into a py_engine.linear_gguf without bias (the output projection), each intermediate read by
the next call alone and both weights of a repacked GGUF type. The three calls keep their places
and arguments and take their block variants (ops/attention_block.py): the linear also gets the
caches and input_pos (its decode GEMV rotates q and k and writes the caches), the projection q
(the linear's first output), the caches and input_pos (its decode dispatch attends itself at
short contexts). With ops.attention_block.BLOCK on, decode steps then run 4 dispatches per layer
instead of 5 (6 with a key merge); off (the default) the three ops build the unfused kernels.
"""
from __future__ import annotations

from ..loaders.gguf import GGML_Q4_0, GGML_Q4_1, GGML_Q8_0
from ..program import OpCall, Program
from .fuse_rope_table import AT
from .fuse_rope_sdpa import ROPE_SDPA
from .program_index import ProgramIndex, clone, rewrite_chain

MULTI_NORM = "py_engine.linear_gguf_multi_norm.default"
ROPE_SDPA_AT = AT[ROPE_SDPA]
LINEAR = "py_engine.linear_gguf.default"
VIEW = "aten.view_copy.default"
BLOCK_QKV = "py_engine.linear_gguf_multi_norm_rope.default"
BLOCK_ATTN = "py_engine.rope_sdpa_kv_block.default"
BLOCK_OUT = "py_engine.linear_gguf_attend.default"
REPACKED_TYPES = (GGML_Q4_0, GGML_Q4_1, GGML_Q8_0)


def _viewed(ix: ProgramIndex, vid: int):
    """(view call index, source) when `vid` is a view_copy of a value read only by that view."""
    i = ix.producer(vid, (VIEW,))
    if i is None:
        return None
    src = ix.call(i).args[0]
    return (i, src) if ix.uses[src] == 2 else None


def fuse_attention_block(program: Program) -> Program:
    ix = ProgramIndex(program)
    replace = {}
    chain = program.chain
    for r, call in enumerate(chain):
        if call.name != ROPE_SDPA_AT or len(call.args) != 21:
            continue
        xq, xk, xv = call.args[:3]
        k_cache, v_cache, pos = call.args[5:8]
        views = [_viewed(ix, x) for x in (xq, xk, xv)]
        if None in views:
            continue
        lin_i = ix.producer(views[0][1], (MULTI_NORM,))
        if lin_i is None or len(ix.call(lin_i).args) != 11:
            continue
        lin = ix.call(lin_i)
        outs = ix.value_list(lin.args[-1])
        if outs is None or list(outs) != [v[1] for v in views] or ix.int_value(lin.args[8]) not in REPACKED_TYPES:
            continue
        attn = call.args[-1]
        if ix.uses[attn] != 2:
            continue
        o_i = next((s for s in range(r + 1, len(chain)) if chain[s].name == LINEAR and len(chain[s].args) == 5
                    and (_viewed(ix, chain[s].args[0]) or (None, None))[1] == attn), None)
        if o_i is None:
            continue
        o = chain[o_i]
        if ix.uses[o.args[0]] != 2 or not ix.is_null(o.args[3]) or ix.int_value(o.args[2]) not in REPACKED_TYPES:
            continue
        extra = (k_cache, v_cache, pos)
        replace[lin_i] = OpCall(BLOCK_QKV, tuple(lin.args) + extra)
        replace[r] = OpCall(BLOCK_ATTN, tuple(call.args))
        replace[o_i] = OpCall(BLOCK_OUT, tuple(o.args) + (outs[0],) + extra)
    out = clone(program)
    out.chain = rewrite_chain(chain, replace)
    return out
