"""The .pte front door on the committed ExecuTorch fixtures (CPython, no GPU).

Every fixture must parse into a consistent Program; damaged copies of real fixtures must
raise PteError with a message that says what and where. The fixtures are made by
scripts/export_pte_fixtures.py (ExecuTorch 1.5.1, WebGPU/Vulkan partitioner).
"""
from __future__ import annotations

import json
import os
import random
import struct

import numpy as np
import pytest

from py_engine import program as P
from py_engine.loaders.pte import PteError, load_pte, load_pte_file

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "pte")
with open(os.path.join(FIXTURES, "MANIFEST.json")) as _f:
    MANIFEST = json.load(_f)
GOOD = sorted(n for n, e in MANIFEST.items() if "expect_error" not in e)
BAD = sorted(n for n, e in MANIFEST.items() if "expect_error" in e)


def _bytes(name: str) -> bytes:
    with open(os.path.join(FIXTURES, f"{name}.pte"), "rb") as f:
        return f.read()


def _npz(name: str, kind: str) -> dict:
    with np.load(os.path.join(FIXTURES, f"{name}.{kind}.npz")) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------- every fixture
@pytest.mark.parametrize("name", GOOD)
def test_fixture_parses_into_consistent_program(name):
    entry = MANIFEST[name]
    mod = load_pte_file(os.path.join(FIXTURES, f"{name}.pte"))
    prog = mod.program
    n = len(prog.values)

    assert [c.name for c in prog.chain] == entry["ops"]
    for call in prog.chain:
        assert call.args and all(0 <= a < n for a in call.args), call
    for vid in prog.input_ids + prog.output_ids:
        assert 0 <= vid < n
    for v in prog.values:
        if isinstance(v, P.ValueList):
            assert all(0 <= i < n for i in v.ids)
        if isinstance(v, P.Tensor):
            assert v.dtype in P.DTYPES and all(d >= 0 for d in v.dims)
            if v.constant_id >= 0:
                assert v.constant_id < len(prog.constants)
    for vid, v in enumerate(prog.values):  # every constant tensor has its bytes
        if isinstance(v, P.Tensor) and v.constant_id >= 0:
            assert len(prog.constant_bytes(vid)) == v.nbytes
    for vid in prog.input_ids:  # inputs are never constants
        v = prog.values[vid]
        assert not (isinstance(v, P.Tensor) and v.constant_id >= 0)

    # forward() arguments: one per stored input, shapes within the program's bounds
    inputs = _npz(name, "inputs")
    assert len(mod.forward_inputs) == len(entry["inputs"])
    for fi in mod.forward_inputs:
        arr = inputs[f"step0.arg{fi.index}"]
        assert fi.kind == "tensor"
        assert fi.program_input is not None, fi.note
        t = prog.values[fi.program_input]
        assert isinstance(t, P.Tensor)
        assert len(t.dims) == arr.ndim
        for t_step in range(entry["steps"]):  # every step fits the upper bounds
            a = inputs[f"step{t_step}.arg{fi.index}"]
            assert all(s <= d for s, d in zip(a.shape, t.dims)), (a.shape, t.dims)
        if arr.dtype == np.int64:
            assert t.dtype == "int32" and fi.program_input in mod.int64_inputs
        else:
            assert t.dtype == str(arr.dtype)
        assert fi.dynamic == (str(fi.index) in entry["dynamic_dims"]) or name.startswith(
            "tiny_llama")

    # forward() outputs: user outputs map onto program outputs of matching rank
    expected = _npz(name, "expected")
    for key, arr in expected.items():  # eager references are usable numbers
        assert np.all(np.isfinite(arr)), f"{name}: {key} has non-finite values"
    user = [fo for fo in mod.forward_outputs if fo.mutated_input is None]
    assert len(user) == len(entry["outputs"])
    for j, fo in enumerate(user):
        assert fo.program_output in prog.output_ids, fo.note
        t = prog.values[fo.program_output]
        out = expected[f"step0.out{j}"]
        assert len(t.dims) == out.ndim
        assert all(s <= d for s, d in zip(out.shape, t.dims)), (out.shape, t.dims)


