"""Layer twins: a full configure that runs each repeated op's resize hook once.

A model's layers are the same ops on tensors of the same shapes. When the graph configures
every op (a new input shape), a later op with the same signature as an earlier one (its
*leader*: same op, same non-tensor arguments and SymInts, tensors of the same dtypes and
bounds, same pipelines and uniform sizes) would compute what its leader computed. So the
leader's hook runs, recorded, and each twin whose inputs have the live dims of the leader's
inputs gets the leader's output dims; each run of consecutive twins then gets the leader's
workgroup counts and params bytes in bulk (one numpy copy each). A twin whose inputs differ
runs its own hook.

The copy is right only for hooks that are functions of the op's arguments and their live
dims: an op whose hook reads anything else (host inputs, state of its own) sets
`twin_configure = False`. A leader's hook may also set the rows and slots of ops with its
own signature (the attention ops' layer group); rows or slots of any other op, or dims of
tensors outside its arguments, leave that leader's twins to their own hooks.
"""
from __future__ import annotations

import numpy as np

from ..program import SymInt, Tensor, ValueList
from .uniforms import SharedSlot

TWIN_CONFIGURE = True  # False: every op's hook runs in a full configure (tests compare both)


def signature(g, op, rows: list, slots: list):
    """What an op's resize hook may depend on besides live dims, or None (never a twin)."""
    if not getattr(op, "twin_configure", True) or op.reads_host_inputs:
        return None
    values = g.program.values
    parts = [type(op), op.name]
    for vid in op._ids:
        v = values[vid]
        if isinstance(v, Tensor):
            parts.append(("T", v.dtype, tuple(v.dims), v.constant_id >= 0))
        elif isinstance(v, SymInt):
            parts.append(("S", vid))  # the same live integer, not just an equal one
        elif isinstance(v, ValueList):
            parts.append(("L", len(v.ids)))  # its members follow in op._ids
        else:
            parts.append(v)
    parts.append(tuple(int(g.table[r, 0]) for r in rows))
    parts.append(tuple(s.size for s in slots))
    return tuple(parts)


class LayerTwins:
    def __init__(self, g, rows_by_op: list, slots_by_op: list):
        self.rows_by_op = rows_by_op
        self.slots_by_op = slots_by_op
        n = len(g.ops)
        self.leader_of = [-1] * n  # the op whose hook a twin copies; -1: runs its own
        self.group_of = [-1] * n   # index of the first op of the signature
        first: dict = {}
        for i, op in enumerate(g.ops):
            sig = signature(g, op, rows_by_op[i], slots_by_op[i])
            if sig is None:
                continue
            j = first.setdefault(sig, i)
            self.group_of[i] = j
            if j != i:
                self.leader_of[i] = j
        self.leaders = frozenset(j for j in self.leader_of if j >= 0)
        # For each twin i: the end of its block of consecutive twins and the leaders from i on.
        self.block_end = [0] * n
        self.block_leaders: list = [()] * n
        for i in range(n - 1, -1, -1):
            if self.leader_of[i] >= 0:
                nxt = i + 1 < n and self.leader_of[i + 1] >= 0
                self.block_end[i] = self.block_end[i + 1] if nxt else i + 1
                rest = self.block_leaders[i + 1] if nxt else ()
                self.block_leaders[i] = tuple(sorted(set(rest) | {self.leader_of[i]}))
        self.row_owner = {r: i for i, rows in enumerate(rows_by_op) for r in rows}
        self.slot_owner = {id(s): i for i, slots in enumerate(slots_by_op) for s in slots}
        self._runs: dict = {}  # (first twin, its block's leaders' output positions) -> _RunCopy
        self.copied = 0  # ops whose results were copied, over the graph's life (tests, stats)

    def configure_all(self, g, host: dict) -> None:
        """Every op's resize hook in op order, or the copy of its leader's results."""
        ops, lead = g.ops, self.leader_of
        on = TWIN_CONFIGURE
        learned: dict = {}  # leader -> its output positions this configure (None: not copyable)
        i, n = 0, len(ops)
        while i < n:
            if on and lead[i] >= 0:
                leaders = self.block_leaders[i]
                outs = tuple(learned.get(j) for j in leaders)
                if None not in outs:
                    end = self.block_end[i]
                    if self._run(g, i, end, outs, learned).apply(g):
                        self.copied += end - i
                        i = end
                        continue
                # A leader not copyable, or an input unlike the leader's: this op runs its hook.
            op = ops[i]
            if op.reads_host_inputs:
                op.read_host_inputs(g, host)
            if on and i in self.leaders:
                learned[i] = self._configure_recorded(g, i)
            else:
                op.configure(g)
            i += 1

    def _configure_recorded(self, g, i: int):
        """Run leader i's hook; its output positions among its arguments, or None when it
        touched anything its twins could not copy."""
        g._rec_dims, g._rec_rows = [], []
        outer = g.uniforms.swap_log({})
        try:
            g.ops[i].configure(g)
        finally:
            dims, rows = g._rec_dims, g._rec_rows
            g._rec_dims = g._rec_rows = None
            mine = g.uniforms.swap_log(outer)
            if outer is not None:
                outer.update(mine)
        ids = g.ops[i]._ids
        dims = set(dims)
        if not dims <= set(ids):
            return None
        grp = self.group_of[i]
        for r in rows:
            owner = self.row_owner.get(r)
            if owner is None or self.group_of[owner] != grp:
                return None
        for s in mine.values():
            if not isinstance(s, SharedSlot) and (id(s) not in self.slot_owner
                                                  or self.group_of[self.slot_owner[id(s)]] != grp):
                return None
        return tuple(k for k, vid in enumerate(ids) if vid in dims)

    def _run(self, g, first: int, end: int, outs: tuple, learned: dict) -> "_RunCopy":
        key = (first, outs)  # the block's end and leaders follow from first
        run = self._runs.get(key)
        if run is None:
            if len(self._runs) > 64:
                self._runs.clear()
            run = self._runs[key] = _RunCopy(self, g, first, end, learned)
        return run


