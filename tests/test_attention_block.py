"""Attention blocks (ops/attention_block.py, passes/fuse_attention_block.py) in CPython on the
native backend, run with the kernels GPUs take (this machine's adapter is a CPU one)."""
import asyncio

import numpy as np
import pytest

from py_engine.loaders.gguf import read_gguf
from py_engine.models.llama import build_llama_program
from py_engine.passes import PASSES, optimize
from py_engine.passes.fuse_attention_block import BLOCK_ATTN, BLOCK_OUT, BLOCK_QKV, fuse_attention_block
from py_engine.program import OpCall
from py_engine.testing.llama_cases import AsGpu, attention_block_cases, block_gguf


@pytest.mark.parametrize("variant, wg, rows", [(0, 256, 8), (1, 256, 8), (0, 1024, 32), (1, 256, 16)])
def test_blocks_match_reference(native_backend, monkeypatch, variant, wg, rows):
    """Logits within 1e-3 of the reference at every step, attending in the output projection and
    past its key limit on the attention's kernels; per block layer the decode step runs the
    rotating q/k/v GEMV and the attending projection instead of the unfused dispatches. Also with
    the projection's other workgroup shapes (threads, rows: one or two row passes)."""
    from py_engine.ops import attention_block

    monkeypatch.setattr(attention_block, "WG", wg)
    monkeypatch.setattr(attention_block, "ROWS_PER_WG", rows)
    r = asyncio.run(attention_block_cases(native_backend, variant=variant))
    print("attention block max logit errors", r[256], r[32])
    blocks = 2  # layers 1 and 2 of 3 (layer 0's q/k/v linear has no add + RMSNorm to fold)
    inline, past = r["dispatches"][21], r["dispatches"][40]
    for d in (inline, past):
        assert d["gemv_norm_rope"] == d["attend"] == blocks, d
        assert d.get("gemv_norm", 0) == 3  # the SwiGLU GEMVs only
        assert d["sdpa:decode_rope"] == 1  # layer 0's attention
    assert "sdpa:decode" not in inline and past["sdpa:decode"] == blocks
    assert sum(inline.values()) == sum(past.values()) - blocks


def test_block_switch_off_keeps_the_unfused_decode(native_backend):
    """Off (the default): the block ops build the unfused kernels and match the reference too."""
    from py_engine.ops import attention_block

    assert attention_block.BLOCK is False
    r = asyncio.run(attention_block_cases(native_backend, block=False))
    d = r["dispatches"][21]
    assert "gemv_norm_rope" not in d and "attend" not in d and d["sdpa:decode_rope"] == 3, d


def test_blocks_on_cpu_adapters_stay_unfused(native_backend, monkeypatch):
    """A CPU adapter's graph (no attention block kernels, blocks switched on) from the GPU passes."""
    from py_engine.graph import Graph
    from py_engine.ops import attention_block

    monkeypatch.setattr(attention_block, "BLOCK", True)

    lp = build_llama_program(read_gguf(block_gguf()), context=64, max_prefill=8, fuse=PASSES)
    saved, native_backend.is_cpu = native_backend.is_cpu, True
    try:
        g = asyncio.run(Graph.build(lp.program, native_backend))
        try:
            assert not any(lab.endswith((":gemv_norm_rope", ":attend")) for lab in g.dispatch_labels)
        finally:
            g.destroy()
    finally:
        native_backend.is_cpu = saved


def test_shape_snapshots_with_blocks(native_backend, monkeypatch):
    """Snapshots, layer groups and twins leave the state a full configure would, with blocks."""
    from py_engine.ops import attention_block
    from py_engine.testing.llama_cases import shape_snapshot_cases

    monkeypatch.setattr(attention_block, "BLOCK", True)
    monkeypatch.setattr(attention_block, "MAX_KEYS", 32)  # the steps cross it
    with AsGpu(native_backend):
        assert asyncio.run(shape_snapshot_cases(native_backend, block_gguf(), fuse=PASSES)) == \
            {"steps": 12, "snapshots": 4}


