"""Typed, validating access to a Program's values for op builders (no GPU objects yet)."""
from __future__ import annotations

from ..program import (Bool, BoolList, Double, DoubleList, Int, IntList, Null, Program, ProgramError,
                       String, SymInt, Tensor, ValueList)
from ..gpu.base import Limits
from .errors import OpError


class BuildContext:
    """What an op may look at while validating: the program, the device limits and features."""

    def __init__(self, program: Program, limits: Limits, features: frozenset):
        self.program = program
        self.limits = limits
        self.features = features

    def _get(self, op: str, vid: int):
        try:
            return self.program.value(vid)
        except ProgramError as e:
            raise OpError(f"{op}: {e}") from None

    def tensor(self, op: str, vid: int, what: str, dtypes=None, rank=None) -> Tensor:
        v = self._get(op, vid)
        if not isinstance(v, Tensor):
            raise OpError(f"{op}: {what} (value {vid}) must be a tensor, got {type(v).__name__}")
        if dtypes is not None and v.dtype not in dtypes:
            raise OpError(f"{op}: {what} has dtype {v.dtype}; supported: {', '.join(dtypes)}")
        if rank is not None and len(v.dims) not in ((rank,) if isinstance(rank, int) else rank):
            raise OpError(f"{op}: {what} must have rank {rank}, got dims {list(v.dims)}")
        if v.constant_id >= 0:
            try:
                self.program.check_constant(vid)
            except ProgramError as e:
                raise OpError(f"{op}: {what}: {e}") from None
        return v

    def constant(self, op: str, vid: int, what: str) -> memoryview:
        t = self.tensor(op, vid, what)
        if t.constant_id < 0:
            raise OpError(f"{op}: {what} (value {vid}) must be a constant tensor")
        return self.program.constant_bytes(vid)

    def is_null(self, vid: int) -> bool:
        return isinstance(self.program.value(vid), Null)

    def int(self, op: str, vid: int, what: str) -> int:
        v = self._get(op, vid)
        if isinstance(v, Int):
            return int(v.value)
        raise OpError(f"{op}: {what} (value {vid}) must be an Int, got {type(v).__name__}")

    def int_or_symint(self, op: str, vid: int, what: str):
        """('int', value) for a constant, ('symint', vid) for a live one."""
        v = self._get(op, vid)
        if isinstance(v, Int):
            return ("int", int(v.value))
        if isinstance(v, SymInt):
            return ("symint", vid)
        raise OpError(f"{op}: {what} (value {vid}) must be an Int or SymInt, got {type(v).__name__}")

    def double(self, op: str, vid: int, what: str, default=None):
        v = self._get(op, vid)
        # ExecuTorch de-duplicates 0 and 0.0, so an Int may stand where a float is expected.
        if isinstance(v, (Double, Int)):
            return float(v.value)
        if isinstance(v, Null) and default is not None:
            return default
        raise OpError(f"{op}: {what} (value {vid}) must be a Double, got {type(v).__name__}")

    def bool(self, op: str, vid: int, what: str, default=None) -> bool:
        v = self._get(op, vid)
        if isinstance(v, Bool):
            return bool(v.value)
        if isinstance(v, Int):
            return bool(v.value)
        if isinstance(v, Null) and default is not None:
            return default
        raise OpError(f"{op}: {what} (value {vid}) must be a Bool, got {type(v).__name__}")

    def int_list(self, op: str, vid: int, what: str) -> tuple:
        v = self._get(op, vid)
        if isinstance(v, IntList):
            return tuple(int(x) for x in v.values)
        raise OpError(f"{op}: {what} (value {vid}) must be an IntList, got {type(v).__name__}")

    def value_list(self, op: str, vid: int, what: str, length=None) -> tuple:
        v = self._get(op, vid)
        if not isinstance(v, ValueList):
            raise OpError(f"{op}: {what} (value {vid}) must be a ValueList, got {type(v).__name__}")
        if length is not None and len(v.ids) != length:
            raise OpError(f"{op}: {what} must list {length} values, got {len(v.ids)}")
        for i in v.ids:
            self._get(op, i)
        return tuple(v.ids)

    def kind(self, vid: int) -> type:
        return type(self.program.value(vid))


__all__ = ["BuildContext", "Bool", "BoolList", "Double", "DoubleList", "Int", "IntList", "Null",
           "String", "SymInt", "Tensor", "ValueList"]
