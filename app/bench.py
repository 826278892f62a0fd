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


# Shapes of synthetic models (random weights: speed, load time and memory depend on shapes and
# formats only), where the file is not at hand. `kquants`: the Q4_K_M mix of K-quant blocks
# (transcoded at load) instead of SmolLM2's Q4_1 linears and Q8_0 embedding.
SMOLLM2_135M = dict(n_layers=30, dim=576, n_heads=9, n_kv_heads=3, ffn=1536, vocab=49152, context=8192,
                    rope_base=100000.0)
# Llama-3.2-1B's layers (its vocab is 128,256; this one's is SmolLM2's, so its tokenizer fits).
LLAMA_1B_Q4_K_M = dict(n_layers=16, dim=2048, n_heads=32, n_kv_heads=8, ffn=8192, vocab=49152, context=8192,
                       rope_base=500000.0, kquants=True)
# Llama-3.2-3B's layers, the same vocab: 1.8 GB, under the page's 2 GB limit for a file.
LLAMA_3B_Q4_K_M = dict(LLAMA_1B_Q4_K_M, n_layers=28, dim=3072, n_heads=24)
# Llama-3.1-8B's layers, the same vocab: 4.3 GB, past what Pyodide's memory could hold.
LLAMA_8B_Q4_K_M = dict(LLAMA_1B_Q4_K_M, n_layers=32, dim=4096, n_heads=32, ffn=14336)
SYNTHETIC = {"smollm2-135m": SMOLLM2_135M, "llama-1b-q4_k_m": LLAMA_1B_Q4_K_M, "llama-3b-q4_k_m": LLAMA_3B_Q4_K_M,
             "llama-8b-q4_k_m": LLAMA_8B_Q4_K_M}


def synthetic_label(name: str) -> str:
    s = SYNTHETIC[name]
    formats = "Q4_K_M mix of K-quants" if s.get("kquants") else "Q4_1, Q8_0 tied embedding"
    return f"synthetic {name} shapes ({formats})"


def _kquant_blocks(rng, ggml_type: int, rows: int, cols: int) -> bytes:
    """Random Q4_K / Q6_K blocks with small, finite scales (weights of ~0.1): written as blocks,
    since quantizing a billion random floats would take minutes."""
    from py_engine.loaders.gguf_transcode import GGML_Q4_K, TRANSCODED_BLOCKS, f16_bytes

    b = rng.integers(0, 256, (rows * cols // 256, TRANSCODED_BLOCKS[ggml_type][1]), dtype=np.uint8)
    if ggml_type == GGML_Q4_K:
        b[:, 0:2], b[:, 2:4] = f16_bytes(np.full(len(b), 2e-4)), f16_bytes(np.full(len(b), 1e-4))  # d, dmin
    else:  # Q6_K: positive 6-bit scales, then d
        b[:, 192:208] = rng.integers(0, 64, (len(b), 16), dtype=np.uint8)
        b[:, 208:210] = f16_bytes(np.full(len(b), 2e-5))
    return b.tobytes()


def synthetic_gguf(n_layers, dim, n_heads, n_kv_heads, ffn, vocab, context, rope_base, kquants=False,
                   seed=0) -> bytes:
    """A llama GGUF with random weights: SmolLM2's formats (Q4_1 linears, Q8_0 tied embedding),
    or with `kquants` llama.cpp's Q4_K_M mix (Q4_K; Q6_K for the tied embedding and for attn_v /
    ffn_down of every other layer). F32 norms."""
    from py_engine.loaders.gguf import TensorSpec, tensor_from_array, write_gguf
    from py_engine.loaders.gguf_transcode import GGML_Q4_K, GGML_Q6_K

    q41, q80, f32 = 3, 8, 0
    rng = np.random.default_rng(seed)
    hd = dim // n_heads

    def w(rows, cols, t):
        if kquants:
            t = GGML_Q6_K if t == q80 else t
            return TensorSpec(t, (cols, rows), _kquant_blocks(rng, t, rows, cols))
        return tensor_from_array((rng.standard_normal((rows, cols)) * 0.02).astype(np.float32), t)

    lin = GGML_Q4_K if kquants else q41
    tensors = {"token_embd.weight": w(vocab, dim, q80), "output_norm.weight": tensor_from_array(np.ones(dim), f32)}
    for i in range(n_layers):
        b = f"blk.{i}."
        six = GGML_Q6_K if kquants and i % 2 == 0 else lin
        tensors.update({
            b + "attn_norm.weight": tensor_from_array(np.ones(dim), f32),
            b + "attn_q.weight": w(n_heads * hd, dim, lin), b + "attn_k.weight": w(n_kv_heads * hd, dim, lin),
            b + "attn_v.weight": w(n_kv_heads * hd, dim, six), b + "attn_output.weight": w(dim, n_heads * hd, lin),
            b + "ffn_norm.weight": tensor_from_array(np.ones(dim), f32),
            b + "ffn_gate.weight": w(ffn, dim, lin), b + "ffn_up.weight": w(ffn, dim, lin),
            b + "ffn_down.weight": w(dim, ffn, six),
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
        data = synthetic_gguf(**SYNTHETIC[args.synthetic])
        args.model = synthetic_label(args.synthetic)
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
    p.add_argument("--synthetic", nargs="?", const="smollm2-135m", choices=sorted(SYNTHETIC), default=None,
                   help="random weights with these shapes and formats (default smollm2-135m: SmolLM2-135M's)")
    p.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE",
                   help="set an engine switch first, e.g. graph.pipelines.SUBGROUP_REDUCE=0 (repeatable)")
    from . import bench_browser  # --browser and its options (headless Chromium, wllama side by side)

    bench_browser.add_arguments(p)


def run(args) -> None:
    if args.browser:
        from . import bench_browser

        return bench_browser.run(args)
    print(json.dumps(asyncio.run(_bench(args)), indent=2))
