"""Cases for the quantized linears and the embeddings (q4gsw, qcs4w, GGUF blocks, float).

Expected values: the numpy references (reference/quant_linear.py, reference/gguf_quant.py),
products in float64 over the dequantized weights. Linear tolerances: atol 2e-4 + rtol 1e-4
(fp32 accumulation over K <= 256 of O(1) terms); gathers: 1e-6 relative (dequantization is
exact except Q4_1's d*q + m, which the GPU may fuse); float gathers are exact.
"""
from __future__ import annotations

import numpy as np

from ..graph import OpError, StepError
from ..program import Bool, Int, Null, Program
from ..reference import gguf_quant as gq
from ..reference import quant_linear as ql
from ..reference.tensor_ops import embedding as embedding_ref
from .harness import CaseSpec, ErrorSpec, Step

F32 = "float32"
LIN_ATOL, LIN_RTOL = 2e-4, 1e-4
GATHER_TOL = 1e-6
GGUF_TYPES = {"f32": gq.GGML_F32, "f16": gq.GGML_F16, "q4_0": gq.GGML_Q4_0, "q4_1": gq.GGML_Q4_1,
              "q8_0": gq.GGML_Q8_0}


def _rng(seed: int):
    return np.random.default_rng(seed)


def _x(r, shape):
    return r.standard_normal(shape).astype(np.float32)


def _linear_f64(x, w, bias=None):
    out = x.astype(np.float64) @ w.astype(np.float64).T
    return (out if bias is None else out + bias).astype(np.float32)


# ---------------------------------------------------------------- q4gsw
def _q4gsw_program(x_max_dims, k, n, g, with_bias, seed, k_pad=0, n_pad=0):
    """Program x -> linear_q4gsw -> out; returns (program, x_id, unpacked weight, bias)."""
    r = _rng(seed)
    w = r.standard_normal((n, k + k_pad)).astype(np.float32)  # k + k_pad: a multiple of g
    w[:, k:] = 0.0
    packed, scales = ql.pack_q4gsw(w, g)
    dense = ql.unpack_q4gsw(packed, scales, g)[:, :k]
    scales = np.ascontiguousarray(np.pad(scales, ((0, 0), (0, n_pad))))
    bias = r.standard_normal(n).astype(np.float32) if with_bias else None
    p = Program()
    ix = p.tensor(F32, x_max_dims)
    iw = p.tensor("uint8", packed.shape, packed)
    isc = p.tensor(F32, scales.shape, scales)
    ib = p.tensor(F32, (n,), bias) if with_bias else p.add(Null())
    o = p.tensor(F32, tuple(x_max_dims[:-1]) + (n,))
    p.call("et_vk.linear_q4gsw.default", ix, iw, isc, p.add(Int(g)), ib, o)
    p.input_ids, p.output_ids = [ix], [o]
    return p, dense, bias


def _q4gsw(x_shape, n, g, with_bias=False, seed=0):
    k = x_shape[-1]
    p, dense, bias = _q4gsw_program(x_shape, k, n, g, with_bias, seed)
    x = _x(_rng(seed + 100), x_shape)
    # The packed reference itself, to pin the packing, and the float64 product over it.
    want = _linear_f64(x, dense, bias)
    return CaseSpec(p, [Step([x], [want])], LIN_ATOL, LIN_RTOL)


def q4gsw_m1_g32():
    return _q4gsw((1, 160), 50, 32, seed=1)


def q4gsw_m3_g32_bias():
    return _q4gsw((3, 96), 70, 32, with_bias=True, seed=2)


def q4gsw_m17_g64_rank3():
    return _q4gsw((1, 17, 192), 130, 64, seed=3)


def q4gsw_m70_g128_bias():
    return _q4gsw((70, 256), 33, 128, with_bias=True, seed=4)


def q4gsw_k_tail_g8():
    # K = 40: not a multiple of the 32-wide K tile.
    return _q4gsw((5, 40), 9, 8, seed=5)


