"""RoPE of q/k + the KV-cache write of the attention after it -> one dispatch.

Matches py_engine.apply_rotary_emb_qk(xq, xk, cos, sin, [q_rot, k_rot]) whose k_rot is read
only by a sdpa_with_kv_cache that takes q_rot as its query and k_rot as its new keys. The
rotation becomes py_engine.apply_rotary_emb_qk_kv(xq, xk, v, cos, sin, k_cache, v_cache,
input_pos, q_rot), which writes rotated k and v straight into the caches, and the attention
becomes py_engine.sdpa_kv_written with the same arguments but k = xk (its shapes only): one
dispatch and the k_rot tensor fewer per layer. v must be written before the rotation (it is,
in any chain that computes q, k and v before RoPE); otherwise the pair is left alone.
"""
from __future__ import annotations

from ..program import OpCall, Program
from .program_index import ProgramIndex, clone, rewrite_chain

ROPE_QK = "py_engine.apply_rotary_emb_qk.default"
SDPA = "sdpa_with_kv_cache.default"
ROPE_QK_KV = "py_engine.apply_rotary_emb_qk_kv.default"
SDPA_WRITTEN = "py_engine.sdpa_kv_written.default"


def fuse_rope_kv(program: Program) -> Program:
    ix = ProgramIndex(program)
    readers: dict = {}
    for i, call in enumerate(program.chain):
        if call.name == SDPA and len(call.args) == 12:
            readers.setdefault(call.args[1], []).append(i)
    replace = {}
    for r, call in enumerate(program.chain):
        if call.name != ROPE_QK or len(call.args) != 5:
            continue
        xq, xk, cos, sin, outs = call.args
        out_ids = ix.value_list(outs)
        if out_ids is None or len(out_ids) != 2:
            continue
        q_rot, k_rot = out_ids
        sdpas = readers.get(k_rot, [])
        # k_rot: one use in the rope's out list, one in the attention; nothing else reads it.
        if len(sdpas) != 1 or ix.uses[k_rot] != 2 or ix.uses[outs] != 1:
            continue
        s = sdpas[0]
        args = program.chain[s].args
        q, v, k_cache, v_cache, pos = args[0], args[2], args[3], args[4], args[5]
        if q != q_rot or s < r or ix.writer.get(v, -1) >= r:
            continue
        replace[r] = OpCall(ROPE_QK_KV, (xq, xk, v, cos, sin, k_cache, v_cache, pos, q_rot))
        replace[s] = OpCall(SDPA_WRITTEN, (q_rot, xk) + tuple(args[2:]))
    out = clone(program)
    out.chain = rewrite_chain(program.chain, replace)
    return out
