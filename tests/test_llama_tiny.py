"""The tiny synthetic llama GGUF on the native backend: logits and greedy ids vs numpy."""
import asyncio

import pytest

from py_engine.engine import Engine
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
