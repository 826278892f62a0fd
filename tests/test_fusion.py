"""Fusion passes (pure data) and the fused ops, in CPython on the native (wgpu) backend."""
import asyncio
from collections import Counter

import numpy as np
import pytest

from py_engine.loaders.gguf import GGML_Q4_0, GGML_Q4_1, read_gguf
from py_engine.models.llama import build_llama_program
from py_engine.ops.fused_shader_text import OUTPUTS, SHADERS, render
from py_engine.passes import fuse_add_rms_norm, fuse_parallel_linears, fuse_swiglu, optimize
from py_engine.program import Double, Int, Null, Program
from py_engine.testing.fusion_cases import CASES, ERROR_CASES, compare_fused_llama, run_rope_folded_case
from py_engine.testing.harness import run_case, run_error_case
from py_engine.testing.llama_cases import compare_with_reference
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf

# Every projection in one format, as in SmolLM2's Q4_1 file, so every fusion applies.
UNIFORM = {k: GGML_Q4_1 for k in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")}


@pytest.fixture(scope="module")
def tiny_uniform():
    return make_tiny_llama_gguf(seed=0, weight_types=UNIFORM)


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(native_backend, name):
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith(("multi", "norm", "swiglu"))))
def test_case_tiled_prefetch(native_backend, monkeypatch, name):
    """The fused linears again with the tiled kernels as GPUs run them (`PF`, see test_quant_ops)."""
    import py_engine.ops.quant_kernels as qk

    monkeypatch.setattr(qk, "TILED_PREFETCH_ON_CPU", True)
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("max_k", [0, 32], ids=["folded", "norm_apart"])
@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("norm")))
def test_case_norm_gpu_kernels(native_backend, monkeypatch, name, max_k):
    """The folded-norm GEMVs as GPUs run them (on CPU adapters test_case runs the record kernels),
    and with FOLD_NORM_MAX_K below every case's K the norm's own dispatch, then the plain GEMV."""
    import py_engine.ops.fused_linear as fl
    from py_engine.graph import Graph

    monkeypatch.setattr(native_backend, "is_cpu", False)
    monkeypatch.setattr(fl, "FOLD_NORM_MAX_K", max_k)
    g = asyncio.run(Graph.build(CASES[name]().program, native_backend))
    assert any(e.endswith("_norm") for e in g.pipelines.entries()) == (max_k == 0)
    g.destroy()
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("rope_kv")))
def test_case_rope_folded_into_decode_attention(native_backend, name):
    """The RoPE + attention cases with decode steps on sdpa_decode.wgsl's main_rope (GPUs' path)."""
    live = asyncio.run(run_rope_folded_case(native_backend, name))
    assert [s for s, _, _ in live] == [st.inputs[0].shape[1] for st in CASES[name]().steps]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_error_case(native_backend, name):
    asyncio.run(run_error_case(native_backend, ERROR_CASES[name](), name))


@pytest.mark.parametrize("name", OUTPUTS)
def test_generated_shader_is_up_to_date(name):
    # shaders/fused_linear.wgsl, attention_block.wgsl = their templates + the pieces they include;
    # regenerate with `python -m py_engine.ops.fused_shader_text` after editing any source.
    assert (SHADERS / name).read_text() == render(name)


# ------------------------------------------------------------ passes as pure data
def _names(p):
    return Counter(c.name for c in p.chain)


