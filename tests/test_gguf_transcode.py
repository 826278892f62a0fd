"""GGUF types the kernels do not read (K-quants, Q5_0/Q5_1, BF16): decoding against llama.cpp's
own decoders (the `gguf` package), the transcoding's error bounds, and bad input."""
import numpy as np
import pytest

import gguf as gguf_py  # llama.cpp's Python package (scripts/requirements.txt): the independent decoder
from gguf.quants import dequantize as llama_cpp_dequantize

from py_engine.loaders import gguf_transcode as T
from py_engine.loaders.gguf import GGUFError, GGUFTensor, read_gguf, tensor_from_array, write_gguf
from py_engine.program import LazyBytes
from py_engine.reference.gguf_quant import dequantize

NAMES = {T.GGML_Q5_0: "Q5_0", T.GGML_Q5_1: "Q5_1", T.GGML_Q4_K: "Q4_K", T.GGML_Q5_K: "Q5_K",
         T.GGML_Q6_K: "Q6_K", T.GGML_BF16: "BF16"}
F16_FIELDS = {T.GGML_Q5_0: (0,), T.GGML_Q5_1: (0, 2), T.GGML_Q4_K: (0, 2), T.GGML_Q5_K: (0, 2), T.GGML_Q6_K: (208,)}


def random_blocks(t: int, n: int, rng) -> np.ndarray:
    """n valid blocks of type t: random bits, finite f16 scales (some zero), [n, block bytes]."""
    per, size = T.TRANSCODED_BLOCKS[t]
    if t == T.GGML_BF16:
        x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n)).astype(np.float32)
        return (x.view(np.uint32) >> 16).astype("<u2").view(np.uint8).reshape(n, 2)
    raw = rng.integers(0, 256, (n, size), dtype=np.uint8)
    for col in F16_FIELDS[t]:
        v = rng.uniform(-2e-3, 2e-3, n).astype(np.float16)
        v[::7] = 0  # blocks whose scale is zero
        raw[:, col:col + 2] = v.reshape(-1, 1).view(np.uint8)
    return raw


def llama_cpp(t: int, raw: np.ndarray) -> np.ndarray:
    return llama_cpp_dequantize(raw.reshape(-1), gguf_py.GGMLQuantizationType[NAMES[t]]).reshape(-1)


@pytest.mark.parametrize("t", list(NAMES), ids=list(NAMES.values()))
def test_decoding_matches_llama_cpp_exactly(t):
    raw = random_blocks(t, 96, np.random.default_rng(t))
    per = T.TRANSCODED_BLOCKS[t][0]
    want = llama_cpp(t, raw)
    np.testing.assert_array_equal(T.decode(t, raw.tobytes(), 96 * per), want)
    # The reference dequantizer (and so GGUFTensor.to_numpy) takes the same path.
    np.testing.assert_array_equal(dequantize(t, raw.tobytes(), (2, 48 * per)).reshape(-1), want)


@pytest.mark.parametrize("t", list(NAMES), ids=list(NAMES.values()))
def test_test_encoders_write_what_llama_cpp_reads(t):
    """The synthetic files' encoders (reference/kquant_encode.py), decoded by llama.cpp's code:
    within the type's precision (relative RMS error: a wrong layout would give ~1)."""
    x = np.random.default_rng(1).standard_normal((6, 512)).astype(np.float32) * 0.05
    spec = tensor_from_array(x, t)
    back = llama_cpp(t, np.frombuffer(spec.data, np.uint8)).reshape(x.shape)
    rel = float(np.sqrt(np.mean((back - x) ** 2)) / x.std())
    limit = {"Q5_0": 0.06, "Q5_1": 0.06, "Q4_K": 0.11, "Q5_K": 0.06, "Q6_K": 0.03, "BF16": 0.003}[NAMES[t]]
    assert rel < limit, (NAMES[t], rel)


def _q8_0_fields(data: bytes):
    blk = np.frombuffer(data, np.uint8).reshape(-1, 34)
    return blk[:, 0:2].copy().view("<f2").astype(np.float32)[:, 0]


def test_exact_transcodings():
    rng = np.random.default_rng(5)
    raw = random_blocks(T.GGML_Q5_0, 64, rng)
    t, data = T.transcode(T.GGML_Q5_0, raw.tobytes(), 64 * 32)
    assert t == T.GGML_Q8_0
    np.testing.assert_array_equal(dequantize(t, data, (64 * 32,)), llama_cpp(T.GGML_Q5_0, raw))
    raw = (rng.standard_normal(1000).astype(np.float32).view(np.uint32) >> 16).astype("<u2").view(np.uint8)
    t, data = T.transcode(T.GGML_BF16, raw.tobytes(), 1000)
    assert t == T.GGML_F16  # these values are all exact in f16
    np.testing.assert_array_equal(np.frombuffer(data, "<f2").astype(np.float32), llama_cpp(T.GGML_BF16, raw))
    # A value f16 cannot hold exactly (1e-6 is subnormal there, 1e5 overflows): F32, still exact.
    for v in (1e-6, 1e5):
        bf = (np.array([1.0, v], np.float32).view(np.uint32) >> 16).astype("<u2").view(np.uint8).reshape(-1, 2)
        t, data = T.transcode(T.GGML_BF16, bf.tobytes(), 2)
        assert t == T.GGML_F32
        np.testing.assert_array_equal(np.frombuffer(data, "<f4"), llama_cpp(T.GGML_BF16, bf))


