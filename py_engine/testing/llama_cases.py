"""Engine vs numpy reference for whole llama models, step by step (shared by CPython and browser)."""
from __future__ import annotations

import numpy as np

from ..generate import LlamaRunner
from ..graph import Graph
from ..loaders.gguf import read_gguf
from ..models.llama import build_llama_program
from ..reference.llama import LlamaReference
from ..sampling import Sampler, SamplingError, SamplingParams


async def compare_with_reference(backend, gguf_bytes, prompt_ids, *, n_decode: int = 16, atol: float = 1e-3,
                                 context: int = 128, max_prefill: int = 32, reference=None,
                                 kv_dtype: str = "float32") -> dict:
    """Prefill `prompt_ids`, then `n_decode` greedy steps, on the GPU and in numpy (both with
    KV caches of `kv_dtype`, and the weights as loaded: after any transcoding).

    After every step the last-row logits must agree within `atol` and both sides must pick
    the same greedy id. Returns {'max_err', 'ids', 'prefill_err'}.
    """
    gguf = read_gguf(gguf_bytes)
    lp = build_llama_program(gguf, context=context, max_prefill=max_prefill, kv_dtype=kv_dtype)
    ref = reference or LlamaReference.from_gguf(gguf, context=context, kv_dtype=kv_dtype, as_loaded=True)
    ref.reset()
    graph = await Graph.build(lp.program, backend)
    try:
        runner = LlamaRunner(graph, lp)
        got = await runner.feed(prompt_ids)
        want = ref.forward(prompt_ids)[-1]
        errs = [_check(got, want, atol, "prefill")]
        # The GPU's argmax agrees with the logits it produced.
        if int((await graph.read(lp.next_token_id))[0]) != int(np.argmax(got)):
            raise AssertionError("GPU argmax differs from the argmax of the GPU logits")
        ids = []
        for step in range(n_decode):
            tid, ref_tid = int(np.argmax(got)), int(np.argmax(want))
            if tid != ref_tid:
                raise AssertionError(f"decode step {step}: engine picked {tid}, reference {ref_tid} "
                                     f"(logits {got[tid]:.5f} vs {got[ref_tid]:.5f})")
            ids.append(tid)
            got = await runner.feed([tid])
            want = ref.forward([tid])[-1]
            errs.append(_check(got, want, atol, f"decode step {step}"))
        return {"max_err": max(errs), "prefill_err": errs[0], "ids": ids}
    finally:
        graph.destroy()


def _check(got, want, atol, where) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{where}: logits shape {got.shape}, expected {want.shape}")
    err = float(np.abs(got - want).max())
    if not err <= atol:
        raise AssertionError(f"{where}: max logit error {err:.3g} exceeds {atol}")
    return err


