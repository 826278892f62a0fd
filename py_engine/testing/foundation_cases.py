"""Cases for the first ops (add, mul, sigmoid, view_copy, prepack, rms_norm) and the graph core."""
from __future__ import annotations

import numpy as np

from ..graph import OpError, StepError
from ..program import Bool, Double, Int, IntList, Program, Tensor
from ..reference import elementwise as ew
from ..reference.norm import rms_norm
from .harness import CaseSpec, ErrorSpec, Step

F32 = "float32"


def _rng(seed: int):
    return np.random.default_rng(seed)


def _binary(name, a_shape, b_shape, alpha=None, seed=0, atol=1e-6, rtol=1e-6):
    r = _rng(seed)
    a = r.standard_normal(a_shape).astype(np.float32)
    b = r.standard_normal(b_shape).astype(np.float32)
    p = Program()
    ia, ib = p.tensor(F32, a_shape), p.tensor(F32, b_shape)
    out_shape = np.broadcast_shapes(a_shape, b_shape)
    o = p.tensor(F32, out_shape)
    if name == "aten.add.Tensor":
        p.call(name, ia, ib, p.add(Double(alpha if alpha is not None else 1.0)), o)
        want = ew.add(a, b, alpha if alpha is not None else 1.0)
    else:
        p.call(name, ia, ib, o)
        want = ew.mul(a, b)
    p.input_ids, p.output_ids = [ia, ib], [o]
    return CaseSpec(p, [Step([a, b], [want])], atol, rtol)


def add_broadcast():
    return _binary("aten.add.Tensor", (2, 3, 5), (5,), alpha=0.5, seed=1)


def add_odd_sizes():
    # 7*333 elements: not a multiple of the workgroup size; b broadcasts along the last dim.
    return _binary("aten.add.Tensor", (7, 333), (7, 1), seed=2)


def add_size_one_dims():
    return _binary("aten.add.Tensor", (1, 1, 9), (1, 4, 1), alpha=-2.0, seed=3)


def add_scalar():
    r = _rng(4)
    a = r.standard_normal((3, 10)).astype(np.float32)
    p = Program()
    ia, o = p.tensor(F32, (3, 10)), p.tensor(F32, (3, 10))
    p.call("aten.add.Tensor", ia, p.add(Double(3.5)), p.add(Double(2.0)), o)
    p.input_ids, p.output_ids = [ia], [o]
    return CaseSpec(p, [Step([a], [ew.add(a, np.float32(3.5), 2.0)])], 1e-6, 1e-6)


def mul_broadcast():
    return _binary("aten.mul.Tensor", (4, 1, 6), (1, 5, 6), seed=5)


def sigmoid():
    r = _rng(6)
    x = (r.standard_normal((2, 777)) * 6).astype(np.float32)
    p = Program()
    ix, o = p.tensor(F32, x.shape), p.tensor(F32, x.shape)
    p.call("aten.sigmoid.default", ix, o)
    p.input_ids, p.output_ids = [ix], [o]
    return CaseSpec(p, [Step([x], [ew.sigmoid(x)])], 1e-6, 1e-5)


def view_copy():
    r = _rng(7)
    x = r.standard_normal((6, 35)).astype(np.float32)
    p = Program()
    ix, o = p.tensor(F32, x.shape), p.tensor(F32, (3, 14, 5))
    p.call("aten.view_copy.default", ix, p.add(IntList((3, -1, 5))), o)
    p.input_ids, p.output_ids = [ix], [o]
    return CaseSpec(p, [Step([x], [x.reshape(3, 14, 5)])])


def prepack_then_add():
    r = _rng(8)
    w = r.standard_normal(17).astype(np.float32)
    x = r.standard_normal((2, 17)).astype(np.float32)
    p = Program()
    c = p.tensor(F32, (17,), w)
    packed = p.tensor(F32, (17,))
    p.call("et_vk.prepack.default", c, packed)
    ix, o = p.tensor(F32, x.shape), p.tensor(F32, x.shape)
    p.call("aten.add.Tensor", ix, packed, p.add(Double(1.0)), o)
    p.input_ids, p.output_ids = [ix], [packed, o]
    return CaseSpec(p, [Step([x], [w, x + w])], 0.0, 0.0)


def _rms(shape, seed, eps=1e-5):
    r = _rng(seed)
    x = r.standard_normal(shape).astype(np.float32)
    w = r.standard_normal(shape[-1]).astype(np.float32)
    p = Program()
    ix, iw, o = p.tensor(F32, shape), p.tensor(F32, (shape[-1],), w), p.tensor(F32, shape)
    p.call("et_vk.rms_norm.default", ix, iw, p.add(Double(eps)), o)
    p.input_ids, p.output_ids = [ix], [o]
    return CaseSpec(p, [Step([x], [rms_norm(x, w, eps)])], 1e-5, 1e-5)


def rms_norm_small():
    return _rms((3, 64), 9)


