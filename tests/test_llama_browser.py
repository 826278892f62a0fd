"""Whole llama models inside Pyodide on the browser backend, against the numpy reference.

The tiny synthetic GGUF is checked step by step like in CPython (logits within 1e-3, greedy
ids identical for 16 tokens). The real SmolLM2 gets one shorter check: its logits for a
short prompt and two greedy steps, with the reference computed here on the host.
"""
from pathlib import Path

import numpy as np
import pytest
from pytest_pyodide import run_in_pyodide

from py_engine.loaders.gguf import read_gguf
from py_engine.reference.llama import LlamaReference
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf

MODEL = Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def tiny_bytes():
    return make_tiny_llama_gguf(seed=0)


@run_in_pyodide
async def test_tiny_llama_in_browser(selenium, tiny_bytes):
    from py_engine.testing.llama_cases import compare_with_reference
    from py_engine.testing.shared_backend import shared_backend

    r = await compare_with_reference(await shared_backend(), tiny_bytes, [1, 40, 41, 42, 43, 44, 45], n_decode=16)
    assert len(r["ids"]) == 16


@run_in_pyodide
async def test_tiny_llama_float16_kv_in_browser(selenium, tiny_bytes):
    # float16 caches (the KV16 kernels) against a reference whose caches round to f16 too.
    from py_engine.testing.llama_cases import compare_with_reference
    from py_engine.testing.shared_backend import shared_backend

    r = await compare_with_reference(await shared_backend(), tiny_bytes, [1, 40, 41, 42, 43, 44, 45], n_decode=8,
                                     kv_dtype="float16")
    assert len(r["ids"]) == 8


@run_in_pyodide
async def test_transcoded_llama_in_browser(selenium):
    # K-quants etc. transcoded at load inside Pyodide, then as tests/test_llama_tiny.py.
    from py_engine.testing.llama_cases import compare_with_reference
    from py_engine.testing.shared_backend import shared_backend
    from py_engine.testing.tiny_gguf import make_tiny_transcoded_gguf

    r = await compare_with_reference(await shared_backend(), make_tiny_transcoded_gguf(seed=0),
                                     [1, 40, 41, 42, 43, 44, 45], n_decode=6)
    assert len(r["ids"]) == 6


@run_in_pyodide
async def test_qwen2_in_browser(selenium):
    # q/k/v biases and NeoX-style RoPE (tests/test_llama_tiny.py), inside Pyodide.
    from py_engine.testing.llama_cases import compare_with_reference
    from py_engine.testing.shared_backend import shared_backend
    from py_engine.loaders.gguf import GGML_Q4_1
    from py_engine.testing.tiny_gguf import make_tiny_llama_gguf

    data = make_tiny_llama_gguf(seed=3, arch="qwen2", qkv_bias=True, embd_scale=0.2,
                                weight_types=dict.fromkeys(("attn_q", "attn_k", "attn_v"), GGML_Q4_1))
    r = await compare_with_reference(await shared_backend(), data, [1, 40, 41, 42, 43, 44, 45], n_decode=6)
    assert len(r["ids"]) == 6


@run_in_pyodide
async def test_attention_blocks_in_browser(selenium):
    # tests/test_attention_block.py's cases, with the kernels GPUs take (SwiftShader is a CPU adapter).
    from py_engine.testing.llama_cases import attention_block_cases
    from py_engine.testing.shared_backend import shared_backend

    r = await attention_block_cases(await shared_backend())
    assert r[256] <= 1e-3 and r[32] <= 1e-3  # compare_with_reference asserts this at every step too
    inline, past = r["dispatches"][21], r["dispatches"][40]
    assert inline["gemv_norm_rope"] == inline["attend"] == 2 and "sdpa:decode" not in inline, inline
    assert past["sdpa:decode"] == 2, past


@run_in_pyodide
async def test_token_stream_in_browser(selenium, tiny_bytes):
    # The same cases as tests/test_llama_tiny.py: ids exact against step-by-step feeding.
    from py_engine.testing.llama_cases import nan_logits_stream_case, token_stream_cases
    from py_engine.testing.shared_backend import shared_backend

    backend = await shared_backend()
    r = await token_stream_cases(backend, tiny_bytes, [1, 40, 41, 42, 43], n=12)
    assert len(r["ids"]) == 12 and r["readback_buffers"] <= 8
    assert all(len(ids) == 12 for ids in r["sampled"].values()) and len(r["sampled"]) == 3
    assert "NaN" in await nan_logits_stream_case(backend, tiny_bytes, [1, 40, 41])


@run_in_pyodide
async def test_shape_snapshots_in_browser(selenium, tiny_bytes):
    from py_engine.testing.llama_cases import shape_snapshot_cases
    from py_engine.testing.shared_backend import shared_backend

    assert await shape_snapshot_cases(await shared_backend(), tiny_bytes) == {"steps": 12, "snapshots": 4}


@pytest.fixture(scope="module")
def smollm2_expected():
    assert MODEL.is_file(), f"{MODEL} is missing: run scripts/setup.sh (it runs scripts/fetch_model.sh)"
    data = MODEL.read_bytes()
    ref = LlamaReference.from_gguf(read_gguf(data), context=64)
    prompt = [504, 3575, 282, 4649, 314]  # "The capital of France is"
    logits = [ref.forward(prompt)[-1]]
    ids = []
    for _ in range(2):
        ids.append(int(np.argmax(logits[-1])))
        logits.append(ref.forward([ids[-1]])[-1])
    return {"url": f"/models/{MODEL.name}", "prompt": prompt, "ids": ids, "logits": np.stack(logits)}


@pytest.mark.timeout(900)
@run_in_pyodide
async def test_smollm2_short_check_in_browser(selenium, smollm2_expected):
    import numpy as np
    from pyodide.http import pyfetch

    from py_engine.generate import LlamaRunner
    from py_engine.graph import Graph
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import build_llama_program
    from py_engine.testing.shared_backend import shared_backend

    exp = smollm2_expected
    data = await (await pyfetch(exp["url"])).bytes()
    lp = build_llama_program(read_gguf(data), context=64, max_prefill=8)
    graph = await Graph.build(lp.program, await shared_backend())
    try:
        runner = LlamaRunner(graph, lp)
        got = [await runner.feed(exp["prompt"])]
        for tid in exp["ids"]:
            got.append(await runner.feed([tid]))
        got = np.stack(got)
        err = float(np.abs(got - exp["logits"]).max())
        assert err <= 1e-3, f"max logit error {err}"
        assert [int(np.argmax(x)) for x in got[:2]] == exp["ids"]
    finally:
        graph.destroy()


@run_in_pyodide
async def test_python_engine_api_chats_in_browser(selenium, tiny_bytes):
    import pyodide_js

    await pyodide_js.loadPackage("jinja2")  # served offline from the vendored Pyodide (setup)
    from py_engine.engine import Engine
    from py_engine.testing.shared_backend import shared_backend

    engine = await Engine.load(tiny_bytes, backend=await shared_backend(), context=64)
    try:
        pieces = [p async for p in engine.chat([{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0)]
        assert engine.last_stats.generated_tokens >= 1 or engine.last_stats.finish_reason == "stop"
        assert "".join(pieces) == engine.tokenizer.decode(engine.last_stats.token_ids, skip_special=True)
        # The chat template rendered with jinja2 inside Pyodide (not the ChatML fallback).
        assert not engine.template.is_fallback
    finally:
        engine.close()
