"""Prefill + decode over a built llama graph, with streaming, stop conditions and abort.

`LlamaRunner` owns the graph and the position: `feed(ids)` runs the ids at the current
position (prefill in chunks of up to max_prefill, decode as S = 1) and returns the logits of
the last one. `rewind(n)` moves back to position n: the cache rows past n are simply
overwritten later, because attention only reads rows 0..pos+s.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .graph.aliasing import INPLACE_ARGS
from .ops.topk import TopKSampler, gpu_samplable
from .sampling import Sampler, SamplingParams
from .token_stream import DEFAULT_DEPTH, DEFAULT_GROUP, TokenStream
from .tokenizer import StreamDecoder


class ContextFullError(ValueError):
    """More tokens than the KV cache holds."""


class LlamaRunner:
    def __init__(self, graph, lp):
        self.graph = graph
        self.lp = lp
        self.context = graph.tensors[_first_cache(lp)].max_dims[1]
        self.max_prefill = lp.max_prefill
        self.pos = 0
        self.prefilled_tokens = 0  # tokens fed in chunks of more than one (for stats and tests)
        self._stream = None       # the open TokenStream, closed before anything else is fed
        self._gpu_sampler = None  # TopKSampler, made on first use

    def rewind(self, pos: int) -> None:
        if self._stream is not None:
            raise RuntimeError("rewind: a greedy stream is open (await runner.close_stream() first)")
        if not 0 <= pos <= self.pos:
            raise ValueError(f"rewind: position {pos} outside 0..{self.pos}")
        self.pos = pos

    async def feed(self, ids, greedy: bool = False):
        """Run `ids` at the current position. Returns the float32 logits [vocab] of the last
        id; with `greedy` only their argmax (computed on the GPU: 4 bytes read back)."""
        await self.close_stream()
        if not greedy:
            self._submit_chunks(ids)
            return (await self.graph.read(self.lp.logits_id)).reshape(-1)
        # The token's 4 bytes are copied out by the last chunk's own submit: no second submit.
        g = self.graph
        buf = g.take_readback(4)
        try:
            self._submit_chunks(ids, after=[(g.tensor(self.lp.next_token_id).buffer, 0, buf, 0, 4)])
            data = await g.backend.finish_map(buf, g.backend.start_map(buf), 4)
        finally:
            g.give_readback(buf)
        return int(np.frombuffer(data, np.int32)[0])

    async def stream(self, ids, max_new: int, depth: int = DEFAULT_DEPTH, group: int = DEFAULT_GROUP,
                     sampler: Sampler | None = None, eager: bool = True) -> TokenStream:
        """Feed `ids`, then iterate tokens (greedy, or drawn on the GPU with `sampler`'s
        parameters and uniform numbers) with the next token fed on the GPU, up to `depth` steps
        in flight and `group` tokens per readback (see py_engine.token_stream). At most
        `max_new` tokens. `eager=False`: no decode step is submitted before the first token is
        read (the prompt's time and the decode's are then measured apart)."""
        await self.close_stream()
        self._check_ids(ids)
        stream = TokenStream(self, max_new, depth, group, sampler, eager)
        self._stream = stream
        return await stream.start(ids)

    def gpu_sampler(self, params: SamplingParams) -> TopKSampler:
        """The GPU sampler of this graph (made on first use), once `params` are checked for it."""
        if self._gpu_sampler is None:
            self._gpu_sampler = TopKSampler(self.graph, self.lp.logits_id)
        self._gpu_sampler.check(params)
        return self._gpu_sampler

    async def close_stream(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()

    def _check_ids(self, ids) -> list:
        ids = list(ids)
        if not ids:
            raise ValueError("feed: no tokens")
        if self.pos + len(ids) > self.context:
            raise ContextFullError(f"context full: position {self.pos} + {len(ids)} tokens exceeds the "
                                   f"KV cache of {self.context} positions")
        vocab = self.lp.config.vocab
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"feed: token id {bad[0]} outside the vocabulary (0..{vocab - 1})")
        return ids

    def _submit_chunks(self, ids, after=(), tail=None) -> None:
        """Submit `ids` from the current position in chunks of up to max_prefill; `after`
        (buffer copies) and `tail` (dispatch rows) go with the last chunk."""
        ids = self._check_ids(ids)
        for start in range(0, len(ids), self.max_prefill):
            chunk = ids[start:start + self.max_prefill]
            tokens = np.asarray(chunk, dtype=np.int32).reshape(1, -1)
            last = start + self.max_prefill >= len(ids)
            self.graph.submit(self.graph.prepare([tokens, np.array([self.pos], dtype=np.int32)]),
                              after=after if last else (), tail=tail if last else None)
            self.pos += len(chunk)
            if len(chunk) > 1:
                self.prefilled_tokens += len(chunk)


def _first_cache(lp) -> int:
    """Value id of the first layer's K cache (its dims give the context length)."""
    for call in lp.program.chain:
        cache_args = INPLACE_ARGS.get(call.name)  # the ops that write caches: K cache first
        if cache_args:
            return call.args[cache_args[0]]
    raise ValueError("llama program has no KV cache")


