"""The RoPE rows of a step read from the whole cos/sin tables on the GPU, not sliced first.

The llama builder slices rows input_pos .. input_pos + S of constant cos/sin tables every step
(two slice_copy dispatches, plus their resize hooks and the SymInt add giving the end, on every
decode step) and the rotation reads the slices. The fused rotation ops already read input_pos
on the GPU (the KV-cache write), so they can index the tables themselves:
py_engine.apply_rotary_emb_qk_kv and py_engine.rope_sdpa_kv whose cos and sin are such slices
(dim 0, step 1, start = the op's own input_pos, a constant table of [R, D/2] with R at least the
cache's positions) become their `_at` variants with the tables as arguments. A slice whose every reader was rewritten is dropped, and so is the SymInt add that
gave its end when nothing else reads it.
"""
from __future__ import annotations

from ..program import OpCall, Program
from .fuse_rope_kv import ROPE_QK_KV
from .fuse_rope_sdpa import ROPE_SDPA
from .program_index import ProgramIndex, clone, rewrite_chain

SLICE = "aten.slice_copy.Tensor"
AT = {ROPE_QK_KV: "py_engine.apply_rotary_emb_qk_kv_at.default", ROPE_SDPA: "py_engine.rope_sdpa_kv_at.default"}
ARGS = {ROPE_QK_KV: 9, ROPE_SDPA: 21}
SYMINT_ADD = "add"


def _table_of(ix: ProgramIndex, vid: int, pos: int, half: int, cache_rows: int):
    """(slice call index, table id) when `vid` is rows pos.. of a constant [R >= cache_rows, half] table."""
    i = ix.producer(vid, (SLICE,))
    if i is None:
        return None
    table, dim, start, _end, step, _out = ix.call(i).args
    if ix.int_value(dim) != 0 or start != pos or not ix.is_constant_tensor(table):
        return None
    if not (ix.is_null(step) or ix.int_value(step) == 1):
        return None
    t = ix.tensor(table)
    if len(t.dims) != 2 or t.dims[1] != half or t.dims[0] < cache_rows:
        return None
    return i, table


def fuse_rope_table(program: Program) -> Program:
    ix = ProgramIndex(program)
    replace, rewritten = {}, {}  # slice call index -> readers rewritten
    for r, call in enumerate(program.chain):
        if call.name not in AT or len(call.args) != ARGS[call.name]:
            continue
        xq, cos, sin, k_cache, pos = call.args[0], call.args[3], call.args[4], call.args[5], call.args[7]
        q, cache = ix.tensor(xq), ix.tensor(k_cache)
        if q is None or cache is None or len(q.dims) != 4 or len(cache.dims) != 4:
            continue
        got = [_table_of(ix, f, pos, q.dims[3] // 2, cache.dims[1]) for f in (cos, sin)]
        if None in got or ix.tensor(got[0][1]).dims != ix.tensor(got[1][1]).dims:
            continue
        args = list(call.args)
        args[3], args[4] = got[0][1], got[1][1]
        replace[r] = OpCall(AT[call.name], tuple(args))
        for i, _ in got:
            rewritten[i] = rewritten.get(i, 0) + 1
    ends = []
    for i, n in rewritten.items():
        out = ix.call(i).args[-1]
        if ix.uses[out] == n + 1:  # its own out argument and the readers now reading the table
            replace[i] = None
            ends.append(ix.call(i).args[3])
    for end in set(ends):
        w = ix.producer(end, (SYMINT_ADD,))
        # The end's uses: its writer's out, and one per slice dropped above.
        if w is not None and ix.uses[end] == 1 + ends.count(end):
            replace[w] = None
    out = clone(program)
    out.chain = rewrite_chain(program.chain, replace)
    return out