def test_llama_program_fusion_counts(tiny_uniform):
    gguf = read_gguf(tiny_uniform)
    plain = build_llama_program(gguf, context=64, max_prefill=8, fuse=False).program
    fused = build_llama_program(gguf, context=64, max_prefill=8).program
    n_layers = 2
    got, before = _names(fused), _names(plain)
    # q/k/v and gate/up/silu/mul, each with the add + RMSNorm before it folded in, except layer 0's
    # attention norm (a plain rms_norm): only the final add + output norm stays on its own.
    assert got["py_engine.linear_gguf_multi.default"] == 1
    # ... and the layers after the first as attention blocks (ops/attention_block.py): their q/k/v
    # linear, rotation + attention and output projection take the block variants
    assert got["py_engine.linear_gguf_multi_norm_rope.default"] == n_layers - 1
    assert got["py_engine.rope_sdpa_kv_block.default"] == got["py_engine.linear_gguf_attend.default"] == n_layers - 1
    assert got["py_engine.linear_gguf_multi_norm.default"] == 0
    assert got["py_engine.linear_gguf_swiglu_norm.default"] == n_layers
    assert got["py_engine.linear_gguf_swiglu.default"] == 0
    assert got["py_engine.add_rms_norm.default"] == 1
    assert got["aten.sigmoid.default"] == got["aten.mul.Tensor"] == got["aten.add.Tensor"] == 0
    # q and k rotated together, k written into the cache with v on the way, all in the attention op,
    # which reads its cos/sin rows from the whole tables: no slices of them, nor the SymInt add of
    # their end, are left
    assert got["py_engine.rope_sdpa_kv_at.default"] == 1 and got["py_engine.rope_sdpa_kv.default"] == 0
    assert got["aten.slice_copy.Tensor"] == got["add"] == 0 and before["aten.slice_copy.Tensor"] == 2
    assert before["add"] == 1
    assert got["py_engine.apply_rotary_emb_qk_kv.default"] == got["py_engine.sdpa_kv_written.default"] == 0
    assert got["et_vk.apply_rotary_emb.default"] == got["py_engine.apply_rotary_emb_qk.default"] == 0
    assert got["sdpa_with_kv_cache.default"] == 0
    assert got["et_vk.rms_norm.default"] == 1                               # the first attn_norm only
    assert got["py_engine.linear_gguf.default"] == n_layers + 2             # layer 0's o, downs, head
    assert len(plain.chain) - len(fused.chain) == n_layers * (2 + 4) + 3 * n_layers + (2 * n_layers - 1) + 3
    assert before["aten.sigmoid.default"] == n_layers  # the unfused program is untouched


def test_passes_do_not_modify_their_input(tiny_uniform):
    p = build_llama_program(read_gguf(tiny_uniform), context=64, max_prefill=8, fuse=False).program
    chain, n_values, n_consts = list(p.chain), len(p.values), len(p.constants)
    out = optimize(p)
    assert p.chain == chain and len(p.values) == n_values and len(p.constants) == n_consts
    assert out is not p and len(out.chain) < len(chain)


def test_mixed_formats_are_left_alone():
    # The default tiny model mixes Q4_0/Q4_1/Q8_0 in q/k/v and gate/up: those stay unfused.
    gguf = read_gguf(make_tiny_llama_gguf(seed=0))
    got = _names(build_llama_program(gguf, context=64, max_prefill=8).program)
    assert got["py_engine.linear_gguf_multi.default"] == 0
    assert got["py_engine.linear_gguf_swiglu.default"] == 0
    assert got["aten.sigmoid.default"] == 2
    assert got["py_engine.add_rms_norm.default"] == 4


def _swiglu_pattern(extra_use=False, bias=False):
    p = Program()
    x = p.tensor("float32", (2, 32))
    w = p.tensor("uint8", (8, 20), np.zeros((8, 20), np.uint8))
    t = p.add(Int(GGML_Q4_1))
    gate, up, sig, silu, out = (p.tensor("float32", (2, 8)) for _ in range(5))
    b = p.tensor("float32", (8,), np.zeros(8, np.float32)) if bias else p.add(Null())
    p.call("py_engine.linear_gguf.default", x, w, t, b, gate)
    p.call("py_engine.linear_gguf.default", x, w, t, p.add(Null()), up)
    p.call("aten.sigmoid.default", gate, sig)
    p.call("aten.mul.Tensor", gate, sig, silu)
    p.call("aten.mul.Tensor", silu, up, out)
    p.input_ids, p.output_ids = [x], [out] + ([gate] if extra_use else [])
    return p


def test_swiglu_pass_matches_and_respects_other_uses():
    fused = fuse_swiglu(_swiglu_pattern())
    assert [c.name for c in fused.chain] == ["py_engine.linear_gguf_swiglu.default"]
    w = fused.chain[0].args[1]
    assert fused.values[w].dims == (16, 20) and bytes(fused.constant_bytes(w)) == bytes(40 * 8)
    # gate is also a program output: fusing would drop it, so nothing changes.
    p = _swiglu_pattern(extra_use=True)
    assert fuse_swiglu(p).chain == p.chain
    # A biased gate is not a pattern the kernel covers.
    p = _swiglu_pattern(bias=True)
    assert fuse_swiglu(p).chain == p.chain


