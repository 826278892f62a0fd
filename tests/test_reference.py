"""The numpy references checked against independent formulations.

Tolerances: float32 results computed in float64 are compared with rtol/atol 1e-5 (f32
rounding of O(1) values) unless a case says otherwise.
"""
import dataclasses
import math
import sys
import types

import numpy as np
import pytest

from py_engine.reference import ops
from py_engine.reference.llama import LlamaConfig, LlamaReference, weight_shapes

TOL = dict(rtol=1e-5, atol=1e-5)


def rng(seed=0):
    return np.random.default_rng(seed)


# ---- elementwise / shape ops -----------------------------------------------------------

def test_elementwise_broadcast_and_values():
    r = rng()
    a = r.standard_normal((2, 3, 4)).astype(np.float32)
    b = r.standard_normal((3, 1)).astype(np.float32)
    np.testing.assert_allclose(ops.add(a, b, alpha=2.5), a + 2.5 * b, **TOL)
    np.testing.assert_allclose(ops.mul(a, b), a * b, **TOL)
    assert ops.add(a, b).dtype == np.float32
    assert ops.add(np.array([1, 2]), np.array([3, 4])).tolist() == [4, 6]
    x = np.array([-1000.0, -3.0, 0.0, 2.0, 1000.0], np.float32)
    expected_sig = np.array([0.0, 1 / (1 + math.exp(3)), 0.5, 1 / (1 + math.exp(-2)), 1.0])
    np.testing.assert_allclose(ops.sigmoid(x), expected_sig, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ops.silu(x), x * expected_sig, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="add: shapes"):
        ops.add(np.zeros((2, 3)), np.zeros((4,)))


def test_view_slice_select():
    x = np.arange(24).reshape(2, 3, 4)
    assert ops.view_copy(x, [4, -1]).shape == (4, 6)
    v = ops.view_copy(x, [24])
    v[0] = 99
    assert x[0, 0, 0] == 0, "view_copy must copy"
    with pytest.raises(ValueError, match="only one dimension"):
        ops.view_copy(x, [-1, -1])
    with pytest.raises(ValueError, match="invalid for input of size 24"):
        ops.view_copy(x, [5, -1])
    # aten slice semantics: negative wrap, None, clamping, empty ranges.
    np.testing.assert_array_equal(ops.slice_copy(x, 2, 1, None), x[:, :, 1:])
    np.testing.assert_array_equal(ops.slice_copy(x, -1, -3, -1), x[:, :, 1:3])
    np.testing.assert_array_equal(ops.slice_copy(x, 1, 0, 100, 2), x[:, 0:3:2])
    np.testing.assert_array_equal(ops.slice_copy(x, 1, -100, 2), x[:, 0:2])
    assert ops.slice_copy(x, 1, 2, 1).shape == (2, 0, 4)
    with pytest.raises(ValueError, match="step must be positive"):
        ops.slice_copy(x, 0, 0, 1, 0)
    np.testing.assert_array_equal(ops.select_copy(x, 1, -1), x[:, 2])
    with pytest.raises(IndexError, match="index 3 out of range"):
        ops.select_copy(x, 1, 3)
    with pytest.raises(ValueError, match="dim 3 out of range"):
        ops.select_copy(x, 3, 0)
    assert ops.select_as_symint(np.array([7], np.int64), 0, 0) == 7
    w = rng().standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(ops.embedding(w, [[4, 0]]), w[[[4, 0]]])
    with pytest.raises(IndexError, match="index 5 out of range for 5 rows"):
        ops.embedding(w, [5])


def test_rms_norm_matches_formula():
    r = rng(1)
    x = r.standard_normal((3, 16)).astype(np.float32)
    w = r.standard_normal(16).astype(np.float32)
    expected = [row / math.sqrt(sum(float(v) ** 2 for v in row) / 16 + 1e-6) * w for row in x]
    np.testing.assert_allclose(ops.rms_norm(x, w, 1e-6), np.array(expected), **TOL)
    with pytest.raises(ValueError, match="rms_norm: weight shape"):
        ops.rms_norm(x, w[:8], 1e-6)


