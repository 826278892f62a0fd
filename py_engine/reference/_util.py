"""Small helpers shared by the reference ops: dtype handling and argument checks."""
from __future__ import annotations

import numpy as np

F32 = np.float32
F64 = np.float64


def as_f64(x) -> np.ndarray:
    """The array as float64, so reference math is more accurate than the f32 kernels it checks."""
    return np.asarray(x, dtype=F64)


def to_f32(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=F32))


def is_float(x) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def check_int(op: str, name: str, value) -> int:
    """A Python/numpy integer (not bool, not float), returned as int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an integer, got {type(value).__name__}")
    return int(value)


def normalize_dim(op: str, dim, ndim: int) -> int:
    dim = check_int(op, "dim", dim)
    if ndim == 0:
        raise ValueError(f"{op}: cannot index a 0-d tensor along dim {dim}")
    if not -ndim <= dim < ndim:
        raise ValueError(f"{op}: dim {dim} out of range for a {ndim}-d tensor")
    return dim % ndim


def check_ndim(op: str, name: str, x: np.ndarray, ndim: int) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-d, got shape {tuple(x.shape)}")
