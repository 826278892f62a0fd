"""RoPE + KV-cache write and the attention reading them -> one op, py_engine.rope_sdpa_kv.

Matches py_engine.apply_rotary_emb_qk_kv(xq, xk, xv, cos, sin, k_cache, v_cache, pos, q_rot)
followed by the py_engine.sdpa_kv_written whose query is q_rot (its only reader), with the same
k, v, caches and position, and no call in between that touches q_rot or the caches. The pair
becomes one call at the attention's place with both argument lists; its decode steps run one
dispatch instead of two (see ops/rope_sdpa.py).
"""
from __future__ import annotations

from ..program import OpCall, Program
from .fuse_rope_kv import ROPE_QK_KV, SDPA_WRITTEN
from .program_index import ProgramIndex, clone, rewrite_chain

ROPE_SDPA = "py_engine.rope_sdpa_kv.default"


def fuse_rope_sdpa(program: Program) -> Program:
    ix = ProgramIndex(program)
    replace = {}
    chain = program.chain
    for r, call in enumerate(chain):
        if call.name != ROPE_QK_KV or len(call.args) != 9:
            continue
        xq, xk, xv, cos, sin, k_cache, v_cache, pos, q_rot = call.args
        if ix.uses[q_rot] != 2:  # written here, read by the attention alone
            continue
        for s in range(r + 1, len(chain)):
            args = chain[s].args
            if chain[s].name == SDPA_WRITTEN and len(args) == 12 and args[0] == q_rot:
                if (args[1], args[2], args[3], args[4], args[5]) == (xk, xv, k_cache, v_cache, pos):
                    replace[r] = None
                    replace[s] = OpCall(ROPE_SDPA, tuple(call.args) + tuple(args))
                break
            if {q_rot, k_cache, v_cache} & set(args):
                break
    out = clone(program)
    out.chain = rewrite_chain(chain, replace)
    return out