def test_q4_k_becomes_q4_1_with_only_its_scales_rounded():
    """Each Q4_K sub-block is one Q4_1 block: w = d'*q + m' with d' = f16(d*scale) and
    m' = f16(-dmin*min), so a weight moves by at most 2^-11 * (15|d'| + |m'|) (f16 rounding)."""
    raw = random_blocks(T.GGML_Q4_K, 128, np.random.default_rng(7))
    t, data = T.transcode(T.GGML_Q4_K, raw.tobytes(), 128 * 256)
    assert t == T.GGML_Q4_1 and len(data) == 128 * 8 * 20
    got = dequantize(t, data, (128 * 8, 32))
    want = llama_cpp(T.GGML_Q4_K, raw).reshape(-1, 32)
    blk = np.frombuffer(data, np.uint8).reshape(-1, 20)
    d = np.abs(blk[:, 0:2].copy().view("<f2").astype(np.float32))
    m = np.abs(blk[:, 2:4].copy().view("<f2").astype(np.float32))
    bound = 2.0 ** -11 * (15 * d + m) * 1.001 + 1e-9
    err = np.abs(got - want)
    assert (err <= bound).all(), float((err - bound).max())
    assert err.max() > 0  # it is a rounding, not a copy: the bound is what the test checks


@pytest.mark.parametrize("t", [T.GGML_Q5_1, T.GGML_Q5_K, T.GGML_Q6_K], ids=["Q5_1", "Q5_K", "Q6_K"])
def test_requantized_to_q8_0_within_half_a_step(t):
    """Re-quantized per 32 weights: step d' = f16(max|w| / 127), each weight within d'/2."""
    per = T.TRANSCODED_BLOCKS[t][0]
    raw = random_blocks(t, 64, np.random.default_rng(t + 100))
    kt, data = T.transcode(t, raw.tobytes(), 64 * per)
    assert kt == T.GGML_Q8_0
    want = llama_cpp(t, raw).reshape(-1, 32)
    got = dequantize(kt, data, want.shape)
    step = _q8_0_fields(data)[:, None]
    amax = np.abs(want).max(axis=1, keepdims=True)
    assert (step <= amax / 127 * (1 + 2.0 ** -10) + 1e-12).all()
    assert (np.abs(got - want) <= step / 2 * (1 + 1e-5) + 1e-12).all()


def test_transcoding_refuses_what_it_cannot_hold():
    # A Q6_K block whose weights pass f16's range per Q8_0 step (d = 60000, scale 127, q = -32).
    raw = np.zeros((1, 210), np.uint8)
    raw[0, 192:208] = 127
    raw[0, 208:210] = np.array([60000], np.float16).view(np.uint8)
    tensor = GGUFTensor("blk.0.ffn_down.weight", (256,), T.GGML_Q6_K, 0, memoryview(raw.tobytes()))
    with pytest.raises(GGUFError, match=r"tensor 'blk.0.ffn_down.weight' \(Q6_K\) cannot be transcoded: .*f16"):
        T.kernel_tensor(tensor)
    with pytest.raises(ValueError, match="whole blocks of 256"):
        T.decode(T.GGML_Q4_K, bytes(144), 300)
    with pytest.raises(ValueError, match="need 144 bytes"):
        T.transcode(T.GGML_Q4_K, bytes(100), 256)


@pytest.mark.parametrize("t", [T.GGML_Q5_0, T.GGML_Q5_1, T.GGML_Q4_K, T.GGML_Q5_K, T.GGML_Q6_K],
                         ids=["Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"])
def test_lazy_transcoding_makes_the_same_bytes_when_read(t):
    """kernel_tensor(lazy=True): the same type, size and bytes as at once, made on each read
    (on_made counts them); nothing is transcoded before."""
    per = T.TRANSCODED_BLOCKS[t][0]
    raw = random_blocks(t, 16, np.random.default_rng(t + 200))
    tensor = GGUFTensor("w", (per * 8, 2), t, 0, memoryview(raw.tobytes()))
    assert T.cannot_fail(t, tensor.data, tensor.n_elements)
    made = []
    lazy = T.kernel_tensor(tensor, lazy=True, on_made=lambda: made.append(1))
    now = T.kernel_tensor(tensor)
    assert isinstance(lazy.data, LazyBytes) and made == []
    assert (lazy.ggml_type, lazy.nbytes) == (now.ggml_type, now.nbytes)
    assert bytes(lazy.data.make()) == bytes(now.data) and bytes(lazy.data.make()) == bytes(now.data)
    assert len(made) == 2