def test_parallel_linears_need_one_input_type_and_row_size():
    p = Program()
    x, x2 = p.tensor("float32", (1, 32)), p.tensor("float32", (1, 32))
    w20 = p.tensor("uint8", (4, 20), np.zeros((4, 20), np.uint8))
    w18 = p.tensor("uint8", (4, 18), np.zeros((4, 18), np.uint8))
    outs = [p.tensor("float32", (1, 4)) for _ in range(4)]
    t1, t0 = p.add(Int(GGML_Q4_1)), p.add(Int(GGML_Q4_0))
    p.call("py_engine.linear_gguf.default", x, w20, t1, p.add(Null()), outs[0])
    p.call("py_engine.linear_gguf.default", x, w18, t0, p.add(Null()), outs[1])   # other type
    p.call("py_engine.linear_gguf.default", x2, w20, t1, p.add(Null()), outs[2])  # other input
    p.call("py_engine.linear_gguf.default", x, w20, t1, p.add(Null()), outs[3])
    p.input_ids, p.output_ids = [x, x2], outs
    out = fuse_parallel_linears(p)
    assert [c.name for c in out.chain] == ["py_engine.linear_gguf_multi.default",
                                           "py_engine.linear_gguf.default", "py_engine.linear_gguf.default"]
    multi = out.chain[0]
    assert out.values[multi.args[4]].ids == (outs[0], outs[3])
    assert out.values[multi.args[3]].values == (4, 4)


def test_parallel_linears_fuse_with_their_biases_and_fold_the_norm():
    """Biased linears (Qwen2's q/k/v) group among themselves, their biases concatenated into the
    fused call's argument before its outputs; the add_rms_norm before them folds into the fused
    call as without biases."""
    from py_engine.passes import fuse_norm_linear

    def program(biased: bool):
        p = Program()
        a, b = p.tensor("float32", (1, 32)), p.tensor("float32", (1, 32))
        s, x = p.tensor("float32", (1, 32)), p.tensor("float32", (1, 32))
        p.call("py_engine.add_rms_norm.default", a, b, p.add(Double(1.0)),
               p.tensor("float32", (32,), np.ones(32, np.float32)), p.add(Double(1e-5)), s, x)
        outs = [p.tensor("float32", (1, 4)) for _ in range(3)]
        t = p.add(Int(GGML_Q4_1))
        for i, o in enumerate(outs):
            w = p.tensor("uint8", (4, 20), np.full((4, 20), i, np.uint8))
            bias = p.tensor("float32", (4,), np.full(4, i, np.float32)) if biased else p.add(Null())
            p.call("py_engine.linear_gguf.default", x, w, t, bias, o)
        p.input_ids, p.output_ids = [a, b], outs + [s]
        return p, outs

    p, outs = program(True)
    fused = fuse_parallel_linears(p)
    assert [c.name for c in fused.chain] == ["py_engine.add_rms_norm.default", "py_engine.linear_gguf_multi.default"]
    multi = fused.chain[1]
    assert len(multi.args) == 6 and fused.values[multi.args[5]].ids == tuple(outs)  # outputs stay last
    bias = np.frombuffer(bytes(fused.constant_bytes(multi.args[4])), np.float32)
    assert bias.tolist() == [0.0] * 4 + [1.0] * 4 + [2.0] * 4
    for prog, n_args in ((fused, 7 + 5), (fuse_parallel_linears(program(False)[0]), 7 + 4)):
        folded = fuse_norm_linear(prog).chain
        assert [c.name for c in folded] == ["py_engine.linear_gguf_multi_norm.default"]
        assert len(folded[0].args) == n_args
    # One biased linear among unbiased ones stays apart.
    q = program(False)[0]
    x, w, t, _, o = q.chain[1].args
    q.chain[1] = type(q.chain[1])(q.chain[1].name, (x, w, t, q.tensor("float32", (4,), np.zeros(4, np.float32)), o))
    assert [c.name for c in fuse_parallel_linears(q).chain] == [
        "py_engine.add_rms_norm.default", "py_engine.linear_gguf.default", "py_engine.linear_gguf_multi.default"]


def test_add_rms_norm_pass_skips_broadcasting_adds():
    p = Program()
    a, b = p.tensor("float32", (2, 16)), p.tensor("float32", (16,))
    y, n = p.tensor("float32", (2, 16)), p.tensor("float32", (2, 16))
    p.call("aten.add.Tensor", a, b, p.add(Double(1.0)), y)
    p.call("et_vk.rms_norm.default", y, p.tensor("float32", (16,), np.ones(16, np.float32)), p.add(Double(1e-5)), n)
    p.input_ids, p.output_ids = [a, b], [n]
    assert fuse_add_rms_norm(p).chain == p.chain


# ------------------------------------------------------------ whole tiny llama
def test_tiny_llama_fused_equals_unfused(native_backend, tiny_uniform):
    # Logits within LLAMA_FUSED_TOL at every step (prefill chunks of 8 = tiled kernels, then GEMV decode).
    r = asyncio.run(compare_fused_llama(native_backend, tiny_uniform, list(range(3, 14)), n_decode=4))
    print("fused vs unfused", r)
    assert r["live_rows"][1] < r["live_rows"][0]


