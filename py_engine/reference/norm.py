"""et_vk.rms_norm / aten.rms_norm over the last dim."""
from __future__ import annotations

import numpy as np

from ._util import as_f64, to_f32


def rms_norm(x, weight, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2, last dim) + eps) * weight, weight of shape [last dim]."""
    x64, w64 = as_f64(x), as_f64(weight)
    if x64.ndim == 0:
        raise ValueError("rms_norm: input must have at least one dim")
    width = x64.shape[-1]
    if width == 0:
        raise ValueError("rms_norm: zero row width")
    if w64.shape != (width,):
        raise ValueError(
            f"rms_norm: weight shape {tuple(w64.shape)} does not match row width {width}"
        )
    rstd = 1.0 / np.sqrt(np.mean(x64 * x64, axis=-1, keepdims=True) + float(eps))
    return to_f32(x64 * rstd * w64)