async def token_stream_cases(backend, gguf_bytes, prompt_ids, *, n: int = 12, context: int = 64,
                             max_prefill: int = 32) -> dict:
    """The GPU-fed token stream (steps in flight, token copied on the GPU) against feeding one
    token at a time. Greedy: the same ids at every depth, the position after each kind of stop,
    speculative steps past a stop overwritten correctly, the end of the cache, and bad input.
    Sampled on the GPU: the same ids as the host sampling whole logits rows with the same seed
    (the GPU draws in float32: a draw within ~1e-6 of a cumulative boundary could differ; the
    fixed seeds here are far from one), and NaN logits raise. Exact (ids)."""
    from ..generate import ContextFullError

    gguf = read_gguf(gguf_bytes)
    lp = build_llama_program(gguf, context=context, max_prefill=max_prefill)
    graph = await Graph.build(lp.program, backend)
    try:
        runner = LlamaRunner(graph, lp)
        P = len(prompt_ids)
        want = [await runner.feed(prompt_ids, greedy=True)]
        for _ in range(n - 1):
            want.append(await runner.feed([want[-1]], greedy=True))
        for depth, group in ((1, 1), (2, 2), (4, 1), (8, 4), (5, 3)):
            runner.rewind(0)
            stream = await runner.stream(prompt_ids, max_new=n, depth=depth, group=group)
            got = [t async for t in stream]
            assert got == want, f"depth {depth}, group {group}: stream {got} != step by step {want}"
            # Every token but the last was asked past, so fed; max_new ended the stream.
            assert runner.pos == P + n - 1, (depth, group, runner.pos)
            assert stream.closed and runner._stream is None

        # Stop after k tokens with steps in flight: t_k is not fed, and decoding on from there one
        # token at a time continues the same sequence (the speculative rows are overwritten).
        k = 3
        runner.rewind(0)
        stream = await runner.stream(prompt_ids, max_new=n, depth=8, group=4)
        got = [await stream.next() for _ in range(k)]
        assert stream.produced > k, "steps should have run ahead"
        await stream.aclose()
        assert got == want[:k] and runner.pos == P + k - 1, (got, runner.pos)
        assert await runner.feed([got[-1]], greedy=True) == want[k]

        # The end of the cache: the last step feeds position context-1.
        start = context - 4
        long_prompt = (list(prompt_ids) * context)[:start]
        runner.rewind(0)
        stream = await runner.stream(long_prompt, max_new=100, depth=8, group=3)
        tail = [t async for t in stream]
        assert len(tail) == context - start + 1 and runner.pos == context, (len(tail), runner.pos)

        # Bad input: nothing submitted, no stream left open, the readback pool unchanged.
        pool = len(graph._readback_all)
        runner.rewind(0)
        for bad, err in (([lp.config.vocab], ValueError), ([], ValueError),
                         (list(range(1, context + 2)), ContextFullError)):
            try:
                await runner.stream(bad, max_new=4)
            except err:
                pass
            else:
                raise AssertionError(f"stream({bad[:3]}...) did not raise {err.__name__}")
            assert runner._stream is None and runner.pos == 0
        assert len(graph._readback_all) == pool

        sampled = {}
        for params, seed, depth, group in ((SamplingParams(temperature=0.8, top_k=40, top_p=0.9), 7, 8, 4),
                                           (SamplingParams(temperature=1.5, top_k=64, min_p=0.02), 11, 3, 2),
                                           (SamplingParams(temperature=0.5, top_k=5), 3, 1, 1)):
            runner.rewind(0)
            host = Sampler(params, seed)
            ref = [host.sample(await runner.feed(prompt_ids))]
            for _ in range(n - 1):
                ref.append(host.sample(await runner.feed([ref[-1]])))
            runner.rewind(0)
            stream = await runner.stream(prompt_ids, max_new=n, depth=depth, group=group, sampler=Sampler(params, seed))
            got = [t async for t in stream]
            assert got == ref, f"{params}: GPU-sampled stream {got} != host sampling {ref}"
            assert runner.pos == P + n - 1
            sampled[params.top_k] = got
        for bad in (SamplingParams(temperature=0.8, top_k=0), SamplingParams(temperature=0.8, top_k=40,
                                                                             repetition_penalty=1.1)):
            runner.rewind(0)
            try:
                await runner.stream(prompt_ids, max_new=4, sampler=Sampler(bad))
            except SamplingError:
                pass
            else:
                raise AssertionError(f"stream with {bad} did not raise")
            assert runner._stream is None and runner.pos == 0
        return {"ids": want, "sampled": sampled, "readback_buffers": pool}
    finally:
        graph.destroy()


async def nan_logits_stream_case(backend, gguf_bytes, prompt_ids) -> str:
    """NaN logits (a NaN in the final norm's weight) stop a GPU-sampled stream with SamplingError
    on the first token, and nothing stays in flight."""
    data = bytearray(gguf_bytes)
    gguf = read_gguf(data)
    np.frombuffer(gguf.tensor("output_norm.weight").data, np.float32)[3] = np.nan
    lp = build_llama_program(gguf, context=32, max_prefill=16)
    graph = await Graph.build(lp.program, backend)
    try:
        runner = LlamaRunner(graph, lp)
        stream = await runner.stream(prompt_ids, max_new=6, sampler=Sampler(SamplingParams(temperature=0.7, top_k=40)))
        try:
            await stream.next()
        except SamplingError as e:
            assert stream.closed and runner._stream is None and not stream._groups
            return str(e)
        raise AssertionError("NaN logits gave a token")
    finally:
        graph.destroy()


