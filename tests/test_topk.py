"""GPU top-k candidates and the GPU sampler (py_engine/ops/topk.py): exact against numpy
(py_engine/testing/topk_cases.py), and a seeded chat sampled on the GPU equals one sampled on
the host from whole logits rows."""
import asyncio

from py_engine.testing.topk_cases import topk_cases

EXPECTED = {"vocab": (48 * 64, True), "ties": (5 * 64, True), "short": (37, True)}


def test_topk_candidates_and_gpu_sampler(native_backend):
    got = asyncio.run(topk_cases(native_backend))
    assert got == EXPECTED, got


def test_chat_sampled_on_gpu_equals_host_sampling(native_backend, monkeypatch):
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

    from py_engine.ops.topk import TopKSampler

    draws = []
    real_set_draw = TopKSampler.set_draw

    def counted(self, params, u):
        draws.append(u)
        real_set_draw(self, params, u)

    monkeypatch.setattr(TopKSampler, "set_draw", counted)
    # This machine's adapter may be a CPU, where GPU sampling is off by default.
    monkeypatch.setattr(generate, "gpu_sampling", lambda runner, params: True)
    on_gpu = asyncio.run(chat())
    monkeypatch.setattr(generate, "gpu_sampling", lambda runner, params: False)
    n = len(draws)
    on_host = asyncio.run(chat())
    assert n >= len(on_gpu[1]) > 0 and len(draws) == n, (n, len(draws))
    assert on_gpu == on_host
