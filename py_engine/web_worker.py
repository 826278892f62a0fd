"""The Python side of the chat page's Web Worker (web/engine-worker.js drives it).

Everything crosses the JS boundary as str (JSON) or bytes, and callbacks are called with str
only, so no JS proxies are kept alive and nothing here imports `js`: the same session runs in
CPython on the native backend for tests.

    session = WorkerSession()
    info = await session.load(data, '{"context": 512}', on_progress)   # JSON text back
    stats = await session.chat('[{"role": "user", "content": "Hi"}]', '{"max_tokens": 16}', on_piece)
    session.abort(); session.reset(); session.close()

Errors: the worker turns any exception into `describe_error(exc)` (JSON): a `kind` the page
maps to its own help text, the exception's message, and a `hint` saying what to do.
"""
from __future__ import annotations

import json
import time

from .engine import Engine
from .generate import ContextFullError, GenerationSettings
from .gpu import GpuDeviceLost, GpuError
from .graph import OpError
from .loaders.gguf import FILE_TYPE_NAMES, GGUFError
from .models.llama_config import ARCHITECTURES

GGUF_MAGIC = b"GGUF"
PTE_MAGIC = b"ET12"  # at offset 4 of an ExecuTorch program
SETTING_NAMES = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed")


class UnsupportedModelError(ValueError):
    """The bytes are not a model this engine can open (or not yet)."""


def sniff_format(head: bytes) -> str:
    """'gguf' or 'pte' from the first bytes of a model file."""
    head = bytes(head[:8])
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if head[4:8] == PTE_MAGIC:
        return "pte"
    raise UnsupportedModelError(f"not a model file: it starts with {head[:8]!r}; expected a GGUF file "
                                f"('GGUF') or an ExecuTorch program ('ET12' at byte 4)")


def _as_file(data):
    """bytes-like, or in the worker a JS object {bytes: Uint8Array | ArrayBuffer}: a JsFile, which
    stays in JS and is read a range at a time (py_engine.gpu.wasm_heap)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    from .gpu.wasm_heap import JsFile

    return JsFile(data)


def _size(data) -> int:
    return data.size if hasattr(data, "read") else len(data)


def _head(data, n: int) -> bytes:
    return bytes(data.read(0, min(n, data.size)) if hasattr(data, "read") else data[:n])


def _plain(value):
    """JSON-safe copy of progress info (numbers, strings, nested dicts)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