def q4gsw_matches_reference():
    """Through ql.linear_q4gsw itself (the packing's source of truth), M = 1 and M = 4."""
    r = _rng(6)
    w = r.standard_normal((20, 64)).astype(np.float32)
    packed, scales = ql.pack_q4gsw(w, 32)
    bias = r.standard_normal(20).astype(np.float32)
    p = Program()
    ix = p.tensor(F32, (4, 64))
    o = p.tensor(F32, (4, 20))
    p.call("et_vk.linear_q4gsw.default", ix, p.tensor("uint8", packed.shape, packed),
           p.tensor(F32, scales.shape, scales), p.add(Int(32)), p.tensor(F32, (20,), bias), o)
    p.input_ids, p.output_ids = [ix], [o]
    steps = []
    for m in (4, 1):
        x = _x(r, (m, 64))
        steps.append(Step([x], [ql.linear_q4gsw(x, packed, scales, 32, bias)]))
    return CaseSpec(p, steps, LIN_ATOL, LIN_RTOL)


def q4gsw_padded_layouts():
    """ExecuTorch's padding: packed K 36 -> 40 (extra bytes per row), scales' N 6 -> 8."""
    p, dense, _ = _q4gsw_program((2, 36), 36, 6, 8, False, seed=7, k_pad=4, n_pad=2)
    r = _rng(8)
    steps = []
    for m in (2, 1):
        x = _x(r, (m, 36))
        steps.append(Step([x], [_linear_f64(x, dense)]))
    return CaseSpec(p, steps, LIN_ATOL, LIN_RTOL)


def q4gsw_dynamic_m():
    """Built at M = 16, run at 16, 5, 1, 16: the GEMV / tiled choice follows the live M."""
    p, dense, bias = _q4gsw_program((16, 128), 128, 72, 32, True, seed=9)
    r = _rng(10)
    steps = []
    for m in (16, 5, 1, 16):
        x = _x(r, (m, 128))
        steps.append(Step([x], [_linear_f64(x, dense, bias)]))
    return CaseSpec(p, steps, LIN_ATOL, LIN_RTOL)


# ---------------------------------------------------------------- qcs4w
def _qcs4w(x_shape, n, seed):
    r = _rng(seed)
    k = x_shape[-1]
    w = r.standard_normal((n, k)).astype(np.float32)
    packed, scales = ql.pack_qcs4w(w)
    p = Program()
    ix, o = p.tensor(F32, x_shape), p.tensor(F32, tuple(x_shape[:-1]) + (n,))
    p.call("et_vk.linear_qcs4w.default", ix, p.tensor("uint8", packed.shape, packed),
           p.tensor(F32, scales.shape, scales), o)
    p.input_ids, p.output_ids = [ix], [o]
    x = _x(r, x_shape)
    return CaseSpec(p, [Step([x], [ql.linear_qcs4w(x, packed, scales)])], LIN_ATOL, LIN_RTOL)


def qcs4w_m1():
    return _qcs4w((1, 64), 40, 11)


def qcs4w_m17_odd_k():
    return _qcs4w((17, 75), 66, 12)


def qcs4w_m3_rank1_batch():
    return _qcs4w((3, 1, 48), 5, 13)


# ---------------------------------------------------------------- GGUF linear
def _gguf_weight(type_id, n, k, seed):
    w = (_rng(seed).standard_normal((n, k)) * 0.5).astype(np.float32)
    raw = np.frombuffer(gq.quantize(type_id, w), dtype=np.uint8).reshape(n, -1)
    return raw, gq.dequantize(type_id, raw.tobytes(), (n, k))


def _linear_gguf_program(p, ix, raw, type_id, n, x_dims, bias=None):
    iw = p.tensor("uint8", raw.shape, raw)
    ib = p.tensor(F32, (n,), bias) if bias is not None else p.add(Null())
    o = p.tensor(F32, tuple(x_dims[:-1]) + (n,))
    p.call("py_engine.linear_gguf.default", ix, iw, p.add(Int(type_id)), ib, o)
    return iw, o


