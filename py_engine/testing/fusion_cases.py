"""Cases for the fusion passes and the fused ops (shared by CPython and browser runs).

Every op case builds the UNFUSED pattern the way the llama builder emits it (existing ops),
runs `py_engine.passes.optimize`, checks that the expected fused op replaced it (a case that
silently stopped fusing would test nothing), and compares the GPU result with the numpy
references composed as the unfused chain computes them (reference/gguf_quant.py dequantizes,
reference/quant_linear.py, elementwise.py, norm.py). Dynamic cases are built at their
largest M/S and stepped through smaller ones and back (the resize hooks, GEMV <-> tiled).

Tolerances: linears atol 2e-4 + rtol 1e-4 (as quant_cases: fp32 sums over K <= 256);
SwiGLU atol 5e-4 + rtol 2e-4 (silu(g) * u of two such sums); add + RMSNorm 1e-5 (as rms_norm);
RoPE of q and k 1e-6 (as rope_symint_cases); RoPE + KV-cache write then attention 2e-5 + rtol
1e-5 (as attention_cases), with the cos/sin rows sliced or read from the whole tables.
`compare_fused_llama` runs a whole llama GGUF fused and unfused: logits within 1e-5.
"""
from __future__ import annotations

import functools

import numpy as np

from ..graph import Graph, OpError, StepError
from ..passes import optimize
from ..program import Double, Int, IntList, Null, Program, ValueList
from ..reference import elementwise as ew
from ..reference import gguf_quant as gq
from ..reference.norm import rms_norm
from ..reference.quant_linear import linear
from ..reference.rope import apply_rotary_emb, rope_freqs
from .attention_cases import SDPA16_ATOL, SDPA16_RTOL
from .harness import CaseSpec, ErrorSpec, Step

F32 = "float32"
LIN_ATOL, LIN_RTOL = 2e-4, 1e-4
SWIGLU_ATOL, SWIGLU_RTOL = 5e-4, 2e-4
NORM_TOL = 1e-5
# Whole tiny llama, fused vs unfused: reordered float32 sums (norms folded into GEMVs, fused adds)
# through 2 layers and the head. Its largest logit is ~15.4, where one ulp is ~1.9e-6; measured
# 8.1e-6 (lavapipe) and 1.12e-5 (SwiftShader), so 5e-5 (~27 ulps) leaves room for compilers.
LLAMA_FUSED_TOL = 5e-5
MULTI = "py_engine.linear_gguf_multi.default"
SWIGLU = "py_engine.linear_gguf_swiglu.default"
ADD_NORM = "py_engine.add_rms_norm.default"
ROPE_QK = "py_engine.apply_rotary_emb_qk.default"
ROPE_TOL = 1e-6  # as rope_symint_cases


def _rng(seed):
    return np.random.default_rng(seed)


def _gguf_weight(type_id, n, k, seed):
    """(raw blocks u8 [n, row_bytes], dequantized float32 [n, k])."""
    w = (_rng(seed).standard_normal((n, k)) * 0.5).astype(np.float32)
    raw = np.frombuffer(gq.quantize(type_id, w), dtype=np.uint8).reshape(n, -1)
    return raw, gq.dequantize(type_id, raw.tobytes(), (n, k))


def _linear_call(p, x, raw, type_id, out_dims):
    out = p.tensor(F32, out_dims)
    p.call("py_engine.linear_gguf.default", x, p.tensor("uint8", raw.shape, raw), p.add(Int(type_id)),
           p.add(Null()), out)
    return out


def fused(p: Program, op: str, count: int) -> Program:
    """optimize(p), asserting it now holds `count` calls of `op`."""
    out = optimize(p)
    n = sum(c.name == op for c in out.chain)
    if n != count:
        raise AssertionError(f"fusion: expected {count} {op} call(s) after optimize, got {n}: "
                             f"{[c.name for c in out.chain]}")
    return out


def _x_steps(r, x_max, sizes, axis):
    """Inputs with the live size `s` along `axis` for each s in `sizes`."""
    out = []
    for s in sizes:
        shape = list(x_max)
        shape[axis] = s
        out.append(r.standard_normal(shape).astype(np.float32))
    return out


