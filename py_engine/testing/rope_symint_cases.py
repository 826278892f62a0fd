"""Cases for apply_rotary_emb (ValueList outputs), the SymInt ops, slice_copy and select_copy.

Tolerances: copies and SymInts are exact; RoPE is checked to 1e-6 absolute + 1e-6 relative
against the float64 numpy reference (inputs are O(1), so an f32 rotation is within a few ulp).
CHECKS are async functions of a backend for what a CaseSpec cannot express (pipeline sharing,
which hooks fire, outputs after a failed step).
"""
from __future__ import annotations

import numpy as np

from ..graph import Graph, OpError, StepError
from ..program import Int, Null, Program, SymInt, ValueList
from ..reference import tensor_ops as ref
from ..reference.rope import apply_rotary_emb, rope_freqs
from .harness import CaseSpec, ErrorSpec, Step, compare

F32 = "float32"
ROPE = "et_vk.apply_rotary_emb.default"
ROPE_TOL = (1e-6, 1e-6)


def _rng(seed: int):
    return np.random.default_rng(seed)


def _randn(r, shape):
    return r.standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------ rope
def _rope_program(s_max, hq, hkv, d, freq_dims=None):
    """xq, xk, cos, sin all program inputs; returns (program, ids)."""
    p = Program()
    xq, xk = p.tensor(F32, (1, s_max, hq, d)), p.tensor(F32, (1, s_max, hkv, d))
    fd = freq_dims or (s_max, d // 2)
    cos, sin = p.tensor(F32, fd), p.tensor(F32, fd)
    oq, ok = p.tensor(F32, (1, s_max, hq, d)), p.tensor(F32, (1, s_max, hkv, d))
    p.call(ROPE, xq, xk, cos, sin, p.add(ValueList((oq, ok))))
    p.input_ids, p.output_ids = [xq, xk, cos, sin], [oq, ok]
    return p


def _rope_step(r, s, hq, hkv, d, pos=0, lead=()):
    xq, xk = _randn(r, (1, s, hq, d)), _randn(r, (1, s, hkv, d))
    cos, sin = rope_freqs(d, range(pos, pos + s), base=10000.0)
    want = list(apply_rotary_emb(xq, xk, cos, sin))
    return Step([xq, xk, cos.reshape(lead + cos.shape), sin.reshape(lead + sin.shape)], want)


def _rope_static(s, hq, hkv, d, seed):
    r = _rng(seed)
    return CaseSpec(_rope_program(s, hq, hkv, d), [_rope_step(r, s, hq, hkv, d, pos=3)], *ROPE_TOL)


def rope_small():
    return _rope_static(3, 4, 2, 8, 1)


def rope_gqa_head_dim_64():
    return _rope_static(5, 8, 2, 64, 2)


def rope_gqa_head_dim_128():
    return _rope_static(4, 8, 2, 128, 3)


def rope_mha_head_dim_128():
    return _rope_static(2, 3, 3, 128, 4)


def rope_decode_s1():
    return _rope_static(1, 8, 2, 64, 5)


def rope_dynamic_seq():
    """Built at S=8; run at 8, 3, 1 and back to 8 (freqs follow S)."""
    r = _rng(6)
    steps = [_rope_step(r, s, 8, 2, 64, pos=s) for s in (8, 3, 1, 8)]
    return CaseSpec(_rope_program(8, 8, 2, 64), steps, *ROPE_TOL)


def rope_freqs_leading_dim():
    r = _rng(7)
    steps = [_rope_step(r, s, 4, 2, 16, pos=2, lead=(1,)) for s in (5, 2)]
    return CaseSpec(_rope_program(5, 4, 2, 16, freq_dims=(1, 5, 8)), steps, *ROPE_TOL)


def rope_freqs_table_longer_than_s():
    """Constant freqs table [16, D/2] with S=5: the first S rows are used."""
    r = _rng(8)
    d, s, t = 32, 5, 16
    cos_t, sin_t = rope_freqs(d, range(t))
    p = Program()
    xq, xk = p.tensor(F32, (1, s, 4, d)), p.tensor(F32, (1, s, 1, d))
    cos, sin = p.tensor(F32, (t, d // 2), cos_t), p.tensor(F32, (t, d // 2), sin_t)
    oq, ok = p.tensor(F32, (1, s, 4, d)), p.tensor(F32, (1, s, 1, d))
    p.call(ROPE, xq, xk, cos, sin, p.add(ValueList((oq, ok))))
    p.input_ids, p.output_ids = [xq, xk], [oq, ok]
    steps = []
    for live in (5, 2):
        q, k = _randn(r, (1, live, 4, d)), _randn(r, (1, live, 1, d))
        steps.append(Step([q, k], list(apply_rotary_emb(q, k, cos_t[:live], sin_t[:live]))))
    return CaseSpec(p, steps, *ROPE_TOL)


def _rope_at_pos_program(s_max=4, t=16, hq=4, hkv=2, d=16, pos_dtype="int64"):
    """input_pos -> select_as_symint -> pos; sym_size(xq, 1) -> seqlen; add -> end;
    slice_copy(table, 0, pos, end) -> freqs -> apply_rotary_emb. Outputs xq_out, xk_out, end."""
    cos_t, sin_t = rope_freqs(d, range(t), base=500.0)
    p = Program()
    ipos = p.tensor(pos_dtype, (1,))
    xq, xk = p.tensor(F32, (1, s_max, hq, d)), p.tensor(F32, (1, s_max, hkv, d))
    cos_tab, sin_tab = p.tensor(F32, (t, d // 2), cos_t), p.tensor(F32, (t, d // 2), sin_t)
    pos, seqlen, end = p.add(SymInt(0)), p.add(SymInt(0)), p.add(SymInt(0))
    zero, one = p.add(Int(0)), p.add(Int(1))
    p.call("et_vk.select_as_symint.default", ipos, zero, zero, pos)
    p.call("sym_size.int", xq, one, seqlen)
    p.call("add", pos, seqlen, end)
    cos_s, sin_s = p.tensor(F32, (s_max, d // 2)), p.tensor(F32, (s_max, d // 2))
    p.call("aten.slice_copy.Tensor", cos_tab, zero, pos, end, one, cos_s)
    p.call("aten.slice_copy.Tensor", sin_tab, zero, pos, end, one, sin_s)
    oq, ok = p.tensor(F32, (1, s_max, hq, d)), p.tensor(F32, (1, s_max, hkv, d))
    p.call(ROPE, xq, xk, cos_s, sin_s, p.add(ValueList((oq, ok))))
    p.input_ids, p.output_ids = [ipos, xq, xk], [oq, ok, end]
    return p, (cos_t, sin_t), np.dtype(pos_dtype)


def rope_at_position():
    """A mini decode loop: prefill 4 tokens at pos 0, decode at 4, 5, a 3-token chunk at 6, decode at 12."""
    r = _rng(9)
    hq, hkv, d = 4, 2, 16
    p, (cos_t, sin_t), pdt = _rope_at_pos_program(hq=hq, hkv=hkv, d=d)
    steps = []
    for pos, s in ((0, 4), (4, 1), (5, 1), (6, 3), (12, 1), (0, 2)):
        q, k = _randn(r, (1, s, hq, d)), _randn(r, (1, s, hkv, d))
        want = list(apply_rotary_emb(q, k, cos_t[pos:pos + s], sin_t[pos:pos + s]))
        steps.append(Step([np.array([pos], pdt), q, k], want + [pos + s]))
    return CaseSpec(p, steps, *ROPE_TOL)


# ------------------------------------------------------- slice / select
def _copy_case(name, x_dims, out_dims, args_fn, steps_x, want_fn, dtype=F32, extra_inputs=None):
    """One copy op on input x; `args_fn(p)` gives the op's middle args; exact comparison."""
    p = Program()
    x = p.tensor(dtype, x_dims)
    out = p.tensor(dtype, out_dims)
    middle = args_fn(p)
    p.call(name, x, *middle, out)
    p.input_ids, p.output_ids = [x] + list(extra_inputs or []), [out]
    steps = [Step([a] + list(extra), [want_fn(a, *extra)]) for a, *extra in steps_x]
    return CaseSpec(p, steps)


def _ints(p, *vals):
    return [p.add(Null()) if v is None else p.add(Int(v)) for v in vals]


def _arange(shape, dtype=np.float32):
    return (np.arange(int(np.prod(shape))) * 0.5 - 7).astype(dtype).reshape(shape)


def slice_negative_start():
    x = _arange((6, 10))
    return _copy_case("aten.slice_copy.Tensor", (6, 10), (6, 4), lambda p: _ints(p, 1, -4, None, 1),
                      [(x,)], lambda a: ref.slice_copy(a, 1, -4, None, 1))


def slice_clamped_end():
    x = _arange((6, 10))
    return _copy_case("aten.slice_copy.Tensor", (6, 10), (4, 10), lambda p: _ints(p, 0, 2, 100, 1),
                      [(x,)], lambda a: ref.slice_copy(a, 0, 2, 100, 1))


def slice_step_2():
    x = _arange((3, 9, 4))
    return _copy_case("aten.slice_copy.Tensor", (3, 9, 4), (3, 4, 4), lambda p: _ints(p, 1, 1, 8, 2),
                      [(x,)], lambda a: ref.slice_copy(a, 1, 1, 8, 2))


def slice_last_dim_step_3_int32():
    x = _arange((4, 5, 11), np.int32)
    return _copy_case("aten.slice_copy.Tensor", (4, 5, 11), (4, 5, 4), lambda p: _ints(p, -1, None, None, 3),
                      [(x,)], lambda a: ref.slice_copy(a, -1, None, None, 3), dtype="int32")


def slice_empty_range():
    x = _arange((6, 3))
    return _copy_case("aten.slice_copy.Tensor", (6, 3), (6, 3), lambda p: _ints(p, 0, 5, 2, 1),
                      [(x,)], lambda a: ref.slice_copy(a, 0, 5, 2, 1))


def slice_float16_rows():
    # f16 rows of 6 elements are 3 words: the word kernel moves them without shader-f16.
    x = _arange((5, 6), np.float16)
    return _copy_case("aten.slice_copy.Tensor", (5, 6), (2, 6), lambda p: _ints(p, 0, 1, 4, 2),
                      [(x,)], lambda a: ref.slice_copy(a, 0, 1, 4, 2), dtype="float16")


def slice_dynamic_symint_start():
    """x [8, 6] with dynamic rows; start is a SymInt program input (also negative), end Null."""
    r = _rng(10)
    p = Program()
    x = p.tensor(F32, (8, 6))
    start = p.add(SymInt(0))
    out = p.tensor(F32, (8, 6))
    zero, null, one = p.add(Int(0)), p.add(Null()), p.add(Int(1))
    p.call("aten.slice_copy.Tensor", x, zero, start, null, one, out)
    p.input_ids, p.output_ids = [x, start], [out]
    steps = []
    for rows, s in ((8, 0), (8, 3), (5, 3), (5, -2), (2, 7), (8, -8)):
        a = _randn(r, (rows, 6))
        steps.append(Step([a, s], [ref.slice_copy(a, 0, s, None, 1)]))
    return CaseSpec(p, steps)


def select_last_row():
    x = _arange((5, 16))
    return _copy_case("aten.select_copy.int", (5, 16), (16,), lambda p: _ints(p, 0, -1),
                      [(x,)], lambda a: ref.select_copy(a, 0, -1))


def select_middle_dim_negative():
    x = _arange((2, 5, 16))
    return _copy_case("aten.select_copy.int", (2, 5, 16), (2, 16), lambda p: _ints(p, 1, -2),
                      [(x,)], lambda a: ref.select_copy(a, 1, -2))


def select_last_dim():
    x = _arange((3, 4, 5), np.int32)
    return _copy_case("aten.select_copy.int", (3, 4, 5), (3, 4), lambda p: _ints(p, -1, 1),
                      [(x,)], lambda a: ref.select_copy(a, -1, 1), dtype="int32")


def select_to_scalar():
    x = _arange((7,))
    return _copy_case("aten.select_copy.int", (7,), (), lambda p: _ints(p, 0, 4),
                      [(x,)], lambda a: ref.select_copy(a, 0, 4))


def select_last_row_dynamic():
    """The last live row of a [T, 8] tensor whose T changes (the 'logits of the last token' pattern)."""
    r = _rng(11)
    steps = [(_randn(r, (t, 8)),) for t in (6, 2, 1, 6)]
    return _copy_case("aten.select_copy.int", (6, 8), (8,), lambda p: _ints(p, 0, -1),
                      steps, lambda a: ref.select_copy(a, 0, -1))


def symint_arithmetic():
    """sym_size, add/sub/mul/floordiv on SymInts and Ints, outputs read as ints."""
    p = Program()
    x = p.tensor(F32, (9, 4))
    k = p.add(SymInt(0))
    n, a, b, c, d = (p.add(SymInt(0)) for _ in range(5))
    zero = p.add(Int(0))
    p.call("sym_size.int", x, zero, n)
    p.call("add", n, k, a)
    p.call("sub", a, p.add(Int(10)), b)
    p.call("mul", b, n, c)
    p.call("floordiv", c, p.add(Int(-4)), d)
    p.input_ids, p.output_ids = [x, k], [n, a, b, c, d]
    steps = []
    for rows, kv in ((9, 0), (3, 5), (3, 5), (1, -7)):
        nn = rows
        aa = nn + kv
        bb = aa - 10
        cc = bb * nn
        steps.append(Step([np.zeros((rows, 4), np.float32), kv], [nn, aa, bb, cc, cc // -4]))
    return CaseSpec(p, steps)


CASES = {f.__name__: f for f in (
    rope_small, rope_gqa_head_dim_64, rope_gqa_head_dim_128, rope_mha_head_dim_128, rope_decode_s1,
    rope_dynamic_seq, rope_freqs_leading_dim, rope_freqs_table_longer_than_s, rope_at_position,
    slice_negative_start, slice_clamped_end, slice_step_2, slice_last_dim_step_3_int32, slice_empty_range,
    slice_float16_rows, slice_dynamic_symint_start, select_last_row, select_middle_dim_negative,
    select_last_dim, select_to_scalar, select_last_row_dynamic, symint_arithmetic)}


# ---------------------------------------------------------------- bad input
def rope_out_list_wrong_length():
    p = _rope_program(2, 2, 2, 8)
    p.chain[0] = type(p.chain[0])(ROPE, p.chain[0].args[:4] + (p.add(ValueList(tuple(p.output_ids) + (0,))),))
    return ErrorSpec(p, OpError, f"{ROPE}: out_list [xq_out, xk_out] must list 2 values, got 3")


def rope_out_list_not_a_list():
    p = _rope_program(2, 2, 2, 8)
    p.chain[0] = type(p.chain[0])(ROPE, p.chain[0].args[:4] + (p.output_ids[0],))
    return ErrorSpec(p, OpError, "must be a ValueList, got Tensor")


def rope_odd_head_dim():
    return ErrorSpec(_rope_program(2, 2, 2, 7, freq_dims=(2, 3)), OpError,
                     f"{ROPE}: head_dim must be positive and even, got 7")


def rope_freqs_wrong_width():
    return ErrorSpec(_rope_program(2, 2, 2, 8, freq_dims=(2, 5)), OpError, "freqs must be [S, 4]")


def rope_freqs_run_out():
    """At pos 14 a 3-token chunk needs table rows 14..16 of 16: the slice keeps 2 rows."""
    p, _, pdt = _rope_at_pos_program()
    ok = [np.array([0], pdt), np.zeros((1, 2, 4, 16), np.float32), np.zeros((1, 2, 2, 16), np.float32)]
    bad = [np.array([14], pdt), np.zeros((1, 3, 4, 16), np.float32), np.zeros((1, 3, 2, 16), np.float32)]
    return ErrorSpec(p, StepError, f"{ROPE}: freqs have 2 live rows, fewer than the seq len 3", steps=[ok, bad])


def _select_symint_program():
    """select_as_symint(ipos[3], 0, 2) -> k; slice_copy(table, 0, k, k + 2) -> out [2, 4]."""
    p = Program()
    ipos = p.tensor("int32", (3,))
    table = p.tensor(F32, (10, 4), _arange((10, 4)))
    k, k2 = p.add(SymInt(0)), p.add(SymInt(0))
    zero, one, two = p.add(Int(0)), p.add(Int(1)), p.add(Int(2))
    p.call("et_vk.select_as_symint.default", ipos, zero, two, k)
    p.call("add", k, two, k2)
    out = p.tensor(F32, (2, 4))
    p.call("aten.slice_copy.Tensor", table, zero, k, k2, one, out)
    p.input_ids, p.output_ids = [ipos], [out, k]
    return p


def select_as_symint_index_out_of_range():
    p = _select_symint_program()
    return ErrorSpec(p, StepError, "et_vk.select_as_symint.default: index 2 out of range for dim 0",
                     steps=[[np.array([0, 0, 3], np.int32)], [np.array([5], np.int32)]])


def select_as_symint_not_an_input():
    p = Program()
    x = p.tensor("int32", (2,))
    y = p.tensor("int32", (2,))
    k = p.add(SymInt(0))
    p.call("et_vk.prepack.default", x, y)
    p.call("et_vk.select_as_symint.default", y, p.add(Int(0)), p.add(Int(0)), k)
    p.input_ids, p.output_ids = [x], [k]
    return ErrorSpec(p, OpError, f"et_vk.select_as_symint.default: self (value {y}) must be a program input")


def slice_past_out_bound():
    """A SymInt end that makes the slice longer than the out tensor's bound."""
    p = Program()
    x = p.tensor(F32, (8, 2))
    end = p.add(SymInt(2))
    out = p.tensor(F32, (3, 2))
    p.call("aten.slice_copy.Tensor", x, p.add(Int(0)), p.add(Int(0)), end, p.add(Int(1)), out)
    p.input_ids, p.output_ids = [x, end], [out]
    x0 = np.zeros((8, 2), np.float32)
    return ErrorSpec(p, StepError, "aten.slice_copy.Tensor: output dims [5, 2] exceed the out tensor's bounds [3, 2]",
                     steps=[[x0, 3], [x0, 5]])


def slice_zero_step():
    p = Program()
    x, out = p.tensor(F32, (4, 2)), p.tensor(F32, (4, 2))
    p.call("aten.slice_copy.Tensor", x, *_ints(p, 0, 0, 4, 0), out)
    p.input_ids, p.output_ids = [x], [out]
    return ErrorSpec(p, OpError, "aten.slice_copy.Tensor: step must be positive, got 0")


def select_index_out_of_range():
    p = Program()
    x, out = p.tensor(F32, (4, 2)), p.tensor(F32, (2,))
    p.call("aten.select_copy.int", x, *_ints(p, 0, -5), out)
    p.input_ids, p.output_ids = [x], [out]
    return ErrorSpec(p, OpError, "aten.select_copy.int: index -5 out of range for dim 0 of size 4")


def select_dynamic_index_out_of_range():
    p = Program()
    x, out = p.tensor(F32, (4, 2)), p.tensor(F32, (2,))
    p.call("aten.select_copy.int", x, *_ints(p, 0, 3), out)
    p.input_ids, p.output_ids = [x], [out]
    return ErrorSpec(p, StepError, "aten.select_copy.int: index 3 out of range for dim 0 of size 2",
                     steps=[[np.zeros((4, 2), np.float32)], [np.zeros((2, 2), np.float32)]])


def slice_sub_word_rows():
    p = Program()
    x, out = p.tensor("float16", (4, 3)), p.tensor("float16", (4, 1))
    p.call("aten.slice_copy.Tensor", x, *_ints(p, 1, 0, 1, 1), out)
    p.input_ids, p.output_ids = [x], [out]
    return ErrorSpec(p, OpError, "aten.slice_copy.Tensor: rows of 2 bytes (dims [4, 3]) are not whole 32-bit words")


ERROR_CASES = {f.__name__: f for f in (
    rope_out_list_wrong_length, rope_out_list_not_a_list, rope_odd_head_dim, rope_freqs_wrong_width,
    rope_freqs_run_out, select_as_symint_index_out_of_range, select_as_symint_not_an_input,
    slice_past_out_bound, slice_zero_step, select_index_out_of_range, select_dynamic_index_out_of_range,
    slice_sub_word_rows)}


# ---------------------------------------------------------------- checks
async def check_rope_shares_one_pipeline(backend):
    """Both rope dispatches use the same pipeline index; the graph holds one pipeline."""
    g = await Graph.build(_rope_program(3, 4, 2, 8), backend)
    try:
        assert len(g.table) == 2, g.dispatch_labels
        assert g.table[0, 0] == g.table[1, 0], g.table
        assert len(g.pipelines) == 1, len(g.pipelines)
        assert g.table[0, 1] != g.table[1, 1], "each dispatch needs its own bind group"
    finally:
        g.destroy()


async def check_symint_change_fires_only_dependents(backend):
    """Two slices, one per SymInt input: changing one SymInt reconfigures only its slice."""
    p = Program()
    x = p.tensor(F32, (6, 2))
    sa, sb = p.add(SymInt(0)), p.add(SymInt(0))
    oa, ob = p.tensor(F32, (6, 2)), p.tensor(F32, (6, 2))
    zero, null, one = p.add(Int(0)), p.add(Null()), p.add(Int(1))
    p.call("aten.slice_copy.Tensor", x, zero, sa, null, one, oa)
    p.call("aten.slice_copy.Tensor", x, zero, sb, null, one, ob)
    p.input_ids, p.output_ids = [x, sa, sb], [oa, ob]
    g = await Graph.build(p, backend)
    calls = []
    for i, op in enumerate(g.ops):
        op.configure = (lambda f, i: (lambda g_: (calls.append(i), f(g_))[1]))(op.configure, i)
    try:
        a = _arange((6, 2))
        for sa_v, sb_v, fired in ((0, 0, []), (2, 0, [0]), (2, 4, [1]), (2, 4, [])):
            calls.clear()
            outs = await g.step([a, sa_v, sb_v])
            assert calls == fired, (sa_v, sb_v, calls, fired)
            compare("slice a", outs[0], a[sa_v:], "exact", 0)
            compare("slice b", outs[1], a[sb_v:], "exact", 0)
    finally:
        g.destroy()


async def check_graph_usable_after_symint_error(backend):
    """After select_as_symint's index error, later steps give the right outputs."""
    g = await Graph.build(_select_symint_program(), backend)
    table = _arange((10, 4))
    try:
        outs = await g.step([np.array([0, 0, 3], np.int32)])
        compare("before", outs[0], table[3:5], "exact", 0)
        assert outs[1] == 3, outs[1]
        try:
            await g.step([np.array([9], np.int32)])
        except StepError as e:
            assert "index 2 out of range" in str(e), e
        else:
            raise AssertionError("an out-of-range select_as_symint index must raise StepError")
        for k in (6, 3, 8):
            outs = await g.step([np.array([1, 1, k], np.int32)])
            compare(f"after k={k}", outs[0], table[k:k + 2], "exact", 0)
            assert outs[1] == k, (outs[1], k)
    finally:
        g.destroy()


CHECKS = {f.__name__: f for f in (
    check_rope_shares_one_pipeline, check_symint_change_fires_only_dependents,
    check_graph_usable_after_symint_error)}
