"""py_engine.web_worker (the Python side of the chat page's worker), in CPython on the native backend."""
from __future__ import annotations

import asyncio
import json

import pytest

from py_engine.generate import ContextFullError
from py_engine.gpu import GpuDeviceLost, GpuError
from py_engine.graph import OpError
from py_engine.loaders.gguf import GGUFError
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf
from py_engine.web_worker import UnsupportedModelError, WorkerSession, describe_error, sniff_format


def test_sniff_format_reads_magic_bytes():
    assert sniff_format(b"GGUF\x03\x00\x00\x00") == "gguf"
    assert sniff_format(b"\x00\x00\x00\x00ET12") == "pte"
    with pytest.raises(UnsupportedModelError, match="not a model file"):
        sniff_format(b"hello wo")


@pytest.mark.parametrize("exc, kind", [
    (GpuDeviceLost("the GPU device was lost (destroyed)"), "device-lost"),
    (GpuError("WebGPU is not available in this browser (navigator.gpu is missing): ..."), "no-webgpu"),
    (GpuError("graph build: out of GPU memory (allocation failed)"), "out-of-memory"),
    (MemoryError(), "out-of-memory"),
    (GpuError("WebGPU error: something"), "gpu"),
    (OpError("linear_gguf: unsupported"), "unsupported-op"),
    (ContextFullError("the prompt has 900 tokens"), "context-full"),
    (GGUFError("gguf: architecture 'gemma2' is not supported"), "unsupported-model"),
    (ValueError("odd"), "error"),
])
def test_describe_error_names_the_kind_and_what_to_do(exc, kind):
    info = json.loads(describe_error(exc))
    assert info["kind"] == kind and info["name"] == type(exc).__name__
    assert info["hint"] and info["message"]


def test_session_loads_chats_reuses_cache_and_aborts():
    async def run():
        session = WorkerSession()
        stages = []
        info = json.loads(await session.load(make_tiny_llama_gguf(seed=0), "{}", lambda s, i: stages.append((s, json.loads(i)))))
        assert [s for s, _ in stages] == ["parse", "upload", "ready"] and info["format"] == "gguf" and info["context"] > 0
        pieces = []
        msgs = [{"role": "user", "content": "Hi"}]
        first = json.loads(await session.chat(json.dumps(msgs), '{"max_tokens": 4, "temperature": 0}', pieces.append))
        assert first["generated_tokens"] == 4 and first["finish_reason"] == "length" and pieces
        msgs += [{"role": "assistant", "content": "".join(pieces)}, {"role": "user", "content": "Ok"}]
        second = json.loads(await session.chat(json.dumps(msgs), '{"max_tokens": 2, "temperature": 0}'))
        assert second["prefilled_tokens"] < second["cached_tokens"] - second["generated_tokens"] - first["prefilled_tokens"] + 1
        # abort from inside the stream (as the worker's "abort" message does between steps)
        session.reset()
        got = []
        stats = json.loads(await session.chat(json.dumps(msgs[:1]), '{"max_tokens": 50, "temperature": 0}',
                                              lambda p: (got.append(p), session.abort())))
        assert stats["finish_reason"] == "abort" and stats["generated_tokens"] <= 2
        with pytest.raises(ValueError, match="unknown settings"):
            await session.chat(json.dumps(msgs[:1]), '{"bogus": 1}')
        session.close()
        with pytest.raises(RuntimeError, match="no model is loaded"):
            await session.chat(json.dumps(msgs[:1]))

    asyncio.run(run())


def test_a_file_that_fails_its_checks_leaves_the_loaded_model():
    """Bad bytes, a truncated GGUF and an unsupported architecture are refused before the model
    already loaded is closed: it still chats, with its KV cache."""
    async def run():
        session = WorkerSession()
        await session.load(make_tiny_llama_gguf(seed=0), "{}")
        engine = session.engine
        msgs = [{"role": "user", "content": "Hi"}]
        await session.chat(json.dumps(msgs), '{"max_tokens": 2, "temperature": 0}')
        good = make_tiny_llama_gguf(seed=1)
        for bad, match in ((b"hello", "not a model file"), (good[:len(good) // 2], "truncated|past end"),
                           (make_tiny_llama_gguf(seed=0, arch="gemma2"), "architecture 'gemma2'")):
            with pytest.raises(ValueError, match=match):
                await session.load(bad, "{}")
            assert session.has_model() and session.engine is engine
        stats = json.loads(await session.chat(json.dumps(msgs), '{"max_tokens": 2, "temperature": 0}'))
        assert stats["prefilled_tokens"] == 0 or stats["prefilled_tokens"] < stats["cached_tokens"] - 2, stats
        session.close()
        assert not session.has_model()

    asyncio.run(run())