def test_pass_leaves_other_patterns_alone():
    gguf = read_gguf(block_gguf())
    plain = build_llama_program(gguf, context=64, max_prefill=8, fuse=PASSES[:-1]).program
    got = [c.name for c in fuse_attention_block(plain).chain]
    assert got.count(BLOCK_QKV) == got.count(BLOCK_ATTN) == got.count(BLOCK_OUT) == 2
    # Without the folded norm (no fuse_norm_linear) there is no block to form.
    no_norm = build_llama_program(gguf, context=64, max_prefill=8,
                                  fuse=tuple(p for p in PASSES[:-1] if p.__name__ != "fuse_norm_linear")).program
    assert fuse_attention_block(no_norm).chain == no_norm.chain
    # An output projection with a bias is not one the kernel covers.
    p = optimize(build_llama_program(gguf, context=64, max_prefill=8, fuse=False).program, PASSES[:-1])
    bias = p.tensor("float32", (64,), np.zeros(64, np.float32))
    for i, c in enumerate(p.chain):
        if c.name == "py_engine.linear_gguf.default" and p.values[c.args[-1]].dims[-1] == 64:
            p.chain[i] = OpCall(c.name, c.args[:3] + (bias,) + c.args[4:])
    got = [c.name for c in fuse_attention_block(p).chain]
    assert got.count(BLOCK_OUT) == 0 and got.count(BLOCK_QKV) == 0


def test_block_op_argument_errors(native_backend, monkeypatch):
    """Malformed block calls are refused when the graph is built, with what is wrong; mismatched
    parts of a block build the unfused kernels."""
    from py_engine.graph import Graph, OpError

    p = build_llama_program(read_gguf(block_gguf()), context=64, max_prefill=8).program
    i = next(i for i, c in enumerate(p.chain) if c.name == BLOCK_QKV)
    bad = p.__class__(values=list(p.values), chain=list(p.chain), input_ids=p.input_ids, output_ids=p.output_ids,
                      constants=p.constants)
    bad.chain[i] = OpCall(BLOCK_QKV, p.chain[i].args[:-1])
    with pytest.raises(OpError, match="expected the 11 arguments of LinearGgufMultiNorm, then k_cache, v_cache, input_pos; got 13"):
        asyncio.run(Graph.build(bad, native_backend))
    j = next(i for i, c in enumerate(p.chain) if c.name == BLOCK_OUT)
    bad.chain[i] = p.chain[i]
    args = p.chain[j].args
    bad.chain[j] = OpCall(BLOCK_OUT, args[:5] + (args[6],) + args[6:])  # a cache where q belongs
    with pytest.raises(OpError, match="does not hold the .* attention outputs"):
        asyncio.run(Graph.build(bad, native_backend))
    # Built as GPUs build it, blocks on: a layer whose attention or projection does not read what
    # its q/k/v linear would write (no pass emits one) is built unfused, not half-fused.
    from py_engine.ops import attention_block

    monkeypatch.setattr(attention_block, "BLOCK", True)
    r = next(i for i, c in enumerate(p.chain) if c.name == BLOCK_ATTN)
    for at, call in ((j, OpCall(BLOCK_OUT, args[:6] + (args[7], args[6], args[8]))),  # k and v caches swapped
                     (j, OpCall("py_engine.linear_gguf.default", args[:5])),         # a plain projection
                     (r, OpCall("py_engine.rope_sdpa_kv_at.default", p.chain[r].args))):  # a plain attention
        bad.chain = list(p.chain)
        bad.chain[at] = call
        with AsGpu(native_backend):
            g = asyncio.run(Graph.build(bad, native_backend))
        try:
            assert sum(lab.endswith(":gemv_norm_rope") for lab in g.dispatch_labels) == 1, call.name  # the other layer's
        finally:
            g.destroy()
