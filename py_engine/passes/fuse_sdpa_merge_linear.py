"""A decode attention's output projection merges the attention's split-KV partials itself:
attention(..., out=attn) -> aten.view_copy(attn, sizes, flat) -> py_engine.linear_gguf(flat, w,
type, Null, o) becomes the same calls with the linear replaced by
py_engine.sdpa_merge_linear(attn, input_pos, flat, w, type, Null, o) (see ops/sdpa_merge_linear.py).

Matches only when the view is attn's only reader and the linear flat's only reader, so nothing
else reads the attention output that the merge no longer writes on those steps.
"""
from __future__ import annotations

from ..program import OpCall, Program
from .program_index import ProgramIndex, clone, rewrite_chain

MERGE_LINEAR = "py_engine.sdpa_merge_linear.default"
# Attention ops whose decode steps may split the keys: their (args count, input_pos index).
ATTENTION = {
    "sdpa_with_kv_cache.default": (12, 5),
    "py_engine.sdpa_kv_written.default": (12, 5),
    "py_engine.rope_sdpa_kv.default": (21, 14),
}
VIEW = "aten.view_copy.default"
LINEAR = "py_engine.linear_gguf.default"


def fuse_sdpa_merge_linear(program: Program) -> Program:
    ix = ProgramIndex(program)
    chain = program.chain
    readers: dict = {}
    for i, call in enumerate(chain):
        for a in set(call.args):
            readers.setdefault(a, []).append(i)
    replace = {}
    for i, call in enumerate(chain):
        spec = ATTENTION.get(call.name)
        if spec is None or len(call.args) != spec[0]:
            continue
        attn, pos = call.args[-1], call.args[spec[1]]
        views = readers.get(attn, [])
        if ix.uses[attn] != 2 or len(views) != 2 or views[0] != i or chain[views[1]].name != VIEW:
            continue
        view = chain[views[1]]
        if len(view.args) != 3 or view.args[0] != attn:
            continue
        flat = view.args[2]
        lins = readers.get(flat, [])
        if ix.uses[flat] != 2 or len(lins) != 2 or lins[0] != views[1] or chain[lins[1]].name != LINEAR:
            continue
        lin = chain[lins[1]]
        if len(lin.args) != 5 or lin.args[0] != flat or not ix.is_null(lin.args[3]):
            continue
        replace[lins[1]] = OpCall(MERGE_LINEAR, (attn, pos) + tuple(lin.args))
    out = clone(program)
    out.chain = rewrite_chain(chain, replace)
    return out