@dataclass
class GenerationSettings:
    max_tokens: int = 256
    temperature: float = 0.7
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = 0
    stop: tuple = ()  # stop strings

    def sampling(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                              min_p=self.min_p, repetition_penalty=self.repetition_penalty).validate()


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    prefilled_tokens: int = 0
    generated_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0  # from the first token (the prompt's) to the last
    decode_steps: int = 0        # tokens that arrived in that time (a stop token included)
    finish_reason: str = ""
    token_ids: list = field(default_factory=list)

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_steps / self.decode_seconds if self.decode_seconds > 0 else 0.0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prefilled_tokens / self.prefill_seconds if self.prefill_seconds > 0 else 0.0


def gpu_sampling(runner: LlamaRunner, params) -> bool:
    """Whether sampled tokens are drawn on the GPU (py_engine/ops/topk.py) and streamed: top-k
    sampling without a penalty. Not on CPU adapters: there the GPU sort costs ~80 ms a step on
    lavapipe and reading the whole row 0.5 ms, in steps of ~200 ms where a round trip hardly
    matters."""
    return gpu_samplable(params) and not getattr(runner.graph.backend, "is_cpu", False)


async def generate_tokens(runner: LlamaRunner, tokenizer, new_ids, settings: GenerationSettings,
                          stats: GenerationStats, history=(), should_stop=lambda: False):
    """Feed `new_ids`, then sample until a stop condition; yields text pieces as they
    become valid UTF-8. `history` is the ids already in the cache (for the repetition
    penalty). stats.finish_reason: 'stop' (EOS / end of turn / stop string), 'length',
    'abort' or 'context'."""
    sampler = Sampler(settings.sampling(), settings.seed)
    decoder = StreamDecoder(tokenizer, skip_special=True)
    stop_ids = tokenizer.stop_ids
    previous = list(history) + list(new_ids)
    stats.prompt_tokens = len(new_ids)
    gpu_greedy = sampler.params.greedy and sampler.params.repetition_penalty == 1.0
    on_gpu = gpu_sampling(runner, sampler.params)

    async def sample_after(ids):
        return sampler.sample(await runner.feed(ids), previous)
    t0 = time.perf_counter()
    stream = None
    if gpu_greedy or on_gpu:
        # Tokens flow on the GPU (argmax, or the GPU sampler), several steps in flight.
        # eager=False: the first token is read before decode steps are queued behind the prompt,
        # so prefill_seconds is the prompt's and the decode rate counts only decode steps (on
        # adapters that run work as it is submitted, eager steps would land in the prefill).
        stream = await runner.stream(new_ids, max_new=max(1, settings.max_tokens),
                                     sampler=sampler if on_gpu else None, eager=False)
        tid = await stream.next()
    else:
        tid = await sample_after(new_ids)
    stats.prefilled_tokens = len(new_ids)
    stats.prefill_seconds = time.perf_counter() - t0
    text = ""
    t1 = time.perf_counter()
    pending_from = 0  # text before this index has been yielded
    hold = max((len(s) for s in settings.stop), default=0)
    cut_by_stop_string = False
    try:
        while True:
            if should_stop():
                stats.finish_reason = "abort"
                break
            if tid is None:  # the stream ran out of cache (checked below first, so rare)
                stats.finish_reason = "context"
                break
            if tid in stop_ids:
                stats.finish_reason = "stop"
                break
            stats.token_ids.append(tid)
            previous.append(tid)
            stats.generated_tokens += 1
            text += decoder.push(tid)
            hit = _find_stop(text, settings.stop, pending_from)
            if hit is not None:
                if hit > pending_from:
                    yield text[pending_from:hit]
                stats.finish_reason = "stop"
                cut_by_stop_string = True
                break
            # Hold back what could be the start of a stop string.
            safe = len(text) - (hold - 1 if hold else 0)
            if safe > pending_from:
                yield text[pending_from:safe]
                pending_from = safe
            if stats.generated_tokens >= settings.max_tokens:
                stats.finish_reason = "length"
                break
            if runner.pos >= runner.context:
                stats.finish_reason = "context"
                break
            if stream is not None:
                tid = await stream.next()
            else:
                tid = await sample_after([tid])
            stats.decode_steps += tid is not None
    finally:
        if stream is not None:
            await stream.aclose()
    stats.decode_seconds = time.perf_counter() - t1
    if not cut_by_stop_string:
        text += decoder.flush()
        if len(text) > pending_from:
            yield text[pending_from:]


def _find_stop(text: str, stops, start: int):
    best = None
    for s in stops:
        i = text.find(s, max(0, start - len(s) + 1))
        if i >= 0 and (best is None or i < best):
            best = i
    return best
