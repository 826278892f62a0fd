"""Cases for the KV-cache attention ops: update_cache.default and sdpa_with_kv_cache.default.

Expected values come from py_engine.reference.attention (float64 math, f32 result).
Tolerances: update_cache is a copy, so "exact"; sdpa cases use atol 2e-5 + rtol 1e-5 on the
output (the caches, checked through Step.state under the same tolerance, are bit copies).
Every case also runs with float16 caches (`<name>_kv16`; the reference rounds what it writes
to f16 to nearest even): WGSL lets pack2x16float round either way, so cache elements may be
one f16 step off (rtol 2^-10, atol 2^-24 below f16's normal range), and the sdpa outputs,
computed from such keys and values, take atol 1e-3 + rtol 1e-3.

input_pos is either a constant Int or a SymInt that is a program input (Graph.step takes a
plain int for it), so these cases need no other op. Caches are mutable tensors: zero-filled,
or given initial contents as constants (as ExecuTorch exports its cache buffers).
"""
from __future__ import annotations

import functools

import numpy as np

from ..graph import OpError, StepError
from ..program import Bool, Double, Int, Null, Program, SymInt
from ..reference.attention import sdpa_with_kv_cache, update_cache
from .harness import CaseSpec, ErrorSpec, Step

F32 = "float32"
UC = "update_cache.default"
SDPA = "sdpa_with_kv_cache.default"
SDPA_ATOL, SDPA_RTOL = 2e-5, 1e-5
F16 = "float16"
UC16_ATOL, UC16_RTOL = 2.0 ** -24, 2.0 ** -10  # one f16 step
SDPA16_ATOL, SDPA16_RTOL = 1e-3, 1e-3


def _rng(seed: int):
    return np.random.default_rng(seed)


def _randn(r, shape) -> np.ndarray:
    return r.standard_normal(shape).astype(np.float32)


def _pos_value(p: Program, pos):
    """`pos` None: a SymInt program input; an int: a constant Int."""
    return p.add(SymInt(0)) if pos is None else p.add(Int(pos))


# ------------------------------------------------------------------ update_cache
def _uc_program(s_max, heads, dim, cmax, pos=None, cache_init=None, dtype=F32, cache_dims=None, batch=1, kv=None):
    p = Program()
    val = p.tensor(dtype, (batch, s_max, heads, dim))
    cache = p.tensor(kv or dtype, cache_dims or (1, cmax, heads, dim), cache_init)
    ipos = _pos_value(p, pos)
    dummy = p.tensor(F32, (1,))
    p.call(UC, val, cache, ipos, dummy)
    p.input_ids = [val] if pos is not None else [val, ipos]
    p.output_ids = [cache]
    return p, cache


def _uc_spec(p, steps, kv) -> CaseSpec:
    return CaseSpec(p, steps) if kv == F32 else CaseSpec(p, steps, UC16_ATOL, UC16_RTOL)


def _uc_replay(seq_lens, heads, dim, cmax, seed, kv=F32):
    """One graph built at max S; each step writes the next seq_lens[i] rows (SymInt input_pos)."""
    r = _rng(seed)
    p, _ = _uc_program(max(seq_lens), heads, dim, cmax, kv=kv)
    state = np.zeros((1, cmax, heads, dim), kv)
    steps, pos = [], 0
    for s in seq_lens:
        v = _randn(r, (1, s, heads, dim))
        state = update_cache(v, state, pos)
        steps.append(Step([v, pos], [state]))
        pos += s
    return _uc_spec(p, steps, kv)


def uc_prefill_int_pos0(kv=F32):
    r = _rng(20)
    p, _ = _uc_program(5, 4, 4, 8, pos=0, kv=kv)
    v = _randn(r, (1, 5, 4, 4))
    return _uc_spec(p, [Step([v], [update_cache(v, np.zeros((1, 8, 4, 4), kv), 0)])], kv)


def uc_int_pos_nonzero_d64(kv=F32):
    """Constant input_pos 3 into a cache with prior contents (rows outside 3..4 must survive)."""
    r = _rng(21)
    init = _randn(r, (1, 9, 2, 64)).astype(kv)
    p, _ = _uc_program(2, 2, 64, 9, pos=3, cache_init=init, kv=kv)
    v = _randn(r, (1, 2, 2, 64))
    return _uc_spec(p, [Step([v], [update_cache(v, init, 3)])], kv)


