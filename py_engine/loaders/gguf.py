"""GGUF (v2, v3) reader and writer over bytes: no file handles, so it runs in Pyodide.

Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv (key, type, value)
entries, then n_tensors tensor infos (name, u32 n_dims, u64 dims[n_dims], u32 ggml type,
u64 offset), then the data section, which starts at the next multiple of
`general.alignment` (default 32). Tensor offsets are relative to the data section.

Every count and length is checked against the bytes that remain before anything is
allocated, so a corrupt 100-byte file fails fast with a GGUFError instead of allocating GBs.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from .gguf_transcode import TRANSCODED_BLOCKS

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4           # GGML_MAX_DIMS
MAX_ARRAY_DEPTH = 8    # nested arrays deeper than this are treated as corruption


class GGUFError(ValueError):
    """A GGUF file that is malformed, truncated, or uses something we do not support."""


# --- value types -------------------------------------------------------------------------
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, \
    T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = range(13)

# scalar value type -> (struct format, numpy dtype, name)
_SCALARS = {
    T_UINT8: ("<B", "<u1", "uint8"),
    T_INT8: ("<b", "<i1", "int8"),
    T_UINT16: ("<H", "<u2", "uint16"),
    T_INT16: ("<h", "<i2", "int16"),
    T_UINT32: ("<I", "<u4", "uint32"),
    T_INT32: ("<i", "<i4", "int32"),
    T_FLOAT32: ("<f", "<f4", "float32"),
    T_BOOL: ("<B", "<u1", "bool"),
    T_UINT64: ("<Q", "<u8", "uint64"),
    T_INT64: ("<q", "<i8", "int64"),
    T_FLOAT64: ("<d", "<f8", "float64"),
}
VALUE_TYPE_NAMES = {t: v[2] for t, v in _SCALARS.items()} | {T_STRING: "string", T_ARRAY: "array"}

# --- ggml tensor types ----------------------------------------------------------------------
# Names of every ggml type id so errors can say what an unsupported tensor is.
GGML_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
    30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0 = 0, 1, 2, 3, 8
# supported type -> (elements per block, bytes per block)
GGML_BLOCKS = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_Q4_0: (32, 18), GGML_Q4_1: (32, 20),
               GGML_Q8_0: (32, 34)}
GGML_TYPE_IDS = {GGML_TYPE_NAMES[t]: t for t in GGML_BLOCKS}
# Every type a file may hold: the kernels' own, and those transcoded into them at load
FILE_BLOCKS = {**GGML_BLOCKS, **TRANSCODED_BLOCKS}
FILE_TYPE_NAMES = [GGML_TYPE_NAMES[t] for t in FILE_BLOCKS]


def ggml_type_name(t: int) -> str:
    return GGML_TYPE_NAMES.get(t, f"unknown({t})")


def tensor_nbytes(ggml_type: int, dims, name: str = "?") -> int:
    """Bytes of a tensor with ggml `dims` (ne0 first). Raises GGUFError for bad shapes/types."""
    if ggml_type not in FILE_BLOCKS:
        raise GGUFError(f"gguf: tensor '{name}' has unsupported type {ggml_type_name(ggml_type)} "
                        f"(supported: {', '.join(FILE_TYPE_NAMES)})")
    blk, size = FILE_BLOCKS[ggml_type]
    ne0 = dims[0] if dims else 1
    if ne0 % blk:
        raise GGUFError(f"gguf: tensor '{name}' of type {ggml_type_name(ggml_type)} has row length "
                        f"{ne0}, not a multiple of its block size {blk}")
    n = 1
    for d in dims:
        n *= d
    return n // blk * size


class FileRange:
    """A tensor's bytes still in a file held elsewhere (py_engine.gpu.wasm_heap.JsFile):
    `read()` copies them in, each time it is called."""

    __slots__ = ("_read", "start", "nbytes")

    def __init__(self, read, start: int, nbytes: int):
        self._read, self.start, self.nbytes = read, start, nbytes

    def __len__(self) -> int:
        return self.nbytes

    def read(self) -> memoryview:
        return self._read(self.start, self.nbytes)


@dataclass
class GGUFTensor:
    name: str
    dims: tuple          # ggml order: ne0 (contiguous) first
    ggml_type: int
    offset: int          # relative to the data section
    data: memoryview     # exactly this tensor's bytes

    @property
    def type_name(self) -> str:
        return ggml_type_name(self.ggml_type)

    @property
    def shape(self) -> tuple:
        """numpy order: the reverse of ggml dims."""
        return tuple(reversed(self.dims))

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return len(self.data)

    def raw(self):
        """The tensor's bytes (read in now where `data` is a FileRange)."""
        return self.data.read() if isinstance(self.data, FileRange) else self.data

    def to_numpy(self) -> np.ndarray:
        """Dequantized float32 copy (reference path; the engine uploads `.data` as is)."""
        from py_engine.reference.gguf_quant import dequantize  # only on request
        return dequantize(self.ggml_type, self.data, self.shape)


