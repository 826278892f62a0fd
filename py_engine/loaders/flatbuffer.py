"""A small, bounds-checked FlatBuffers reader (tables, scalars, strings, vectors, unions).

The `flatbuffers` runtime package is not available inside Pyodide, and the .pte reader only
needs read access to a few schemas, so this module reads the wire format directly:

- the buffer starts with a uint32 offset to the root table (optionally followed by a
  4-byte file identifier);
- a table starts with an int32 `soffset`; its vtable lives at `table - soffset` and holds
  uint16 vtable size, uint16 table size, then one uint16 offset per field (0 = absent);
- reference fields (tables, strings, vectors) hold a uint32 offset relative to the field;
- a vector/string is a uint32 length followed by the elements (strings add a NUL);
- a union field `u` takes two field slots: `u_type` (uint8) then `u` (the table offset).

Every read is checked against the buffer end before it happens, and every vector length is
checked against the bytes that remain before anything is allocated, so a corrupt or
truncated file raises `FlatbufferError` naming the byte offset instead of crashing.
"""
from __future__ import annotations

import struct

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")

# scalar kind -> (struct format char, size in bytes)
_SCALARS = {
    "bool": ("?", 1),
    "int8": ("b", 1),
    "uint8": ("B", 1),
    "int16": ("h", 2),
    "uint16": ("H", 2),
    "int32": ("i", 4),
    "uint32": ("I", 4),
    "int64": ("q", 8),
    "uint64": ("Q", 8),
    "float32": ("f", 4),
    "float64": ("d", 8),
}


class FlatbufferError(ValueError):
    """The bytes are not a well-formed flatbuffer of the expected shape."""


class Buffer:
    """Read access to one flatbuffer held in a bytes-like object (no copy is made)."""

    def __init__(self, data, name: str = "flatbuffer"):
        self.data = memoryview(data).cast("B")
        self.name = name
        self.size = len(self.data)

    # -- raw reads --
    def check(self, pos: int, nbytes: int, what: str) -> None:
        if pos < 0 or nbytes < 0 or pos + nbytes > self.size:
            raise FlatbufferError(
                f"{self.name}: {what} at byte {pos} (+{nbytes}) is past the end "
                f"({self.size} bytes)")

    def _read(self, st: struct.Struct, pos: int, what: str):
        self.check(pos, st.size, what)
        return st.unpack_from(self.data, pos)[0]

    def u32(self, pos: int, what: str = "uint32") -> int:
        return self._read(_U32, pos, what)

    def identifier(self) -> bytes:
        self.check(0, 8, "file identifier")
        return bytes(self.data[4:8])

    def root(self, what: str = "root table") -> "Table":
        offset = self.u32(0, "root offset")
        return Table(self, offset, what)


class Table:
    """One table; fields are addressed by their index in the schema (0-based)."""

    __slots__ = ("buf", "pos", "what", "_vtable", "_vsize")

    def __init__(self, buf: Buffer, pos: int, what: str):
        self.buf = buf
        self.pos = pos
        self.what = what
        soffset = buf._read(_I32, pos, f"{what} (table header)")
        vtable = pos - soffset
        vsize = buf._read(_U16, vtable, f"{what} (vtable)")
        if vsize < 4 or vsize % 2:
            raise FlatbufferError(f"{buf.name}: {what}: bad vtable size {vsize} at byte {vtable}")
        buf.check(vtable, vsize, f"{what} (vtable)")
        self._vtable = vtable
        self._vsize = vsize

    def _field_pos(self, index: int):
        slot = 4 + 2 * index
        if slot + 2 > self._vsize:
            return None  # field added after this buffer was written: absent
        off = _U16.unpack_from(self.buf.data, self._vtable + slot)[0]
        return None if off == 0 else self.pos + off

    def has(self, index: int) -> bool:
        return self._field_pos(index) is not None

    def scalar(self, index: int, kind: str, default=0):
        pos = self._field_pos(index)
        if pos is None:
            return default
        fmt, size = _SCALARS[kind]
        self.buf.check(pos, size, f"{self.what} field {index}")
        return struct.unpack_from("<" + fmt, self.buf.data, pos)[0]

    def _target(self, index: int, what: str):
        pos = self._field_pos(index)
        if pos is None:
            return None
        return pos + self.buf.u32(pos, what)

    def table(self, index: int, what: str):
        """A sub-table, or None when absent."""
        target = self._target(index, what)
        return None if target is None else Table(self.buf, target, what)

    def string(self, index: int, what: str, default=None):
        target = self._target(index, what)
        if target is None:
            return default
        return _read_string(self.buf, target, what)

    def vector(self, index: int, what: str):
        """A Vector view, or an empty one when the field is absent."""
        target = self._target(index, what)
        if target is None:
            return Vector(self.buf, -1, 0, what)
        length = self.buf.u32(target, f"{what} (length)")
        return Vector(self.buf, target + 4, length, what)

    def union(self, index: int, what: str):
        """(type tag, Table or None) for a union whose `_type` slot is `index`."""
        tag = self.scalar(index, "uint8", 0)
        if tag == 0:
            return 0, None
        return tag, self.table(index + 1, what)


class Vector:
    """A flatbuffer vector: elements are read on demand, after one length check."""

    __slots__ = ("buf", "start", "length", "what")

    def __init__(self, buf: Buffer, start: int, length: int, what: str):
        self.buf = buf
        self.start = start
        self.length = length
        self.what = what

    def __len__(self) -> int:
        return self.length

    def _check(self, elem_size: int) -> None:
        if self.length:
            self.buf.check(self.start, self.length * elem_size,
                           f"{self.what} ({self.length} elements of {elem_size} bytes)")

    def scalars(self, kind: str) -> tuple:
        fmt, size = _SCALARS[kind]
        self._check(size)
        if not self.length:
            return ()
        return struct.unpack_from(f"<{self.length}{fmt}", self.buf.data, self.start)

    def bytes_view(self) -> memoryview:
        """A [ubyte] vector as a zero-copy memoryview."""
        self._check(1)
        if not self.length:
            return memoryview(b"")
        return self.buf.data[self.start:self.start + self.length]

    def tables(self) -> list:
        self._check(4)
        out = []
        for i in range(self.length):
            elem = self.start + 4 * i
            out.append(Table(self.buf, elem + self.buf.u32(elem), f"{self.what}[{i}]"))
        return out

    def strings(self) -> list:
        self._check(4)
        out = []
        for i in range(self.length):
            elem = self.start + 4 * i
            out.append(_read_string(self.buf, elem + self.buf.u32(elem), f"{self.what}[{i}]"))
        return out


def _read_string(buf: Buffer, pos: int, what: str) -> str:
    length = buf.u32(pos, f"{what} (string length)")
    buf.check(pos + 4, length, f"{what} (string of {length} bytes)")
    raw = bytes(buf.data[pos + 4:pos + 4 + length])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FlatbufferError(f"{buf.name}: {what} at byte {pos} is not UTF-8") from exc