# ------------------------------------------------------------ parallel linears
def _multi(types, ns, x_max, sizes, seed):
    """len(ns) linears of one input (weights of `types`) -> linear_gguf_multi."""
    k = x_max[-1]
    p = Program()
    ix = p.tensor(F32, x_max)
    dense, outs = [], []
    for i, (t, n) in enumerate(zip(types, ns)):
        raw, d = _gguf_weight(t, n, k, seed + i)
        outs.append(_linear_call(p, ix, raw, t, tuple(x_max[:-1]) + (n,)))
        dense.append(d)
    p.input_ids, p.output_ids = [ix], outs
    prog = fused(p, MULTI, 1)
    steps = [Step([x], [linear(x, d) for d in dense]) for x in _x_steps(_rng(seed + 50), x_max, sizes, -2)]
    return CaseSpec(prog, steps, LIN_ATOL, LIN_RTOL)


def multi2_q4_1_m1():
    return _multi((gq.GGML_Q4_1,) * 2, (40, 24), (1, 64), (1,), seed=1)


def multi3_q4_0_dynamic_s():
    # q/k/v shapes of a small attention block: S 12 -> 1 -> 5 -> 12 (tiled, GEMV, tiled).
    # 96 outputs: the second 64-column tile straddles out1 and out2.
    return _multi((gq.GGML_Q4_0,) * 3, (32, 16, 48), (1, 12, 64), (12, 1, 5, 12), seed=2)


def multi3_q8_0_k_tail():
    # K = 96: not a multiple of the 32-wide K tile's 64 x 2 pattern; odd split sizes.
    return _multi((gq.GGML_Q8_0,) * 3, (33, 7, 70), (20, 96), (20, 1, 17), seed=3)


def multi2_f16_and_f32():
    return _multi((gq.GGML_F16,) * 2, (10, 6), (3, 40), (3, 1), seed=4)


def multi_f32_pairs_of_four():
    """Four linears of one input: two fused pairs (the kernel has 2 or 3 outputs)."""
    x_max, ns = (4, 32), (8, 16, 12, 4)
    p = Program()
    ix = p.tensor(F32, x_max)
    dense, outs = [], []
    for i, n in enumerate(ns):
        raw, d = _gguf_weight(gq.GGML_F32, n, 32, 10 + i)
        outs.append(_linear_call(p, ix, raw, gq.GGML_F32, (4, n)))
        dense.append(d)
    p.input_ids, p.output_ids = [ix], outs
    prog = fused(p, MULTI, 2)
    steps = [Step([x], [linear(x, d) for d in dense]) for x in _x_steps(_rng(14), x_max, (4, 1), 0)]
    return CaseSpec(prog, steps, LIN_ATOL, LIN_RTOL)


# ------------------------------------------------------------ SwiGLU
def _swiglu(type_id, f, x_max, sizes, seed, form="sigmoid", swap=False):
    """gate/up linears + silu (sigmoid * gate, or aten.silu) * up -> linear_gguf_swiglu."""
    k = x_max[-1]
    dims = tuple(x_max[:-1]) + (f,)
    p = Program()
    ix = p.tensor(F32, x_max)
    raw_g, wg = _gguf_weight(type_id, f, k, seed)
    raw_u, wu = _gguf_weight(type_id, f, k, seed + 1)
    gate = _linear_call(p, ix, raw_g, type_id, dims)
    up = _linear_call(p, ix, raw_u, type_id, dims)
    silu = p.tensor(F32, dims)
    if form == "sigmoid":
        sig = p.tensor(F32, dims)
        p.call("aten.sigmoid.default", gate, sig)
        p.call("aten.mul.Tensor", *((sig, gate) if swap else (gate, sig)), silu)
    else:
        p.call("aten.silu.default", gate, silu)
    out = p.tensor(F32, dims)
    p.call("aten.mul.Tensor", *((up, silu) if swap else (silu, up)), out)
    p.input_ids, p.output_ids = [ix], [out]
    prog = fused(p, SWIGLU, 1)
    steps = []
    for x in _x_steps(_rng(seed + 50), x_max, sizes, -2):
        g = linear(x, wg)
        steps.append(Step([x], [ew.mul(ew.mul(g, ew.sigmoid(g)), linear(x, wu))]))
    return CaseSpec(prog, steps, SWIGLU_ATOL, SWIGLU_RTOL)