def _linear_gguf(type_name, ms, k, n, with_bias, seed):
    type_id = GGUF_TYPES[type_name]
    raw, dense = _gguf_weight(type_id, n, k, seed)
    r = _rng(seed + 1)
    bias = r.standard_normal(n).astype(np.float32) if with_bias else None
    p = Program()
    ix = p.tensor(F32, (max(ms), k))
    _, o = _linear_gguf_program(p, ix, raw, type_id, n, (max(ms), k), bias)
    p.input_ids, p.output_ids = [ix], [o]
    steps = []
    for m in ms:
        x = _x(r, (m, k))
        steps.append(Step([x], [_linear_f64(x, dense, bias)]))
    return CaseSpec(p, steps, LIN_ATOL, LIN_RTOL)


def _make_gguf_linear_cases():
    cases = {}
    for name in GGUF_TYPES:
        # M = 17 (on GPUs tiled, 2 row tiles; CPU adapters: GEMV rows) then M = 1 (GEMV) in one graph;
        # N = 70 spans 2 column tiles.
        cases[f"linear_gguf_{name}"] = (lambda name=name: _linear_gguf(name, (17, 1), 96, 70, name == "q4_1",
                                                                       20 + len(name)))
    # Row widths that are not a multiple of 8 (F16 rows then start at 2-byte offsets).
    cases["linear_gguf_f16_odd_k"] = lambda: _linear_gguf("f16", (3, 1), 37, 11, True, 30)
    cases["linear_gguf_f32_odd_k"] = lambda: _linear_gguf("f32", (70, 1), 45, 13, False, 31)
    # CPU adapters read Q4 blocks two to a record (weight_repack.repack_records): rows of whole
    # records only, and of one block (the half-empty record alone); K = 96 above ends in one.
    # Their prompt kernels take activation rows four at a time: M = 5 and 2 end in partial groups.
    cases["linear_gguf_q4_1_whole_records"] = lambda: _linear_gguf("q4_1", (5, 2, 1), 128, 37, True, 33)
    cases["linear_gguf_q4_0_one_block"] = lambda: _linear_gguf("q4_0", (4, 1), 32, 19, False, 34)
    return cases


def linear_gguf_q8_0_vocab():
    """A vocabulary-sized head: N = 49152 outputs, decode (M = 1) then prefill (M = 3)."""
    return _linear_gguf("q8_0", (1, 3), 64, 49152, False, 32)


# ---------------------------------------------------------------- embeddings
def _indices(r, shape, v, dtype):
    return r.integers(0, v, size=shape).astype(dtype)


def _gather_case(p, iidx, o, table, idx_shapes, dtype, r, tol):
    p.input_ids, p.output_ids = [iidx], [o]
    steps = []
    for shape in idx_shapes:
        idx = _indices(r, shape, table.shape[0], dtype)
        steps.append(Step([idx], [embedding_ref(table, idx)]))
    return CaseSpec(p, steps, *((tol, tol) if tol != "exact" else ("exact", 0.0)))


def _embedding_f32(idx_dtype, seed):
    r = _rng(seed)
    table = r.standard_normal((30, 19)).astype(np.float32)  # E = 19: not a multiple of 8
    p = Program()
    iw = p.tensor(F32, table.shape, table)
    iidx = p.tensor(idx_dtype, (8,))
    o = p.tensor(F32, (8, 19))
    p.call("aten.embedding.default", iw, iidx, p.add(Int(-1)), p.add(Bool(False)), p.add(Bool(False)), o)
    # Built at 8 indices, run at 8, 3, 1, 8.
    return _gather_case(p, iidx, o, table, [(8,), (3,), (1,), (8,)], np.dtype(idx_dtype), r, "exact")


def embedding_f32_int64():
    return _embedding_f32("int64", 40)


def embedding_f32_int32():
    return _embedding_f32("int32", 41)


def embedding_f32_short_args():
    """aten.embedding serialized without the optional arguments: (weight, indices, out)."""
    r = _rng(42)
    table = r.standard_normal((5, 8)).astype(np.float32)
    p = Program()
    iw, iidx, o = p.tensor(F32, table.shape, table), p.tensor("int64", (2, 3)), p.tensor(F32, (2, 3, 8))
    p.call("aten.embedding.default", iw, iidx, o)
    return _gather_case(p, iidx, o, table, [(2, 3)], np.int64, r, "exact")