def test_lazy_transcoding_still_refuses_at_once_what_may_not_fit():
    """A block whose scales could pass f16's range, or a NaN scale: cannot_fail says no, so the
    tensor is transcoded (and refused) when taken, as a model's checks must fail before the GPU
    holds anything; the wrong byte count likewise."""
    q6 = np.zeros((1, 210), np.uint8)
    q6[0, 192:208] = 127
    q6[0, 208:210] = np.array([60000], np.float16).view(np.uint8)
    q4k = random_blocks(T.GGML_Q4_K, 2, np.random.default_rng(5))
    q4k[1, 0:2] = np.array([np.nan], np.float16).view(np.uint8)
    for name, t, raw in (("blk.0.ffn_down.weight", T.GGML_Q6_K, q6), ("blk.0.ffn_up.weight", T.GGML_Q4_K, q4k)):
        tensor = GGUFTensor(name, (256 * len(raw),), t, 0, memoryview(raw.tobytes()))
        assert not T.cannot_fail(t, tensor.data, tensor.n_elements)
        with pytest.raises(GGUFError, match=rf"tensor '{name}' \({NAMES[t]}\) cannot be transcoded: .*f16"):
            T.kernel_tensor(tensor, lazy=True)
    short = GGUFTensor("w", (256,), T.GGML_Q4_K, 0, memoryview(bytes(100)))
    with pytest.raises(GGUFError, match="need 144 bytes"):
        T.kernel_tensor(short, lazy=True)


def test_a_model_with_a_bad_block_is_refused_while_its_program_is_built():
    """The builder takes weights lazily, yet a NaN scale in one is refused by build_llama_program
    (Engine.prepare), naming the tensor, not later at the upload."""
    from py_engine.models.llama import build_llama_program
    from py_engine.testing.tiny_gguf import make_tiny_transcoded_gguf

    g = read_gguf(memoryview(bytearray(make_tiny_transcoded_gguf(seed=0))))
    bad = next(t for t in g.tensors.values() if t.ggml_type == T.GGML_Q6_K)
    assert not bad.data.readonly
    bad.data[208:210] = np.array([np.inf], np.float16).view(np.uint8).tobytes()
    with pytest.raises(GGUFError, match=rf"tensor '{bad.name}' \(Q6_K\) cannot be transcoded"):
        build_llama_program(g, context=32)


def test_files_with_these_types_parse_and_transcode_to_kernel_types():
    # (A type that is neither read nor transcoded, Q2_K, is refused: tests/test_gguf.py.)
    rng = np.random.default_rng(2)
    tensors = {NAMES[t]: tensor_from_array(rng.standard_normal((2, 256)).astype(np.float32), t) for t in NAMES}
    g = read_gguf(write_gguf({"general.architecture": "llama"}, tensors))
    assert {name: g.tensor(name).type_name for name in NAMES.values()} == {n: n for n in NAMES.values()}
    for name, t in ((n, t) for t, n in NAMES.items()):
        k = T.kernel_tensor(g.tensor(name))
        assert k.type_name == {"Q4_K": "Q4_1", "BF16": "F16"}.get(name, "Q8_0") and k.dims == (256, 2)


def test_a_transcoded_model_stays_close_to_the_files_own_weights():
    """numpy only: the tiny Q4_K_M-like llama with the file's own weights against the weights as
    loaded (transcoded). The same greedy ids for 12 steps; logits within 0.3 (measured 0.15, at
    logits up to ~7: the Q6_K/Q5_K -> Q8_0 re-quantization's share)."""
    from py_engine.reference.llama import LlamaReference
    from py_engine.testing.tiny_gguf import make_tiny_transcoded_gguf

    g = read_gguf(make_tiny_transcoded_gguf(seed=0))
    runs = []
    for as_loaded in (False, True):
        ref = LlamaReference.from_gguf(g, context=64, as_loaded=as_loaded)
        logits = [ref.forward([1, 40, 41, 42, 43, 44, 45])[-1]]
        for _ in range(12):
            logits.append(ref.forward([int(np.argmax(logits[-1]))])[-1])
        runs.append(np.array(logits))
    file_ids, loaded_ids = (r.argmax(axis=1).tolist() for r in runs)
    assert file_ids == loaded_ids and len(set(file_ids)) > 1, (file_ids, loaded_ids)
    diff = float(np.abs(runs[0] - runs[1]).max())
    print("tiny transcoded llama: max logit change from transcoding", diff)
    assert diff < 0.3


def test_the_synthetic_1b_shaped_file_builds():
    # The benchmark's stand-in for Llama-3.2-1B Q4_K_M (`bench --synthetic llama-1b-q4_k_m`), one layer.
    from app.bench import LLAMA_1B_Q4_K_M, synthetic_gguf
    from py_engine.models.llama import build_llama_program

    g = read_gguf(synthetic_gguf(**dict(LLAMA_1B_Q4_K_M, n_layers=1)))
    lp = build_llama_program(g, context=32, max_prefill=8, fuse=False)
    c = lp.config
    assert (c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim) == (1, 2048, 32, 8, 64, 8192)
    assert lp.transcoded == {"Q6_K->Q8_0": 3, "Q4_K->Q4_1": 5}
    w = T.decode(T.GGML_Q4_K, g.tensor("blk.0.attn_q.weight").data, 2048 * 2048)
    assert np.isfinite(w).all() and 0 < np.abs(w).max() < 1
