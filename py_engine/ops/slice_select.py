"""aten.slice_copy.Tensor and aten.select_copy.int as one strided row copy (slice_select.wgsl).

slice_copy(x, dim, start, end, step, out): start/end are Int, SymInt or Null (0 / the size),
negative values count from the end once, then both are clamped like Python slices;
step >= 1. select_copy(x, dim, index, out) keeps one row (negative counts from the end)
and drops the dim. Both follow x's live dims and the live value of SymInt bounds.
"""
from __future__ import annotations

import struct

import numpy as np

from ..graph.graph import GPU_DTYPE
from ..graph.registry import register
from ..program import DTYPES
from .base import Op, ceil_div, numel, workgroup_size

PARAMS = struct.Struct("<8I")
assert PARAMS.size == 32  # matches `struct Params` in slice_select.wgsl


def normalize_dim(dim: int, rank: int, err) -> int:
    if rank == 0:
        raise err("cannot index a 0-d tensor")
    if not -rank <= dim < rank:
        raise err(f"dim {dim} out of range for a {rank}-d tensor")
    return dim % rank


def slice_range(size: int, start, end, step: int) -> tuple:
    """(first row, row count) of x[start:end:step] along a dim of `size` (None = default)."""
    s = 0 if start is None else start
    e = size if end is None else end
    if s < 0:
        s += size
    if e < 0:
        e += size
    s = min(max(s, 0), size)
    e = min(max(e, s), size)
    return s, ceil_div(e - s, step)


def _gpu_itemsize(dtype: str) -> int:
    return np.dtype(DTYPES[GPU_DTYPE[dtype]]).itemsize


class StridedRowCopy:
    """One dispatch copying rows `start + j*step` (j < rows_out) of every block of src to dst."""

    def __init__(self, g, src, dst, label):
        self.wg = workgroup_size(g.limits)
        pipe = g.pipelines.get("slice_select", WG=self.wg)
        self.params = g.uniforms.alloc(PARAMS.size, label)
        self.d = g.add_dispatch(pipe, [src, dst, self.params], label)

    def set(self, g, outer: int, src_rows: int, row_words: int, start: int, step: int, rows_out: int):
        n = outer * rows_out * row_words
        self.params.write(PARAMS.pack(n, row_words, rows_out, src_rows, start, step, 0, 0))
        g.set_workgroups(self.d, ceil_div(n, self.wg))


class _RowCopyOp(Op):
    """Shared validation and live geometry of the two ops; subclasses pick the rows."""

    def _common(self, ctx, dim_id):
        x = ctx.tensor(self.name, self.x, "self")
        out = ctx.tensor(self.name, self.out, "out")
        if x.dtype != out.dtype:
            raise self.error(f"out dtype {out.dtype} differs from input dtype {x.dtype}")
        self.dim = normalize_dim(ctx.int(self.name, dim_id, "dim"), len(x.dims), self.error)
        self._row_words(x.dims, self.error, itemsize=_gpu_itemsize(x.dtype))
        return x, out

    def _row_words(self, dims, err, itemsize) -> int:
        # The kernel moves 32-bit words: a row (the dims after `dim`) must be whole words.
        row_bytes = numel(dims[self.dim + 1:]) * itemsize
        if row_bytes % 4:
            raise err(f"rows of {row_bytes} bytes (dims {list(dims)}) are not whole 32-bit words")
        return row_bytes // 4

    def build(self, g):
        self.copy = StridedRowCopy(g, g.tensor(self.x), g.tensor(self.out), self.name)

    def _run(self, g, start, step, rows_out, out_dims):
        x = g.tensor(self.x)
        bound = g.tensor(self.out).max_dims
        if any(d > m for d, m in zip(out_dims, bound)):
            raise self.step_error(f"output dims {list(out_dims)} exceed the out tensor's bounds {list(bound)}")
        row_words = self._row_words(x.dims, self.step_error, x.itemsize)
        self.copy.set(g, numel(x.dims[:self.dim]), x.dims[self.dim], row_words, start, step, rows_out)
        g.set_dims(self.out, out_dims)


@register("aten.slice_copy.Tensor")
class SliceCopy(_RowCopyOp):
    def validate(self, ctx):
        self.expect_args(6)
        self.x, dim_id, start_id, end_id, step_id, self.out = self.args
        x, out = self._common(ctx, dim_id)
        self.start = None if ctx.is_null(start_id) else ctx.int_or_symint(self.name, start_id, "start")
        self.end = None if ctx.is_null(end_id) else ctx.int_or_symint(self.name, end_id, "end")
        self.step = 1 if ctx.is_null(step_id) else ctx.int(self.name, step_id, "step")
        if self.step < 1:
            raise self.error(f"step must be positive, got {self.step}")
        want = list(x.dims)
        if len(out.dims) != len(want) or any(o != w for i, (o, w) in enumerate(zip(out.dims, want)) if i != self.dim):
            want[self.dim] = "n"
            raise self.error(f"out has dims {list(out.dims)}, expected {want}")
        if all(b is None or b[0] == "int" for b in (self.start, self.end)):
            _, n = slice_range(x.dims[self.dim], *(None if b is None else b[1] for b in (self.start, self.end)),
                               self.step)
            if out.dims[self.dim] < n:
                raise self.error(f"out dim {self.dim} is {out.dims[self.dim]}, the slice keeps {n} rows")
        self.triggers = frozenset([self.x] + [b[1] for b in (self.start, self.end) if b and b[0] == "symint"])

    def configure(self, g):
        dims = g.tensor(self.x).dims
        start = None if self.start is None else g.live_int(self.start)
        end = None if self.end is None else g.live_int(self.end)
        s, n = slice_range(dims[self.dim], start, end, self.step)
        out_dims = dims[:self.dim] + (n,) + dims[self.dim + 1:]
        self._run(g, s, self.step, n, out_dims)


@register("aten.select_copy.int")
class SelectCopy(_RowCopyOp):
    def validate(self, ctx):
        self.expect_args(4)
        self.x, dim_id, index_id, self.out = self.args
        x, out = self._common(ctx, dim_id)
        self.index = ctx.int_or_symint(self.name, index_id, "index")
        want = x.dims[:self.dim] + x.dims[self.dim + 1:]
        if tuple(out.dims) != tuple(want):
            raise self.error(f"out has dims {list(out.dims)}, expected {list(want)}")
        if self.index[0] == "int":
            self._wrap(self.index[1], x.dims[self.dim], self.error)
        self.triggers = frozenset([self.x] + ([self.index[1]] if self.index[0] == "symint" else []))

    def _wrap(self, i, size, err) -> int:
        if not -size <= i < size:
            raise err(f"index {i} out of range for dim {self.dim} of size {size}")
        return i % size

    def configure(self, g):
        dims = g.tensor(self.x).dims
        i = self._wrap(g.live_int(self.index), dims[self.dim], self.step_error)
        self._run(g, i, 1, 1, dims[:self.dim] + dims[self.dim + 1:])
