"""Elementwise ops (aten.add/mul/sigmoid, silu) with numpy broadcasting.

Float results are float32, computed in float64. Integer-only inputs stay integer (aten keeps
the integer dtype), which is what index arithmetic in exported graphs relies on.
"""
from __future__ import annotations

import numpy as np

from ._util import as_f64, is_float, to_f32


def _broadcast_shape(op: str, a: np.ndarray, b: np.ndarray) -> tuple:
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast"
        ) from None


def add(a, b, alpha=1) -> np.ndarray:
    """aten.add.Tensor: a + alpha * b."""
    a, b = np.asarray(a), np.asarray(b)
    _broadcast_shape("add", a, b)
    if not is_float(a) and not is_float(b) and isinstance(alpha, (int, np.integer)):
        return np.asarray(a + alpha * b)
    return to_f32(as_f64(a) + float(alpha) * as_f64(b))


def mul(a, b) -> np.ndarray:
    """aten.mul.Tensor: a * b."""
    a, b = np.asarray(a), np.asarray(b)
    _broadcast_shape("mul", a, b)
    if not is_float(a) and not is_float(b):
        return np.asarray(a * b)
    return to_f32(as_f64(a) * as_f64(b))


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    # exp of -|x| never overflows; pick the algebraically equal form per sign.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid(x) -> np.ndarray:
    """aten.sigmoid: 1 / (1 + exp(-x))."""
    return to_f32(_sigmoid64(as_f64(x)))


def silu(x) -> np.ndarray:
    """aten.silu: x * sigmoid(x)."""
    x64 = as_f64(x)
    return to_f32(x64 * _sigmoid64(x64))