def uc_decode_d128(kv=F32):
    """S = 1 writes at SymInt positions 0, 5, 9 (the last row) and 5 again, 8 heads x 128."""
    r = _rng(22)
    init = _randn(r, (1, 10, 8, 128)).astype(kv)
    p, _ = _uc_program(1, 8, 128, 10, cache_init=init, kv=kv)
    state, steps = init, []
    for pos in (0, 5, 9, 5):
        v = _randn(r, (1, 1, 8, 128))
        state = update_cache(v, state, pos)
        steps.append(Step([v, pos], [state]))
    return _uc_spec(p, steps, kv)


def uc_replay_small(kv=F32):
    """seq lens [3,1,1,5,1,1,2] (14 rows) fill a 4-head, D 4 cache of exactly 14 rows."""
    return _uc_replay([3, 1, 1, 5, 1, 1, 2], 4, 4, 14, seed=23, kv=kv)


def uc_replay_big(kv=F32):
    """seq lens [111,1,1,1,57,1,1] (173 rows) into an 8-head, D 128 cache of 176 rows."""
    return _uc_replay([111, 1, 1, 1, 57, 1, 1], 8, 128, 176, seed=24, kv=kv)


def uc_dynamic_seq(kv=F32):
    """Built at S = 6: runs S = 6, 3, 1, then 6 again."""
    return _uc_replay([6, 3, 1, 6], 2, 16, 16, seed=25, kv=kv)


# ------------------------------------------------------------------ sdpa_with_kv_cache
def _sdpa_program(s_max, hq, hkv, dim, cmax, pos=None, k_init=None, v_init=None, scale=None,
                  q_dtype=F32, batch=1, cache_dims=None, k_dims=None, mask=False, causal=True, kv=F32,
                  v_kv=None):
    p = Program()
    q = p.tensor(q_dtype, (batch, s_max, hq, dim))
    k_dims = k_dims or (1, s_max, hkv, dim)
    k, v = p.tensor(F32, k_dims), p.tensor(F32, k_dims)
    cache_dims = cache_dims or (1, cmax, hkv, dim)
    kc, vc = p.tensor(kv, cache_dims, k_init), p.tensor(v_kv or kv, cache_dims, v_init)
    ipos = _pos_value(p, pos)
    seq_len = p.add(Int(1))  # as some exports emit it: a constant that must not size anything
    mask_id = p.tensor(F32, (s_max, cmax)) if mask else p.add(Null())
    out = p.tensor(F32, (batch, s_max, hq, dim))
    p.call(SDPA, q, k, v, kc, vc, ipos, seq_len, mask_id, p.add(Int(0)), p.add(Bool(causal)),
           p.add(Null()) if scale is None else p.add(Double(scale)), out)
    p.input_ids = [q, k, v] + ([] if pos is not None else [ipos])
    p.output_ids = [out]
    return p, kc, vc


def _sdpa_case(seq_lens, hq, hkv, dim, cmax, seed, start=0, symint=True, init=False, scale=None,
               positions=None, kv=F32):
    """One graph built at max S, stepped through seq_lens from `start` (or explicit positions);
    after every step the output and both caches (of dtype `kv`) are checked."""
    r = _rng(seed)
    shape = (1, cmax, hkv, dim)
    k_state = _randn(r, shape).astype(kv) if init else np.zeros(shape, kv)
    v_state = _randn(r, shape).astype(kv) if init else np.zeros(shape, kv)
    p, kc, vc = _sdpa_program(max(seq_lens), hq, hkv, dim, cmax, pos=None if symint else start,
                              k_init=k_state if init else None, v_init=v_state if init else None, scale=scale,
                              kv=kv)
    if positions is None:
        positions = list(np.cumsum([start] + list(seq_lens[:-1])))
    steps = []
    for s, pos in zip(seq_lens, positions):
        q, k, v = _randn(r, (1, s, hq, dim)), _randn(r, (1, s, hkv, dim)), _randn(r, (1, s, hkv, dim))
        out, k_state, v_state = sdpa_with_kv_cache(q, k, v, k_state, v_state, int(pos), scale)
        inputs = [q, k, v] + ([int(pos)] if symint else [])
        steps.append(Step(inputs, [out], {kc: k_state, vc: v_state}))
    return CaseSpec(p, steps, SDPA_ATOL, SDPA_RTOL) if kv == F32 else CaseSpec(p, steps, SDPA16_ATOL, SDPA16_RTOL)


