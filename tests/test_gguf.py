"""GGUF reader/writer, block (de)quantizers, the tiny synthetic model, and the real SmolLM2 file.

Malformed inputs must raise GGUFError (a ValueError) with a message naming the problem,
never another exception, a hang, or a large allocation.
"""
import os
import random
import struct
import time

import numpy as np
import pytest

from py_engine.loaders.gguf import (GGML_F16, GGML_F32, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0, T_ARRAY,
                                    T_BOOL, T_FLOAT32, T_FLOAT64, T_INT8, T_INT16, T_INT32, T_INT64,
                                    T_STRING, T_UINT8, T_UINT16, T_UINT32, T_UINT64, GGUFError, GGUFValue,
                                    FileRange, TensorSpec, read_gguf, read_gguf_from, tensor_from_array, write_gguf)
from py_engine.reference.gguf_quant import QuantError, dequantize, quantize
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def real_model_bytes() -> bytes:
    if not os.path.exists(MODEL):
        pytest.fail(f"{MODEL} is missing: run scripts/fetch_model.sh first")
    with open(MODEL, "rb") as f:
        return f.read()


def small_file(**kw) -> bytes:
    """A small file with one tensor of each supported type."""
    rng = np.random.default_rng(1)
    tensors = {f"t.{t}": tensor_from_array(rng.standard_normal((2, 64)), t)
               for t in (GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0)}
    return write_gguf({"general.architecture": "llama", "x.count": 7}, tensors, **kw)


def expect_error(data, match):
    with pytest.raises(GGUFError, match=match):
        read_gguf(data)


# --- round trips ---------------------------------------------------------------------------
ALL_TYPES = {
    "v.u8": GGUFValue(200, T_UINT8), "v.i8": GGUFValue(-100, T_INT8),
    "v.u16": GGUFValue(60000, T_UINT16), "v.i16": GGUFValue(-30000, T_INT16),
    "v.u32": GGUFValue(4_000_000_000, T_UINT32), "v.i32": GGUFValue(-2_000_000_000, T_INT32),
    "v.u64": GGUFValue(2**63 + 5, T_UINT64), "v.i64": GGUFValue(-(2**62), T_INT64),
    "v.f32": GGUFValue(0.25, T_FLOAT32), "v.f64": GGUFValue(1e300, T_FLOAT64),
    "v.bool_t": True, "v.bool_f": False, "v.str": "héllo ✓ 😀", "v.empty_str": "",
    "v.arr_i32": [1, -2, 3], "v.arr_f32": [0.5, -1.5], "v.arr_str": ["a", "", "ü"],
    "v.arr_bool": GGUFValue([True, False, True], T_ARRAY, T_BOOL),
    "v.arr_u64": GGUFValue([0, 2**64 - 1], T_ARRAY, T_UINT64),
    "v.arr_f64": GGUFValue([1e-300, 2.5], T_ARRAY, T_FLOAT64),
    "v.nested": [[1, 2], [3], []], "v.nested_str": [["x", "y"], ["z"]],
    "v.empty_arr": [],
}


@pytest.mark.parametrize("version", [2, 3])
def test_metadata_round_trip_every_value_type(version):
    g = read_gguf(write_gguf(ALL_TYPES, {}, version=version))
    assert g.version == version
    expect = {k: (v.value if isinstance(v, GGUFValue) else v) for k, v in ALL_TYPES.items()}
    assert g.metadata == expect
    assert type(g.metadata["v.bool_t"]) is bool and type(g.metadata["v.arr_bool"][0]) is bool
    assert g.metadata_types["v.u8"] == T_UINT8 and g.metadata_types["v.str"] == T_STRING
    assert g.metadata_types["v.arr_str"] == (T_ARRAY, T_STRING)
    assert g.tensors == {}


