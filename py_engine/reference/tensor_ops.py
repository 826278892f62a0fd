"""Shape and indexing ops with aten semantics: view_copy, slice_copy, select_copy,
select_as_symint, embedding. Every result is a fresh array (the *_copy ops never alias)."""
from __future__ import annotations

import numpy as np

from ._util import check_int, normalize_dim


def view_copy(x, sizes) -> np.ndarray:
    """aten.view_copy: reshape to `sizes` (at most one -1, inferred)."""
    x = np.asarray(x)
    sizes = [check_int("view_copy", "size", s) for s in sizes]
    if sizes.count(-1) > 1:
        raise ValueError(f"view_copy: only one dimension can be -1, got {sizes}")
    if any(s < -1 for s in sizes):
        raise ValueError(f"view_copy: invalid size in {sizes}")
    known = 1
    for s in sizes:
        if s != -1:
            known *= s
    if -1 in sizes:
        if known == 0 or x.size % known != 0:
            raise ValueError(f"view_copy: shape {sizes} is invalid for input of size {x.size}")
        sizes[sizes.index(-1)] = x.size // known
    elif known != x.size:
        raise ValueError(f"view_copy: shape {sizes} is invalid for input of size {x.size}")
    return np.array(x.reshape(sizes), copy=True)


def slice_copy(x, dim=0, start=None, end=None, step=1) -> np.ndarray:
    """aten.slice_copy.Tensor: start/end may be None or negative (wrapped once) and are
    clamped to [0, size]; an empty range gives an empty dim; step must be positive."""
    x = np.asarray(x)
    d = normalize_dim("slice_copy", dim, x.ndim)
    step = check_int("slice_copy", "step", step)
    if step <= 0:
        raise ValueError(f"slice_copy: step must be positive, got {step}")
    size = x.shape[d]
    s = 0 if start is None else check_int("slice_copy", "start", start)
    e = size if end is None else check_int("slice_copy", "end", end)
    if s < 0:
        s += size
    if e < 0:
        e += size
    s = min(max(s, 0), size)
    e = min(max(e, s), size)
    index = [slice(None)] * x.ndim
    index[d] = slice(s, e, step)
    return np.array(x[tuple(index)], copy=True)


def select_copy(x, dim, index) -> np.ndarray:
    """aten.select_copy.int: drop `dim`, keeping row `index` (negative counts from the end)."""
    x = np.asarray(x)
    d = normalize_dim("select_copy", dim, x.ndim)
    i = check_int("select_copy", "index", index)
    size = x.shape[d]
    if not -size <= i < size:
        raise IndexError(f"select_copy: index {i} out of range for dim {d} of size {size}")
    return np.array(np.take(x, i % size, axis=d), copy=True)


def select_as_symint(x, dim, index) -> int:
    """et_vk.select_as_symint: the scalar x.select(dim, index) as a Python int (the tensor is
    expected to have one element left after the select, e.g. input_pos of shape [1])."""
    row = select_copy(x, dim, index)
    if row.size != 1:
        raise ValueError(
            f"select_as_symint: selection has {row.size} elements, expected exactly 1"
        )
    return int(row.reshape(()))


def embedding(weight, indices) -> np.ndarray:
    """aten.embedding: rows of weight[V, E] gathered by integer indices (any shape)."""
    weight = np.asarray(weight)
    indices = np.asarray(indices)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-d [V, E], got shape {tuple(weight.shape)}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"embedding: indices must be integers, got {indices.dtype}")
    check_indices("embedding", indices, weight.shape[0])
    return np.array(weight[indices], copy=True)


def check_indices(op: str, indices: np.ndarray, vocab: int) -> None:
    if indices.size and (indices.min() < 0 or indices.max() >= vocab):
        bad = indices[(indices < 0) | (indices >= vocab)].ravel()[0]
        raise IndexError(f"{op}: index {int(bad)} out of range for {vocab} rows")
