"""Parallel GGUF linears reading one input -> one py_engine.linear_gguf_multi.default call.

Groups py_engine.linear_gguf calls with the same input and constant weights of one ggml type
and row size (q/k/v of an attention block), either all without bias or all with a constant
float32 bias (Qwen2's q/k/v). Each group of 2 or 3 becomes one call whose weight is the rows of
the group's weights one after another (and whose bias, before the outputs, their biases), and
whose outputs are the original output tensors (so nothing downstream changes). The fused call
takes the place of the group's first call: the input and weights exist there, and the outputs
are only read after their original writers.
"""
from __future__ import annotations

from ..program import Int, IntList, OpCall, Program, ValueList
from .program_index import ProgramIndex, clone, concat_constant_rows, rewrite_chain

LINEAR = "py_engine.linear_gguf.default"
FUSED = "py_engine.linear_gguf_multi.default"
MAX_OUTPUTS = 3  # the kernel's output bindings


def _key(ix: ProgramIndex, call: OpCall):
    if call.name != LINEAR or len(call.args) != 5:
        return None
    x, w, t, bias, out = call.args
    wt, tv = ix.tensor(w), ix.program.values[t] if 0 <= t < len(ix.program.values) else None
    if not ix.is_constant_tensor(w) or not isinstance(tv, Int):
        return None
    if wt.dtype != "uint8" or len(wt.dims) != 2 or ix.tensor(out) is None:
        return None
    biased = not ix.is_null(bias)
    if biased and not (ix.is_constant_tensor(bias) and ix.tensor(bias).dtype == "float32"
                       and tuple(ix.tensor(bias).dims) == (wt.dims[0],)):
        return None
    return (x, tv.value, wt.dims[1], biased)


def _chunks(members: list) -> list:
    """Groups of 2..MAX_OUTPUTS, in chain order (4 -> 2 + 2, 5 -> 3 + 2, ...)."""
    out = []
    while len(members) >= 2:
        n = MAX_OUTPUTS if len(members) != MAX_OUTPUTS + 1 else 2
        out.append(members[:n])
        members = members[n:]
    return out


def fuse_parallel_linears(program: Program) -> Program:
    ix = ProgramIndex(program)
    groups: dict = {}
    for i, call in enumerate(program.chain):
        key = _key(ix, call)
        if key is not None:
            groups.setdefault(key, []).append(i)
    out = clone(program)
    replace = {}
    for members in groups.values():
        for chunk in _chunks(members):
            calls = [program.chain[i] for i in chunk]
            weights = [c.args[1] for c in calls]
            w = concat_constant_rows(out, weights)
            splits = out.add(IntList(tuple(program.values[v].dims[0] for v in weights)))
            args = (calls[0].args[0], w, calls[0].args[2], splits)
            if not ix.is_null(calls[0].args[3]):
                biases = b"".join(bytes(program.constant_bytes(c.args[3])) for c in calls)
                args += (out.tensor("float32", (len(biases) // 4,), biases),)
            outs = out.add(ValueList(tuple(c.args[4] for c in calls)))
            replace[chunk[0]] = OpCall(FUSED, args + (outs,))
            replace.update({i: None for i in chunk[1:]})
    out.chain = rewrite_chain(program.chain, replace)
    return out
