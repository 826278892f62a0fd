"""Shared helpers of the fusion passes: who writes and who reads each value, and a rewriter.

Passes only ever match op calls whose argument conventions they know (outputs last), so the
"writer" of a value is the call whose last argument is that value (or whose last argument is
a ValueList holding it). Use counts are over every argument of every call (ValueLists
flattened) plus the program outputs: a pass may drop an intermediate value only when the
calls it replaces account for all of its uses.
"""
from __future__ import annotations

from collections import Counter

from ..program import Int, LazyBytes, Null, OpCall, Program, Tensor, ValueList


class ProgramIndex:
    def __init__(self, program: Program):
        self.program = program
        self.uses: Counter = Counter()
        self.writer: dict = {}
        for i, call in enumerate(program.chain):
            for a in call.args:
                self.uses[a] += 1
                v = self._value(a)
                if isinstance(v, ValueList):
                    for x in v.ids:
                        self.uses[x] += 1
            if call.args:
                last = call.args[-1]
                v = self._value(last)
                for out in (v.ids if isinstance(v, ValueList) else (last,)):
                    self.writer.setdefault(out, i)
        for vid in program.output_ids:
            self.uses[vid] += 1

    def _value(self, vid):
        if isinstance(vid, int) and 0 <= vid < len(self.program.values):
            return self.program.values[vid]
        return None

    def call(self, i: int) -> OpCall:
        return self.program.chain[i]

    def producer(self, vid: int, names) -> int | None:
        """Index of the call writing `vid` if its name is one of `names`, else None."""
        i = self.writer.get(vid)
        if i is None or self.program.chain[i].name not in names:
            return None
        return i

    def tensor(self, vid: int) -> Tensor | None:
        v = self._value(vid)
        return v if isinstance(v, Tensor) else None

    def is_constant_tensor(self, vid: int) -> bool:
        t = self.tensor(vid)
        return t is not None and t.constant_id >= 0

    def value_list(self, vid: int):
        """The ids of ValueList `vid`, else None."""
        v = self._value(vid)
        return v.ids if isinstance(v, ValueList) else None

    def is_null(self, vid: int) -> bool:
        return isinstance(self._value(vid), Null)

    def int_value(self, vid: int):
        """The value of Int `vid`, else None."""
        v = self._value(vid)
        return v.value if isinstance(v, Int) else None


def clone(program: Program) -> Program:
    """A shallow copy whose lists a pass may change without touching the input program."""
    return Program(values=list(program.values), chain=list(program.chain), input_ids=list(program.input_ids),
                   output_ids=list(program.output_ids), constants=list(program.constants))


def rewrite_chain(chain: list, replace: dict) -> list:
    """The chain with call i replaced by `replace[i]` (an OpCall, or None to drop it)."""
    out = []
    for i, call in enumerate(chain):
        r = replace.get(i, call)
        if r is not None:
            out.append(r)
    return out


def concat_constant_rows(program: Program, weight_ids) -> int:
    """Add a constant uint8 tensor holding the rows of `weight_ids` (uint8 [n_i, row_bytes]) one
    after another; returns its value id. Mutates `program` (call on the pass's new Program)."""
    weight_ids = tuple(weight_ids)
    for w in weight_ids:
        program.check_constant(w)
    row_bytes = program.values[weight_ids[0]].dims[1]
    rows = sum(program.values[w].dims[0] for w in weight_ids)
    # Joined when the graph uploads it: the parts stay the only copy until then.
    joined = LazyBytes(rows * row_bytes, lambda: b"".join(program.constant_bytes(w) for w in weight_ids))
    return program.tensor("uint8", (rows, row_bytes), joined)