def test_tensors_round_trip_with_dims_types_shapes_and_bytes():
    rng = np.random.default_rng(0)
    specs = {
        "a.f32": TensorSpec(GGML_F32, (3, 2, 2), rng.standard_normal(12).astype("<f4").tobytes()),
        "b.q4_0": tensor_from_array(rng.standard_normal((4, 96)), GGML_Q4_0),
        "c.q8_0": tensor_from_array(rng.standard_normal((32,)), GGML_Q8_0),
        "d.scalar": TensorSpec(GGML_F32, (), b"\x00\x00\x80\x3f"),
    }
    g = read_gguf(write_gguf({"general.alignment": 64}, specs))
    assert g.alignment == 64 and g.data_offset % 64 == 0
    assert list(g.tensors) == list(specs)
    for name, spec in specs.items():
        t = g.tensors[name]
        assert t.dims == spec.dims and t.ggml_type == spec.ggml_type
        assert t.shape == tuple(reversed(spec.dims))
        assert bytes(t.data) == spec.data and t.offset % 64 == 0
    assert g.tensors["b.q4_0"].type_name == "Q4_0" and g.tensors["b.q4_0"].shape == (4, 96)
    np.testing.assert_array_equal(g.tensors["a.f32"].to_numpy(),
                                  np.frombuffer(specs["a.f32"].data, "<f4").reshape(2, 2, 3))
    assert g.tensors["d.scalar"].to_numpy() == np.float32(1.0)


def test_data_is_a_view_not_a_copy():
    data = bytearray(small_file())
    g = read_gguf(data)
    t = g.tensors["t.0"]
    start = g.data_offset + t.offset
    data[start] ^= 0xFF
    assert t.data[0] == data[start]


def test_default_alignment_is_32_and_data_section_is_aligned():
    g = read_gguf(small_file())
    assert g.alignment == 32 and g.data_offset % 32 == 0
    assert all(t.offset % 32 == 0 for t in g.tensors.values())


# --- quantizers / dequantizers -------------------------------------------------------------
def _f16(x):
    return np.float16(x).tobytes()


def test_block_layouts_match_the_documented_formats():
    # Hand-built blocks (DESIGN.md "Facts about formats"), independent of our quantizers.
    qs = bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16))   # elem j<16 = j, j+16 = 15-j
    q = np.array(list(range(16)) + [15 - j for j in range(16)], dtype=np.float32)
    np.testing.assert_array_equal(dequantize(GGML_Q4_0, _f16(0.5) + qs, (32,)), 0.5 * (q - 8))
    np.testing.assert_array_equal(dequantize(GGML_Q4_1, _f16(0.25) + _f16(-1.0) + qs, (32,)), 0.25 * q - 1.0)
    q8 = np.arange(-16, 16, dtype=np.int8)
    np.testing.assert_array_equal(dequantize(GGML_Q8_0, _f16(2.0) + q8.tobytes(), (32,)), 2.0 * q8)
    np.testing.assert_array_equal(dequantize(GGML_F16, np.float16([1.5, -2]).tobytes(), (2,)), [1.5, -2])


@pytest.mark.parametrize("ggml_type", [GGML_Q4_0, GGML_Q4_1, GGML_Q8_0, GGML_F16, GGML_F32])
def test_quantize_dequantize_error_within_block_bounds(ggml_type):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 128)).astype(np.float32) * rng.uniform(0.01, 10, (8, 1)).astype(np.float32)
    x[0, :32] = 0.0                                   # all-zero block: d = 0, must stay exact
    y = dequantize(ggml_type, quantize(ggml_type, x), x.shape)
    assert y.dtype == np.float32 and y.shape == x.shape
    blocks, err = x.reshape(-1, 32), np.abs(y - x).reshape(-1, 32).max(axis=1)
    amax = np.abs(blocks).max(axis=1)
    rng_ = blocks.max(axis=1) - blocks.min(axis=1)
    if ggml_type == GGML_Q8_0:      # half a step + f16 rounding of d (2^-11 relative, |q| <= 127)
        bound = (0.5 + 127 * 2**-11) * amax / 127
    elif ggml_type == GGML_Q4_0:    # one step (the far extreme may clip from 16 to 15) + f16 of d
        bound = (1.0 + 8 * 2**-11) * amax / 8
    elif ggml_type == GGML_Q4_1:    # half a step + f16 rounding of d and of m
        bound = (0.5 + 15 * 2**-11) * rng_ / 15 + np.abs(blocks.min(axis=1)) * 2**-11
    elif ggml_type == GGML_F16:
        bound = amax * 2**-11
    else:
        bound = np.zeros_like(amax)
    assert np.all(err <= bound * 1.0001 + 1e-12), (err / np.maximum(bound, 1e-30)).max()
    assert err[0] == 0.0


