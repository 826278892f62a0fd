"""The engine a person uses: load a GGUF llama, then generate or chat, streaming text.

    engine = await Engine.load(gguf_bytes)          # or a path, in CPython
    async for piece in engine.chat([{"role": "user", "content": "Hi"}]):
        print(piece, end="")

Multi-turn chats reuse the KV cache: the conversation is rendered with the model's chat
template, and only the tokens after the longest prefix already in the cache are prefilled.
Context policy: when the conversation plus `max_tokens` does not fit the KV cache, the
oldest turns after the system prompt are dropped (whole user/assistant messages) and the
rest is prefilled again; if even the last message does not fit, ContextFullError is raised.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass

from .chat_template import ChatTemplate
from .generate import ContextFullError, GenerationSettings, GenerationStats, LlamaRunner, generate_tokens
from .graph import Graph
from .loaders.gguf import read_gguf, read_gguf_from
from .models.llama import build_llama_program, kv_dtype_for
from .passes import passes_for
from .tokenizer import Tokenizer


def _noop(stage: str, **info) -> None:
    pass


@dataclass
class PreparedModel:
    """What Engine.prepare checked on the CPU and Engine.build puts on the GPU."""
    backend: object
    tokenizer: Tokenizer
    template: ChatTemplate
    lp: object        # models.llama.LlamaProgram
    t0: float         # when preparing started (load time)


class Engine:
    def __init__(self, backend, tokenizer, template, lp, graph):
        self.backend = backend
        self.tokenizer = tokenizer
        self.template = template
        self.lp = lp
        self.graph = graph
        self.runner = LlamaRunner(graph, lp)
        self.cached_ids: list = []  # the ids whose K/V rows are in the cache, positions 0..pos-1
        self.last_stats = GenerationStats()
        self._abort = False

    @classmethod
    async def load(cls, source, *, backend=None, context: int | None = None, max_prefill: int = 256,
                   kv_cache: str | None = None, on_progress=_noop) -> "Engine":
        """`source`: GGUF bytes (bytes, bytearray, memoryview), a file path, or in the browser
        (Pyodide) a URL, fetched with the page's fetch. `kv_cache`: "float32", "float16" or
        "auto" (default: float32, or float16 where the memory budget would cut the model's
        context; see models.llama.kv_dtype_for). prepare() then build()."""
        prepared = await cls.prepare(source, backend=backend, context=context, max_prefill=max_prefill,
                                     kv_cache=kv_cache, on_progress=on_progress)
        return await cls.build(prepared, on_progress)

    @staticmethod
    async def prepare(source, *, backend=None, context: int | None = None, max_prefill: int = 256,
                      kv_cache: str | None = None, on_progress=_noop) -> "PreparedModel":
        """The model read and checked on the CPU: file, tokenizer, chat template, program (with
        any transcoding). `source`: the file's bytes, a path or URL, or an object with `size` and
        `read(start, n)` (a file the browser holds: its header and tensors come in as used).
        A bad or unsupported file fails here, before the GPU holds anything of it, so a caller
        replacing a model can keep the old one (py_engine.web_worker)."""
        if isinstance(source, str):
            source = await _read_source(source)
        t0 = time.perf_counter()
        on_progress("parse")
        if hasattr(source, "read"):  # a file held elsewhere (wasm_heap.JsFile): read as needed
            gguf = read_gguf_from(source.size, source.read)
        else:
            gguf = read_gguf(memoryview(source))
        tokenizer = Tokenizer.from_gguf(gguf)
        template = ChatTemplate.from_gguf(gguf, tokenizer)
        if backend is None:
            from .gpu import create_backend

            backend = await create_backend()
        lp = build_llama_program(gguf, context=context, max_prefill=max_prefill, fuse=passes_for(backend),
                                 max_buffer_bytes=backend.limits.max_storage_binding_size,
                                 kv_dtype=kv_dtype_for(kv_cache),
                                 on_transcode=lambda done, total: on_progress("transcode", done=done, total=total))
        return PreparedModel(backend, tokenizer, template, lp, t0)

    @classmethod
    async def build(cls, prepared: "PreparedModel", on_progress=_noop) -> "Engine":
        """Upload a prepared model and build its graph on the GPU."""
        p = prepared
        on_progress("upload", ops=len(p.lp.program.chain))
        graph = await Graph.build(p.lp.program, p.backend)
        # The GPU holds the weights now: the program's lazy weights go, and the file with them
        # (the engine keeps no reference to it; in the browser it is JS's to free). Reference
        # cycles still reach it until a collection: one now, before the next model's load.
        p.lp.program.release_constants()
        gc.collect()
        on_progress("ready", seconds=time.perf_counter() - p.t0, **graph.memory_stats())
        graph.warm()  # the kernels left out of the load compile while the page waits for the user
        return cls(p.backend, p.tokenizer, p.template, p.lp, graph)

    @property
    def context(self) -> int:
        return self.runner.context

    def abort(self) -> None:
        """Stop the generation in progress after the current step."""
        self._abort = True

    def reset(self) -> None:
        """Forget the conversation (the cache is reused from position 0)."""
        self.runner.rewind(0)
        self.cached_ids = []

    def settings(self, settings: GenerationSettings | None = None, **kw) -> GenerationSettings:
        s = settings or GenerationSettings()
        for k, v in kw.items():
            if not hasattr(s, k):
                raise TypeError(f"unknown generation setting {k!r}")
            setattr(s, k, v)
        return s

    async def generate(self, prompt: str, settings: GenerationSettings | None = None, **kw):
        """Complete `prompt` (plain text, no chat template); yields text pieces."""
        ids = self.tokenizer.encode(prompt)
        async for piece in self._run(ids, self.settings(settings, **kw)):
            yield piece

    async def chat(self, messages, settings: GenerationSettings | None = None, **kw):
        """Answer the conversation `messages` ([{role, content}, ...]); yields text pieces."""
        s = self.settings(settings, **kw)
        messages = list(messages)
        ids = self.tokenizer.encode(self.template.render(messages, add_generation_prompt=True), add_bos=None)
        while len(ids) + s.max_tokens > self.context and _droppable(messages):
            messages = _drop_oldest_turn(messages)
            ids = self.tokenizer.encode(self.template.render(messages, add_generation_prompt=True))
        async for piece in self._run(ids, s):
            yield piece

    async def _run(self, ids, s: GenerationSettings):
        if len(ids) >= self.context:
            raise ContextFullError(f"the prompt has {len(ids)} tokens; the KV cache holds {self.context}")
        common = _common_prefix(self.cached_ids, ids)
        common = min(common, len(ids) - 1)  # feed at least one token to get logits
        self.runner.rewind(common)
        self.cached_ids = self.cached_ids[:common]
        stats = GenerationStats()
        self.last_stats = stats
        self._abort = False
        new_ids = ids[common:]
        try:
            async for piece in generate_tokens(self.runner, self.tokenizer, new_ids, s, stats,
                                               history=ids[:common], should_stop=lambda: self._abort):
                yield piece
        finally:
            self.cached_ids = (list(ids) + stats.token_ids)[: self.runner.pos]

    def close(self) -> None:
        self.graph.destroy()


async def _read_source(source: str) -> bytes:
    import os
    import sys

    if sys.platform == "emscripten" and not os.path.exists(source):
        from pyodide.http import pyfetch  # type: ignore[import-not-found]

        resp = await pyfetch(source)
        if not resp.ok:
            raise OSError(f"fetching {source} failed: HTTP {resp.status}")
        return await resp.bytes()
    with open(source, "rb") as f:
        return f.read()


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _droppable(messages) -> bool:
    body = [m for m in messages if m.get("role") != "system"]
    return len(body) > 1


def _drop_oldest_turn(messages) -> list:
    """Drop the first non-system message (and its reply, keeping turns paired)."""
    out = list(messages)
    for i, m in enumerate(out):
        if m.get("role") != "system":
            del out[i]
            if i < len(out) - 1 and out[i].get("role") == "assistant":
                del out[i]
            return out
    return out