def rms_norm_wide_odd():
    return _rms((5, 1000), 10)


def rms_norm_size_one():
    return _rms((1, 1), 11)


def rms_norm_2d_dispatch():
    # One workgroup per row: 70000 rows exceed maxComputeWorkgroupsPerDimension (65535).
    return _rms((70000, 4), 12)


def chain_static():
    """add -> sigmoid -> rms_norm -> view_copy in one graph, one submit."""
    r = _rng(13)
    x = r.standard_normal((4, 48)).astype(np.float32)
    b = r.standard_normal(48).astype(np.float32)
    w = r.standard_normal(48).astype(np.float32)
    p = Program()
    ix, ib, iw = p.tensor(F32, x.shape), p.tensor(F32, (48,), b), p.tensor(F32, (48,), w)
    t1, t2, t3 = (p.tensor(F32, x.shape) for _ in range(3))
    p.call("aten.add.Tensor", ix, ib, p.add(Double(1.0)), t1)
    p.call("aten.sigmoid.default", t1, t2)
    p.call("et_vk.rms_norm.default", t2, iw, p.add(Double(1e-6)), t3)
    t4 = p.tensor(F32, (2, 96))
    p.call("aten.view_copy.default", t3, p.add(IntList((2, 96))), t4)
    p.input_ids, p.output_ids = [ix], [t4]
    want = rms_norm(ew.sigmoid(x + b), w, 1e-6).reshape(2, 96)
    return CaseSpec(p, [Step([x], [want]), Step([-x], [rms_norm(ew.sigmoid(-x + b), w, 1e-6).reshape(2, 96)])],
                    1e-5, 1e-5)


def chain_dynamic_rows():
    """Built at 8 rows, run at 8, 3, 1 and 8 again: live dims flow through every op."""
    r = _rng(14)
    w = r.standard_normal(32).astype(np.float32)
    p = Program()
    ix, iw = p.tensor(F32, (8, 32)), p.tensor(F32, (32,), w)
    t1, t2, t3 = p.tensor(F32, (8, 32)), p.tensor(F32, (8, 32)), p.tensor(F32, (8, 32))
    p.call("et_vk.rms_norm.default", ix, iw, p.add(Double(1e-5)), t1)
    p.call("aten.mul.Tensor", t1, ix, t2)
    p.call("aten.sigmoid.default", t2, t3)
    t4 = p.tensor(F32, (8, 4, 8))
    p.call("aten.view_copy.default", t3, p.add(IntList((8, 4, 8))), t4)
    p.input_ids, p.output_ids = [ix], [t3, t4]
    steps = []
    for rows in (8, 3, 1, 8):
        x = r.standard_normal((rows, 32)).astype(np.float32)
        y = ew.sigmoid(ew.mul(rms_norm(x, w, 1e-5), x))
        steps.append(Step([x], [y, y.reshape(rows, 4, 8)]))
    return CaseSpec(p, steps, 1e-5, 1e-5)


def twins_with_other_rows():
    """Two chains alike in everything but their inputs' live rows: a full configure (each new
    shape) copies the second chain's params from the first (graph/twins.py) only while both
    inputs have the same rows; otherwise the second chain's ops run their own hooks."""
    r = _rng(15)
    w = r.standard_normal(16).astype(np.float32)
    p = Program()
    ia, ic, iw = p.tensor(F32, (8, 16)), p.tensor(F32, (8, 16)), p.tensor(F32, (16,), w)
    outs = []
    for x in (ia, ic):
        t1, t2 = p.tensor(F32, (8, 16)), p.tensor(F32, (8, 16))
        p.call("et_vk.rms_norm.default", x, iw, p.add(Double(1e-5)), t1)
        p.call("aten.add.Tensor", t1, x, p.add(Double(0.5)), t2)
        outs.append(t2)
    p.input_ids, p.output_ids = [ia, ic], outs
    steps = []
    for rows_a, rows_c in ((3, 6), (4, 4), (8, 2), (2, 8), (5, 5)):
        a = r.standard_normal((rows_a, 16)).astype(np.float32)
        c = r.standard_normal((rows_c, 16)).astype(np.float32)
        steps.append(Step([a, c], [ew.add(rms_norm(x, w, 1e-5), x, 0.5) for x in (a, c)]))
    return CaseSpec(p, steps, 1e-5, 1e-5)


def _argmax(shape, seed, ties=False):
    r = _rng(seed)
    x = r.standard_normal(shape).astype(np.float32)
    if ties:
        x = np.round(x).astype(np.float32)  # many equal maxima: the lowest index must win
    p = Program()
    ix, o = p.tensor(F32, shape), p.tensor("int32", shape[:-1])
    p.call("aten.argmax.default", ix, p.add(Int(-1)), p.add(Bool(False)), o)
    p.input_ids, p.output_ids = [ix], [o]
    return CaseSpec(p, [Step([x], [np.argmax(x, axis=-1).astype(np.int32)])])