def sdpa_prefill_mha_d16(kv=F32):
    """Prefill of 6 rows at constant input_pos 0, 4 heads (no grouping), D 16."""
    return _sdpa_case([6], 4, 4, 16, 8, seed=30, symint=False, kv=kv)


def sdpa_gqa_8_2_d64_int_pos(kv=F32):
    """GQA 8:2, D 64, S 5 at constant input_pos 3 over a cache with prior rows."""
    return _sdpa_case([5], 8, 2, 64, 12, seed=31, start=3, symint=False, init=True, kv=kv)


def sdpa_decode_gqa_d128(kv=F32):
    """Decode (S = 1) with GQA 8:2, D 128 at SymInt positions 7, 8, 40, 63 (the last row)."""
    return _sdpa_case([1, 1, 1, 1], 8, 2, 128, 64, seed=32, init=True, positions=[7, 8, 40, 63], kv=kv)


def sdpa_long_context_decode(kv=F32):
    """Decode over 300 visible rows: 5 key splits of 64 merged, D 64, GQA 3:1."""
    return _sdpa_case([1, 1], 3, 1, 64, 320, seed=33, init=True, positions=[299, 319], kv=kv)


def sdpa_explicit_scale_d4(kv=F32):
    """scale given as a Double (0.3) instead of 1/sqrt(D); prefill then decode, GQA 4:2."""
    return _sdpa_case([3, 1], 4, 2, 4, 6, seed=34, scale=0.3, kv=kv)


def sdpa_replay_small(kv=F32):
    """seq lens [3,1,1,5,1,1,2]: 4 kv heads (8 q heads), D 4, cache of 16 rows, one graph."""
    return _sdpa_case([3, 1, 1, 5, 1, 1, 2], 8, 4, 4, 16, seed=35, kv=kv)


def sdpa_replay_big(kv=F32):
    """seq lens [111,1,1,1,57,1,1]: 8 kv heads (16 q heads), D 128, cache of 176 rows."""
    return _sdpa_case([111, 1, 1, 1, 57, 1, 1], 16, 8, 128, 176, seed=36, kv=kv)


def sdpa_dynamic_seq(kv=F32):
    """Built at S = 8 (seq_len argument a constant 1): S = 8, 3, 1, then 8 again."""
    return _sdpa_case([8, 3, 1, 8], 4, 2, 16, 24, seed=37, kv=kv)


def sdpa_split_kv_decode_700(kv=F32):
    """SmolLM2's heads (9:3, D 64): decode at contexts 700 (11 key splits merged), 130 (3 splits,
    the last partial), 1 and 64 (one split: written directly), 65 (2 splits, one key in the last)."""
    return _sdpa_case([1] * 5, 9, 3, 64, 704, seed=38, init=True, positions=[699, 129, 0, 63, 64], kv=kv)


def sdpa_split_kv_multi_tile_splits(kv=F32):
    """Context 4200 > 64 splits x 64 keys: each split walks 2 tiles (33 splits), GQA 4:1, D 16."""
    return _sdpa_case([1, 1], 4, 1, 16, 4200, seed=39, init=True, positions=[4199, 2000], kv=kv)


def sdpa_split_kv_small_prefill(kv=F32):
    """S = 5 with G = 3 (15 rows, one block) at input_pos 200: the split path with causal rows."""
    return _sdpa_case([5, 1], 9, 3, 64, 240, seed=41, init=True, positions=[200, 205], kv=kv)


def sdpa_prefill_blocks_nonzero_pos(kv=F32):
    """Prefill S = 40 (120 rows of 9:3 heads: 8 blocks, the last partial) at input_pos 37, then
    S = 23 at 77 and a decode at 100: causal tile skipping within blocks."""
    return _sdpa_case([40, 23, 1], 9, 3, 64, 128, seed=42, init=True, positions=[37, 77, 100], kv=kv)


def sdpa_prefill_mha_blocks(kv=F32):
    """MHA 2:2, D 8: S = 37 (3 blocks per head) at input_pos 90, then S = 16 (exactly one block)."""
    return _sdpa_case([37, 16], 2, 2, 8, 160, seed=43, init=True, positions=[90, 127], kv=kv)