def embedding_bad_constant_index_gives_zeros():
    """Indices the host cannot see (a constant) out of range: the shader writes a zero row."""
    r = _rng(43)
    table = r.standard_normal((6, 12)).astype(np.float32)
    idx = np.array([2, 6, -1, 5], np.int64)
    p = Program()
    iw, iidx, o = p.tensor(F32, table.shape, table), p.tensor("int64", (4,), idx), p.tensor(F32, (4, 12))
    p.call("aten.embedding.default", iw, iidx, o)
    p.input_ids, p.output_ids = [], [o]
    want = np.zeros((4, 12), np.float32)
    want[0], want[3] = table[2], table[5]
    return CaseSpec(p, [Step([], [want])])


def _embedding_q4gsw(g, is_linear, idx_dtype, seed, with_flag=True):
    r = _rng(seed)
    v, e = 23, 2 * g
    w = r.standard_normal((v, e)).astype(np.float32)
    packed, scales = ql.pack_embedding_q4gsw(w, g, is_linear)
    p = Program()
    iw = p.tensor("uint8", packed.shape, packed)
    isc = p.tensor(F32, scales.shape, scales)
    iidx = p.tensor(idx_dtype, (2, 5))
    o = p.tensor(F32, (2, 5, e))
    flag = [p.add(Bool(is_linear))] if with_flag else []
    p.call("et_vk.embedding_q4gsw.default", iw, isc, p.add(Int(g)), iidx, *flag, o)
    p.input_ids, p.output_ids = [iidx], [o]
    steps = []
    for shape in [(2, 5), (1, 3), (2, 5)]:
        idx = _indices(r, shape, v, np.dtype(idx_dtype))
        steps.append(Step([idx], [ql.embedding_q4gsw(packed, scales, g, idx, is_linear)]))
    return CaseSpec(p, steps, GATHER_TOL, GATHER_TOL)


def embedding_q4gsw_g32_int64():
    return _embedding_q4gsw(32, False, "int64", 50)


def embedding_q4gsw_g64_linear_weight_int32():
    return _embedding_q4gsw(64, True, "int32", 51)


def embedding_q4gsw_no_flag():
    return _embedding_q4gsw(32, False, "int32", 52, with_flag=False)


def _embedding_gguf(type_name, idx_dtype, seed, e=64):
    type_id = GGUF_TYPES[type_name]
    raw, table = _gguf_weight(type_id, 27, e, seed)
    p = Program()
    iw = p.tensor("uint8", raw.shape, raw)
    iidx = p.tensor(idx_dtype, (6,))
    o = p.tensor(F32, (6, e))
    p.call("py_engine.embedding_gguf.default", iw, p.add(Int(type_id)), iidx, o)
    tol = "exact" if type_name in ("f32", "f16") else GATHER_TOL
    return _gather_case(p, iidx, o, table, [(6,), (2,)], np.dtype(idx_dtype), _rng(seed + 1), tol)


def _make_gguf_embedding_cases():
    cases = {}
    for i, name in enumerate(GGUF_TYPES):
        dtype = "int64" if i % 2 == 0 else "int32"
        cases[f"embedding_gguf_{name}_{dtype}"] = (lambda name=name, dtype=dtype, i=i: _embedding_gguf(name, dtype, 60 + i))
    cases["embedding_gguf_f16_odd_e"] = lambda: _embedding_gguf("f16", "int32", 70, e=21)
    # Rows of 3 blocks: on CPU adapters the last record of a row holds one block.
    cases["embedding_gguf_q4_1_odd_blocks"] = lambda: _embedding_gguf("q4_1", "int32", 71, e=96)
    cases["embedding_gguf_q4_0_odd_blocks"] = lambda: _embedding_gguf("q4_0", "int64", 72, e=96)
    cases["embedding_gguf_q8_0_odd_blocks"] = lambda: _embedding_gguf("q8_0", "int32", 73, e=96)
    return cases