def argmax_vocab_row():
    return _argmax((1, 49152), 15)


def argmax_rows_with_ties():
    return _argmax((5, 333), 16, ties=True)


def argmax_long_rows_ties_across_chunks():
    # Rows of 9000 (chunked: partial + merge) whose maximum appears in several chunks and, in
    # the last row, only in the final partial chunk: the lowest index must still win.
    r = _rng(17)
    x = np.round(r.standard_normal((3, 9000))).astype(np.float32)
    x[0, [4000, 100, 8999]] = 9.0
    x[1, [2047, 2048]] = 9.0
    x[2, 8998] = 9.0
    p = Program()
    ix, o = p.tensor(F32, x.shape), p.tensor("int32", (3,))
    p.call("aten.argmax.default", ix, p.add(Int(-1)), p.add(Bool(False)), o)
    p.input_ids, p.output_ids = [ix], [o]
    want = np.argmax(x, axis=-1).astype(np.int32)
    assert list(want) == [100, 2047, 8998]
    return CaseSpec(p, [Step([x], [want])])


CASES = {f.__name__: f for f in (
    add_broadcast, add_odd_sizes, add_size_one_dims, add_scalar, mul_broadcast, sigmoid, view_copy,
    prepack_then_add, rms_norm_small, rms_norm_wide_odd, rms_norm_size_one, rms_norm_2d_dispatch,
    chain_static, chain_dynamic_rows, twins_with_other_rows, argmax_vocab_row, argmax_rows_with_ties,
    argmax_long_rows_ties_across_chunks)}


# ---------------------------------------------------------------- bad input
def unknown_ops():
    p = Program()
    a, o = p.tensor(F32, (4,)), p.tensor(F32, (4,))
    p.call("aten.frobnicate.default", a, o)
    p.call("aten.sigmoid.default", a, o)
    p.call("et_vk.mystery.default", a, o)
    p.input_ids, p.output_ids = [a], [o]
    return ErrorSpec(p, OpError, "2 op(s) not implemented: aten.frobnicate.default, et_vk.mystery.default")


def wrong_dtype():
    p = Program()
    a, b, o = p.tensor("int32", (4,)), p.tensor(F32, (4,)), p.tensor(F32, (4,))
    p.call("aten.add.Tensor", a, b, p.add(Double(1.0)), o)
    p.input_ids, p.output_ids = [a, b], [o]
    return ErrorSpec(p, OpError, "aten.add.Tensor: self has dtype int32")


def mismatched_shapes():
    p = Program()
    a, b, o = p.tensor(F32, (3, 4)), p.tensor(F32, (5,)), p.tensor(F32, (3, 4))
    p.call("aten.mul.Tensor", a, b, o)
    p.input_ids, p.output_ids = [a, b], [o]
    return ErrorSpec(p, OpError, "aten.mul.Tensor: shapes [3, 4] and [1, 5] do not broadcast")


def zero_row_width():
    p = Program()
    x, w, o = p.tensor(F32, (3, 0)), p.tensor(F32, (0,), np.zeros(0, np.float32)), p.tensor(F32, (3, 0))
    p.call("et_vk.rms_norm.default", x, w, p.add(Double(1e-5)), o)
    p.input_ids, p.output_ids = [x], [o]
    return ErrorSpec(p, OpError, "et_vk.rms_norm.default: zero row width")


def constant_out_of_range():
    p = Program()
    x, o = p.tensor(F32, (4,)), p.tensor(F32, (4,))
    c = p.add(Tensor(F32, (4,), constant_id=7))
    p.call("aten.add.Tensor", x, c, p.add(Double(1.0)), o)
    p.input_ids, p.output_ids = [x], [o]
    return ErrorSpec(p, OpError, "constant id 7 out of range")


def input_over_bounds():
    p = Program()
    x, o = p.tensor(F32, (4, 8)), p.tensor(F32, (4, 8))
    p.call("aten.sigmoid.default", x, o)
    p.input_ids, p.output_ids = [x], [o]
    ok = np.zeros((4, 8), np.float32)
    return ErrorSpec(p, StepError, "input 0 has shape [5, 8], bounds are [4, 8]",
                     steps=[[ok], [np.zeros((5, 8), np.float32)]])


def input_wrong_dtype():
    p = Program()
    x, o = p.tensor(F32, (4,)), p.tensor(F32, (4,))
    p.call("aten.sigmoid.default", x, o)
    p.input_ids, p.output_ids = [x], [o]
    return ErrorSpec(p, StepError, "input 0 has dtype float64, expected float32",
                     steps=[[np.zeros(4, np.float32)], [np.zeros(4)]])


ERROR_CASES = {f.__name__: f for f in (
    unknown_ops, wrong_dtype, mismatched_shapes, zero_row_width, constant_out_of_range,
    input_over_bounds, input_wrong_dtype)}