@pytest.mark.parametrize("name", BAD)
def test_rejected_fixture_raises(name):
    with pytest.raises(PteError) as info:
        load_pte(_bytes(name))
    assert str(info.value) == MANIFEST[name]["expect_error"]


def test_no_delegate_message():
    with pytest.raises(PteError, match="no delegate call"):
        load_pte(_bytes("error_no_delegate"))


# ---------------------------------------------------------------- specific contents
def _call(prog, name):
    calls = [c for c in prog.chain if c.name == name]
    assert calls, f"{name} not in chain {[c.name for c in prog.chain]}"
    return calls[0]


def test_select_keeps_negative_index():
    prog = load_pte(_bytes("select_negative")).program
    c = _call(prog, "aten.select_copy.int")
    assert prog.values[c.args[1]] == P.Int(1)
    assert prog.values[c.args[2]] == P.Int(-1)
    assert prog.values[c.args[-1]].dims == (1, 16)


def test_sdpa_kv_cache_symint_and_separate_cache_constants():
    mod = load_pte(_bytes("sdpa_kv_cache"))
    prog = mod.program
    sel = _call(prog, "et_vk.select_as_symint.default")
    assert isinstance(prog.values[sel.args[-1]], P.SymInt)
    assert sel.args[0] in mod.int64_inputs  # input_pos is int64 in forward()
    sdpa = _call(prog, "sdpa_with_kv_cache.default")
    assert len(sdpa.args) == 12
    assert sdpa.args[5] == sel.args[-1]  # start_pos is the symint read from input_pos
    k_cache, v_cache = prog.values[sdpa.args[3]], prog.values[sdpa.args[4]]
    assert k_cache.dims == v_cache.dims == (1, 16, 2, 8)
    # both caches are zero-initialised and share one named blob, yet each gets its own
    # constant entry (each becomes its own writable GPU buffer)
    assert k_cache.constant_id != v_cache.constant_id
    assert not np.any(np.frombuffer(prog.constant_bytes(sdpa.args[3]), np.float32))


def test_update_cache_into_forward_input_is_written_back():
    mod = load_pte(_bytes("update_cache_input_pos5"))
    assert len(mod.write_backs) == 1
    wb = mod.write_backs[0]
    assert wb.forward_input == 1
    mutated = [fo for fo in mod.forward_outputs if fo.mutated_input is not None]
    assert [fo.mutated_input for fo in mutated] == [1]
    assert mutated[0].program_output == wb.source_program_output
    uc = _call(mod.program, "update_cache.default")
    assert mod.program.values[uc.args[2]] == P.Int(5)
    assert uc.args[1] == mod.forward_inputs[1].program_input


def test_quantized_linear_constants_match_q4gsw_layout():
    prog = load_pte(_bytes("linear_q4gsw_static")).program
    c = _call(prog, "et_vk.linear_q4gsw.default")
    w, s = prog.values[c.args[1]], prog.values[c.args[2]]
    assert (w.dtype, w.dims) == ("uint8", (32, 32))      # [N, K/2]
    assert (s.dtype, s.dims) == ("float32", (2, 32))     # [K/group, N]
    assert prog.values[c.args[3]] == P.Int(32)


def test_dims_are_upper_bounds_for_dynamic_inputs():
    mod = load_pte(_bytes("rms_norm_dynamic"))
    fi = mod.forward_inputs[0]
    assert fi.dynamic and fi.sizes == (1, 8, 32)
    assert mod.program.values[fi.program_input].dims == (1, 8, 32)