def swiglu_q4_1_m1():
    return _swiglu(gq.GGML_Q4_1, 48, (1, 1, 64), (1,), seed=20)


def swiglu_q4_0_dynamic_s():
    # F = 80: the last 32-output tile and the last GEMV pair are partial. S 17 -> 1 -> 3 -> 17.
    return _swiglu(gq.GGML_Q4_0, 80, (1, 17, 64), (17, 1, 3, 17), seed=21)


def swiglu_q8_0_silu_op_swapped():
    return _swiglu(gq.GGML_Q8_0, 33, (6, 96), (6, 1), seed=22, form="silu", swap=True)


def swiglu_f16_sigmoid_swapped():
    return _swiglu(gq.GGML_F16, 16, (2, 40), (2, 1), seed=23, swap=True)


# ------------------------------------------------------------ add + RMSNorm
def _add_then_norm(p: Program, x_max, alpha, w):
    """The residual add and RMSNorm as the llama builder emits them: (a, b, y, n) value ids."""
    ia, ib = p.tensor(F32, x_max), p.tensor(F32, x_max)
    y, n = p.tensor(F32, x_max), p.tensor(F32, x_max)
    p.call("aten.add.Tensor", ia, ib, p.add(Double(alpha)), y)
    p.call("et_vk.rms_norm.default", y, p.tensor(F32, (x_max[-1],), w), p.add(Double(1e-5)), n)
    return ia, ib, y, n


def _add_norm(x_max, sizes, alpha, seed):
    """y = a + alpha * b; n = rms_norm(y) -> add_rms_norm; both outputs checked."""
    width = x_max[-1]
    r = _rng(seed)
    w = (1.0 + 0.1 * r.standard_normal(width)).astype(np.float32)
    p = Program()
    ia, ib, y, n = _add_then_norm(p, x_max, alpha, w)
    p.input_ids, p.output_ids = [ia, ib], [y, n]
    prog = fused(p, ADD_NORM, 1)
    steps = []
    for a, b in zip(_x_steps(r, x_max, sizes, -2), _x_steps(r, x_max, sizes, -2)):
        want_y = ew.add(a, b, alpha)
        steps.append(Step([a, b], [want_y, rms_norm(want_y, w, 1e-5)]))
    return CaseSpec(prog, steps, NORM_TOL, NORM_TOL)


def add_rms_norm_static():
    return _add_norm((1, 4, 100), (4,), 1.0, seed=30)


def add_rms_norm_dynamic_s_alpha():
    # width 576 (SmolLM2's): several elements per thread; S 9 -> 1 -> 9.
    return _add_norm((1, 9, 576), (9, 1, 9), 0.5, seed=31)


def add_rms_norm_chain():
    """A residual stream: add -> norm -> linear -> add -> norm, where the first sum is read again."""
    r = _rng(32)
    width = 64
    w1 = (1.0 + 0.1 * r.standard_normal(width)).astype(np.float32)
    w2 = (1.0 + 0.1 * r.standard_normal(width)).astype(np.float32)
    raw, dense = _gguf_weight(gq.GGML_Q8_0, width, width, 33)
    dims = (1, 5, width)
    p = Program()
    ia, ib = p.tensor(F32, dims), p.tensor(F32, dims)
    one, eps = p.add(Double(1.0)), p.add(Double(1e-5))
    y1, n1, y2, n2 = (p.tensor(F32, dims) for _ in range(4))
    p.call("aten.add.Tensor", ia, ib, one, y1)
    p.call("et_vk.rms_norm.default", y1, p.tensor(F32, (width,), w1), eps, n1)
    h = _linear_call(p, n1, raw, gq.GGML_Q8_0, dims)
    p.call("aten.add.Tensor", y1, h, one, y2)
    p.call("et_vk.rms_norm.default", y2, p.tensor(F32, (width,), w2), eps, n2)
    p.input_ids, p.output_ids = [ia, ib], [n2]
    prog = fused(p, ADD_NORM, 2)
    steps = []
    for s in (5, 1):
        a, b = (r.standard_normal((1, s, width)).astype(np.float32) for _ in range(2))
        s1 = ew.add(a, b)
        s2 = ew.add(s1, linear(rms_norm(s1, w1, 1e-5), dense))
        steps.append(Step([a, b], [rms_norm(s2, w2, 1e-5)]))
    return CaseSpec(prog, steps, 2e-4, 1e-4)  # through a linear: linear tolerance


