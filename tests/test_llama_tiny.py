"""The tiny synthetic llama GGUF on the native backend: logits and greedy ids vs numpy."""
import asyncio

import numpy as np
import pytest

from py_engine.engine import Engine
from py_engine.loaders.gguf import GGML_Q4_1
from py_engine.testing.llama_cases import compare_with_reference
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf


@pytest.fixture(scope="module")
def tiny_gguf():
    return make_tiny_llama_gguf(seed=0)


def test_tiny_llama_matches_reference_step_by_step(native_backend, tiny_gguf):
    # Tolerance 1e-3 on logits at every step; greedy ids identical for 16 tokens.
    r = asyncio.run(compare_with_reference(native_backend, tiny_gguf, [1, 40, 41, 42, 43, 44, 45], n_decode=16))
    assert len(r["ids"]) == 16
    print("tiny llama max logit error", r["max_err"])


@pytest.mark.parametrize("adapter", ["cpu", "gpu"])
def test_float16_kv_cache_matches_reference(native_backend, monkeypatch, tiny_gguf, adapter):
    """float16 caches against a reference whose caches round every written key and value to f16
    (logits within 1e-3, the same greedy ids), on this CPU adapter's kernels and as GPUs run them
    (the decode attention with the RoPE and cache write inside); a prompt in chunks too."""
    monkeypatch.setattr(native_backend, "is_cpu", adapter == "cpu")
    r = asyncio.run(compare_with_reference(native_backend, tiny_gguf, [1, 40, 41, 42, 43, 44, 45], n_decode=8,
                                           kv_dtype="float16"))
    assert len(r["ids"]) == 8
    r = asyncio.run(compare_with_reference(native_backend, tiny_gguf, list(range(3, 23)), n_decode=2, max_prefill=8,
                                           kv_dtype="float16"))
    assert len(r["ids"]) == 2


def test_float16_kv_cache_halves_cache_memory(native_backend, tiny_gguf):
    from py_engine.graph import Graph
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import build_llama_program

    gguf = read_gguf(tiny_gguf)
    sizes = {}
    for kv in ("float32", "float16"):
        lp = build_llama_program(gguf, context=64, max_prefill=8, kv_dtype=kv)
        g = asyncio.run(Graph.build(lp.program, native_backend))
        sizes[kv] = g.memory_stats()["tensor_bytes"]
        g.destroy()
    c = lp.config
    cache_bytes = 2 * c.n_layers * 64 * c.n_kv_heads * c.head_dim * 4  # both caches of every layer, f32
    assert sizes["float32"] - sizes["float16"] == cache_bytes // 2, sizes


def test_kv_cache_dtype_choice(native_backend, tiny_gguf):
    """"auto" takes float32 caches (the faster ones, measured), float16 only where the memory
    budget would cut the model's context and no context was asked for; the engine takes an
    explicit choice and refuses unknown ones."""
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models import llama

    assert llama.kv_dtype_for() == "auto"
    assert llama.kv_dtype_for("float16") == "float16"
    gguf = read_gguf(tiny_gguf)
    with pytest.raises(ValueError, match="kv cache dtype must be auto, float32 or float16; got 'bfloat16'"):
        llama.build_llama_program(gguf, context=16, max_prefill=8, kv_dtype="bfloat16")
    c = llama.config_from_gguf(gguf)
    full = 2 * c.n_layers * c.n_kv_heads * c.head_dim * 4 * c.context  # float32 caches of the whole context
    for budget, context, want in ((full, None, "float32"), (full - 1, None, "float16"), (full - 1, 16, "float32")):
        lp = llama.build_llama_program(gguf, context=context, max_prefill=8, kv_budget_bytes=budget, kv_dtype="auto")
        assert lp.kv_dtype == want, (budget, context, lp.kv_dtype)
    assert llama.build_llama_program(gguf, max_prefill=8, kv_budget_bytes=full - 1, kv_dtype="float32").kv_dtype \
        == "float32"

    async def run():
        engine = await Engine.load(tiny_gguf, backend=native_backend, context=32, max_prefill=8, kv_cache="float16")
        try:
            text = "".join([p async for p in engine.chat([{"role": "user", "content": "Hi"}], max_tokens=3,
                                                         temperature=0)])
            return engine.lp.kv_dtype, engine.last_stats.generated_tokens, text
        finally:
            engine.close()

    kind, n, _ = asyncio.run(run())
    assert kind == "float16" and n >= 1