def sdpa_wide_group_decode(kv=F32):
    """MQA 32:1 (a decode step is 32 rows: 2 blocks, no splits) at context 300, D 8."""
    return _sdpa_case([1, 1], 32, 1, 8, 320, seed=44, init=True, positions=[299, 10], kv=kv)


def sdpa_decode_uneven_key_groups(kv=F32):
    """GQA 8:2, D 40 (the GPU decode kernel's 3 key groups do not divide its 32-key tiles): decode
    at context 2200 (69 tiles: 35 splits of 2 tiles), 41 (2 tiles, no merge) and 11."""
    return _sdpa_case([1, 1, 1], 8, 2, 40, 2200, seed=45, init=True, positions=[2199, 40, 10], kv=kv)


def sdpa_mha_decode_chunks(kv=F32):
    """MHA 4:4, D 32 (one q row per kv head): decode at context 600 (CPU adapters: 3 chunks of
    256 keys with the online softmax between them; with this seed the top score of two heads is in
    the third chunk and of one in the second, so each rescale counts), 256 (exactly one chunk),
    257 and 1."""
    return _sdpa_case([1, 1, 1, 1], 4, 4, 32, 640, seed=50, init=True, positions=[599, 255, 256, 0], kv=kv)


CASES = {f.__name__: f for f in (
    uc_prefill_int_pos0, uc_int_pos_nonzero_d64, uc_decode_d128, uc_replay_small, uc_replay_big,
    uc_dynamic_seq,
    sdpa_prefill_mha_d16, sdpa_gqa_8_2_d64_int_pos, sdpa_decode_gqa_d128, sdpa_long_context_decode,
    sdpa_explicit_scale_d4, sdpa_replay_small, sdpa_replay_big, sdpa_dynamic_seq,
    sdpa_split_kv_decode_700, sdpa_split_kv_multi_tile_splits, sdpa_split_kv_small_prefill,
    sdpa_prefill_blocks_nonzero_pos, sdpa_prefill_mha_blocks, sdpa_wide_group_decode,
    sdpa_decode_uneven_key_groups, sdpa_mha_decode_chunks)}
CASES.update({f"{name}_kv16": functools.partial(case, kv=F16) for name, case in list(CASES.items())})


# ---------------------------------------------------------------- bad input
def uc_negative_int_pos():
    return ErrorSpec(_uc_program(2, 2, 4, 8, pos=-1)[0], OpError, f"{UC}: input_pos must be non-negative, got -1")


def uc_int_pos_past_capacity():
    return ErrorSpec(_uc_program(3, 2, 4, 8, pos=6)[0], OpError,
                     f"{UC}: input_pos 6 + seq_len 3 exceeds cache capacity 8")


def uc_batch_2():
    return ErrorSpec(_uc_program(2, 2, 4, 8, batch=2)[0], OpError, f"{UC}: batch must be 1")


def uc_heads_mismatch():
    return ErrorSpec(_uc_program(2, 2, 4, 8, cache_dims=(1, 8, 3, 4))[0], OpError,
                     f"{UC}: n_heads mismatch: value has 2, cache has 3")


def uc_head_dim_mismatch():
    return ErrorSpec(_uc_program(2, 2, 4, 8, cache_dims=(1, 8, 2, 8))[0], OpError,
                     f"{UC}: head_dim mismatch: value has 4, cache has 8")


def uc_fp16():
    return ErrorSpec(_uc_program(2, 2, 4, 8, dtype="float16")[0], OpError,
                     f"{UC}: value has dtype float16; supported: float32")


def uc_f16_cache_odd_position():
    """A float16 cache packs two elements per word: positions of 1 head x 5 dims are refused."""
    return ErrorSpec(_uc_program(2, 1, 5, 8, kv=F16)[0], OpError,
                     f"{UC}: a float16 cache needs an even number of elements per position (heads x head_dim), "
                     f"got [1, 8, 1, 5]")


def uc_cache_past_u32_offsets():
    """A cache of 2^32 words: its offsets cannot travel as u32, refused before any allocation."""
    return ErrorSpec(_uc_program(1, 32, 32, 1 << 22)[0], OpError,
                     f"{UC}: cache [1, 4194304, 32, 32] holds 4294967296 words, past u32 offsets")