async def shape_snapshot_cases(backend, gguf_bytes, *, context: int = 64, max_prefill: int = 8,
                               fuse: bool | tuple = True) -> dict:
    """The host shortcuts of a step leave the state that configuring every op would: shape
    snapshots (py_engine/graph/graph.py: a step at shapes seen before restores the graph's state
    instead of reconfiguring every op), layer groups (ops/sdpa.py: the attention of all layers
    configured at once) and layer twins (graph/twins.py: a full configure copies each repeated
    op's results from its first instance). Against the same steps with all off, the dispatch
    table, the uniform bytes and every tensor's live dims after every prepare, and the logits,
    are identical with groups on, with snapshots too, and with twins too (which must have
    copied ops). The sequence starts at the build's shape, revisits shapes at other positions
    (prompt chunks, decode after prefill), and a step past the cache at a known shape fails in
    every run without disturbing the steps after it."""
    from ..graph import StepError
    from ..graph import graph as graph_module
    from ..graph import twins
    from ..ops import sdpa

    lp = build_llama_program(read_gguf(gguf_bytes), context=context, max_prefill=max_prefill, fuse=fuse)
    r = np.random.default_rng(9)
    steps, pos = [], 0
    for s in (8, 1, 1, 3, 7, 1, 7, 1, 8, 8, 3, 1):
        steps.append((r.integers(0, lp.config.vocab, s).tolist(), pos))
        pos += s
    traces = {}
    for snapshots, groups, copies in ((False, False, False), (False, True, False), (True, True, False),
                                      (True, True, True)):
        saved = graph_module.SHAPE_SNAPSHOTS, sdpa.LAYER_GROUPS, twins.TWIN_CONFIGURE
        graph_module.SHAPE_SNAPSHOTS, sdpa.LAYER_GROUPS, twins.TWIN_CONFIGURE = snapshots, groups, copies
        graph = await Graph.build(lp.program, backend)
        try:
            trace = []
            for k, (ids, p) in enumerate(steps):
                if k == 6:  # 8 tokens at position context - 4: rejected by the cache-size checks
                    try:
                        graph.prepare([np.ones((1, 8), np.int32), np.array([context - 4], np.int32)])
                    except StepError:
                        pass
                    else:
                        raise AssertionError("a step past the cache was accepted")
                staged = graph.prepare([np.asarray(ids, np.int32).reshape(1, -1), np.array([p], np.int32)])
                state = (graph.table.copy(), [bytes(page.mirror) for page in graph.uniforms.pages],
                         {vid: ref.dims for vid, ref in graph.tensors.items()})
                graph.submit(staged)
                logits = await graph.read(lp.logits_id)
                trace.append((state, logits))
            traces[snapshots, groups, copies] = (trace, len(graph._snapshots), graph._twins.copied)
        finally:
            graph_module.SHAPE_SNAPSHOTS, sdpa.LAYER_GROUPS, twins.TWIN_CONFIGURE = saved
            graph.destroy()
    off, n_off, _ = traces[False, False, False]
    for key in ((False, True, False), (True, True, False), (True, True, True)):
        on_, n_on, copied = traces[key]
        for i, ((st_a, lg_a), (st_b, lg_b)) in enumerate(zip(off, on_)):
            what = f"step {i}, (snapshots, layer groups, layer twins) {key}"
            assert np.array_equal(st_a[0], st_b[0]), f"{what}: dispatch tables differ"
            assert st_a[1] == st_b[1], f"{what}: uniform bytes differ"
            assert st_a[2] == st_b[2], f"{what}: live dims differ"
            assert np.array_equal(lg_a, lg_b), f"{what}: logits differ"
        assert (copied > 0) == key[2], (key, copied)  # twins copied ops only where on
    assert n_off == 0 and n_on == 4, (n_off, n_on)  # shapes 8, 1, 3, 7
    return {"steps": len(steps), "snapshots": n_on}


