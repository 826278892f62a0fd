"""The Program: a graph as plain data (ExecuTorch's VkGraph), with no GPU and no js.

Both front doors (.pte and GGUF) produce a Program; `Graph.build(program, backend)` turns
it into GPU objects. Value ids index `Program.values`; every op call lists its argument ids
with the output id(s) last, exactly as ExecuTorch serializes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

# dtype names used everywhere in the engine, with their numpy equivalents.
DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "int32": np.int32,
    "int64": np.int64,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


class ProgramError(ValueError):
    """A Program that is malformed: bad ids, wrong value kinds, missing constants."""


class LazyBytes:
    """A constant's bytes made each time they are read (`make()`: bytes-like), with their length
    known up front: a fused weight's rows joined or a transcoded GGUF weight, made once when the
    graph uploads it, so a model's weights are not all held in a second form while it loads."""

    __slots__ = ("nbytes", "make")

    def __init__(self, nbytes: int, make):
        self.nbytes = int(nbytes)
        self.make = make

    def __len__(self) -> int:
        return self.nbytes


@dataclass(frozen=True)
class Null:
    pass


@dataclass(frozen=True)
class Int:
    value: int


@dataclass(frozen=True)
class Double:
    value: float


@dataclass(frozen=True)
class Bool:
    value: bool


@dataclass(frozen=True)
class String:
    value: str


@dataclass(frozen=True)
class IntList:
    values: tuple


@dataclass(frozen=True)
class DoubleList:
    values: tuple


@dataclass(frozen=True)
class BoolList:
    values: tuple


@dataclass(frozen=True)
class ValueList:
    """A list of value ids (e.g. the two outputs of apply_rotary_emb)."""
    ids: tuple


@dataclass(frozen=True)
class SymInt:
    """A live integer; `value` is its initial value."""
    value: int = 0


@dataclass(frozen=True)
class Tensor:
    """dims are upper bounds; the live dims are tracked at run time.

    constant_id >= 0 names an entry of Program.constants holding the tensor's bytes.
    """
    dtype: str
    dims: tuple
    constant_id: int = -1

    @property
    def numel(self) -> int:
        n = 1
        for d in self.dims:
            n *= int(d)
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * np.dtype(DTYPES[self.dtype]).itemsize


Value = Union[Null, Int, Double, Bool, String, IntList, DoubleList, BoolList, ValueList, SymInt, Tensor]


@dataclass(frozen=True)
class OpCall:
    name: str
    args: tuple


@dataclass
class Program:
    values: list = field(default_factory=list)
    chain: list = field(default_factory=list)
    input_ids: list = field(default_factory=list)
    output_ids: list = field(default_factory=list)
    constants: list = field(default_factory=list)  # bytes-like, one per constant id

    # -- building helpers (used by the GGUF llama builder and by tests) --
    def add(self, value) -> int:
        self.values.append(value)
        return len(self.values) - 1

    def tensor(self, dtype: str, dims: Sequence[int], data=None) -> int:
        """Add a tensor value; with `data`, a constant holding those bytes."""
        if dtype not in DTYPES:
            raise ProgramError(f"unknown dtype {dtype!r}")
        cid = -1
        if data is not None:
            cid = self.constant(data)
        return self.add(Tensor(dtype, tuple(int(d) for d in dims), cid))

    def constant(self, data) -> int:
        if isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data).tobytes()
        self.constants.append(data if isinstance(data, LazyBytes) else memoryview(data).cast("B"))
        return len(self.constants) - 1

    def release_constants(self) -> None:
        """Drop every constant's bytes, once a graph holds them on the GPU (Engine.build): a loaded
        model then keeps no copy of its weights in Python's memory, which in the browser is
        Pyodide's 4 GiB, shared with the next model's load. constant_bytes raises after it."""
        self.constants = [None] * len(self.constants)

    def call(self, name: str, *args: int) -> None:
        self.chain.append(OpCall(name, tuple(int(a) for a in args)))

    # -- typed access with clear errors --
    def value(self, vid: int):
        if not isinstance(vid, int) or not 0 <= vid < len(self.values):
            raise ProgramError(f"value id {vid} out of range (program has {len(self.values)} values)")
        return self.values[vid]

    def _held_constant(self, tensor_id: int):
        """(tensor, what program.constants holds for it): its bytes or a LazyBytes."""
        t = self.value(tensor_id)
        if not isinstance(t, Tensor) or t.constant_id < 0:
            raise ProgramError(f"value {tensor_id} is not a constant tensor")
        if not 0 <= t.constant_id < len(self.constants):
            raise ProgramError(
                f"tensor {tensor_id}: constant id {t.constant_id} out of range "
                f"({len(self.constants)} constants)")
        held = self.constants[t.constant_id]
        if held is None:
            raise ProgramError(f"tensor {tensor_id}: constant {t.constant_id} was released once its graph held it "
                               f"on the GPU (Program.release_constants); build from a fresh program")
        return t, held

    def _check_size(self, tensor_id: int, t: "Tensor", n: int) -> None:
        if n < t.nbytes:
            raise ProgramError(
                f"tensor {tensor_id}: constant {t.constant_id} holds {n} bytes, "
                f"dims {list(t.dims)} {t.dtype} need {t.nbytes}")

    def check_constant(self, tensor_id: int) -> None:
        """constant_bytes' checks, without making a LazyBytes' bytes."""
        t, held = self._held_constant(tensor_id)
        self._check_size(tensor_id, t, held.nbytes if isinstance(held, LazyBytes) else memoryview(held).nbytes)

    def constant_bytes(self, tensor_id: int) -> memoryview:
        t, held = self._held_constant(tensor_id)
        if isinstance(held, LazyBytes):
            data = memoryview(held.make()).cast("B")
            if len(data) != held.nbytes:
                raise ProgramError(f"tensor {tensor_id}: constant {t.constant_id} was made with {len(data)} bytes, "
                                   f"{held.nbytes} were declared")
        else:
            data = memoryview(held).cast("B")
        self._check_size(tensor_id, t, len(data))
        return data[: t.nbytes]
