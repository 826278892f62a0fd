"""add_rms_norm feeding one fused linear -> the linear with the norm folded into its decode GEMV.

Matches py_engine.add_rms_norm(a, b, alpha, w, eps, sum_out, norm_out) whose norm_out is read
by exactly one py_engine.linear_gguf_multi / linear_gguf_swiglu call (as its input) on a weight
format the GEMV reads repacked (Q4_0, Q4_1, Q8_0), with nothing in between reading sum_out.
Both calls become one py_engine.linear_gguf_multi_norm / linear_gguf_swiglu_norm at the
linear's place with arguments (a, b, alpha, w, eps, sum_out, norm_out, <the linear's after x>).
A decode step then runs one dispatch instead of two (see ops/fused_linear.py `_PreNorm`).
"""
from __future__ import annotations

from ..program import Int, OpCall, Program
from .program_index import ProgramIndex, clone, rewrite_chain

ADD_NORM = "py_engine.add_rms_norm.default"
FOLDED = {"py_engine.linear_gguf_multi.default": "py_engine.linear_gguf_multi_norm.default",
          "py_engine.linear_gguf_swiglu.default": "py_engine.linear_gguf_swiglu_norm.default"}
REPACKED_TYPES = (2, 3, 8)  # Q4_0, Q4_1, Q8_0 (ops/weight_repack.py)


def fuse_norm_linear(program: Program) -> Program:
    ix = ProgramIndex(program)
    readers: dict = {}
    for i, call in enumerate(program.chain):
        for a in call.args:
            readers.setdefault(a, []).append(i)
    replace = {}
    for n, call in enumerate(program.chain):
        if call.name != ADD_NORM or len(call.args) != 7:
            continue
        sum_out, norm_out = call.args[5], call.args[6]
        users = readers.get(norm_out, [])
        if len(users) != 2 or ix.uses[norm_out] != 2:  # the norm itself and one reader
            continue
        j = max(users)
        lin = program.chain[j]
        if lin.name not in FOLDED or lin.args[0] != norm_out or j <= n:
            continue
        t = ix.program.values[lin.args[2]] if isinstance(lin.args[2], int) else None
        if not isinstance(t, Int) or t.value not in REPACKED_TYPES:
            continue
        if any(n < r < j for r in readers.get(sum_out, [])):
            continue
        replace[n] = None
        replace[j] = OpCall(FOLDED[lin.name], tuple(call.args) + tuple(lin.args[1:]))
    out = clone(program)
    out.chain = rewrite_chain(program.chain, replace)
    return out