def test_tiny_llama_fused_equals_unfused_fast_decode(native_backend, tiny_uniform, monkeypatch):
    # As GPUs decode: attention on sdpa_decode.wgsl, with the RoPE folded in when fused.
    import py_engine.ops.sdpa as sdpa

    monkeypatch.setattr(sdpa, "FAST_DECODE_ON_CPU", True)
    r = asyncio.run(compare_fused_llama(native_backend, tiny_uniform, list(range(3, 14)), n_decode=4))
    assert r["live_rows"][1] < r["live_rows"][0]


def test_tiny_llama_fused_matches_reference(native_backend, tiny_uniform):
    # build_llama_program fuses by default: the reference check runs on the fused graph.
    r = asyncio.run(compare_with_reference(native_backend, tiny_uniform, [1, 40, 41, 42, 43, 44, 45], n_decode=8))
    assert len(r["ids"]) == 8


def test_rope_kv_pass_leaves_rotated_k_with_other_uses_alone():
    from py_engine.testing.fusion_cases import ROPE_KV, ROPE_SDPA, SDPA_WRITTEN, rope_sdpa_chain

    p, _ = rope_sdpa_chain(3, 4, 2, 8, 6)
    got = _names(optimize(p))
    assert got[ROPE_SDPA] == 1 and got["sdpa_with_kv_cache.default"] == 0
    assert got[ROPE_KV] == got[SDPA_WRITTEN] == 0  # both inside ROPE_SDPA
    # The rotated k is also a program output: it must stay materialized, so no fusion.
    k_rot = p.values[p.chain[0].args[4]].ids[1]  # apply_rotary_emb's out list: [q_rot, k_rot]
    p.output_ids = list(p.output_ids) + [k_rot]
    got = _names(optimize(p))
    assert got[ROPE_KV] == 0 and got["py_engine.apply_rotary_emb_qk.default"] == 1
    assert got["sdpa_with_kv_cache.default"] == 1


def test_rope_table_pass_needs_whole_tables_and_keeps_slices_with_other_readers():
    from py_engine.testing.fusion_cases import ROPE_SDPA, ROPE_SDPA_AT, rope_sdpa_table_chain

    p, _ = rope_sdpa_table_chain(3, 4, 2, 8, 6)
    got = _names(optimize(p))
    assert got[ROPE_SDPA_AT] == 1 and got[ROPE_SDPA] == 0
    assert got["aten.slice_copy.Tensor"] == got["add"] == 0 and got["sym_size.int"] == 1
    # Tables shorter than the cache: a position near its end would read past them, so the
    # slices (whose hooks check the rows) stay.
    p, _ = rope_sdpa_table_chain(3, 4, 2, 8, 6, table_rows=5)
    got = _names(optimize(p))
    assert got[ROPE_SDPA] == 1 and got[ROPE_SDPA_AT] == 0 and got["aten.slice_copy.Tensor"] == 2
    # A slice that is also a program output keeps being computed (and so does its end); the
    # rotation still reads the table.
    p, _ = rope_sdpa_table_chain(3, 4, 2, 8, 6)
    cos_rows = next(c for c in p.chain if c.name == "aten.slice_copy.Tensor").args[-1]
    p.output_ids = list(p.output_ids) + [cos_rows]
    got = _names(optimize(p))
    assert got[ROPE_SDPA_AT] == 1 and got["aten.slice_copy.Tensor"] == 1 and got["add"] == 1


def test_rope_table_op_refuses_tables_shorter_than_the_cache(native_backend):
    from py_engine.graph import Graph, OpError
    from py_engine.program import OpCall
    from py_engine.testing.fusion_cases import ROPE_SDPA, ROPE_SDPA_AT, rope_sdpa_table_chain

    prog = optimize(rope_sdpa_table_chain(3, 4, 2, 8, 6, table_rows=5)[0])  # left unfolded (above)
    tables = [c.args[0] for c in prog.chain if c.name == "aten.slice_copy.Tensor"]
    i = next(i for i, c in enumerate(prog.chain) if c.name == ROPE_SDPA)
    args = list(prog.chain[i].args)
    args[3], args[4] = tables
    prog.chain[i] = OpCall(ROPE_SDPA_AT, tuple(args))
    with pytest.raises(OpError, match="freqs tables hold 5 rows, fewer than the cache's 6 positions"):
        asyncio.run(Graph.build(prog, native_backend))