def tied_program(type_id, v, e, seed):
    """One GGUF weight tensor as both the embedding and the output head (llama's tied
    token_embd). Returns (program, weight id, dequantized table)."""
    raw, table = _gguf_weight(type_id, v, e, seed)
    p = Program()
    iw = p.tensor("uint8", raw.shape, raw)
    iidx = p.tensor("int64", (5,))
    h = p.tensor(F32, (5, e))
    p.call("py_engine.embedding_gguf.default", iw, p.add(Int(type_id)), iidx, h)
    o = p.tensor(F32, (5, v))
    p.call("py_engine.linear_gguf.default", h, iw, p.add(Int(type_id)), p.add(Null()), o)
    p.input_ids, p.output_ids = [iidx], [h, o]
    return p, iw, table


def _tied(type_id, seed):
    v, e = 300, 64
    p, _, table = tied_program(type_id, v, e, seed)
    r = _rng(seed + 1)
    steps = []
    for n in (5, 1):
        idx = _indices(r, (n,), v, np.int64)
        rows = table[idx]
        steps.append(Step([idx], [rows, _linear_f64(rows, table)]))
    return CaseSpec(p, steps, LIN_ATOL, LIN_RTOL)


def tied_embedding_and_head_q8_0():
    """llama's token_embd (Q8_0) as both the embedding and the output head: one weight tensor."""
    return _tied(gq.GGML_Q8_0, 80)


def tied_embedding_and_head_q4_1():
    """The same with Q4_1 (d and m regions): both ops read one repacked buffer."""
    return _tied(gq.GGML_Q4_1, 82)


CASES = {f.__name__: f for f in (
    q4gsw_m1_g32, q4gsw_m3_g32_bias, q4gsw_m17_g64_rank3, q4gsw_m70_g128_bias, q4gsw_k_tail_g8,
    q4gsw_matches_reference, q4gsw_padded_layouts, q4gsw_dynamic_m,
    qcs4w_m1, qcs4w_m17_odd_k, qcs4w_m3_rank1_batch, linear_gguf_q8_0_vocab,
    embedding_f32_int64, embedding_f32_int32, embedding_f32_short_args, embedding_bad_constant_index_gives_zeros,
    embedding_q4gsw_g32_int64, embedding_q4gsw_g64_linear_weight_int32, embedding_q4gsw_no_flag,
    tied_embedding_and_head_q8_0, tied_embedding_and_head_q4_1)}
CASES.update(_make_gguf_linear_cases())
CASES.update(_make_gguf_embedding_cases())


# ---------------------------------------------------------------- bad input
def _q4gsw_error(x_dims, k, n, g_arg, g_pack=32, x_dtype=F32):
    w = _rng(90).standard_normal((n, k)).astype(np.float32)
    packed, scales = ql.pack_q4gsw(w, g_pack)
    p = Program()
    ix, o = p.tensor(x_dtype, x_dims), p.tensor(F32, tuple(x_dims[:-1]) + (n,))
    p.call("et_vk.linear_q4gsw.default", ix, p.tensor("uint8", packed.shape, packed),
           p.tensor(F32, scales.shape, scales), p.add(Int(g_arg)), p.add(Null()), o)
    p.input_ids, p.output_ids = [ix], [o]
    return p


def q4gsw_wrong_k():
    return ErrorSpec(_q4gsw_error((2, 64), 128, 8, 32), OpError,
                     "et_vk.linear_q4gsw.default: weight [8, 64] does not fit input K=64")


def q4gsw_group_size_not_multiple_of_8():
    return ErrorSpec(_q4gsw_error((2, 96), 96, 8, 12, g_pack=32), OpError,
                     "group_size 12 must be a positive multiple of 8")


def q4gsw_group_size_mismatch():
    return ErrorSpec(_q4gsw_error((2, 128), 128, 8, 64, g_pack=32), OpError,
                     "weight_scales [4, 8] has 4 groups; K=128 with group_size 64 needs 2")


def q4gsw_fp16_activations():
    return ErrorSpec(_q4gsw_error((2, 64), 64, 8, 32, x_dtype="float16"), OpError,
                     "et_vk.linear_q4gsw.default: input has dtype float16; supported: float32")