def test_prompt_longer_than_max_prefill_is_chunked(native_backend, tiny_gguf):
    prompt = list(range(3, 23))  # 20 tokens through chunks of 8
    r = asyncio.run(compare_with_reference(native_backend, tiny_gguf, prompt, n_decode=4, max_prefill=8))
    assert len(r["ids"]) == 4


def test_multi_turn_chat_prefills_only_new_tokens(native_backend, tiny_gguf):
    async def run():
        engine = await Engine.load(tiny_gguf, backend=native_backend, context=128, max_prefill=64)
        try:
            msgs = [{"role": "user", "content": "Hello there"}]
            first = "".join([p async for p in engine.chat(msgs, max_tokens=6, temperature=0)])
            first_prefill = engine.last_stats.prefilled_tokens
            msgs += [{"role": "assistant", "content": first}, {"role": "user", "content": "What is two plus two?"}]
            second = "".join([p async for p in engine.chat(msgs, max_tokens=6, temperature=0)])
            second_prefill = engine.last_stats.prefilled_tokens
            full = len(engine.tokenizer.encode(engine.template.render(msgs)))
        finally:
            engine.close()
        # A fresh engine on the whole conversation gives the same reply.
        fresh = await Engine.load(tiny_gguf, backend=native_backend, context=128, max_prefill=64)
        try:
            again = "".join([p async for p in fresh.chat(msgs, max_tokens=6, temperature=0)])
        finally:
            fresh.close()
        return first_prefill, second_prefill, full, second, again

    first_prefill, second_prefill, full, second, again = asyncio.run(run())
    assert second_prefill < full, (second_prefill, full)
    assert second == again


def test_token_stream_matches_step_by_step(native_backend, tiny_gguf):
    from py_engine.testing.llama_cases import token_stream_cases

    r = asyncio.run(token_stream_cases(native_backend, tiny_gguf, [1, 40, 41, 42, 43], n=12))
    assert len(r["ids"]) == 12 and r["readback_buffers"] <= 8
    assert all(len(ids) == 12 for ids in r["sampled"].values()) and len(r["sampled"]) == 3


def test_gpu_sampled_stream_reports_nan_logits(native_backend, tiny_gguf):
    from py_engine.testing.llama_cases import nan_logits_stream_case

    assert "NaN" in asyncio.run(nan_logits_stream_case(native_backend, tiny_gguf, [1, 40, 41]))


@pytest.mark.parametrize("passes", ["gpu", "cpu", "none"])
def test_shape_snapshots_leave_the_same_state(native_backend, tiny_gguf, passes):
    from py_engine.passes import CPU_PASSES, PASSES
    from py_engine.testing.llama_cases import shape_snapshot_cases

    fuse = {"gpu": PASSES, "cpu": CPU_PASSES, "none": False}[passes]
    assert asyncio.run(shape_snapshot_cases(native_backend, tiny_gguf, fuse=fuse)) == {"steps": 12, "snapshots": 4}


@pytest.mark.parametrize("adapter", ["cpu", "gpu"])
def test_transcoded_llama_matches_reference(native_backend, monkeypatch, adapter):
    """A llama in K-quants, Q5_0/Q5_1 and BF16 (transcoded at load to Q4_1 / Q8_0 / F16): logits
    within 1e-3 of the reference over the same loaded weights at every step, the same greedy ids,
    on this CPU adapter's kernels and as GPUs run them."""
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import build_llama_program
    from py_engine.testing.tiny_gguf import make_tiny_transcoded_gguf

    data = make_tiny_transcoded_gguf(seed=0)
    lp = build_llama_program(read_gguf(data), context=64, max_prefill=16)
    assert lp.transcoded == {"Q4_K->Q4_1": 4, "Q6_K->Q8_0": 5, "Q5_0->Q8_0": 2, "Q5_K->Q8_0": 2,
                             "Q5_1->Q8_0": 2, "BF16->F16": 5}, lp.transcoded
    monkeypatch.setattr(native_backend, "is_cpu", adapter == "cpu")
    r = asyncio.run(compare_with_reference(native_backend, data, [1, 40, 41, 42, 43, 44, 45], n_decode=12))
    assert len(set(r["ids"])) > 1, r["ids"]
    print("transcoded tiny llama max logit error", r["max_err"])


