"""The .pte front door: ExecuTorch program bytes -> Program (+ how forward() maps onto it).

File layout (ExecuTorch `schema/program.fbs`, `exir/_serialize/_program.py`):

    [0:4]   uint32 root table offset        [4:8]  file identifier "ET12"
    [8:40]  extended header "eh00": uint32 length, uint64 program size (flatbuffer bytes,
            header included), uint64 segment base offset, uint64 segment data size
    ...     the Program flatbuffer
    [segment base offset ...] segments (delegate blobs, named data), each at base + offset

The engine runs exactly one `VulkanBackend` delegate (ExecuTorch's WebGPU partitioner lowers
through the Vulkan partitioner and emits the same delegate). Its processed blob is

    [4:8] "VH00", [8:10] header length (30), [10:14] flatbuffer offset, [14:18] flatbuffer
    size, [18:22] constant bytes offset, [22:30] constant bytes size  (all little endian)

followed by the VkGraph flatbuffer ("VK00", `backends/vulkan/serialization/schema.fbs`) and
the constant bytes. A constant is either a range of those bytes or, when its offset is
UINT64_MAX, a `named_key` into the program's named data (a segment).

Everything is parsed with bounds checks before any allocation; problems raise `PteError`
naming the section and byte offset. Constants are zero-copy memoryviews into `data`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from py_engine import program as P
from py_engine.loaders.flatbuffer import Buffer, FlatbufferError, Table

DELEGATE_ID = "VulkanBackend"
_EXT_HEADER_MAGIC = b"eh00"
_EXT_HEADER_MIN = 24  # magic, length, program size, segment base offset
_VH_LENGTH = 30
_NAMED_DATA_OFFSET = 0xFFFFFFFFFFFFFFFF  # VkBytes.offset meaning "look up named_key"


class PteError(ValueError):
    """A .pte file this engine cannot use: malformed, truncated, or an unsupported delegate."""


# ---------------------------------------------------------------- public result types
@dataclass
class ForwardInput:
    """One forward() argument and where it lands in the Program."""
    index: int                      # position among forward() arguments (flattened)
    evalue: int                     # ExecuTorch execution-plan value id
    kind: str                       # "tensor", "int", "double", "bool", "none", ...
    program_input: Optional[int]    # Program value id of the delegate input, or None
    note: str = ""                  # why program_input is None
    dtype: str = ""                 # ExecuTorch dtype for tensors ("int64" is staged to int32)
    sizes: tuple = ()               # plan sizes (upper bounds when dynamic)
    dynamic: bool = False


@dataclass
class ForwardOutput:
    index: int
    evalue: int
    program_output: Optional[int]   # Program value id produced by the delegate, or None
    note: str = ""
    # ExecuTorch lists a mutated forward argument's new value among the plan outputs
    # (before the user outputs); this names that argument, None for a user output.
    mutated_input: Optional[int] = None


@dataclass
class WriteBack:
    """An `aten::copy_` after the delegate: plan value `dest` <- Program output `source`."""
    dest_evalue: int
    source_program_output: int
    forward_input: Optional[int]    # forward() argument index when dest is one (mutated input)


@dataclass
class StateInput:
    """A delegate input that is not a forward argument (a mutable buffer kept by the host)."""
    evalue: int
    program_input: int
    name: str = ""


@dataclass
class PteModule:
    program: P.Program
    forward_inputs: list
    forward_outputs: list
    write_backs: list = field(default_factory=list)
    state_inputs: list = field(default_factory=list)
    # Program value ids whose host-side data is int64 (or float64) while the Program
    # tensor is int32 (float32): the host converts when staging inputs / reading outputs.
    staged_from: dict = field(default_factory=dict)
    mem_obj_ids: dict = field(default_factory=dict)   # Program value id -> shared memory id
    vk_version: str = ""
    method: str = ""

    @property
    def int64_inputs(self) -> list:
        """Program input ids the host must convert from int64 to int32 when staging."""
        return [i for i in self.program.input_ids if self.staged_from.get(i) == "int64"]

    @property
    def int64_outputs(self) -> list:
        """Program output ids the host widens back to int64 for the caller."""
        return [i for i in self.program.output_ids if self.staged_from.get(i) == "int64"]


# ---------------------------------------------------------------- enum tables
# executorch_flatbuffer.ScalarType -> our dtype name (None: not supported by the engine)
_SCALAR_TYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32",
                 7: "float64", 11: "bool"}
# KernelTypes union tags (program.fbs)
_ET_KINDS = {1: "none", 2: "int", 3: "bool", 4: "double", 5: "tensor", 6: "string",
             7: "int_list", 8: "double_list", 9: "bool_list", 10: "tensor_list",
             11: "optional_tensor_list"}
_INSTR_KERNEL, _INSTR_DELEGATE = 1, 2
_LOC_INLINE, _LOC_SEGMENT = 0, 1
# vkgraph.VkDataType -> (Program dtype, host dtype it is staged from or None)
_VK_DTYPES = {0: ("bool", None), 1: ("uint8", None), 2: ("int8", None), 3: ("int32", None),
              4: ("float16", None), 5: ("float32", None), 6: ("float32", "float64"),
              7: ("int32", "int64")}


# Note: flatc leaves out fields equal to their schema default, so an absent scalar reads as
# the schema default (0 unless the schema says otherwise), e.g. VkTensor.constant_id = 0.

# ---------------------------------------------------------------- entry point
def load_pte(data) -> PteModule:
    """Parse ExecuTorch .pte bytes into a PteModule (raises PteError)."""
    try:
        view = memoryview(data).cast("B")
    except TypeError as exc:
        raise PteError(f"pte: expected bytes-like data, got {type(data).__name__}") from exc
    try:
        return _load(view)
    except FlatbufferError as exc:
        raise PteError(f"pte: {exc}") from exc


def load_pte_file(path: str) -> PteModule:
    with open(path, "rb") as f:
        return load_pte(f.read())


# ---------------------------------------------------------------- container level
@dataclass
class _Container:
    data: memoryview
    root: Table
    segment_base: int
    segments: list      # (offset, size) relative to segment_base, bounds-checked lazily
    named: dict         # key -> segment index


def _load(data: memoryview) -> PteModule:
    size = len(data)
    if size == 0:
        raise PteError("pte: empty file")
    if size < 8:
        raise PteError(f"pte: truncated at byte {size}: file identifier needs 8 bytes")
    ident = bytes(data[4:8])
    if ident != b"ET12":
        raise PteError(f"pte: file identifier at byte 4 is {ident!r}, expected b'ET12' "
                       "(not an ExecuTorch program, or an unsupported version)")
    program_size, segment_base, segment_size = _extended_header(data)
    fb = Buffer(data[:program_size], "program flatbuffer")
    root = fb.root("Program")
    segments = []
    for i, seg in enumerate(root.vector(4, "Program.segments").tables()):
        segments.append((seg.scalar(0, "uint64"), seg.scalar(1, "uint64")))
    if segment_base == 0 and any(sz for _, sz in segments):
        raise PteError("pte: program has segments but the extended header gives no segment "
                       "base offset")
    if any(sz for _, sz in segments):
        if segment_base < program_size:
            raise PteError(f"pte: segment base offset {segment_base} lies inside the program "
                           f"flatbuffer ({program_size} bytes)")
        if segment_base > size:
            raise PteError(f"pte: truncated at byte {size}: segments start at byte "
                           f"{segment_base}")
        if segment_size and segment_base + segment_size > size:
            raise PteError(f"pte: truncated at byte {size}: segment data ends at byte "
                           f"{segment_base + segment_size}")
    named = {}
    for i, nd in enumerate(root.vector(7, "Program.named_data").tables()):
        key = nd.string(0, f"named_data[{i}].key", "")
        named[key] = nd.scalar(1, "uint32")
    box = _Container(data, root, segment_base, segments, named)
    return _load_plan(box)


def _extended_header(data: memoryview):
    """(program size, segment base offset, segment data size); header optional."""
    size = len(data)
    if size >= 12 and bytes(data[8:12]) == _EXT_HEADER_MAGIC:
        if size < 8 + _EXT_HEADER_MIN:
            raise PteError(f"pte: truncated at byte {size}: extended header at byte 8 needs "
                           f"{_EXT_HEADER_MIN} bytes")
        length = struct.unpack_from("<I", data, 12)[0]
        if length < _EXT_HEADER_MIN:
            raise PteError(f"pte: extended header length {length} < {_EXT_HEADER_MIN}")
        if size < 8 + length:
            raise PteError(f"pte: truncated at byte {size}: extended header at byte 8 needs "
                           f"{length} bytes")
        program_size, segment_base = struct.unpack_from("<QQ", data, 16)
        segment_size = struct.unpack_from("<Q", data, 32)[0] if length >= 32 else 0
        if program_size < 8 + length:
            raise PteError(f"pte: extended header program size {program_size} is smaller "
                           "than the header itself")
        if program_size > size:
            raise PteError(f"pte: truncated at byte {size}: program flatbuffer needs "
                           f"{program_size} bytes")
        return program_size, segment_base, segment_size
    return size, 0, 0  # old files without the header: the flatbuffer is the whole file


def _segment(box: _Container, index: int, what: str) -> memoryview:
    if not 0 <= index < len(box.segments):
        raise PteError(f"pte: {what}: segment index {index} out of range "
                       f"({len(box.segments)} segments)")
    offset, size = box.segments[index]
    start = box.segment_base + offset
    end = start + size
    if end > len(box.data):
        raise PteError(f"pte: {what}: segment {index} (bytes {start}..{end}) is past the end "
                       f"of the file ({len(box.data)} bytes)")
    return box.data[start:end]


# ---------------------------------------------------------------- execution plan
def _plan_value(values: list, vid: int, what: str):
    if not 0 <= vid < len(values):
        raise PteError(f"pte: {what}: value id {vid} out of range ({len(values)} values)")
    return values[vid]


def _load_plan(box: _Container) -> PteModule:
    plans = box.root.vector(1, "Program.execution_plan").tables()
    if not plans:
        raise PteError("pte: program has no execution plan")
    plan = plans[0]
    method = plan.string(0, "execution_plan[0].name", "")
    values = [v.union(0, f"execution_plan[0].values[{i}]")
              for i, v in enumerate(plan.vector(2, "execution_plan[0].values").tables())]
    plan_inputs = plan.vector(3, "execution_plan[0].inputs").scalars("int32")
    plan_outputs = plan.vector(4, "execution_plan[0].outputs").scalars("int32")
    operators = []
    for i, op in enumerate(plan.vector(6, "execution_plan[0].operators").tables()):
        name = op.string(0, f"operators[{i}].name", "")
        overload = op.string(1, f"operators[{i}].overload", "")
        operators.append(f"{name}.{overload}" if overload else name)
    delegates = plan.vector(7, "execution_plan[0].delegates").tables()

    chains = plan.vector(5, "execution_plan[0].chains").tables()
    if not chains:
        raise PteError("pte: execution plan has no chain")
    instructions = chains[0].vector(2, "chains[0].instructions").tables()
    delegate_call = None
    copies = []          # (dest, src) of aten::copy_ after the delegate
    foreign = []         # kernels this engine cannot run
    produced = set()     # plan values written by instructions
    for n, ins in enumerate(instructions):
        tag, body = ins.union(0, f"instructions[{n}]")
        if tag == _INSTR_DELEGATE:
            if delegate_call is not None:
                raise PteError("pte: more than one delegate call in the execution plan; "
                               "this engine runs a single VulkanBackend delegate")
            delegate_call = (body.scalar(0, "int32", 0),
                             body.vector(1, f"instructions[{n}].args").scalars("int32"))
        elif tag == _INSTR_KERNEL:
            op_index = body.scalar(0, "int32", 0)
            args = body.vector(1, f"instructions[{n}].args").scalars("int32")
            name = operators[op_index] if 0 <= op_index < len(operators) else f"#{op_index}"
            if name.startswith("aten::copy_") and len(args) >= 2:
                copies.append((args[0], args[1]))
                produced.add(args[-1])
            else:
                foreign.append(f"{name} (instruction {n})")
    if delegate_call is None:
        if delegates:
            raise PteError("pte: program lists delegates but never calls one")
        raise PteError("pte: no delegate call in the execution plan (nothing was lowered to "
                       f"{DELEGATE_ID})")
    if foreign:
        raise PteError("pte: execution plan runs kernels outside the delegate, which this "
                       "engine cannot execute: " + ", ".join(foreign))

    delegate_index, delegate_args = delegate_call
    if not 0 <= delegate_index < len(delegates):
        raise PteError(f"pte: delegate call names delegate {delegate_index} "
                       f"({len(delegates)} delegates)")
    delegate = delegates[delegate_index]
    backend = delegate.string(0, f"delegates[{delegate_index}].id", "")
    if backend != DELEGATE_ID:
        raise PteError(f"pte: delegate {delegate_index} is for backend {backend!r}; "
                       f"this engine runs only {DELEGATE_ID!r}")
    blob = _delegate_blob(box, delegate, delegate_index)
    prog, vk = _load_vkgraph(box, blob)

    n_in, n_out = len(prog.program.input_ids), len(prog.program.output_ids)
    if len(delegate_args) != n_in + n_out:
        raise PteError(f"pte: delegate call has {len(delegate_args)} args, VkGraph has "
                       f"{n_in} inputs + {n_out} outputs")
    arg_in = {e: prog.program.input_ids[j] for j, e in enumerate(delegate_args[:n_in])}
    arg_out = {e: prog.program.output_ids[j] for j, e in enumerate(delegate_args[n_in:])}
    for e in delegate_args:
        _plan_value(values, e, "delegate args")
    produced.update(delegate_args[n_in:])

    forward_inputs = []
    for k, e in enumerate(plan_inputs):
        tag, body = _plan_value(values, e, f"forward input {k}")
        fi = ForwardInput(k, e, _ET_KINDS.get(tag, f"kind{tag}"), arg_in.get(e))
        if tag == 5:
            fi.dtype, fi.sizes, fi.dynamic = _plan_tensor_info(body, e)
        if fi.program_input is None:
            fi.note = "not a delegate input (unused by the lowered graph)"
        elif fi.dtype in ("int64", "float64"):
            # The Vulkan serializer already narrows 64-bit tensors in the VkGraph; the
            # plan keeps the 64-bit type, which is what the caller hands us.
            prog.staged_from[fi.program_input] = fi.dtype
        forward_inputs.append(fi)

    forward_pos = {e: k for k, e in enumerate(plan_inputs)}
    copy_dests = {dest for dest, _ in copies}
    forward_outputs = []
    for k, e in enumerate(plan_outputs):
        _plan_value(values, e, f"forward output {k}")
        mutated = forward_pos.get(e) if e in copy_dests else None
        fo = ForwardOutput(k, e, arg_out.get(e), mutated_input=mutated)
        tag, body = values[e]
        if tag == 5 and fo.program_output is not None:
            dtype = _plan_tensor_info(body, e)[0]
            if dtype in ("int64", "float64"):
                prog.staged_from[fo.program_output] = dtype
        if fo.program_output is None:
            src = [s for d, s in copies if d == e]
            if src and src[0] in arg_out:
                fo.program_output = arg_out[src[0]]
            elif e in arg_in:
                fo.note = "forward input passed through (a delegate input)"
            else:
                fo.note = "not produced by the delegate"
        forward_outputs.append(fo)

    write_backs = []
    for dest, src in copies:
        if src not in arg_out:
            raise PteError(f"pte: aten::copy_ into value {dest} reads value {src}, which the "
                           "delegate does not produce")
        write_backs.append(WriteBack(dest, arg_out[src], forward_pos.get(dest)))

    state_inputs = []
    for e, pid in arg_in.items():
        if e in forward_pos:
            continue
        if e in produced:
            raise PteError(f"pte: delegate input value {e} is computed outside the delegate")
        tag, body = values[e]
        name = ""
        if tag == 5:
            if body.scalar(5, "uint32", 0) > 0:
                raise PteError(f"pte: delegate input value {e} is a program constant buffer; "
                               "only delegate-owned constants are supported")
            extra = body.table(9, f"values[{e}].extra_tensor_info")
            if extra is not None:
                name = extra.string(1, f"values[{e}].fully_qualified_name", "")
        state_inputs.append(StateInput(e, pid, name))

    prog.forward_inputs = forward_inputs
    prog.forward_outputs = forward_outputs
    prog.write_backs = write_backs
    prog.state_inputs = state_inputs
    prog.vk_version = vk
    prog.method = method
    return prog


def _plan_tensor_info(t: Table, e: int):
    st = t.scalar(0, "int8", 0)
    dtype = _SCALAR_TYPES.get(st, f"scalar_type{st}")
    sizes = t.vector(2, f"values[{e}].sizes").scalars("int32")
    dynamic = t.scalar(8, "int8", 0) != 0
    return dtype, tuple(sizes), dynamic


def _delegate_blob(box: _Container, delegate: Table, index: int) -> memoryview:
    ref = delegate.table(1, f"delegates[{index}].processed")
    if ref is None:
        raise PteError(f"pte: delegate {index} has no processed data")
    loc = ref.scalar(0, "int8", 0)
    where = ref.scalar(1, "uint32", 0)
    if loc == _LOC_INLINE:
        inline = box.root.vector(3, "Program.backend_delegate_data").tables()
        if not 0 <= where < len(inline):
            raise PteError(f"pte: delegate {index}: inline data index {where} out of range "
                           f"({len(inline)} entries)")
        return inline[where].vector(0, f"backend_delegate_data[{where}].data").bytes_view()
    if loc == _LOC_SEGMENT:
        return _segment(box, where, f"delegate {index} data")
    raise PteError(f"pte: delegate {index}: unknown data location {loc}")


# ---------------------------------------------------------------- VkGraph
def _load_vkgraph(box: _Container, blob: memoryview):
    size = len(blob)
    if size < _VH_LENGTH:
        raise PteError(f"pte: VulkanBackend data is {size} bytes; its VH00 header needs "
                       f"{_VH_LENGTH}")
    magic = bytes(blob[4:8])
    if magic != b"VH00":
        raise PteError(f"pte: VulkanBackend data header magic is {magic!r}, expected b'VH00'")
    length = struct.unpack_from("<H", blob, 8)[0]
    if length < _VH_LENGTH:
        raise PteError(f"pte: VH00 header length {length} < {_VH_LENGTH}")
    fb_off, fb_size, bytes_off = struct.unpack_from("<III", blob, 10)
    bytes_size = struct.unpack_from("<Q", blob, 22)[0]
    if fb_off + fb_size > size:
        raise PteError(f"pte: VH00: VkGraph flatbuffer (bytes {fb_off}..{fb_off + fb_size}) "
                       f"is past the end of the delegate data ({size} bytes)")
    if bytes_off + bytes_size > size:
        raise PteError(f"pte: VH00: constant data (bytes {bytes_off}..{bytes_off + bytes_size}) "
                       f"is past the end of the delegate data ({size} bytes)")
    const_data = blob[bytes_off:bytes_off + bytes_size]
    fb = Buffer(blob[fb_off:fb_off + fb_size], "VkGraph flatbuffer")
    ident = fb.identifier()
    if ident != b"VK00":
        raise PteError(f"pte: VkGraph file identifier is {ident!r}, expected b'VK00'")
    g = fb.root("VkGraph")
    version = g.string(0, "VkGraph.version", "")

    program = P.Program()
    staged_from, mem_obj_ids = {}, {}
    for i, v in enumerate(g.vector(2, "VkGraph.values").tables()):
        program.values.append(_vk_value(v, i, staged_from, mem_obj_ids))
    n_values = len(program.values)

    def check_ids(ids, what):
        for vid in ids:
            if not 0 <= vid < n_values:
                raise PteError(f"pte: VkGraph {what}: value id {vid} out of range "
                               f"({n_values} values)")
        return list(ids)

    for i, call in enumerate(g.vector(1, "VkGraph.chain").tables()):
        name = call.string(1, f"chain[{i}].name", "")
        args = check_ids(call.vector(2, f"chain[{i}].args").scalars("int32"),
                         f"chain[{i}] ({name}) args")
        program.chain.append(P.OpCall(name, tuple(args)))
    program.input_ids = check_ids(g.vector(3, "VkGraph.input_ids").scalars("uint32"), "input_ids")
    program.output_ids = check_ids(g.vector(4, "VkGraph.output_ids").scalars("uint32"),
                                   "output_ids")
    for vid in program.values:
        if isinstance(vid, P.ValueList):
            check_ids(vid.ids, "ValueList")

    for i, c in enumerate(g.vector(5, "VkGraph.constants").tables()):
        offset = c.scalar(0, "uint64", 0)
        length = c.scalar(1, "uint64", 0)
        if offset == _NAMED_DATA_OFFSET:
            key = c.string(2, f"constants[{i}].named_key", "")
            if key not in box.named:
                raise PteError(f"pte: VkGraph constant {i}: named key {key!r} is not in the "
                               "program's named data")
            seg = _segment(box, box.named[key], f"named data {key!r}")
            if length > len(seg):
                raise PteError(f"pte: VkGraph constant {i}: needs {length} bytes, named data "
                               f"{key!r} holds {len(seg)}")
            program.constants.append(seg[:length])
        else:
            if offset + length > len(const_data):
                raise PteError(f"pte: VkGraph constant {i}: bytes {offset}..{offset + length} "
                               f"past the end of the constant data ({len(const_data)} bytes)")
            program.constants.append(const_data[offset:offset + length])

    _stage_wide_constants(program, staged_from)
    for vid, t in enumerate(program.values):
        if isinstance(t, P.Tensor) and t.constant_id >= 0:
            if t.constant_id >= len(program.constants):
                raise PteError(f"pte: VkGraph value {vid}: constant id {t.constant_id} out of "
                               f"range ({len(program.constants)} constants)")
            have = len(program.constants[t.constant_id])
            if have < t.nbytes:
                raise PteError(f"pte: VkGraph value {vid}: constant {t.constant_id} holds "
                               f"{have} bytes, {t.dtype}{list(t.dims)} needs {t.nbytes}")
    module = PteModule(program, [], [], staged_from=staged_from, mem_obj_ids=mem_obj_ids)
    return module, version


def _vk_value(v: Table, i: int, staged_from: dict, mem_obj_ids: dict):
    tag, body = v.union(0, f"VkGraph.values[{i}]")
    what = f"VkGraph.values[{i}]"
    if tag == 1 or tag == 0:
        return P.Null()
    if body is None:
        raise PteError(f"pte: {what}: union tag {tag} without a value")
    if tag == 2:
        return P.Int(body.scalar(0, "int64", 0))
    if tag == 3:
        return P.Double(body.scalar(0, "float64", 0.0))
    if tag == 4:
        return P.Bool(bool(body.scalar(0, "bool", False)))
    if tag == 5:
        code = body.scalar(0, "int8", 0)
        if code not in _VK_DTYPES:
            raise PteError(f"pte: {what}: unsupported VkDataType {code}")
        dtype, host = _VK_DTYPES[code]
        dims = body.vector(1, f"{what}.dims").scalars("uint32")
        if host is not None:
            staged_from[i] = host
        mem = body.scalar(3, "int32", 0)  # schema default is 0, not -1
        if mem >= 0:
            mem_obj_ids[i] = mem
        return P.Tensor(dtype, tuple(dims), body.scalar(2, "int32", 0))
    if tag == 6:
        return P.IntList(body.vector(0, f"{what}.items").scalars("int64"))
    if tag == 7:
        return P.DoubleList(body.vector(0, f"{what}.items").scalars("float64"))
    if tag == 8:
        return P.BoolList(body.vector(0, f"{what}.items").scalars("bool"))
    if tag == 9:
        return P.ValueList(body.vector(0, f"{what}.items").scalars("int32"))
    if tag == 10:
        return P.String(body.string(0, f"{what}.string_val", ""))
    if tag == 11:
        return P.SymInt(body.scalar(0, "int32", 0))
    raise PteError(f"pte: {what}: unknown value type tag {tag}")


def _stage_wide_constants(program: P.Program, staged_from: dict) -> None:
    """int64/float64 constants become int32/float32 copies (the GPU has no 64-bit types)."""
    done = {}
    for vid, host in list(staged_from.items()):
        t = program.values[vid]
        if t.constant_id < 0:
            continue
        del staged_from[vid]  # a constant is converted here, not by the host
        if t.constant_id in done:
            continue
        raw = program.constants[t.constant_id]
        wide = np.frombuffer(raw, dtype="<i8" if host == "int64" else "<f8",
                             count=len(raw) // 8)
        if host == "int64":
            if wide.size and (wide.min() < -2**31 or wide.max() >= 2**31):
                raise PteError(f"pte: VkGraph value {vid}: int64 constant does not fit int32")
            narrow = wide.astype("<i4")
        else:
            narrow = wide.astype("<f4")
        program.constants[t.constant_id] = memoryview(narrow.tobytes())
        done[t.constant_id] = True


# ---------------------------------------------------------------- a readable summary
def describe(module: PteModule) -> str:
    """Multi-line text: forward mapping, state, chain with argument kinds (for debugging)."""
    p = module.program
    lines = [f"method {module.method!r}, VkGraph version {module.vk_version!r}, "
             f"{len(p.values)} values, {len(p.chain)} ops, {len(p.constants)} constants"]
    for fi in module.forward_inputs:
        lines.append(f"  forward arg {fi.index}: {fi.kind} {fi.dtype}{list(fi.sizes)}"
                     f"{' dynamic' if fi.dynamic else ''} -> "
                     f"{fi.program_input if fi.program_input is not None else fi.note}")
    for fo in module.forward_outputs:
        mutated = f" (new value of forward arg {fo.mutated_input})" \
            if fo.mutated_input is not None else ""
        lines.append(f"  forward out {fo.index} <- "
                     f"{fo.program_output if fo.program_output is not None else fo.note}"
                     f"{mutated}")
    for s in module.state_inputs:
        lines.append(f"  state input {s.program_input} (plan value {s.evalue} {s.name})")
    for w in module.write_backs:
        lines.append(f"  copy_ plan value {w.dest_evalue} (forward arg {w.forward_input}) "
                     f"<- program output {w.source_program_output}")
    if module.staged_from:
        lines.append(f"  staged from wider host types: {module.staged_from}")
    for c in p.chain:
        lines.append(f"  {c.name}(" + ", ".join(f"{a}:{_short(p.values[a])}" for a in c.args)
                     + ")")
    return "\n".join(lines)


def _short(v) -> str:
    if isinstance(v, P.Tensor):
        return f"{v.dtype}{list(v.dims)}" + (f"#c{v.constant_id}" if v.constant_id >= 0 else "")
    if isinstance(v, (P.Int, P.Double, P.Bool, P.String, P.SymInt)):
        return f"{type(v).__name__}({v.value!r})"
    if isinstance(v, (P.IntList, P.DoubleList, P.BoolList)):
        return f"{type(v).__name__}{list(v.values)}"
    if isinstance(v, P.ValueList):
        return f"ValueList{list(v.ids)}"
    return type(v).__name__


if __name__ == "__main__":
    import sys
    for path in sys.argv[1:]:
        print(path)
        print(describe(load_pte_file(path)))