class _RunCopy:
    """Twins first .. end-1 given their leaders' results: output dims (after checking that
    their inputs have the leaders' inputs' dims), dispatch rows and uniform bytes."""

    def __init__(self, twins: LayerTwins, g, first: int, end: int, learned: dict):
        tensors = g.tensors
        copied_from: dict = {}  # twin output vid -> the leader tensor its dims come from
        self.checks, self.outs = [], []  # (tensor, leader tensor) pairs
        dst_rows, src_rows, pairs = [], [], []
        for j in range(first, end):
            lead = twins.leader_of[j]
            outs = learned[lead]
            for k, (fv, lv) in enumerate(zip(g.ops[j]._ids, g.ops[lead]._ids)):
                a, b = tensors.get(fv), tensors.get(lv)
                if fv == lv or a is None or b is None or a.constant:
                    continue
                if k in outs:
                    self.outs.append((a, b))
                    copied_from[fv] = b
                else:
                    # An input an earlier twin of the run outputs gets that twin's leader's
                    # dims: compare those (final now) with this leader's input.
                    src = copied_from.get(fv, a)
                    if src is not b:
                        self.checks.append((src, b))
            dst_rows += twins.rows_by_op[j]
            src_rows += twins.rows_by_op[lead]
            pairs += zip(twins.slots_by_op[j], twins.slots_by_op[lead])
        self.out_vids = tuple(a.vid for a, _ in self.outs)
        self.dst_rows = np.array(dst_rows, np.intp)
        self.src_rows = np.array(src_rows, np.intp)
        self.row_pairs = list(zip(dst_rows, src_rows))
        groups: dict = {}  # (dst page, src page) -> (dst byte indices, src byte indices)
        for d, s in pairs:
            dst, src = groups.setdefault((id(d.page), id(s.page)), (d.page, s.page, [], []))[2:]
            dst.extend(range(d.offset, d.offset + d.size))
            src.extend(range(s.offset, s.offset + s.size))
        self.bytes = [(dp, sp, np.array(di, np.intp), np.array(si, np.intp), min(di), max(di) + 1)
                      for dp, sp, di, si in groups.values()]
        self.logged = [(id(d), d) for d, _ in pairs]

    def apply(self, g) -> bool:
        """Copy everything, or nothing when an input's dims differ from its leader's (False)."""
        for a, b in self.checks:
            if a.dims != b.dims:
                return False
        for a, b in self.outs:
            a.dims = b.dims
        g._resized.update(self.out_vids)  # a full configure: marking unchanged ones is harmless
        table = g.table
        table[self.dst_rows, 2:5] = table[self.src_rows, 2:5]
        wg = g._wg_total
        for d, s in self.row_pairs:
            wg[d] = wg[s]
        for dst_page, src_page, di, si, lo, hi in self.bytes:
            dst_page.view[di] = src_page.view[si]
            dst_page.mark_dirty(lo, hi)
        g.uniforms.log_writes(self.logged)
        return True