class WorkerSession:
    def __init__(self):
        self.engine: Engine | None = None
        self.generating = False

    async def load(self, data, options_json: str = "{}", on_progress=None) -> str:
        """Open a model from its bytes; on_progress(stage, info_json). Returns JSON info."""
        options = json.loads(options_json or "{}")
        allowed = {k: options[k] for k in ("context", "max_prefill", "kv_cache") if options.get(k) is not None}
        data = _as_file(data)
        fmt = sniff_format(_head(data, 8))

        def progress(stage, **info):
            if on_progress is not None:
                on_progress(stage, json.dumps(_plain(info)))

        t0 = time.perf_counter()
        if fmt == "pte":
            # An ExecuTorch program is not a chat model: run one step and report its outputs.
            from .pte_runner import run_pte_once

            self.close()
            progress("parse")
            if hasattr(data, "read"):
                data = data.read(0, data.size)  # the program reader takes the whole file
            result = await run_pte_once(data)
            progress("ready", seconds=time.perf_counter() - t0)
            return json.dumps(_plain({"format": "pte", "bytes": _size(data), "context": 0,
                                      "seconds": time.perf_counter() - t0, "pte": result}))
        # A file that fails to prepare leaves the current model loaded (has_model tells the page);
        # only a checked one replaces it, the old one's GPU memory freed before the upload.
        prepared = await Engine.prepare(data, on_progress=progress, **allowed)
        self.close()
        self.engine = await Engine.build(prepared, progress)
        cfg = getattr(getattr(self.engine, "lp", None), "config", None)
        adapter = getattr(self.engine.backend, "adapter_info", {}) or {}
        return json.dumps(_plain({
            "format": fmt, "bytes": _size(data), "context": self.engine.context, "kv_cache": self.engine.lp.kv_dtype,
            "transcoded": self.engine.lp.transcoded,  # {"Q4_K->Q4_1": tensors, ...}
            "seconds": time.perf_counter() - t0,
            "layers": getattr(cfg, "n_layers", None), "vocab": getattr(cfg, "vocab", None),
            "adapter": " / ".join(v for v in adapter.values() if v),
        }))

    def _need_engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("no model is loaded: load a model first")
        return self.engine

    async def chat(self, messages_json: str, settings_json: str = "{}", on_piece=None) -> str:
        """Answer the conversation; on_piece(text) per streamed piece. Returns JSON stats."""
        engine = self._need_engine()
        messages = json.loads(messages_json)
        if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                       and m.get("role") in ("system", "user", "assistant")
                                                       for m in messages):
            raise ValueError("chat: messages must be a list of {role: system|user|assistant, content: str}")
        raw = json.loads(settings_json or "{}")
        unknown = sorted(set(raw) - set(SETTING_NAMES))
        if unknown:
            raise ValueError(f"chat: unknown settings {unknown}; known: {list(SETTING_NAMES)}")
        settings = GenerationSettings(**{k: v for k, v in raw.items() if v is not None})
        self.generating = True
        try:
            async for piece in engine.chat(messages, settings):
                if on_piece is not None and piece:
                    on_piece(piece)
        finally:
            self.generating = False
        return self.stats_json()

    def stats_json(self) -> str:
        s = self._need_engine().last_stats
        return json.dumps({
            "prompt_tokens": s.prompt_tokens, "prefilled_tokens": s.prefilled_tokens,
            "generated_tokens": s.generated_tokens, "finish_reason": s.finish_reason,
            "prefill_seconds": s.prefill_seconds, "decode_seconds": s.decode_seconds,
            "decode_tokens_per_s": s.decode_tokens_per_s, "prefill_tokens_per_s": s.prefill_tokens_per_s,
            "cached_tokens": len(self.engine.cached_ids),
        })

    def abort(self) -> None:
        if self.engine is not None:
            self.engine.abort()

    def reset(self) -> None:
        if self.engine is not None:
            self.engine.reset()

    def lose_device(self) -> None:
        """Test hook: destroy the GPU device, as a driver reset would."""
        device = getattr(self._need_engine().backend, "device", None)
        if device is not None and hasattr(device, "destroy"):
            device.destroy()

    def has_model(self) -> bool:
        """Whether a chat model is loaded (also after a load that failed: the one before it)."""
        return self.engine is not None

    def close(self) -> None:
        if self.engine is not None:
            try:
                self.engine.close()
            except Exception:  # a lost device cannot free anything; the session is dropped anyway
                pass
            self.engine = None


def describe_error(exc: BaseException) -> str:
    """JSON {name, kind, message, hint} for the page."""
    msg = str(exc) or type(exc).__name__
    low = msg.lower()
    if isinstance(exc, GpuDeviceLost):
        kind, hint = "device-lost", "The GPU stopped working for this page (driver reset, sleep or too much work). Reload the page to start again."
    elif isinstance(exc, GpuError) and "navigator.gpu is missing" in low:
        kind, hint = "no-webgpu", "This browser does not offer WebGPU. Use a recent Chrome or Edge (113+), or enable WebGPU in your browser's settings."
    elif isinstance(exc, GpuError) and "no gpu adapter" in low:
        kind, hint = "no-adapter", "WebGPU is present but found no usable GPU. Update the graphics driver or enable hardware acceleration."
    elif isinstance(exc, (GpuError, MemoryError)) and ("out of" in low and "memory" in low or isinstance(exc, MemoryError)):
        kind, hint = "out-of-memory", "The model does not fit in memory. Close other tabs or apps, choose a smaller model, or a shorter context."
    elif isinstance(exc, GpuError):
        kind, hint = "gpu", "The GPU reported an error. Reload the page; if it persists, try another browser or model."
    elif isinstance(exc, OpError):
        kind, hint = "unsupported-op", "This model needs an operation the engine cannot run yet. Try another model."
    elif isinstance(exc, UnsupportedModelError):
        kind, hint = "unsupported-model", "Choose a GGUF file of a llama-family model (e.g. SmolLM2)."
    elif isinstance(exc, GGUFError):
        kind, hint = "unsupported-model", (f"This GGUF file cannot be run: the details say why. The engine runs "
                                           f"{' and '.join(ARCHITECTURES)} models in {', '.join(FILE_TYPE_NAMES)}.")
    elif isinstance(exc, ContextFullError):
        kind, hint = "context-full", "The conversation is longer than the model's context. Start a new chat."
    else:
        kind, hint = "error", "Something went wrong; the details are below. Reload the page to start again."
    return json.dumps({"name": type(exc).__name__, "kind": kind, "message": msg, "hint": hint})