def _rope_scaled_gguf(**extra):
    # Llama 3 style: divisors from 1 (high frequencies) to 8 (low), plus linear scaling by 2.
    factors = np.linspace(1.0, 8.0, 8)  # head_dim 16
    return make_tiny_llama_gguf(seed=0, rope_freq_factors=factors,
                                extra_metadata={"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 2.0,
                                                **extra}), factors


def test_rope_scaling_and_llama3_frequency_factors(native_backend):
    """rope_freqs.weight divides theta_i and rope.scaling.factor divides positions, in the
    engine's table and in the reference (each checked against the formula here), and the
    engine matches the reference with them (logits within 1e-3, greedy ids)."""
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import config_from_gguf, rope_table
    from py_engine.reference.rope import rope_freqs

    data, factors = _rope_scaled_gguf()
    c = config_from_gguf(read_gguf(data))
    assert c.rope_scale == 0.5 and np.allclose(c.rope_freq_factors, factors)
    pos = np.arange(40, dtype=np.float64)
    angles = pos[:, None] * 0.5 * 10000.0 ** (-np.arange(8) * 2.0 / 16) / factors
    cos, sin = rope_table(c, 40)
    np.testing.assert_allclose(cos, np.cos(angles), atol=1e-6)
    np.testing.assert_allclose(sin, np.sin(angles), atol=1e-6)
    rcos, rsin = rope_freqs(16, pos, 10000.0, c.rope_scale, c.rope_freq_factors)
    np.testing.assert_allclose(rcos, np.cos(angles), atol=1e-6)
    np.testing.assert_allclose(rsin, np.sin(angles), atol=1e-6)
    r = asyncio.run(compare_with_reference(native_backend, data, [1, 40, 41, 42, 43, 44, 45], n_decode=8))
    assert len(r["ids"]) == 8


def test_rope_schemes_that_would_run_wrong_are_refused():
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import build_llama_program

    data, _ = _rope_scaled_gguf(**{"llama.rope.scaling.type": "yarn"})
    with pytest.raises(ValueError, match="RoPE scaling 'yarn' is not supported"):
        build_llama_program(read_gguf(data), context=16, max_prefill=8)
    bad = make_tiny_llama_gguf(seed=0, rope_freq_factors=np.ones(5))
    with pytest.raises(ValueError, match=r"rope_freqs.weight has 5 elements, expected head_dim / 2 = 8"):
        build_llama_program(read_gguf(bad), context=16, max_prefill=8)


QWEN2_TYPES = dict.fromkeys(("attn_q", "attn_k", "attn_v"), GGML_Q4_1)  # one type: one fused, biased q/k/v linear


@pytest.mark.parametrize("adapter", ["cpu", "gpu", "gpu-9-storage-buffers"])
def test_qwen2_matches_reference(native_backend, monkeypatch, adapter):
    """A qwen2 file: q/k/v biases (carried by the fused q/k/v linear), NeoX-style RoPE pairs (run
    as interleaved pairs by reordering q's and k's rows at load; the reference rotates the halves
    directly). Logits within 1e-3 at every step, the same greedy ids, on this CPU adapter's
    kernels and as GPUs run them, also where the norm-folded GEMV with biases (10 storage
    buffers) does not fit the device and the norm runs on its own."""
    import dataclasses

    data = make_tiny_llama_gguf(seed=3, arch="qwen2", qkv_bias=True, embd_scale=0.2,
                                weight_types=QWEN2_TYPES)  # greedy ids that vary
    monkeypatch.setattr(native_backend, "is_cpu", adapter == "cpu")
    if adapter.endswith("buffers"):
        monkeypatch.setattr(native_backend, "limits", dataclasses.replace(native_backend.limits,
                                                                          max_storage_buffers_per_stage=9))
    r = asyncio.run(compare_with_reference(native_backend, data, [1, 40, 41, 42, 43, 44, 45], n_decode=10))
    assert len(set(r["ids"])) > 1, r["ids"]


