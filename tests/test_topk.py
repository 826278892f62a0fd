"""GPU top-k candidates for sampling (py_engine/ops/topk.py): exact against numpy, and sampling
from them equals sampling from the whole row (py_engine/testing/topk_cases.py)."""
import asyncio

from py_engine.testing.topk_cases import topk_cases


def test_topk_candidates_and_sampling(native_backend):
    got = asyncio.run(topk_cases(native_backend))
    assert got == {"vocab": 48 * 64, "ties": 5 * 64, "short": 37}, got


def test_chat_sampling_through_candidates_equals_whole_row(native_backend, monkeypatch):
    # The same seeded top-k chat, once from the GPU candidates (the default) and once with the
    # whole logits row read back: the same tokens.
    from py_engine import generate
    from py_engine.engine import Engine
    from py_engine.testing.tiny_gguf import make_tiny_llama_gguf

    async def chat():
        engine = await Engine.load(make_tiny_llama_gguf(seed=0), backend=native_backend, context=64, max_prefill=16)
        try:
            msgs = [{"role": "user", "content": "Hello there"}]
            text = "".join([p async for p in engine.chat(msgs, max_tokens=12, temperature=0.9, top_k=40, seed=7)])
            return text, list(engine.last_stats.token_ids)
        finally:
            engine.close()

    monkeypatch.setattr(generate, "CANDIDATES_ON_CPU", True)  # this machine's adapter may be a CPU
    calls = []
    real = generate.TopKCandidates.read

    async def counted(self):
        calls.append(1)
        return await real(self)

    monkeypatch.setattr(generate.TopKCandidates, "read", counted)
    via_candidates = asyncio.run(chat())
    assert calls, "the sampled chat did not read candidates"
    monkeypatch.setattr(generate, "TOPK_CANDIDATES", 0)  # top_k 40 > 0: the whole-row path
    whole_row = asyncio.run(chat())
    assert len(via_candidates[1]) > 0 and via_candidates == whole_row