# ---- rope --------------------------------------------------------------------------------

def test_rope_equals_complex_multiplication():
    r = rng(2)
    s, hq, hkv, d, base, start = 5, 4, 2, 8, 500.0, 3
    xq = r.standard_normal((1, s, hq, d)).astype(np.float32)
    xk = r.standard_normal((1, s, hkv, d)).astype(np.float32)
    cos, sin = ops.rope_freqs(d, range(start, start + s), base)
    oq, ok = ops.apply_rotary_emb(xq, xk, cos, sin)
    # Independent form: adjacent pairs as complex numbers times e^{i * pos * theta}.
    theta = np.array([base ** (-2 * i / d) for i in range(d // 2)])
    rot = np.exp(1j * np.outer(np.arange(start, start + s), theta))  # [S, D/2]
    for x, out in ((xq, oq), (xk, ok)):
        z = (x[..., 0::2] + 1j * x[..., 1::2]) * rot[None, :, None, :]
        expected = np.stack([z.real, z.imag], axis=-1).reshape(x.shape)
        np.testing.assert_allclose(out, expected, **TOL)
    with pytest.raises(ValueError, match="freqs shape"):
        ops.apply_rotary_emb(xq, xk, cos[:2], sin[:2])


def test_neox_rope_equals_complex_multiplication_of_halves():
    # Qwen2 / GPT-NeoX: element i and element i + D/2 form the complex number rotated by theta_i.
    r = rng(3)
    s, hq, hkv, d, base, start = 4, 2, 1, 8, 1000.0, 5
    xq = r.standard_normal((1, s, hq, d)).astype(np.float32)
    xk = r.standard_normal((1, s, hkv, d)).astype(np.float32)
    cos, sin = ops.rope_freqs(d, range(start, start + s), base)
    oq, ok = ops.apply_rotary_emb_neox(xq, xk, cos, sin)
    theta = np.array([base ** (-2 * i / d) for i in range(d // 2)])
    rot = np.exp(1j * np.outer(np.arange(start, start + s), theta))
    for x, out in ((xq, oq), (xk, ok)):
        z = (x[..., : d // 2] + 1j * x[..., d // 2:]) * rot[None, :, None, :]
        np.testing.assert_allclose(out, np.concatenate([z.real, z.imag], axis=-1), **TOL)


# ---- cache + attention ---------------------------------------------------------------

def test_update_cache_writes_and_validates():
    cache = np.zeros((1, 6, 2, 4), np.float32)
    v = rng(3).standard_normal((1, 2, 2, 4)).astype(np.float32)
    out = ops.update_cache(v, cache, 3)
    np.testing.assert_array_equal(out[0, 3:5], v[0])
    assert not out[0, :3].any() and not out[0, 5:].any()
    assert not cache.any(), "update_cache must not modify its input"
    cases = [
        (v, cache, -1, "input_pos must be non-negative"),
        (v, cache, 5, "exceeds cache capacity 6"),
        (np.zeros((2, 2, 2, 4)), cache, 0, "batch must be 1"),
        (np.zeros((1, 2, 3, 4)), cache, 0, "n_heads mismatch"),
        (np.zeros((1, 2, 2, 8)), cache, 0, "head_dim mismatch"),
    ]
    for value, c, pos, msg in cases:
        with pytest.raises(ValueError, match=msg):
            ops.update_cache(value, c, pos)


def naive_attention_rows(q, k_cache, v_cache, input_pos, scale):
    """Per query row and head: plain loops over the visible cache rows."""
    _, s, hq, d = q.shape
    group = hq // k_cache.shape[2]
    out = np.zeros((1, s, hq, d))
    for si in range(s):
        for h in range(hq):
            kv = h // group
            visible = input_pos + si + 1
            logits = [scale * float(np.dot(q[0, si, h].astype(np.float64), k_cache[0, c, kv]))
                      for c in range(visible)]
            m = max(logits)
            e = [math.exp(x - m) for x in logits]
            tot = sum(e)
            for c in range(visible):
                out[0, si, h] += e[c] / tot * v_cache[0, c, kv]
    return out


def test_sdpa_matches_naive_loop_with_gqa():
    r = rng(4)
    s, hq, hkv, d, cmax, pos = 3, 6, 2, 8, 10, 4
    q = r.standard_normal((1, s, hq, d)).astype(np.float32)
    k = r.standard_normal((1, s, hkv, d)).astype(np.float32)
    v = r.standard_normal((1, s, hkv, d)).astype(np.float32)
    kc = np.zeros((1, cmax, hkv, d), np.float32)
    vc = np.zeros_like(kc)
    kc[0, :pos] = r.standard_normal((pos, hkv, d))
    vc[0, :pos] = r.standard_normal((pos, hkv, d))
    out, kc2, vc2 = ops.sdpa_with_kv_cache(q, k, v, kc, vc, pos)
    np.testing.assert_array_equal(kc2[0, pos:pos + s], k[0])
    np.testing.assert_array_equal(vc2[0, :pos], vc[0, :pos])
    np.testing.assert_allclose(out, naive_attention_rows(q, kc2, vc2, pos, 1 / math.sqrt(d)), **TOL)
    out_scaled, _, _ = ops.sdpa_with_kv_cache(q, k, v, kc, vc, pos, scale=0.3)
    np.testing.assert_allclose(out_scaled, naive_attention_rows(q, kc2, vc2, pos, 0.3), **TOL)
    with pytest.raises(ValueError, match="exceeds cache capacity"):
        ops.sdpa_with_kv_cache(q, k, v, kc, vc, cmax - 1)
    with pytest.raises(ValueError, match="not a multiple of kv heads"):
        ops.sdpa_with_kv_cache(q[:, :, :5], k, v, kc, vc, 0)


def test_sdpa_chunked_equals_one_shot_causal():
    """Prefill in chunks over the cache == full-sequence causal attention with a mask."""
    r = rng(5)
    total, hq, hkv, d = 7, 4, 4, 4
    q = r.standard_normal((1, total, hq, d)).astype(np.float32)
    k = r.standard_normal((1, total, hkv, d)).astype(np.float32)
    v = r.standard_normal((1, total, hkv, d)).astype(np.float32)
    scores = np.einsum("shd,thd->hst", q[0].astype(np.float64), k[0]) / math.sqrt(d)
    scores[:, np.triu_indices(total, 1)[0], np.triu_indices(total, 1)[1]] = -np.inf
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    one_shot = np.einsum("hst,thd->shd", p, v[0])
    kc = np.zeros((1, 8, hkv, d), np.float32)
    vc = np.zeros_like(kc)
    outs, pos = [], 0
    for chunk in (3, 1, 2, 1):
        sl = slice(pos, pos + chunk)
        o, kc, vc = ops.sdpa_with_kv_cache(q[:, sl], k[:, sl], v[:, sl], kc, vc, pos)
        outs.append(o[0])
        pos += chunk
    np.testing.assert_allclose(np.concatenate(outs), one_shot, **TOL)


# ---- quantized linears / embeddings --------------------------------------------------

def test_q4gsw_packing_layout_and_roundtrip():
    # Hand-built: row 0 = [1, -2, 7, -8] with scale 1 -> bytes (q1+8)<<4 | (q0+8).
    w = np.array([[1.0, -2.0, 7.0, -7.0]], np.float32)
    packed, scales = ops.pack_q4gsw(w, group_size=4)
    assert scales.shape == (1, 1) and scales[0, 0] == 1.0
    assert packed.tolist() == [[(6 << 4) | 9, (1 << 4) | 15]]
    r = rng(6)
    n, k, g = 5, 64, 16
    w = r.standard_normal((n, k)).astype(np.float32)
    w[1, :g] = 0.0  # an all-zero group
    packed, scales = ops.pack_q4gsw(w, g)
    assert packed.shape == (n, k // 2) and packed.dtype == np.uint8 and scales.shape == (k // g, n)
    back = ops.unpack_q4gsw(packed, scales, g)
    bound = np.repeat(scales.T, g, axis=1) / 2  # |error| <= scale / 2, per element
    assert np.all(np.abs(back - w) <= bound * (1 + 1e-5) + 1e-7)
    assert not back[1, :g].any()
    x = r.standard_normal((2, 3, k)).astype(np.float32)
    bias = r.standard_normal(n).astype(np.float32)
    np.testing.assert_allclose(ops.linear_q4gsw(x, packed, scales, g, bias),
                               x.astype(np.float64) @ back.T.astype(np.float64) + bias, **TOL)
    # ExecuTorch padding: packed K to a multiple of 8 and scales N to a multiple of 4.
    padded = np.concatenate([packed, np.full((n, 4), 0x88, np.uint8)], axis=1)
    padded_scales = np.concatenate([scales, np.ones((k // g, 3), np.float32)], axis=1)
    np.testing.assert_array_equal(ops.unpack_q4gsw(padded, padded_scales, g), back)
    with pytest.raises(ValueError, match="linear_q4gsw: input K"):
        ops.linear_q4gsw(x[..., :32], packed, scales, g)


def test_qcs4w_packing_layout_and_roundtrip():
    w = np.array([[1.0, -2.0, 7.0]], np.float32)  # odd K: padded with a zero (stored 8)
    packed, scales = ops.pack_qcs4w(w)
    assert scales.tolist() == [1.0]
    assert packed.tolist() == [[(9 << 4) | 6, (15 << 4) | 8]]  # even k in the HIGH nibble
    r = rng(7)
    w = r.standard_normal((4, 10)).astype(np.float32)
    packed, scales = ops.pack_qcs4w(w)
    back = ops.unpack_qcs4w(packed, scales)
    assert np.all(np.abs(back - w) <= scales[:, None] / 2 * (1 + 1e-5) + 1e-7)
    x = r.standard_normal((3, 10)).astype(np.float32)
    np.testing.assert_allclose(ops.linear_qcs4w(x, packed, scales), x @ back.T, **TOL)


def test_embedding_q4gsw_nibble_orders():
    r = rng(8)
    v, e, g = 6, 32, 8
    table = r.standard_normal((v, e)).astype(np.float32)
    idx = np.array([[5, 0, 5]])
    results = []
    for linear_layout in (False, True):
        packed, scales = ops.pack_embedding_q4gsw(table, g, is_linear_weight=linear_layout)
        assert scales.shape == (v, e // g)
        out = ops.embedding_q4gsw(packed, scales, g, idx, is_linear_weight=linear_layout)
        assert out.shape == (1, 3, e)
        assert np.all(np.abs(out[0, 0] - table[5]) <= np.repeat(scales[5], g) / 2 + 1e-6)
        results.append((packed, scales, out))
    (p0, s0, o0), (p1, s1, o1) = results
    np.testing.assert_array_equal(o0, o1)
    # Same codes, swapped nibbles; and the linear layout equals q4gsw's linear packing.
    np.testing.assert_array_equal(p1, (p0 >> 4) | ((p0 & 0xF) << 4))
    q4_packed, _ = ops.pack_q4gsw(table, g)
    np.testing.assert_array_equal(p1, q4_packed)
    # Reading with the wrong flag gives a different table (the flag matters).
    assert not np.allclose(ops.embedding_q4gsw(p0, s0, g, idx, is_linear_weight=True), o0)
    with pytest.raises(IndexError, match="index 6 out of range"):
        ops.embedding_q4gsw(p0, s0, g, [6])
    with pytest.raises(ValueError, match="weight_scales shape"):
        ops.embedding_q4gsw(p0, s0.T, g, [0])


# ---- whole model -----------------------------------------------------------------------

SMALL = LlamaConfig(n_layers=2, dim=32, n_heads=4, n_kv_heads=2, head_dim=8, ffn_dim=48,
                    vocab=50, rope_base=10000.0, rms_eps=1e-5, context=16)


def random_weights(config, seed=9, tied=True):
    r = rng(seed)
    weights = {}
    for name, shape in weight_shapes(config).items():
        if tied and name == "output.weight":
            continue
        if name.endswith("norm.weight"):
            weights[name] = (1.0 + 0.1 * r.standard_normal(shape)).astype(np.float32)
        else:
            weights[name] = (r.standard_normal(shape) / math.sqrt(shape[-1])).astype(np.float32)
    return weights


def test_llama_prefill_then_decode_equals_one_prefill():
    model = LlamaReference(SMALL, random_weights(SMALL))
    tokens = [3, 17, 42, 8, 0, 49, 21]
    full = model.forward(tokens)
    assert full.shape == (7, 50) and model.pos == 7
    model.reset()
    assert model.pos == 0 and not model.k_caches[0].any()
    pieces = [model.forward(tokens[:4])] + [model.forward([t]) for t in tokens[4:]]
    np.testing.assert_allclose(np.concatenate(pieces), full, rtol=1e-5, atol=1e-5)
    # Position matters: the same token at a different position gives different logits.
    assert not np.allclose(full[0], model.forward([tokens[0]])[0], atol=1e-3)


def test_llama_matches_independent_forward():
    """One-shot llama written directly in numpy (full causal mask, complex RoPE)."""
    c = SMALL
    w = random_weights(c, seed=10, tied=False)
    tokens = [1, 2, 3, 40, 5]
    s = len(tokens)

    def norm(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + c.rms_eps) * g

    theta = c.rope_base ** (-np.arange(0, c.head_dim, 2) / c.head_dim)
    rot = np.exp(1j * np.outer(np.arange(s), theta))

    def rope(x):  # [S, H, D]
        z = (x[..., 0::2] + 1j * x[..., 1::2]) * rot[:, None, :]
        return np.stack([z.real, z.imag], -1).reshape(x.shape)

    x = w["token_embd.weight"][tokens].astype(np.float64)
    mask = np.triu(np.full((s, s), -np.inf), 1)
    for i in range(c.n_layers):
        b = f"blk.{i}."
        h = norm(x, w[b + "attn_norm.weight"])
        q = rope((h @ w[b + "attn_q.weight"].T).reshape(s, c.n_heads, c.head_dim))
        k = rope((h @ w[b + "attn_k.weight"].T).reshape(s, c.n_kv_heads, c.head_dim))
        v = (h @ w[b + "attn_v.weight"].T).reshape(s, c.n_kv_heads, c.head_dim)
        rep = c.n_heads // c.n_kv_heads
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        sc = np.einsum("shd,thd->hst", q, k) / math.sqrt(c.head_dim) + mask
        p = np.exp(sc - sc.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        a = np.einsum("hst,thd->shd", p, v).reshape(s, -1)
        x = x + a @ w[b + "attn_output.weight"].T
        h = norm(x, w[b + "ffn_norm.weight"])
        gate = h @ w[b + "ffn_gate.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ w[b + "ffn_up.weight"].T)) @ w[b + "ffn_down.weight"].T
    expected = norm(x, w["output_norm.weight"]) @ w["output.weight"].T
    got = LlamaReference(c, w).forward(tokens)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_llama_errors():
    w = random_weights(SMALL)
    with pytest.raises(KeyError, match="blk.1.ffn_up.weight"):
        LlamaReference(SMALL, {k: v for k, v in w.items() if k != "blk.1.ffn_up.weight"})
    bad = dict(w)
    bad["blk.0.attn_k.weight"] = bad["blk.0.attn_k.weight"].T
    with pytest.raises(ValueError, match="'blk.0.attn_k.weight' has shape"):
        LlamaReference(SMALL, bad)
    model = LlamaReference(SMALL, w)
    model.forward(list(range(10)))
    with pytest.raises(ValueError, match="exceeds context 16"):
        model.forward(list(range(7)))


def test_llama_from_gguf_reads_metadata_and_ties_output(monkeypatch):
    w = random_weights(SMALL, seed=11)
    from py_engine.loaders.gguf import read_gguf, tensor_from_array, write_gguf

    tensors = {name: tensor_from_array(arr, 0) for name, arr in w.items()}
    metadata = {
        "general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 32,
        "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
        "llama.feed_forward_length": 48, "llama.rope.freq_base": 10000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.context_length": 4096,
    }
    gguf = read_gguf(write_gguf(metadata, tensors))
    calls = []

    def fake_dequantize(ggml_type, data, shape):
        calls.append(ggml_type)
        return np.frombuffer(data, np.float32)

    try:
        import py_engine.reference.gguf_quant as gq
        monkeypatch.setattr(gq, "dequantize", fake_dequantize)
    except ImportError:  # the dequantizer module is written by another engineer
        monkeypatch.setitem(sys.modules, "py_engine.reference.gguf_quant",
                            types.SimpleNamespace(dequantize=fake_dequantize))
    model = LlamaReference.from_gguf(gguf, context=16)
    # GGUF stores float metadata as f32, so eps comes back as float32(1e-5).
    assert model.config == dataclasses.replace(SMALL, rms_eps=float(np.float32(1e-5)))
    assert len(calls) == len(w)
    np.testing.assert_array_equal(model.forward([1, 2]), LlamaReference(SMALL, w).forward([1, 2]))


def test_llama_from_real_gguf_bytes():
    """Through the real GGUF writer/reader and dequantizer: Q8_0 weights round-trip."""
    gguf = pytest.importorskip("py_engine.loaders.gguf")
    w = random_weights(SMALL, seed=12)
    tensors = {}
    for name, arr in w.items():
        q8 = arr.ndim == 2 and arr.shape[-1] % 32 == 0
        tensors[name] = gguf.tensor_from_array(arr, 8 if q8 else 0)  # 8 = Q8_0, 0 = F32
    metadata = {
        "general.architecture": "llama", "llama.block_count": 2, "llama.embedding_length": 32,
        "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
        "llama.feed_forward_length": 48, "llama.rope.freq_base": 10000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.context_length": 16,
    }
    model = LlamaReference.from_gguf(gguf.read_gguf(gguf.write_gguf(metadata, tensors)))
    # GGUF stores float metadata as f32, so eps comes back as f32(1e-5).
    assert model.config.rms_eps == pytest.approx(1e-5, rel=1e-6)
    assert dataclasses.replace(model.config, rms_eps=1e-5) == SMALL
    # ffn_down [32, 48] has K=48, not a multiple of 32, so it stays F32 and is exact.
    np.testing.assert_array_equal(model.weights["blk.0.ffn_down.weight"], w["blk.0.ffn_down.weight"])
    # Q8_0 error per element <= half a step d = absmax/127 per 32-block, plus the f16
    # rounding of d itself (127 * d * 2^-11 ~ 0.062 d): bound 0.57 d (observed <= 0.531 d).
    for name in ("blk.0.attn_q.weight", "blk.1.attn_k.weight", "token_embd.weight"):
        step = np.abs(w[name]).reshape(-1, 32).max(1) / 127
        err = np.abs(model.weights[name] - w[name]).reshape(-1, 32)
        assert np.all(err <= step[:, None] * 0.57 + 1e-7), name
    # Logits (|max| ~2.5) stay near the float model's: Q8_0 noise only, observed max diff
    # 0.065; a transposed or misnamed weight gives O(1) differences.
    expected = LlamaReference(SMALL, w).forward([4, 5, 6])
    np.testing.assert_allclose(model.forward([4, 5, 6]), expected, atol=0.15)
