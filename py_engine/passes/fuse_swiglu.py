"""silu(gate(x)) * up(x) -> one py_engine.linear_gguf_swiglu.default dispatch.

Matches two py_engine.linear_gguf calls on the same input (no bias, constant weights of one
ggml type and row size) whose outputs meet in `mul(silu(gate), up)`, where silu is either
aten.silu.default(gate) or aten.mul.Tensor(gate, aten.sigmoid.default(gate)) (any operand
order). The intermediate tensors must have no other use. The gate and up weights become one
constant [2F, row_bytes] (gate rows first); the fused call takes the place of the first
matched call (its input and weights exist there; its output is read only later).
"""
from __future__ import annotations

from ..program import Int, OpCall, Program
from .program_index import ProgramIndex, clone, concat_constant_rows, rewrite_chain

LINEAR = "py_engine.linear_gguf.default"
MUL = "aten.mul.Tensor"
SIGMOID = "aten.sigmoid.default"
SILU = "aten.silu.default"
FUSED = "py_engine.linear_gguf_swiglu.default"


def _linear(ix: ProgramIndex, vid: int):
    """(call index, x, weight, type id) of the bias-free GGUF linear writing `vid`, else None."""
    i = ix.producer(vid, (LINEAR,))
    if i is None:
        return None
    args = ix.call(i).args
    if len(args) != 5 or not ix.is_null(args[3]) or not ix.is_constant_tensor(args[1]):
        return None
    return i, args[0], args[1], args[2]


def _silu_of(ix: ProgramIndex, vid: int):
    """(gate, [call indices], {value: expected uses}) when `vid` = silu(gate), else None."""
    i = ix.producer(vid, (SILU, MUL))
    if i is None:
        return None
    call = ix.call(i)
    if call.name == SILU:
        if len(call.args) != 2:
            return None
        return call.args[0], [i], {}
    if len(call.args) != 3:
        return None
    a, b = call.args[0], call.args[1]
    for gate, sig in ((a, b), (b, a)):
        j = ix.producer(sig, (SIGMOID,))
        if j is not None and ix.call(j).args == (gate, sig):
            return gate, [j, i], {sig: 2, gate: 1}  # gate: one more use, by the sigmoid
    return None


def _match(ix: ProgramIndex, m: int):
    call = ix.call(m)
    if len(call.args) != 3:
        return None
    a, b, out = call.args
    for silu_v, up_v in ((a, b), (b, a)):
        s = _silu_of(ix, silu_v)
        if s is None:
            continue
        gate, silu_calls, extra = s
        g, u = _linear(ix, gate), _linear(ix, up_v)
        if g is None or u is None or g[1] != u[1]:
            continue
        tg, tu = ix.program.values[g[3]], ix.program.values[u[3]]
        wg, wu = ix.tensor(g[2]), ix.tensor(u[2])
        if not (isinstance(tg, Int) and isinstance(tu, Int) and tg.value == tu.value):
            continue
        if wg.dtype != "uint8" or wu.dtype != "uint8" or len(wg.dims) != 2 or wg.dims != wu.dims:
            continue
        dims = {tuple(ix.tensor(v).dims) if ix.tensor(v) else None for v in (gate, up_v, silu_v, out)}
        if len(dims) != 1:
            continue
        # Every intermediate is used only by the calls being replaced.
        want = {gate: 2 + extra.get(gate, 0), up_v: 2, silu_v: 2}
        want.update({k: v for k, v in extra.items() if k != gate})
        if gate == up_v or any(ix.uses[v] != n for v, n in want.items()):
            continue
        return {"calls": sorted([g[0], u[0], m] + silu_calls), "x": g[1], "weights": (g[2], u[2]),
                "type": g[3], "out": out}
    return None


def fuse_swiglu(program: Program) -> Program:
    ix = ProgramIndex(program)
    out = clone(program)
    replace, taken = {}, set()
    for m, call in enumerate(program.chain):
        if call.name != MUL:
            continue
        hit = _match(ix, m)
        if hit is None or taken.intersection(hit["calls"]):
            continue
        taken.update(hit["calls"])
        w = concat_constant_rows(out, hit["weights"])
        first, *rest = hit["calls"]
        replace[first] = OpCall(FUSED, (hit["x"], w, hit["type"], hit["out"]))
        replace.update({i: None for i in rest})
    out.chain = rewrite_chain(program.chain, replace)
    return out