def _uc_step_error(bad_pos, s, match):
    p, _ = _uc_program(4, 2, 4, 8)
    ok = np.ones((1, 4, 2, 4), np.float32)
    bad = np.ones((1, s, 2, 4), np.float32)
    return ErrorSpec(p, StepError, match, steps=[[ok, 0], [bad, bad_pos]])


def uc_negative_symint_pos():
    return _uc_step_error(-1, 1, f"{UC}: input_pos must be non-negative, got -1")


def uc_symint_pos_past_capacity():
    return _uc_step_error(6, 3, f"{UC}: input_pos 6 + seq_len 3 exceeds cache capacity 8")


def sdpa_batch_2():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, batch=2)[0], OpError, f"{SDPA}: batch must be 1")


def sdpa_fp16():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, q_dtype="float16")[0], OpError,
                     f"{SDPA}: q has dtype float16; supported: float32")


def sdpa_mixed_cache_dtypes():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, kv=F16, v_kv=F32)[0], OpError,
                     f"{SDPA}: the caches must share one dtype, got ['float16', 'float32']")


def sdpa_int_cache():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, kv="int32")[0], OpError,
                     f"{SDPA}: k_cache has dtype int32; supported: float32, float16")


def sdpa_heads_not_multiple():
    return ErrorSpec(_sdpa_program(2, 6, 4, 8, 8)[0], OpError, f"{SDPA}: q heads 6 not a multiple of kv heads 4")


def sdpa_cache_heads_mismatch():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, cache_dims=(1, 8, 4, 8))[0], OpError,
                     f"{SDPA}: n_heads mismatch: k has 2, k_cache has 4")


def sdpa_head_dim_mismatch():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, k_dims=(1, 2, 2, 16), cache_dims=(1, 8, 2, 16))[0], OpError,
                     f"{SDPA}: head_dim mismatch: q has 8, k has 16")


def sdpa_cache_head_dim_mismatch():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, cache_dims=(1, 8, 2, 4))[0], OpError,
                     f"{SDPA}: head_dim mismatch: k has 8, k_cache has 4")


def sdpa_negative_int_pos():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, pos=-2)[0], OpError, f"{SDPA}: input_pos must be non-negative")


def sdpa_int_pos_past_capacity():
    return ErrorSpec(_sdpa_program(4, 4, 2, 8, 8, pos=5)[0], OpError,
                     f"{SDPA}: input_pos 5 + seq_len 4 exceeds cache capacity 8")


def sdpa_attn_mask():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, mask=True)[0], OpError, f"{SDPA}: attn_mask is not supported")


def sdpa_not_causal():
    return ErrorSpec(_sdpa_program(2, 4, 2, 8, 8, causal=False)[0], OpError, f"{SDPA}: is_causal must be true")


def _sdpa_step_error(bad_pos, s, match):
    p, _, _ = _sdpa_program(4, 4, 2, 8, 8)
    r = _rng(40)

    def inputs(n, pos):
        return [_randn(r, (1, n, 4, 8)), _randn(r, (1, n, 2, 8)), _randn(r, (1, n, 2, 8)), pos]

    return ErrorSpec(p, StepError, match, steps=[inputs(4, 0), inputs(s, bad_pos)])


def sdpa_negative_symint_pos():
    return _sdpa_step_error(-1, 1, f"{SDPA}: input_pos must be non-negative, got -1")


def sdpa_symint_pos_past_capacity():
    """A 3-row step at input_pos 6 of an 8-row cache (SymInt): caught at the step, graph usable."""
    return _sdpa_step_error(6, 3, f"{SDPA}: input_pos 6 + seq_len 3 exceeds cache capacity 8")


ERROR_CASES = {f.__name__: f for f in (
    uc_negative_int_pos, uc_int_pos_past_capacity, uc_batch_2, uc_heads_mismatch, uc_head_dim_mismatch,
    uc_fp16, uc_f16_cache_odd_position, uc_cache_past_u32_offsets, uc_negative_symint_pos, uc_symint_pos_past_capacity,
    sdpa_batch_2, sdpa_fp16, sdpa_mixed_cache_dtypes, sdpa_int_cache, sdpa_heads_not_multiple, sdpa_cache_heads_mismatch, sdpa_head_dim_mismatch,
    sdpa_cache_head_dim_mismatch, sdpa_negative_int_pos, sdpa_int_pos_past_capacity, sdpa_attn_mask,
    sdpa_not_causal, sdpa_negative_symint_pos, sdpa_symint_pos_past_capacity)}