def test_unsupported_architecture_is_named():
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import build_llama_program

    with pytest.raises(ValueError, match=r"architecture 'gemma2' is not supported \(supported: llama, qwen2\)"):
        build_llama_program(read_gguf(make_tiny_llama_gguf(seed=0, arch="gemma2")), context=16, max_prefill=8)


def test_a_weight_past_the_storage_binding_limit_is_a_clear_error(native_backend, monkeypatch, tiny_gguf):
    """Every tensor is bound whole: one larger than the device's maxStorageBufferBindingSize
    (a big model's embedding on a small GPU) is refused at build by name and size, with
    nothing left allocated."""
    import dataclasses

    from py_engine.graph import Graph
    from py_engine.graph.errors import OpError
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import build_llama_program

    lp = build_llama_program(read_gguf(tiny_gguf), context=16, max_prefill=8)
    embd = 384 * 64 * 34 // 32  # the Q8_0 embedding's bytes, the largest tensor here
    monkeypatch.setattr(native_backend, "limits", dataclasses.replace(native_backend.limits,
                                                                      max_storage_binding_size=embd - 16))
    live = dict(native_backend._live)
    with pytest.raises(OpError, match=r"needs \d+ bytes, past this GPU's storage binding limit of \d+ bytes"):
        asyncio.run(Graph.build(lp.program, native_backend))
    assert native_backend._live == live


def test_engine_load_reports_transcoding_progress(native_backend):
    from py_engine.testing.tiny_gguf import make_tiny_transcoded_gguf

    stages = []
    engine = asyncio.run(Engine.load(make_tiny_transcoded_gguf(seed=0), backend=native_backend, context=32,
                                     max_prefill=8, on_progress=lambda stage, **info: stages.append((stage, info))))
    try:
        counts = [(i["done"], i["total"]) for s, i in stages if s == "transcode"]
        assert counts == [(n, 20) for n in range(1, 21)], counts
        names = [s for s, _ in stages]
        assert names.index("parse") < names.index("transcode") < names.index("upload"), names
    finally:
        engine.close()


def test_qwen2_biased_qkv_runs_as_one_linear(native_backend, monkeypatch):
    """Qwen2's biased q/k/v fuse into one linear carrying the biases, with the norm before them
    folded in: a decode step runs as many dispatches as the same llama without biases (unfused,
    the norm and the three linears were four per layer)."""
    from py_engine.graph import Graph
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import build_llama_program
    from py_engine.passes import passes_for

    monkeypatch.setattr(native_backend, "is_cpu", False)
    counts = {}
    for arch, bias in (("llama", False), ("qwen2", True)):
        data = make_tiny_llama_gguf(seed=0, n_layers=3, arch=arch, qkv_bias=bias,
                                    weight_types=QWEN2_TYPES)
        lp = build_llama_program(read_gguf(data), context=32, max_prefill=8, fuse=passes_for(native_backend))
        multis = [c for c in lp.program.chain if c.name.startswith("py_engine.linear_gguf_multi")]
        if bias:  # the first layer's norm is not an add_rms_norm: plain multi; then norm-folded ones
            assert [(c.name.split(".")[1], len(c.args)) for c in multis] == \
                [("linear_gguf_multi", 6), ("linear_gguf_multi_norm", 12), ("linear_gguf_multi_norm", 12)], multis
        g = asyncio.run(Graph.build(lp.program, native_backend))
        try:
            g.prepare([np.ones((1, 1), np.int32), np.array([5], np.int32)])
            counts[arch] = sum(1 for row in g.table if row[2] * row[3] * row[4])
        finally:
            g.destroy()
    assert counts["qwen2"] == counts["llama"], counts