# ------------------------------------------------------------ RoPE of q and k, one dispatch
def _rope_qk(s_max, hq, hkv, d, sizes, seed):
    """apply_rotary_emb with a freqs table of more rows than S (the kernel reads the first S)."""
    p = Program()
    xq, xk = p.tensor(F32, (1, s_max, hq, d)), p.tensor(F32, (1, s_max, hkv, d))
    cos_t, sin_t = rope_freqs(d, range(s_max + 3), base=10000.0)
    cos, sin = p.tensor(F32, cos_t.shape, cos_t), p.tensor(F32, sin_t.shape, sin_t)
    oq, ok = p.tensor(F32, (1, s_max, hq, d)), p.tensor(F32, (1, s_max, hkv, d))
    p.call("et_vk.apply_rotary_emb.default", xq, xk, cos, sin, p.add(ValueList((oq, ok))))
    p.input_ids, p.output_ids = [xq, xk], [oq, ok]
    prog = fused(p, ROPE_QK, 1)
    r = _rng(seed)
    steps = []
    for s in sizes:
        q, k = (r.standard_normal((1, s, h, d)).astype(np.float32) for h in (hq, hkv))
        steps.append(Step([q, k], list(apply_rotary_emb(q, k, cos_t[:s], sin_t[:s]))))
    return CaseSpec(prog, steps, ROPE_TOL, ROPE_TOL)


def rope_qk_gqa_dynamic_s():
    return _rope_qk(7, 4, 2, 16, (7, 1, 4, 7), seed=50)


def rope_qk_smollm2_heads():
    # 9 q heads, 3 kv heads, head_dim 64: 3 * 64 * 12 pairs, not a multiple of the workgroup.
    return _rope_qk(3, 9, 3, 64, (3, 1), seed=51)


# ------------------------------------------- add + RMSNorm folded into the linear it feeds
MULTI_NORM = "py_engine.linear_gguf_multi_norm.default"
SWIGLU_NORM = "py_engine.linear_gguf_swiglu_norm.default"


def _norm_then(kind, type_id, ns, x_max, sizes, alpha, seed):
    """a + alpha * b -> RMSNorm -> (q/k/v-style linears | SwiGLU): the decode steps (S = 1) run
    the folded GEMV, the others add_rms_norm's dispatch then the tiled kernel. Outputs: the
    residual sum and the linear outputs."""
    k = x_max[-1]
    r = _rng(seed)
    w = (1.0 + 0.1 * r.standard_normal(k)).astype(np.float32)
    p = Program()
    ia, ib, y, n = _add_then_norm(p, x_max, alpha, w)
    weights = [_gguf_weight(type_id, rows, k, seed + 1 + i) for i, rows in enumerate(ns)]
    outs = [_linear_call(p, n, raw, type_id, tuple(x_max[:-1]) + (rows,)) for (raw, _), rows in zip(weights, ns)]
    if kind == "swiglu":
        sig, silu, prod = (p.tensor(F32, tuple(x_max[:-1]) + (ns[0],)) for _ in range(3))
        p.call("aten.sigmoid.default", outs[0], sig)
        p.call("aten.mul.Tensor", outs[0], sig, silu)
        p.call("aten.mul.Tensor", silu, outs[1], prod)
        outs = [prod]
    p.input_ids, p.output_ids = [ia, ib], [y] + outs
    prog = fused(p, MULTI_NORM if kind == "multi" else SWIGLU_NORM, 1)
    steps = []
    for a, b in zip(_x_steps(r, x_max, sizes, -2), _x_steps(r, x_max, sizes, -2)):
        want_y = ew.add(a, b, alpha)
        h = rms_norm(want_y, w, 1e-5)
        lins = [linear(h, d) for _, d in weights]
        if kind == "swiglu":
            lins = [ew.mul(ew.mul(lins[0], ew.sigmoid(lins[0])), lins[1])]
        steps.append(Step([a, b], [want_y] + lins))
    if kind == "swiglu":
        return CaseSpec(prog, steps, SWIGLU_ATOL, SWIGLU_RTOL)
    return CaseSpec(prog, steps, LIN_ATOL, LIN_RTOL)