# ---------------------------------------------------------------- damaged files
def _boundaries(data: bytes):
    """Byte offsets where one section ends and the next begins in a real fixture."""
    program_size, segment_base, segment_size = struct.unpack_from("<QQQ", data, 16)
    cuts = {0: "empty", 4: "identifier", 8: "extended header", 20: "extended header",
            39: "extended header", 40: "program flatbuffer",
            program_size // 2: "program flatbuffer", program_size - 1: "program flatbuffer"}
    if segment_size:
        cuts[segment_base] = "segments"
        cuts[segment_base + segment_size // 2] = "segments"
        cuts[segment_base + segment_size - 1] = "segments"
    return cuts


@pytest.mark.parametrize("name", ["sdpa_kv_cache", "linear_q4gsw_static", "add_mul_sigmoid"])
def test_truncation_at_every_section_boundary(name):
    data = _bytes(name)
    load_pte(data)  # the whole file is fine
    for cut, section in sorted(_boundaries(data).items()):
        with pytest.raises(PteError) as info:
            load_pte(data[:cut])
        msg = str(info.value)
        assert msg.startswith("pte: ")
        assert ("empty" in msg) if cut == 0 else (f"truncated at byte {cut}" in msg
                                                 or "past the end" in msg), (section, msg)


def test_wrong_identifier():
    data = bytearray(_bytes("add_mul_sigmoid"))
    data[4:8] = b"ET11"
    with pytest.raises(PteError, match=r"identifier at byte 4 is b'ET11'"):
        load_pte(bytes(data))


def test_root_offset_past_end():
    data = bytearray(_bytes("add_mul_sigmoid"))
    struct.pack_into("<I", data, 0, len(data) + 100)
    with pytest.raises(PteError, match="past the end"):
        load_pte(bytes(data))


def test_segment_base_past_end():
    data = bytearray(_bytes("sdpa_kv_cache"))
    struct.pack_into("<Q", data, 24, len(data) + 4096)
    with pytest.raises(PteError, match="segments start at byte"):
        load_pte(bytes(data))


def test_vkgraph_flatbuffer_size_past_end():
    data = bytearray(_bytes("linear_q4gsw_static"))
    vh = data.find(b"VH00")
    assert vh > 0
    struct.pack_into("<I", data, vh + 10, 1 << 30)  # VH00 flatbuffer size
    with pytest.raises(PteError, match=r"VH00: VkGraph flatbuffer .* past the end"):
        load_pte(bytes(data))


def test_vkgraph_constant_section_past_end():
    data = bytearray(_bytes("linear_q4gsw_static"))
    vh = data.find(b"VH00")
    struct.pack_into("<Q", data, vh + 18, 1 << 40)  # VH00 constant bytes size
    with pytest.raises(PteError, match="constant data .* past the end"):
        load_pte(bytes(data))


def test_other_backend_is_named():
    data = _bytes("rms_norm_static").replace(b"VulkanBackend", b"XnnpackBacken")
    with pytest.raises(PteError, match="backend 'XnnpackBacken'.*only 'VulkanBackend'"):
        load_pte(data)


def test_not_bytes():
    with pytest.raises(PteError, match="bytes-like"):
        load_pte(12345)


@pytest.mark.parametrize("name", ["sdpa_kv_cache", "embedding_q4gsw"])
def test_random_corruption_raises_only_pte_error(name):
    """Flipped bytes anywhere either still parse or raise PteError, never anything else."""
    data = _bytes(name)
    rng = random.Random(1234)
    for _ in range(300):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        try:
            load_pte(bytes(bad))
        except PteError:
            pass


@pytest.mark.parametrize("name", ["tiny_llama_q4", "tiny_llama_q4_emb4"])
def test_tiny_llama_structure(name):
    mod = load_pte(_bytes(name))
    prog = mod.program
    tokens, pos = mod.forward_inputs
    assert tokens.dtype == pos.dtype == "int64" and tokens.dynamic and not pos.dynamic
    assert mod.int64_inputs == [tokens.program_input, pos.program_input]
    names = [c.name for c in prog.chain]
    emb = "et_vk.embedding_q4gsw.default" if name.endswith("emb4") else "aten.embedding.default"
    for op in (emb, "et_vk.rms_norm.default", "et_vk.linear_q4gsw.default",
               "et_vk.apply_rotary_emb.default", "sdpa_with_kv_cache.default",
               "et_vk.select_as_symint.default", "aten.select_copy.int"):
        assert op in names, op
    sdpas = [c for c in prog.chain if c.name == "sdpa_with_kv_cache.default"]
    assert len(sdpas) == 2  # one per layer, same live start position
    assert sdpas[0].args[5] == sdpas[1].args[5]
    caches = {prog.values[c.args[i]].constant_id for c in sdpas for i in (3, 4)}
    assert len(caches) == 4  # k and v of two layers: four separate buffers
    logits = prog.values[prog.output_ids[0]]
    assert logits.dims == (1, 128)