def test_q4_0_maps_the_largest_magnitude_to_minus_8():
    x = np.linspace(-1, 3, 32, dtype=np.float32)       # largest |x| = 3 -> d = -3/8, q = 0
    raw = quantize(GGML_Q4_0, x)
    assert np.frombuffer(raw[:2], "<f2")[0] == np.float16(-0.375)
    assert raw[2 + 15] >> 4 == 0                       # element 31 (value 3) is high nibble of byte 15
    assert dequantize(GGML_Q4_0, raw, (32,))[31] == pytest.approx(3.0)


def test_quantizer_rejects_rows_not_multiple_of_32():
    with pytest.raises(QuantError, match="multiple of 32"):
        quantize(GGML_Q4_1, np.zeros((2, 48)))
    with pytest.raises(QuantError, match="needs 36 bytes"):
        dequantize(GGML_Q4_0, b"\0" * 35, (2, 32))


# --- malformed files -----------------------------------------------------------------------
def _last_tensor_end(data) -> int:
    g = read_gguf(data)
    return max(g.data_offset + t.offset + t.nbytes for t in g.tensors.values())


def test_truncated_at_every_byte_of_a_small_file():
    data = small_file()
    end = _last_tensor_end(data)
    for cut in range(end):
        with pytest.raises(GGUFError, match="gguf: "):
            read_gguf(data[:cut])