def _gguf_linear_error(type_id, x_k, raw_shape, x_dtype=F32):
    p = Program()
    ix = p.tensor(x_dtype, (3, x_k))
    _linear_gguf_program(p, ix, np.zeros(raw_shape, np.uint8), type_id, raw_shape[0], (3, x_k))
    p.input_ids = [ix]
    p.output_ids = [len(p.values) - 1]
    return p


def gguf_unsupported_type():
    return ErrorSpec(_gguf_linear_error(6, 32, (4, 22)), OpError,
                     "py_engine.linear_gguf.default: unsupported ggml type 6 (Q5_0)")


def gguf_wrong_k():
    return ErrorSpec(_gguf_linear_error(gq.GGML_Q8_0, 64, (4, 3 * 34)), OpError,
                     "input K=64 differs from the weight's K=96")


def gguf_partial_block_row():
    return ErrorSpec(_gguf_linear_error(gq.GGML_Q4_0, 32, (4, 20)), OpError,
                     "weight row of 20 bytes is not a whole number of Q4_0 blocks (18 bytes)")


def gguf_fp16_activations():
    return ErrorSpec(_gguf_linear_error(gq.GGML_Q8_0, 32, (4, 34), x_dtype="float16"), OpError,
                     "input has dtype float16; supported: float32")


def embedding_gguf_unsupported_type():
    p = Program()
    iw, iidx, o = p.tensor("uint8", (4, 22), np.zeros((4, 22), np.uint8)), p.tensor("int32", (2,)), \
        p.tensor(F32, (2, 32))
    p.call("py_engine.embedding_gguf.default", iw, p.add(Int(6)), iidx, o)
    p.input_ids, p.output_ids = [iidx], [o]
    return ErrorSpec(p, OpError, "py_engine.embedding_gguf.default: unsupported ggml type 6 (Q5_0)")


def _embedding_int64_program() -> Program:
    """aten.embedding of 3 int64 indices into a 10-row table."""
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    p = Program()
    iw, iidx, o = p.tensor(F32, table.shape, table), p.tensor("int64", (3,)), p.tensor(F32, (3, 4))
    p.call("aten.embedding.default", iw, iidx, o)
    p.input_ids, p.output_ids = [iidx], [o]
    return p


def embedding_index_out_of_range():
    return ErrorSpec(_embedding_int64_program(), StepError,
                     "aten.embedding.default: index 12 out of range for 10 rows", steps=[[np.array([1, 2, 3])], [np.array([1, 12, -1])]])


def embedding_index_past_int32():
    """int64 indices are narrowed to the GPU's int32 after a range check, also in a step after
    one whose indices passed (the graph re-checks only inputs of another dtype or shape)."""
    return ErrorSpec(_embedding_int64_program(), StepError, "input 0 has values that do not fit int32",
                     steps=[[np.array([1, 2, 3])], [np.array([1, 2, 3])], [np.array([1, 2**40, 3])]])


def embedding_q4gsw_bad_scales():
    packed = np.zeros((8, 32), np.uint8)
    p = Program()
    iw, isc = p.tensor("uint8", packed.shape, packed), p.tensor(F32, (8, 4), np.zeros((8, 4), np.float32))
    iidx, o = p.tensor("int32", (2,)), p.tensor(F32, (2, 64))
    p.call("et_vk.embedding_q4gsw.default", iw, isc, p.add(Int(32)), iidx, p.add(Bool(True)), o)
    p.input_ids, p.output_ids = [iidx], [o]
    return ErrorSpec(p, OpError, "weight_scales has dims [8, 4], expected [V=8, E/G=2]")


ERROR_CASES = {f.__name__: f for f in (
    q4gsw_wrong_k, q4gsw_group_size_not_multiple_of_8, q4gsw_group_size_mismatch, q4gsw_fp16_activations,
    gguf_unsupported_type, gguf_wrong_k, gguf_partial_block_row, gguf_fp16_activations,
    embedding_gguf_unsupported_type, embedding_index_out_of_range, embedding_index_past_int32,
    embedding_q4gsw_bad_scales)}