@dataclass
class GGUFFile:
    version: int
    metadata: dict
    metadata_types: dict     # key -> value type id (arrays: (T_ARRAY, element type))
    tensors: dict            # name -> GGUFTensor, in file order
    alignment: int
    data_offset: int         # absolute start of the data section

    def require(self, key: str, kind: type | tuple | None = None) -> Any:
        """metadata[key], or a GGUFError naming the missing/ill-typed key."""
        if key not in self.metadata:
            raise GGUFError(f"gguf: required metadata key '{key}' is missing")
        value = self.metadata[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # an integer where a float is expected is fine
        bad_bool = isinstance(value, bool) and kind in (int, float)
        if kind is not None and (bad_bool or not isinstance(value, kind)):
            raise GGUFError(f"gguf: metadata key '{key}' has type {type(value).__name__}, "
                            f"expected {getattr(kind, '__name__', kind)}")
        return value

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    def tensor(self, name: str) -> GGUFTensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise GGUFError(f"gguf: required tensor '{name}' is missing") from None

    @property
    def architecture(self) -> str:
        return self.require("general.architecture", str)

    def typed_metadata(self) -> dict:
        """The metadata as GGUFValues of the file's own types: write_gguf writes them back as read."""
        return {key: GGUFValue(value, T_ARRAY, t[1]) if isinstance(t := self.metadata_types[key], tuple)
                else GGUFValue(value, t) for key, value in self.metadata.items()}


# --- reader ---------------------------------------------------------------------------------
class _HeadShort(Exception):
    """The header runs past the bytes read so far (read_gguf_from reads more)."""


class _Cursor:
    """Bounds-checked little-endian reads over a memoryview."""

    __slots__ = ("buf", "pos", "end", "size")

    def __init__(self, buf: memoryview, size: int | None = None):
        self.buf, self.pos, self.end = buf, 0, len(buf)
        self.size = len(buf) if size is None else size  # the file's; buf may be its first bytes

    def remaining(self) -> int:
        """Bytes left in the file (past `buf` where it holds only the file's first bytes)."""
        return self.size - self.pos

    def need(self, n: int, what: str) -> None:
        if n > self.end - self.pos:
            if self.end < self.size:
                raise _HeadShort()
            raise GGUFError(f"gguf: file truncated while reading {what} at byte {self.pos} "
                            f"(need {n} bytes, {self.end - self.pos} left)")

    def scalar(self, fmt: str, size: int, what: str):
        self.need(size, what)
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return v

    def u32(self, what: str) -> int:
        return self.scalar("<I", 4, what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", 8, what)

    def string(self, what: str) -> str:
        n = self.u64(f"length of {what}")
        self.need(n, what)  # guards absurd lengths before slicing
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GGUFError(f"gguf: {what} is not valid UTF-8 ({e})") from None

    def count(self, min_item_size: int, what: str, n: int) -> int:
        """Reject counts that could not possibly fit in the remaining bytes."""
        if n * min_item_size > self.remaining():
            raise GGUFError(f"gguf: {what} count {n} cannot fit in the {self.remaining()} bytes left "
                            f"(file truncated or corrupt)")
        return n


# smallest encoded size of one element of each value type, for count guards
_MIN_SIZE = {t: struct.calcsize(f) for t, (f, _, _) in _SCALARS.items()} | {T_STRING: 8, T_ARRAY: 12}


def _read_value(cur: _Cursor, vtype: int, key: str, depth: int = 0):
    if vtype in _SCALARS:
        fmt = _SCALARS[vtype][0]
        v = cur.scalar(fmt, struct.calcsize(fmt), f"value of '{key}'")
        return bool(v) if vtype == T_BOOL else v
    if vtype == T_STRING:
        return cur.string(f"string value of '{key}'")
    if vtype == T_ARRAY:
        if depth >= MAX_ARRAY_DEPTH:
            raise GGUFError(f"gguf: metadata key '{key}' nests arrays deeper than {MAX_ARRAY_DEPTH}")
        etype = cur.u32(f"array element type of '{key}'")
        n = cur.u64(f"array length of '{key}'")
        if etype not in _MIN_SIZE:
            raise GGUFError(f"gguf: metadata key '{key}' has array of unknown value type {etype}")
        cur.count(_MIN_SIZE[etype], f"array '{key}'", n)
        if etype in _SCALARS:  # numeric arrays in one numpy call: vocab-sized arrays stay fast
            dt = np.dtype(_SCALARS[etype][1])
            arr = np.frombuffer(cur.buf, dtype=dt, count=n, offset=cur.pos)
            cur.pos += n * dt.itemsize
            return arr.astype(bool).tolist() if etype == T_BOOL else arr.tolist()
        if etype == T_STRING:
            return _read_string_array(cur, n, key)
        return [_read_value(cur, etype, key, depth + 1) for _ in range(n)]
    raise GGUFError(f"gguf: metadata key '{key}' has unknown value type {vtype}")


def _read_string_array(cur: _Cursor, n: int, key: str) -> list:
    # Hot path (49k tokens + 49k merges): one loop with local names, bounds checked per item.
    buf, pos, end = cur.buf, cur.pos, cur.end
    unpack = struct.Struct("<Q").unpack_from
    out = []
    append = out.append
    for i in range(n):
        if pos + 8 > end:
            cur.pos = pos
            cur.need(8, f"length of item {i} of '{key}'")
        ln = unpack(buf, pos)[0]
        pos += 8
        if ln > end - pos:
            cur.pos = pos
            cur.need(ln, f"item {i} of '{key}'")
        try:
            append(str(buf[pos:pos + ln], "utf-8"))
        except UnicodeDecodeError as e:
            raise GGUFError(f"gguf: item {i} of '{key}' is not valid UTF-8 ({e})") from None
        pos += ln
    cur.pos = pos
    return out


def read_gguf(data) -> GGUFFile:
    """Parse a whole GGUF file held in memory (bytes, bytearray, memoryview, mmap)."""
    buf = memoryview(data)
    if buf.ndim != 1 or buf.itemsize != 1:
        buf = buf.cast("B")
    return _parse(buf, len(buf), lambda start, n: buf[start:start + n])


def read_gguf_from(size: int, read, head: int = 1 << 20) -> GGUFFile:
    """Parse a GGUF file of `size` bytes held elsewhere, `read(start, n)` copying a range in:
    the header is read (its first `head` bytes, more while it runs past them), the tensors'
    data stay where they are (FileRange: read when used)."""
    while True:
        n = min(head, size)
        try:
            return _parse(memoryview(read(0, n)).cast("B"), size, lambda start, nb: FileRange(read, start, nb))
        except _HeadShort:
            head *= 4


def _parse(buf: memoryview, size: int, tensor_data) -> GGUFFile:
    """The header in `buf` (the file's first bytes, or all of it; the file has `size`);
    tensor_data(start, nbytes) gives each tensor's data."""
    cur = _Cursor(buf, size)
    cur.need(4, "magic")
    magic = bytes(buf[:4])
    if magic != MAGIC:
        raise GGUFError(f"gguf: bad magic {magic!r}, expected {MAGIC!r} (not a GGUF file)")
    cur.pos = 4
    version = cur.u32("version")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFError(f"gguf: unsupported version {version} (supported: {SUPPORTED_VERSIONS})")
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    cur.count(8 + 4 + 1, "metadata", n_kv)     # key length + type + smallest value
    cur.count(8 + 4 + 4 + 8, "tensor", n_tensors)  # name length + n_dims + type + offset

    metadata: dict = {}
    types: dict = {}
    for i in range(n_kv):
        key = cur.string(f"key of metadata entry {i}")
        vtype = cur.u32(f"value type of '{key}'")
        start = cur.pos
        value = _read_value(cur, vtype, key)
        if key in metadata:
            raise GGUFError(f"gguf: duplicate metadata key '{key}'")
        metadata[key] = value
        types[key] = (T_ARRAY, struct.unpack_from("<I", buf, start)[0]) if vtype == T_ARRAY else vtype

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment <= 0 \
            or alignment & (alignment - 1):
        raise GGUFError(f"gguf: general.alignment must be a positive power of two, got {alignment!r}")

    infos = []
    seen = set()
    for i in range(n_tensors):
        name = cur.string(f"name of tensor {i}")
        n_dims = cur.u32(f"dimension count of tensor '{name}'")
        if n_dims > MAX_DIMS:
            raise GGUFError(f"gguf: tensor '{name}' has {n_dims} dims (max {MAX_DIMS})")
        cur.need(8 * n_dims, f"dims of tensor '{name}'")
        dims = struct.unpack_from(f"<{n_dims}Q", buf, cur.pos)
        cur.pos += 8 * n_dims
        ggml_type = cur.u32(f"type of tensor '{name}'")
        offset = cur.u64(f"offset of tensor '{name}'")
        if name in seen:
            raise GGUFError(f"gguf: duplicate tensor name '{name}'")
        seen.add(name)
        infos.append((name, dims, ggml_type, offset))

    data_offset = -(-cur.pos // alignment) * alignment
    if data_offset > size and n_tensors:
        raise GGUFError(f"gguf: file truncated before the data section (starts at {data_offset}, "
                        f"file has {size} bytes)")

    tensors = {}
    for name, dims, ggml_type, offset in infos:
        nbytes = tensor_nbytes(ggml_type, dims, name)  # raises for unsupported types
        if offset % alignment:
            raise GGUFError(f"gguf: tensor '{name}' offset {offset} is not a multiple of the "
                            f"alignment {alignment}")
        start = data_offset + offset
        if start + nbytes > size:
            raise GGUFError(f"gguf: tensor '{name}' offset past end of file (bytes {start}..{start + nbytes}, "
                            f"file has {size} bytes)")
        tensors[name] = GGUFTensor(name, tuple(dims), ggml_type, offset, tensor_data(start, nbytes))

    return GGUFFile(version, metadata, types, tensors, alignment, data_offset)


# --- writer ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GGUFValue:
    """A metadata value with an explicit GGUF type (arrays: vtype=T_ARRAY, elem_type set)."""
    value: Any
    vtype: int
    elem_type: int | None = None


@dataclass(frozen=True)
class TensorSpec:
    ggml_type: int
    dims: tuple      # ggml order (ne0 first)
    data: bytes


def tensor_from_array(array, ggml_type: int) -> TensorSpec:
    """Quantize/convert a float numpy array (numpy order) into a TensorSpec."""
    from py_engine.reference.gguf_quant import quantize
    arr = np.asarray(array, dtype=np.float32)
    return TensorSpec(ggml_type, tuple(reversed(arr.shape)), quantize(ggml_type, arr))


def _infer_type(v) -> int:
    if isinstance(v, bool):
        return T_BOOL
    if isinstance(v, int):
        if 0 <= v < 1 << 32:
            return T_UINT32
        return T_INT32 if -(1 << 31) <= v < 1 << 31 else T_INT64
    if isinstance(v, float):
        return T_FLOAT32
    if isinstance(v, str):
        return T_STRING
    if isinstance(v, (list, tuple, np.ndarray)):
        return T_ARRAY
    raise GGUFError(f"gguf writer: cannot infer a GGUF type for {type(v).__name__}")


def _infer_elem_type(items) -> int:
    if len(items) == 0:
        return T_INT32
    if all(isinstance(x, str) for x in items):
        return T_STRING
    if all(isinstance(x, (bool, np.bool_)) for x in items):
        return T_BOOL
    if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in items):
        return T_INT32  # llama.cpp writes token_type as int32
    if all(isinstance(x, (int, float, np.floating, np.integer)) for x in items):
        return T_FLOAT32
    if all(isinstance(x, (list, tuple)) for x in items):
        return T_ARRAY
    raise GGUFError("gguf writer: array items have mixed types")


def _pack_string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _pack_value(v, vtype: int, elem_type: int | None = None) -> bytes:
    if isinstance(v, GGUFValue):
        return _pack_value(v.value, v.vtype, v.elem_type)
    if vtype in _SCALARS:
        return struct.pack(_SCALARS[vtype][0], int(v) if vtype == T_BOOL else v)
    if vtype == T_STRING:
        return _pack_string(v)
    if vtype == T_ARRAY:
        items = list(v)
        et = _infer_elem_type(items) if elem_type is None else elem_type
        head = struct.pack("<IQ", et, len(items))
        if et in _SCALARS:
            return head + np.asarray(items, dtype=_SCALARS[et][1]).tobytes()
        return head + b"".join(_pack_value(x, et) for x in items)
    raise GGUFError(f"gguf writer: unknown value type {vtype}")


def write_gguf(metadata: dict, tensors: dict, *, alignment: int | None = None, version: int = 3) -> bytes:
    """Serialize metadata (plain values or GGUFValue) and tensors (name -> TensorSpec or
    (ggml_type, dims, data) tuples, dims in ggml order) into GGUF bytes."""
    if alignment is None:
        a = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        alignment = a.value if isinstance(a, GGUFValue) else a
    out = bytearray(MAGIC)
    out += struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, v in metadata.items():
        vtype = v.vtype if isinstance(v, GGUFValue) else _infer_type(v)
        out += _pack_string(key) + struct.pack("<I", vtype) + _pack_value(v, vtype)

    specs = []
    offset = 0
    for name, t in tensors.items():
        spec = t if isinstance(t, TensorSpec) else TensorSpec(*t)
        dims = tuple(int(d) for d in spec.dims)
        data = bytes(spec.data)
        if spec.ggml_type in GGML_BLOCKS and tensor_nbytes(spec.ggml_type, dims, name) != len(data):
            raise GGUFError(f"gguf writer: tensor '{name}' has {len(data)} bytes, its type and dims "
                            f"need {tensor_nbytes(spec.ggml_type, dims, name)}")
        out += _pack_string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, spec.ggml_type, offset)
        specs.append(data)
        offset += -(-len(data) // alignment) * alignment

    out += b"\0" * (-len(out) % alignment)
    for data in specs:
        out += data
        out += b"\0" * (-len(data) % alignment)
    return bytes(out)