def test_truncated_tiny_model_at_many_points():
    data = make_tiny_llama_gguf(seed=0)
    end = _last_tensor_end(data)
    cuts = set(range(0, 400)) | set(range(0, end, max(1, end // 300))) | {end - 1}
    messages = set()
    for cut in sorted(cuts):
        with pytest.raises(GGUFError) as e:
            read_gguf(data[:cut])
        messages.add(str(e.value))
    # header, metadata and tensor-data truncations each produce their own message
    assert any("truncated while reading" in m for m in messages)
    assert any("offset past end" in m for m in messages)


def test_a_file_held_elsewhere_is_read_as_the_same_file_a_range_at_a_time():
    """read_gguf_from (the page's file stays in JS): the header from a first read that grows until
    it holds it (here from 64 bytes), each tensor's bytes only when asked for; the same metadata,
    tensors and errors as read_gguf of the whole file."""
    data = make_tiny_llama_gguf(seed=0)
    reads = []

    def read(start, n):
        reads.append((start, n))
        return memoryview(data)[start:start + n]

    whole, ranged = read_gguf(data), read_gguf_from(len(data), read, head=64)
    assert [n for s, n in reads] == [64 * 4 ** i for i in range(len(reads))] and reads[-1][1] < len(data)
    assert ranged.metadata == whole.metadata and ranged.metadata_types == whole.metadata_types
    assert list(ranged.tensors) == list(whole.tensors)
    reads.clear()
    for name, t in ranged.tensors.items():
        assert isinstance(t.data, FileRange) and t.nbytes == whole.tensors[name].nbytes
        assert bytes(t.raw()) == bytes(whole.tensors[name].data)
    assert len(reads) == len(ranged.tensors)
    end = _last_tensor_end(data)
    for cut in (0, 3, 100, 1000, end - 1):
        with pytest.raises(GGUFError) as want:
            read_gguf(data[:cut])
        with pytest.raises(GGUFError) as got:
            read_gguf_from(cut, lambda s, n: memoryview(data)[s:min(s + n, cut)], head=64)
        assert str(got.value) == str(want.value)


def test_bad_magic_and_unsupported_versions():
    data = small_file()
    expect_error(b"GGML" + data[4:], "bad magic")
    expect_error(b"", "truncated while reading magic")
    for v in (1, 4, 0xFFFFFFFF):
        expect_error(data[:4] + struct.pack("<I", v) + data[8:], f"unsupported version {v}")


def test_tensor_offset_past_end_of_file():
    specs = {"w": TensorSpec(GGML_F32, (64,), b"\0" * 256)}
    data = bytearray(write_gguf({}, specs))
    g = read_gguf(bytes(data))
    assert g.tensors["w"].offset == 0
    # the offset field follows name "w", n_dims (u32), one dim (u64) and the type (u32)
    pos = bytes(data).index(b"w", 24) + 1 + 4 + 8 + 4
    struct.pack_into("<Q", data, pos, 1 << 40)
    expect_error(bytes(data), "tensor 'w' offset past end of file")
    struct.pack_into("<Q", data, pos, 4)
    expect_error(bytes(data), "tensor 'w' offset 4 is not a multiple of the alignment 32")


def test_unsupported_tensor_type_is_named():
    # Q2_K: neither read by the kernels nor transcoded at load (py_engine/loaders/gguf_transcode.py)
    q2k = write_gguf({}, {"blk.0.ffn_down.weight": TensorSpec(10, (256,), b"\0" * 84)})
    expect_error(q2k, r"tensor 'blk.0.ffn_down.weight' has unsupported type Q2_K \(supported: F32, F16, Q4_0, "
                      r"Q4_1, Q8_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, BF16\)")
    weird = write_gguf({}, {"x": TensorSpec(77, (32,), b"\0" * 32)})
    expect_error(weird, r"tensor 'x' has unsupported type unknown\(77\)")


def test_block_type_with_row_not_multiple_of_block():
    data = write_gguf({}, {"x": TensorSpec(GGML_F32, (20,), b"\0" * 80)})
    patched = data.replace(struct.pack("<IQ", 1, 20) + struct.pack("<I", 0),
                           struct.pack("<IQ", 1, 20) + struct.pack("<I", GGML_Q4_0))
    expect_error(patched, "row length 20, not a multiple of its block size 32")


def test_unknown_metadata_value_types():
    data = write_gguf({"k": 5}, {})
    pos = data.index(b"k") + 1
    expect_error(data[:pos] + struct.pack("<I", 13) + data[pos + 4:], "'k' has unknown value type 13")
    arr = write_gguf({"a": [1, 2]}, {})
    pos = arr.index(b"a") + 1 + 4
    expect_error(arr[:pos] + struct.pack("<I", 99) + arr[pos + 4:], "'a' has array of unknown value type 99")


def _header(n_tensors, n_kv, version=3):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


@pytest.mark.parametrize("blob, match", [
    (_header(2**63, 0) + b"\0" * 76, "tensor count 9223372036854775808 cannot fit"),
    (_header(0, 2**62) + b"\0" * 76, "metadata count .* cannot fit"),
    (_header(0, 1) + struct.pack("<Q", 2**60) + b"k" * 60, "truncated while reading key of metadata entry 0"),
    (_header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", T_STRING) + struct.pack("<Q", 2**61) + b"x" * 40,
     "truncated while reading string value of 'k'"),
    (_header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", T_ARRAY, T_UINT8, 2**50) + b"x" * 40,
     "array 'k' count 1125899906842624 cannot fit"),
    (_header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", T_ARRAY, T_STRING, 2**40) + b"x" * 40,
     "array 'k' count .* cannot fit"),
    (_header(1, 0) + struct.pack("<Q", 1) + b"t" + struct.pack("<I", 2**31) + b"\0" * 64, "tensor 't' has 2147483648 dims"),
])
def test_absurd_counts_fail_fast_without_allocating(blob, match):
    t0 = time.perf_counter()
    expect_error(blob, match)
    assert time.perf_counter() - t0 < 0.05


def test_deeply_nested_arrays_are_rejected():
    blob = _header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", T_ARRAY)
    blob += struct.pack("<IQ", T_ARRAY, 1) * 20 + struct.pack("<IQ", T_UINT8, 0)
    expect_error(blob, "nests arrays deeper than 8")


def test_duplicates_bad_alignment_and_bad_utf8():
    dup = _header(0, 2) + (struct.pack("<Q", 1) + b"k" + struct.pack("<IB", T_UINT8, 1)) * 2
    expect_error(dup, "duplicate metadata key 'k'")
    expect_error(write_gguf({"general.alignment": 24}, {}, alignment=32), "alignment must be a positive power of two")
    expect_error(write_gguf({"general.alignment": 0}, {}, alignment=32), "alignment must be a positive power of two")
    bad = _header(0, 1) + struct.pack("<Q", 2) + b"\xff\xfe" + struct.pack("<IB", T_UINT8, 1)
    expect_error(bad, "key of metadata entry 0 is not valid UTF-8")
    spec = TensorSpec(GGML_F32, (8,), b"\0" * 32)
    two = write_gguf({}, {"a": spec, "b": spec}).replace(b"\x01\x00\x00\x00\x00\x00\x00\x00b", b"\x01\x00\x00\x00\x00\x00\x00\x00a")
    expect_error(two, "duplicate tensor name 'a'")


def test_random_corruption_only_ever_raises_gguf_error():
    data = make_tiny_llama_gguf(seed=0)
    g = read_gguf(data)
    header_end = g.data_offset
    rnd = random.Random(0)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(300):
        b = bytearray(data[:header_end + 4096])
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(header_end)] = rnd.randrange(256)
        try:
            read_gguf(bytes(b))
            outcomes["ok"] += 1
        except GGUFError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and sum(outcomes.values()) == 300


def test_require_names_missing_and_ill_typed_keys():
    g = read_gguf(small_file())
    assert g.require("x.count", int) == 7
    assert g.require("x.count", float) == 7.0
    assert g.require("general.architecture", str) == "llama" == g.architecture
    with pytest.raises(GGUFError, match="required metadata key 'llama.block_count' is missing"):
        g.require("llama.block_count")
    with pytest.raises(GGUFError, match="'general.architecture' has type str, expected int"):
        g.require("general.architecture", int)
    with pytest.raises(GGUFError, match="required tensor 'output.weight' is missing"):
        g.tensor("output.weight")


# --- the tiny synthetic model --------------------------------------------------------------
def test_tiny_model_is_deterministic_and_complete():
    a, b, c = make_tiny_llama_gguf(seed=0), make_tiny_llama_gguf(seed=0), make_tiny_llama_gguf(seed=1)
    assert a == b and a != c
    g = read_gguf(a)
    md = g.metadata
    assert md["general.architecture"] == "llama"
    expected = {"llama.block_count": 2, "llama.embedding_length": 64, "llama.attention.head_count": 4,
                "llama.attention.head_count_kv": 2, "llama.rope.dimension_count": 16,
                "llama.feed_forward_length": 128, "llama.context_length": 128, "llama.vocab_size": 384}
    for k, v in expected.items():
        assert g.require(k, int) == v
    assert g.require("llama.rope.freq_base", float) == 10000.0
    assert g.require("llama.attention.layer_norm_rms_epsilon", float) == pytest.approx(1e-5)
    assert len(md["tokenizer.ggml.tokens"]) == 384 == len(md["tokenizer.ggml.token_type"])
    names = ["token_embd.weight"] + [f"blk.{i}.{n}.weight" for i in range(2) for n in (
        "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]
    assert list(g.tensors) == names + ["output_norm.weight"]
    assert "output.weight" not in g.tensors
    assert g.tensors["token_embd.weight"].type_name == "Q8_0"
    assert g.tensors["token_embd.weight"].shape == (384, 64)
    assert g.tensors["blk.0.attn_k.weight"].shape == (32, 64)
    assert g.tensors["blk.1.ffn_down.weight"].shape == (64, 128)
    assert {t.type_name for t in g.tensors.values()} == {"F32", "Q4_0", "Q4_1", "Q8_0"}
    for t in g.tensors.values():
        assert np.isfinite(t.to_numpy()).all()


# --- the real model ------------------------------------------------------------------------
def test_real_smollm2_file_parses_with_expected_shapes():
    data = real_model_bytes()
    t0 = time.perf_counter()
    g = read_gguf(data)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0, f"parsing took {elapsed:.2f} s"
    assert g.version == 3 and g.architecture == "llama"
    assert g.require("llama.block_count", int) == 30
    assert g.require("llama.embedding_length", int) == 576
    assert g.require("llama.attention.head_count", int) == 9
    assert g.require("llama.attention.head_count_kv", int) == 3
    assert g.require("llama.feed_forward_length", int) == 1536
    assert g.require("llama.rope.freq_base", float) == 100000.0
    assert g.require("tokenizer.ggml.model", str) == "gpt2"
    assert len(g.metadata["tokenizer.ggml.tokens"]) == 49152
    assert len(g.metadata["tokenizer.ggml.merges"]) == 48900
    assert len(g.tensors) == 30 * 9 + 2 and "output.weight" not in g.tensors
    emb = g.tensors["token_embd.weight"]
    assert emb.type_name == "Q8_0" and emb.shape == (49152, 576) and emb.nbytes == 49152 * 576 // 32 * 34
    q = g.tensors["blk.0.attn_q.weight"]
    assert q.type_name == "Q4_1" and q.shape == (576, 576)
    assert g.tensors["blk.29.attn_k.weight"].shape == (192, 576)
    w = g.tensors["blk.0.attn_norm.weight"].to_numpy()
    assert w.shape == (576,) and np.isfinite(w).all() and 0 < np.abs(w).mean() < 100