# The tiny llama with q/k/v of one type (so they fuse into one linear and the layers after the
# first form attention blocks), the output projections of another.
BLOCK_WEIGHT_TYPES = ({"attn_q": 3, "attn_k": 3, "attn_v": 3, "attn_output": 2, "ffn_gate": 8, "ffn_up": 8,
                       "ffn_down": 3},
                      {"attn_q": 8, "attn_k": 8, "attn_v": 8, "attn_output": 3, "ffn_gate": 3, "ffn_up": 3,
                       "ffn_down": 2})


def block_gguf(variant: int = 0) -> bytes:
    from .tiny_gguf import make_tiny_llama_gguf

    return make_tiny_llama_gguf(seed=3 + variant, n_layers=3, weight_types=BLOCK_WEIGHT_TYPES[variant])


class AsGpu:
    """The backend's GPU kernel choice while inside (CPU adapters run the kernels GPUs take)."""

    def __init__(self, backend):
        self.backend = backend

    def __enter__(self):
        self.saved = self.backend.is_cpu
        self.backend.is_cpu = False

    def __exit__(self, *exc):
        self.backend.is_cpu = self.saved


async def attention_block_cases(backend, *, variant: int = 0, block: bool = True) -> dict:
    """Decode with attention blocks (ops/attention_block.py, switched on; `block=False`: as built
    by default) against the numpy reference, as GPUs run it: logits within 1e-3 at every step,
    with the output projection attending (keys up to its limit) and with the attention's own
    kernels past the limit (a limit of 32 keys, crossed by the steps). Every block layer's decode step runs its q/k/v GEMV with the rotation and its
    output projection's attending dispatch, not the unfused q/k/v GEMV or the plain projection;
    the attention dispatches run only past the limit. Returns the errors and dispatch counts."""
    from ..ops import attention_block

    data = block_gguf(variant)
    out = {}
    saved = attention_block.BLOCK, attention_block.MAX_KEYS
    attention_block.BLOCK = block
    try:
        with AsGpu(backend):
            for limit in (256, 32):
                attention_block.MAX_KEYS = limit
                r = await compare_with_reference(backend, data, list(range(3, 23)), n_decode=16)
                out[limit] = r["max_err"]
            out["dispatches"] = {}
            for n_keys in (21, 40):  # attending in the projection (limit 32), then past it
                out["dispatches"][n_keys] = await _decode_dispatches(backend, data, n_keys)
    finally:
        attention_block.BLOCK, attention_block.MAX_KEYS = saved
    return out


async def _decode_dispatches(backend, data: bytes, n_keys: int) -> dict:
    """{label suffix: dispatches with work} of a decode step reaching n_keys keys."""
    lp = build_llama_program(read_gguf(data), context=64, max_prefill=32)
    graph = await Graph.build(lp.program, backend)
    try:
        graph.prepare([np.ones((1, 1), np.int32), np.array([n_keys - 1], np.int32)])
        counts: dict = {}
        for row, label in zip(graph.table, graph.dispatch_labels):
            if row[2] * row[3] * row[4]:
                suffix = label.split(":", 1)[1] if ":" in label else label.split(".")[1]
                counts[suffix] = counts.get(suffix, 0) + 1
        return counts
    finally:
        graph.destroy()


async def _block_check(backend, variant: int) -> float:
    r = await attention_block_cases(backend, variant=variant)
    return max(r[256], r[32])


# `bench --browser --cases llama`: whole-model checks on the page's GPU (the GPU machine has no pytest).
CHECKS = {"attention_block_q4": lambda backend: _block_check(backend, 0),
          "attention_block_q8": lambda backend: _block_check(backend, 1)}
