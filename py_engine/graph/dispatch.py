"""Workgroup arithmetic shared by every op: clamped workgroup sizes and 2D folding."""
from __future__ import annotations

from ..gpu.base import Limits


def workgroup_size(limits: Limits, wanted: int = 256) -> int:
    """The 1D workgroup size to use: `wanted` clamped to the device's limits."""
    return max(1, min(wanted, limits.max_invocations_per_workgroup, limits.max_workgroup_size_x))


def fold(total: int, limits: Limits) -> tuple:
    """Spread `total` workgroups over (x, y, 1) so no dimension exceeds the device limit.

    Shaders recover the linear workgroup index as `wid.y * nwg.x + wid.x` and bounds-check
    it, because x * y may exceed total by less than one row.
    """
    if total < 0:
        raise ValueError(f"negative workgroup count {total}")
    cap = limits.max_workgroups_per_dim
    if total <= cap:
        return (total, 1, 1)
    y = -(-total // cap)
    x = -(-total // y)
    if y > cap:
        raise ValueError(f"{total} workgroups exceed the device's 2D dispatch limit ({cap} x {cap})")
    return (x, y, 1)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