def norm_multi3_q4_1_dynamic_s():
    # S 5 -> 1 -> 3 -> 1: tiled, folded GEMV, tiled, folded GEMV; alpha 1 as llama's residual.
    return _norm_then("multi", gq.GGML_Q4_1, (64, 32, 32), (1, 5, 64), (5, 1, 3, 1), 1.0, seed=70)


def norm_multi3_q4_1_width_1056():
    # K = 1056: 33 blocks for 32 lanes (TPR on GPUs), so lane 0 of each row reads two.
    return _norm_then("multi", gq.GGML_Q4_1, (16, 8, 8), (1, 3, 1056), (1, 3, 1), 1.0, seed=72)


def norm_swiglu_q8_0_width_96():
    # K = 96 (not a power of two: the sum of squares runs over 64 lanes, twice for a third of them).
    return _norm_then("swiglu", gq.GGML_Q8_0, (40, 40), (1, 4, 96), (1, 4, 1), 0.5, seed=71)


# ------------------------------------------------- RoPE + the KV-cache write, one dispatch
ROPE_KV = "py_engine.apply_rotary_emb_qk_kv.default"
SDPA_WRITTEN = "py_engine.sdpa_kv_written.default"
ROPE_SDPA = "py_engine.rope_sdpa_kv.default"  # the two above as one op (fuse_rope_sdpa)
ROPE_SDPA_AT = "py_engine.rope_sdpa_kv_at.default"  # ... reading cos/sin rows from whole tables


def rope_sdpa_chain(s_max, hq, hkv, d, cmax, kv=F32):
    """(unfused Program, (cos, sin)): RoPE of q/k then sdpa_with_kv_cache at a SymInt input_pos
    (as the llama builder emits them); the caches are outputs too, so the fused cache write is
    checked directly."""
    from ..program import SymInt

    p = Program()
    xq, xk, xv = (p.tensor(F32, (1, s_max, h, d)) for h in (hq, hkv, hkv))
    cos_t, sin_t = rope_freqs(d, range(s_max), base=10000.0)
    cos, sin = p.tensor(F32, cos_t.shape, cos_t), p.tensor(F32, sin_t.shape, sin_t)
    q_rot, k_rot = p.tensor(F32, (1, s_max, hq, d)), p.tensor(F32, (1, s_max, hkv, d))
    p.call("et_vk.apply_rotary_emb.default", xq, xk, cos, sin, p.add(ValueList((q_rot, k_rot))))
    kc, vc = p.tensor(kv, (1, cmax, hkv, d)), p.tensor(kv, (1, cmax, hkv, d))
    pos = p.add(SymInt(0))
    out = p.tensor(F32, (1, s_max, hq, d))
    p.call("sdpa_with_kv_cache.default", q_rot, k_rot, xv, kc, vc, pos, p.add(Int(1)), p.add(Null()),
           p.add(Double(0.0)), p.add(Null()), p.add(Double(1.0 / np.sqrt(d))), out)
    p.input_ids, p.output_ids = [xq, xk, xv, pos], [out, kc, vc]
    return p, (cos_t, sin_t)


