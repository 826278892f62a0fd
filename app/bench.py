"""`python -m app bench`: engine speed on the native (wgpu) backend, printed as JSON.

Figures: load time; prefill tokens/s at 128 and 512 prompt tokens; decode tokens/s over N
tokens at a short and a long context; host milliseconds per decode step (Python work to
prepare and encode a step, without the GPU wait); dispatches per token. Decode runs through
the GPU-fed token stream (py_engine/token_stream.py) with `--depth` steps in flight and
`--group` tokens per readback: greedy, and sampled on the GPU with the chat page's defaults
(temperature 0.7, top-k 40, top-p 0.9).
"""
from __future__ import annotations

import asyncio
import json
import platform
import time

import numpy as np


# SmolLM2-135M's shapes, for a synthetic model of the same cost where the file is not at hand.
SMOLLM2_135M = dict(n_layers=30, dim=576, n_heads=9, n_kv_heads=3, ffn=1536, vocab=49152, context=8192,
                    rope_base=100000.0)


def synthetic_gguf(n_layers, dim, n_heads, n_kv_heads, ffn, vocab, context, rope_base, seed=0) -> bytes:
    """A llama GGUF with random weights in SmolLM2's formats (Q4_1 linears, Q8_0 tied
    embedding, F32 norms). Speed depends on shapes and formats only, not on the values."""
    from py_engine.loaders.gguf import tensor_from_array, write_gguf

    q41, q80, f32 = 3, 8, 0
    rng = np.random.default_rng(seed)
    hd = dim // n_heads

    def w(rows, cols, t):
        return tensor_from_array((rng.standard_normal((rows, cols)) * 0.02).astype(np.float32), t)

    tensors = {"token_embd.weight": w(vocab, dim, q80), "output_norm.weight": tensor_from_array(np.ones(dim), f32)}
    for i in range(n_layers):
        b = f"blk.{i}."
        tensors.update({
            b + "attn_norm.weight": tensor_from_array(np.ones(dim), f32),
            b + "attn_q.weight": w(n_heads * hd, dim, q41), b + "attn_k.weight": w(n_kv_heads * hd, dim, q41),
            b + "attn_v.weight": w(n_kv_heads * hd, dim, q41), b + "attn_output.weight": w(dim, n_heads * hd, q41),
            b + "ffn_norm.weight": tensor_from_array(np.ones(dim), f32),
            b + "ffn_gate.weight": w(ffn, dim, q41), b + "ffn_up.weight": w(ffn, dim, q41),
            b + "ffn_down.weight": w(dim, ffn, q41),
        })
    metadata = {
        "general.architecture": "llama", "llama.block_count": n_layers, "llama.context_length": context,
        "llama.embedding_length": dim, "llama.feed_forward_length": ffn, "llama.attention.head_count": n_heads,
        "llama.attention.head_count_kv": n_kv_heads, "llama.rope.freq_base": rope_base,
        "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.vocab_size": vocab,
        "llama.rope.dimension_count": hd,
    }
    return write_gguf(metadata, tensors)


async def _bench(args) -> dict:
    from py_engine.gpu import create_backend
    from py_engine.generate import LlamaRunner
    from py_engine.graph import Graph
    from py_engine.sampling import Sampler, SamplingParams
    from py_engine.token_stream import timed_decode
    from py_engine.loaders.gguf import read_gguf
    from py_engine.models.llama import build_llama_program, kv_dtype_for
    from py_engine.passes import passes_for
    from py_engine.settings import apply_setting

    for setting in args.set:
        apply_setting(setting)
    if args.synthetic:
        data = synthetic_gguf(**SMOLLM2_135M)
        args.model = "synthetic SmolLM2-135M shapes (Q4_1, Q8_0 tied embedding)"
    t0 = time.perf_counter()
    if not args.synthetic:
        with open(args.model, "rb") as f:
            data = f.read()
    backend = await create_backend()
    gguf = read_gguf(memoryview(data))
    lp = build_llama_program(gguf, context=args.context, max_prefill=512, fuse=passes_for(backend),
                             max_buffer_bytes=backend.limits.max_storage_binding_size,
                             kv_dtype=kv_dtype_for())
    graph = await Graph.build(lp.program, backend)
    runner = LlamaRunner(graph, lp)
    await runner.feed([1])  # first step compiles nothing more, but warms caches
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    vocab = lp.config.vocab
    out = {"device": backend.adapter_info, "backend": backend.name, "model": args.model,
           "context": runner.context, "kv_cache": lp.kv_dtype, "dispatches_per_step": int(len(graph.table)),
           "load_seconds": round(load_s, 3), "python": platform.python_version()}

    for n in args.prefill:
        if n > runner.context - 1:
            continue
        ids = rng.integers(0, vocab, n).tolist()
        runner.rewind(0)
        t = time.perf_counter()
        await runner.feed(ids)  # the first chunk of this size: every op reconfigures
        out[f"prefill_{n}_first_tokens_per_s"] = round(n / (time.perf_counter() - t), 2)
        runner.rewind(0)
        t = time.perf_counter()
        await runner.feed(ids)  # again: the graph restores its snapshot of this shape
        out[f"prefill_{n}_tokens_per_s"] = round(n / (time.perf_counter() - t), 2)

    out["decode_depth"], out["decode_group"] = args.depth, args.group
    for label, start in (("short", 16), ("long", max(16, min(runner.context - args.decode - 1, args.long_context)))):
        runner.rewind(0)
        # Greedy through the GPU-fed stream (the next token is copied on the GPU, `depth` steps
        # in flight).
        dt, stream = await timed_decode(runner, rng.integers(0, vocab, start).tolist(), args.decode,
                                        depth=args.depth, group=args.group)
        out[f"decode_{label}_context"] = start
        out[f"decode_{label}_tokens_per_s"] = round(args.decode / dt, 2)
        out[f"host_ms_per_decode_step_{label}"] = round(1000 * float(np.median(stream.host_seconds)), 4)
    runner.rewind(0)
    sampler = Sampler(SamplingParams(temperature=0.7, top_k=40, top_p=0.9), seed=0)
    dt, _ = await timed_decode(runner, rng.integers(0, vocab, 16).tolist(), args.decode, depth=args.depth,
                               group=args.group, sampler=sampler)
    out["decode_sampled_short_tokens_per_s"] = round(args.decode / dt, 2)
    out["dispatches_per_token"] = int(np.count_nonzero(graph.table[:, 2]))
    graph.destroy()
    return out


def add_arguments(p) -> None:
    p.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--prefill", type=int, nargs="*", default=[128, 512])
    p.add_argument("--decode", type=int, default=128)
    p.add_argument("--long-context", type=int, default=1024)
    p.add_argument("--depth", type=int, default=8, help="decode steps in flight (GPU-fed token stream)")
    p.add_argument("--group", type=int, default=4, help="decode tokens per readback map (GPU-fed token stream)")
    p.add_argument("--synthetic", action="store_true", help="random weights with SmolLM2-135M's shapes and formats")
    p.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE",
                   help="set an engine switch first, e.g. graph.pipelines.SUBGROUP_REDUCE=0 (repeatable)")
    from . import bench_browser  # --browser and its options (headless Chromium, wllama side by side)

    bench_browser.add_arguments(p)


def run(args) -> None:
    if args.browser:
        from . import bench_browser

        return bench_browser.run(args)
    print(json.dumps(asyncio.run(_bench(args)), indent=2))
