"""y = add(a, b, alpha); n = rms_norm(y, w, eps) -> one py_engine.add_rms_norm.default call.

The residual add and the RMSNorm that follows it (every llama block boundary) become one
dispatch writing both y (still needed by the next residual add) and n. Matched only when a,
b and y have the same dims (no broadcasting) and the norm weight is a constant, so the fused
call can take the add's place: a, b, w and eps all exist there. Each add is fused with at
most one norm (the first that reads it).
"""
from __future__ import annotations

from ..program import OpCall, Program
from .program_index import ProgramIndex, clone, rewrite_chain

ADD = "aten.add.Tensor"
NORMS = ("et_vk.rms_norm.default", "aten.rms_norm.default")
FUSED = "py_engine.add_rms_norm.default"


def fuse_add_rms_norm(program: Program) -> Program:
    ix = ProgramIndex(program)
    replace, used_adds = {}, set()
    for r, call in enumerate(program.chain):
        if call.name not in NORMS or len(call.args) != 4:
            continue
        y, w, eps, n = call.args
        i = ix.producer(y, (ADD,))
        if i is None or i in used_adds or i > r or not ix.is_constant_tensor(w):
            continue
        add = ix.call(i)
        if len(add.args) != 4:
            continue
        a, b, alpha, _ = add.args
        ta, tb, ty = ix.tensor(a), ix.tensor(b), ix.tensor(y)
        if ta is None or tb is None or not (ta.dims == tb.dims == ty.dims):
            continue
        if not (ta.dtype == tb.dtype == ty.dtype == "float32"):
            continue
        used_adds.add(i)
        replace[i] = OpCall(FUSED, (a, b, alpha, w, eps, y, n))
        replace[r] = None
    out = clone(program)
    out.chain = rewrite_chain(program.chain, replace)
    return out