def rope_sdpa_table_chain(s_max, hq, hkv, d, cmax, table_rows=None, kv=F32):
    """rope_sdpa_chain's pattern as the llama builder emits it: the RoPE reads rows input_pos ..
    input_pos + S of constant cos/sin tables of `table_rows` (default cmax) positions, sliced by
    SymInts (S = sym_size(xq, 1), end = input_pos + S). (unfused Program, (cos, sin) tables)."""
    from ..program import SymInt

    p = Program()
    xq, xk, xv = (p.tensor(F32, (1, s_max, h, d)) for h in (hq, hkv, hkv))
    pos = p.add(SymInt(0))
    seq, end = p.add(SymInt(s_max)), p.add(SymInt(s_max))
    p.call("sym_size.int", xq, p.add(Int(1)), seq)
    p.call("add", pos, seq, end)
    cos_t, sin_t = rope_freqs(d, range(table_rows or cmax), base=10000.0)
    freqs = []
    for table in (cos_t, sin_t):
        rows = p.tensor(F32, (s_max, d // 2))
        p.call("aten.slice_copy.Tensor", p.tensor(F32, table.shape, table), p.add(Int(0)), pos, end,
               p.add(Int(1)), rows)
        freqs.append(rows)
    q_rot, k_rot = p.tensor(F32, (1, s_max, hq, d)), p.tensor(F32, (1, s_max, hkv, d))
    p.call("et_vk.apply_rotary_emb.default", xq, xk, *freqs, p.add(ValueList((q_rot, k_rot))))
    kc, vc = p.tensor(kv, (1, cmax, hkv, d)), p.tensor(kv, (1, cmax, hkv, d))
    out = p.tensor(F32, (1, s_max, hq, d))
    p.call("sdpa_with_kv_cache.default", q_rot, k_rot, xv, kc, vc, pos, p.add(Int(1)), p.add(Null()),
           p.add(Double(0.0)), p.add(Null()), p.add(Double(1.0 / np.sqrt(d))), out)
    p.input_ids, p.output_ids = [xq, xk, xv, pos], [out, kc, vc]
    return p, (cos_t, sin_t)


def _rope_kv_program(s_max, hq, hkv, d, cmax, tables: bool = False, kv=F32):
    if tables:
        p, freqs = rope_sdpa_table_chain(s_max, hq, hkv, d, cmax, kv=kv)
        return fused(p, ROPE_SDPA_AT, 1), freqs
    p, freqs = rope_sdpa_chain(s_max, hq, hkv, d, cmax, kv=kv)
    return fused(p, ROPE_SDPA, 1), freqs


def _rope_kv_steps(hq, hkv, d, cmax, sizes, seed, tables: bool = False, kv=F32):
    """The fused RoPE + attention program and its steps of `sizes` rows from position 0; with
    `tables`, the program slices its cos/sin rows by input_pos (rope_sdpa_table_chain), which the
    fused op reads from the whole tables. Caches of dtype `kv` (float16: tolerances as
    attention_cases' _kv16 cases)."""
    from ..reference.attention import sdpa_with_kv_cache

    prog, (cos_t, sin_t) = _rope_kv_program(max(sizes), hq, hkv, d, cmax, tables, kv)
    r = _rng(seed)
    kc = np.zeros((1, cmax, hkv, d), kv)
    vc = kc.copy()
    steps, pos = [], 0
    for s in sizes:
        q, k, v = (r.standard_normal((1, s, h, d)).astype(np.float32) for h in (hq, hkv, hkv))
        rows = slice(pos, pos + s) if tables else slice(0, s)  # without tables: rows 0..S-1 of the constants
        qr, kr = apply_rotary_emb(q, k, cos_t[rows], sin_t[rows])
        out, kc, vc = sdpa_with_kv_cache(qr, kr, v, kc, vc, pos)
        steps.append(Step([q, k, v, pos], [out, kc, vc]))
        pos += s
    if kv == F32:
        return CaseSpec(prog, steps, 2e-5, 1e-5)  # as the sdpa cases (attention_cases)
    return CaseSpec(prog, steps, SDPA16_ATOL, SDPA16_RTOL)


def rope_kv_long_decode_splits(kv=F32):
    """SmolLM2's heads (9:3, D 64): 66 rows, then decode steps at 66..68, whose 67-69 keys run in
    3 splits of one tile on sdpa_decode.wgsl (the last split writes the new key), then 2 rows."""
    return _rope_kv_steps(9, 3, 64, 80, (66, 1, 1, 1, 2), seed=62, kv=kv)


def rope_kv_prefill_then_decode(kv=F32):
    """Prefill 5 rows at 0, then single rows at 5, 6 and a 3-row chunk at 7 (GQA 4:2, D 16)."""
    return _rope_kv_steps(4, 2, 16, 12, (5, 1, 1, 3), seed=60, kv=kv)


def rope_kv_table_prefill_then_decode(kv=F32):
    """As rope_kv_prefill_then_decode, with each step's cos/sin rows sliced from tables by
    input_pos, the slices folded away (py_engine.rope_sdpa_kv_at: rows read on the GPU)."""
    return _rope_kv_steps(4, 2, 16, 12, (5, 1, 1, 3), seed=63, tables=True, kv=kv)


def rope_kv_table_long_decode_splits(kv=F32):
    """SmolLM2's heads from tables: 66 rows, decode steps at 66..68 (split attention), 2 rows."""
    return _rope_kv_steps(9, 3, 64, 80, (66, 1, 1, 1, 2), seed=64, tables=True, kv=kv)


async def run_rope_folded_case(backend, name: str) -> list:
    """A rope_kv case with decode steps on sdpa_decode.wgsl, as GPUs run them (CPU adapters only
    with sdpa.FAST_DECODE_ON_CPU, forced here): its `main_rope` entry rotates q and writes the new
    cache row, and the rope_kv dispatch idles on those steps. Checks the outputs against numpy,
    then which dispatches each step ran; returns [(rows, rope workgroups, attention workgroups)]."""
    from ..ops import sdpa
    from .harness import run_case

    saved = sdpa.FAST_DECODE_ON_CPU
    sdpa.FAST_DECODE_ON_CPU = True
    try:
        spec = CASES[name]()
        result = await run_case(backend, spec, name)
        assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]
        g = await Graph.build(spec.program, backend)
        try:
            op = next(o for o in g.ops if hasattr(o, "attn"))  # the RoPE + attention op
            assert op.attn.rope_folded, "the decode attention did not take the RoPE in"
            live = []
            for st in spec.steps:
                await g.step(st.inputs, read=[])
                live.append((st.inputs[0].shape[1], int(g.table[op.rope.d, 2]), int(g.table[op.attn.d_fast, 2])))
        finally:
            g.destroy()
    finally:
        sdpa.FAST_DECODE_ON_CPU = saved
    for s, rope, fast in live:
        assert (rope == 0) == (s == 1) and (fast > 0) == (s == 1), (s, rope, fast)
    return live


CASES = {f.__name__: f for f in (
    multi2_q4_1_m1, multi3_q4_0_dynamic_s, multi3_q8_0_k_tail, multi2_f16_and_f32, multi_f32_pairs_of_four,
    swiglu_q4_1_m1, swiglu_q4_0_dynamic_s, swiglu_q8_0_silu_op_swapped, swiglu_f16_sigmoid_swapped,
    add_rms_norm_static, add_rms_norm_dynamic_s_alpha, add_rms_norm_chain,
    rope_qk_gqa_dynamic_s, rope_qk_smollm2_heads, rope_kv_prefill_then_decode, rope_kv_long_decode_splits,
    rope_kv_table_prefill_then_decode, rope_kv_table_long_decode_splits,
    norm_multi3_q4_1_dynamic_s, norm_multi3_q4_1_width_1056, norm_swiglu_q8_0_width_96)}
CASES.update({f"{n}_kv16": functools.partial(CASES[n], kv="float16") for n in list(CASES) if n.startswith("rope_kv")})


# ------------------------------------------------------------ bad input
def multi_splits_do_not_add_up():
    raw, _ = _gguf_weight(gq.GGML_Q8_0, 12, 32, 40)
    p = Program()
    ix = p.tensor(F32, (2, 32))
    o0, o1 = p.tensor(F32, (2, 8)), p.tensor(F32, (2, 5))
    p.call(MULTI, ix, p.tensor("uint8", raw.shape, raw), p.add(Int(gq.GGML_Q8_0)), p.add(IntList((8, 5))),
           p.add(ValueList((o0, o1))))
    p.input_ids, p.output_ids = [ix], [o0, o1]
    return ErrorSpec(p, OpError, f"{MULTI}: splits [8, 5] add up to 13, the weight has 12 rows")


def swiglu_odd_rows():
    raw, _ = _gguf_weight(gq.GGML_Q4_0, 7, 32, 41)
    p = Program()
    ix, o = p.tensor(F32, (1, 32)), p.tensor(F32, (1, 3))
    p.call(SWIGLU, ix, p.tensor("uint8", raw.shape, raw), p.add(Int(gq.GGML_Q4_0)), o)
    p.input_ids, p.output_ids = [ix], [o]
    return ErrorSpec(p, OpError, f"{SWIGLU}: weight must hold gate and up rows (an even count), got 7")


def swiglu_wrong_k():
    raw, _ = _gguf_weight(gq.GGML_Q4_1, 8, 64, 42)
    p = Program()
    ix, o = p.tensor(F32, (1, 32)), p.tensor(F32, (1, 4))
    p.call(SWIGLU, ix, p.tensor("uint8", raw.shape, raw), p.add(Int(gq.GGML_Q4_1)), o)
    p.input_ids, p.output_ids = [ix], [o]
    return ErrorSpec(p, OpError, "input K=32 differs from the weight's K=64")


def _add_norm_raw(a_dims, b_dims):
    p = Program()
    ia, ib = p.tensor(F32, a_dims), p.tensor(F32, b_dims)
    y, n = p.tensor(F32, a_dims), p.tensor(F32, a_dims)
    p.call(ADD_NORM, ia, ib, p.add(Double(1.0)), p.tensor(F32, (a_dims[-1],), np.ones(a_dims[-1], np.float32)),
           p.add(Double(1e-5)), y, n)
    p.input_ids, p.output_ids = [ia, ib], [n]
    return p


def add_rms_norm_b_dims_differ():
    return ErrorSpec(_add_norm_raw((2, 16), (1, 16)), OpError, f"{ADD_NORM}: b has dims [1, 16], expected [2, 16]")


def add_rms_norm_live_dims_differ():
    """A step whose live a and b rows differ fails with a StepError; the graph stays usable."""
    ok = [np.ones((3, 16), np.float32), np.ones((3, 16), np.float32)]
    bad = [np.ones((3, 16), np.float32), np.ones((2, 16), np.float32)]
    return ErrorSpec(_add_norm_raw((3, 16), (3, 16)), StepError, "live a [3, 16] and b [2, 16] differ",
                     steps=[ok, bad])


def rope_kv_position_past_cache():
    # 5 rows at 10 in a 12-row cache: the fused op refuses before anything is written.
    prog, _ = _rope_kv_program(5, 4, 2, 16, 12)
    r = _rng(61)
    q, k, v = (r.standard_normal((1, 5, h, 16)).astype(np.float32) for h in (4, 2, 2))
    return ErrorSpec(prog, StepError, "exceeds cache capacity", [[q, k, v, 0], [q, k, v, 10]])


ERROR_CASES = {f.__name__: f for f in (
    multi_splits_do_not_add_up, swiglu_odd_rows, swiglu_wrong_k, add_rms_norm_b_dims_differ,
    add_rms_norm_live_dims_differ, rope_kv_position_past_cache)}


# ------------------------------------------------------------ whole llama, fused vs unfused
async def compare_fused_llama(backend, gguf_bytes, prompt_ids, *, n_decode: int = 4, context: int = 64,
                              max_prefill: int = 8, tol: float = LLAMA_FUSED_TOL) -> dict:
    """Run the llama program unfused and fused on the same tokens (prompt in chunks of
    max_prefill, then greedy decode steps): logits must agree within `tol` at every step
    and the fused graph must have fewer dispatches. Returns the errors and dispatch counts."""
    from ..generate import LlamaRunner
    from ..loaders.gguf import read_gguf
    from ..models.llama import build_llama_program

    gguf = read_gguf(gguf_bytes)
    results = {}
    for fuse in (False, True):
        lp = build_llama_program(gguf, context=context, max_prefill=max_prefill, fuse=fuse)
        graph = await Graph.build(lp.program, backend)
        try:
            runner = LlamaRunner(graph, lp)
            logits = [np.asarray(await runner.feed(list(prompt_ids)))]
            ids = []
            for _ in range(n_decode):
                ids.append(int(np.argmax(logits[-1])))
                logits.append(np.asarray(await runner.feed([ids[-1]])))
            results[fuse] = {"logits": logits, "ids": ids, "rows": len(graph.table),
                             "live_rows": int(np.count_nonzero(graph.table[:, 2]))}
        finally:
            graph.destroy()
    plain, fast = results[False], results[True]
    errs = []
    for step, (a, b) in enumerate(zip(plain["logits"], fast["logits"])):
        err = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
        if not err <= tol:
            raise AssertionError(f"fused llama: step {step} logits differ by {err:.3g} (> {tol})")
        errs.append(err)
    if plain["ids"] != fast["ids"]:
        raise AssertionError(f"fused llama: greedy ids {fast['ids']} differ from unfused {plain['ids']}")
    if not fast["rows"] < plain["rows"]:
        raise AssertionError(f"fused llama: {fast['rows']} dispatch rows, unfused {plain['rows']}")
    return {"max_err": max(errs), "ids": fast["ids"], "rows": (plain["rows"], fast["rows"]),
            "live_rows": (plain["live_rows"], fast["live_rows"])}
