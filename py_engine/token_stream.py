"""Decoding that never waits for the host: the token goes from step to step on the GPU.

The token of a step is its argmax (greedy) or a draw of the GPU sampler (py_engine/ops/topk.py,
with a uniform number the host drew from the generation's seeded generator). Each decode step's
submit starts with a 4-byte copy of the last step's token into the token input and ends with a
copy of its own token into a small mappable buffer, `group` consecutive tokens to a buffer (one
map per group, not per token; the prompt's token has a buffer of its own, so the first token is
not held back by the steps after it). The host therefore does not need a step's token to submit
the next one, so up to `depth` steps are in flight while the host waits for the oldest group's
map: the readback round trip overlaps GPU work instead of adding to it.

Positions: the prompt fills 0..P-1. Step i (i >= 1) feeds token i at position P+i-1 and
produces token i+1; the prompt's submit produces token 1. A token counts as fed (in the KV
cache, `runner.pos` past it) once the consumer asks for the token after it, which is what
`LlamaRunner.feed` would have done one token at a time. Steps run ahead speculatively; when
the consumer stops (end of turn, stop string, abort), their cache rows past `runner.pos`
are simply overwritten later, as after `rewind`.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np

from .ops.topk import NO_TOKEN
from .sampling import SamplingError

DEFAULT_DEPTH = 8  # steps in flight; GPU work per step (~1 ms) vs. a map round trip (~1-3 ms)
DEFAULT_GROUP = 4  # tokens per readback buffer (per map); a stop is seen at most this late
TOKEN_BYTES = 4


class _Group:
    """A readback buffer receiving the tokens of consecutive steps (`count` so far)."""

    __slots__ = ("buf", "count", "mapping", "pending")

    def __init__(self, buf):
        self.buf, self.count, self.mapping, self.pending = buf, 0, False, None

    def start_map(self, backend) -> None:
        self.mapping = True
        self.pending = backend.start_map(self.buf)


class TokenStream:
    """Async iterator of the token ids after a prompt; use `LlamaRunner.stream`. `sampler`: a
    py_engine.sampling.Sampler whose parameters the GPU sampler takes (None: greedy)."""

    def __init__(self, runner, max_new: int, depth: int = DEFAULT_DEPTH, group: int = DEFAULT_GROUP,
                 sampler=None, eager: bool = True):
        if max_new < 1:
            raise ValueError(f"token stream: max_new must be at least 1, got {max_new}")
        if depth < 1 or group < 1:
            raise ValueError(f"token stream: depth and group must be at least 1, got {depth}, {group}")
        self.runner = runner
        self.graph = runner.graph
        self.max_new = int(max_new)
        self.depth = int(depth)
        self.group = min(int(group), self.depth)
        lp = runner.lp
        self.sampler = sampler
        self.eager = eager  # submit decode steps before token 1 is read (else only after it)
        self._gpu_sampler = runner.gpu_sampler(sampler.params) if sampler is not None else None
        # Where each step's token is: the sampler's draw, or the argmax op's output.
        self._token = self._gpu_sampler.token if sampler is not None else self.graph.tensor(lp.next_token_id).buffer
        self._tokens = self.graph.tensor(lp.tokens_id).buffer
        self._tokens_id = lp.tokens_id
        self._feed = [(self._token, 0, self._tokens, 0, TOKEN_BYTES)]
        self._one = np.zeros((1, 1), np.int32)  # live dims of a decode step (value comes from the GPU)
        self._groups: deque = deque()  # oldest first; only the last may still take tokens
        self._ready: deque = deque()   # tokens read back, not yet yielded
        self.start_pos = runner.pos
        self.produced = 0   # tokens whose producing submit is made
        self.yielded = 0
        self.closed = False
        self.host_seconds: list = []     # prepare + submit time of each decode step
        self.prepare_seconds: list = []  # the prepare part of it (Python resize hooks)
        self.wait_seconds = 0.0          # time spent waiting for token readbacks (GPU still busy)
        self.span_wait_seconds = None    # wait_seconds at the end of timed_decode's span

    async def start(self, ids) -> "TokenStream":
        """Submit the prompt (its last chunk also produces token 1)."""
        try:
            self.runner._submit_chunks(ids, after=self._readback_copy(), tail=self._draw_rows())
            # Token 1 alone in its buffer, mapped at once: it shows when the prompt is done, not
            # after the decode steps that would share its buffer.
            self._groups[-1].start_map(self.graph.backend)
        except BaseException:
            await self.aclose()
            raise
        self.start_pos = self.runner.pos  # token 1 is not fed yet
        self.produced = 1
        return self

    def _draw_rows(self):
        """The sampler's dispatches for the next submit, given that draw's uniform number (None: greedy)."""
        if self.sampler is None:
            return None
        self._gpu_sampler.set_draw(self.sampler.params, self.sampler.next_uniform())
        return self._gpu_sampler.rows

    def _readback_copy(self):
        """The copy of this submit's token into the open group (opened here when needed)."""
        g = self._groups[-1] if self._groups and not self._groups[-1].mapping else None
        if g is None:
            g = _Group(self.graph.take_readback(self.group * TOKEN_BYTES))
            self._groups.append(g)
        copy = [(self._token, 0, g.buf, g.count * TOKEN_BYTES, TOKEN_BYTES)]
        g.count += 1
        return copy

    def _map_if_full(self) -> None:
        """After the submit that filled it (a buffer with a map pending may not be submitted)."""
        g = self._groups[-1]
        if g.count == self.group and not g.mapping:
            g.start_map(self.graph.backend)

    def _can_submit(self, i: int) -> bool:
        """Step i produces token i+1 from position start_pos+i-1."""
        return i + 1 <= self.max_new and self.start_pos + i - 1 < self.runner.context

    def _submit_step(self) -> None:
        i = self.produced
        t = time.perf_counter()
        staged = self.graph.prepare([self._one, np.array([self.start_pos + i - 1], np.int32)])
        self.prepare_seconds.append(time.perf_counter() - t)
        self.graph.submit(staged, gpu_inputs=(self._tokens_id,), before=self._feed, after=self._readback_copy(),
                          tail=self._draw_rows())
        self._map_if_full()
        self.host_seconds.append(time.perf_counter() - t)
        self.produced += 1

    def _close_groups(self) -> None:
        for g in self._groups:
            if not g.mapping:
                g.start_map(self.graph.backend)

    async def _read_group(self) -> None:
        g = self._groups.popleft()
        t = time.perf_counter()
        try:
            data = await self.graph.backend.finish_map(g.buf, g.pending, g.count * TOKEN_BYTES)
        finally:
            self.wait_seconds += time.perf_counter() - t
            self.graph.give_readback(g.buf)
        self._ready.extend(int(t) for t in np.frombuffer(data, np.int32))

    def __aiter__(self):
        return self

    async def __anext__(self) -> int:
        if self.closed:
            raise StopAsyncIteration
        if self.yielded:
            # The consumer wants token k+1, so token k goes into the cache (step k feeds it).
            k = self.yielded
            if not self._can_submit(k):
                await self.aclose()
                raise StopAsyncIteration
            self.runner.pos = self.start_pos + k
        while (self.eager or self.yielded) and self.produced - self.yielded < self.depth \
                and self._can_submit(self.produced):
            self._submit_step()
        if not self._ready:
            if not self._groups[0].mapping:
                self._close_groups()  # the consumer is waiting: map the partial group now
            try:
                await self._read_group()
            except BaseException:
                await self.aclose()
                raise
        tid = self._ready.popleft()
        if tid == NO_TOKEN:
            await self.aclose()
            raise SamplingError("sampling: the logits have a NaN or no finite value (GPU sampler)")
        self.yielded += 1
        return tid

    async def next(self):
        """The next token id, or None when the stream has ended (max_new or the context)."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return None

    async def aclose(self) -> None:
        """Finish the maps still in flight (their buffers go back to the pool); the runner's
        position stays after the last fed token. Safe to call twice."""
        if self.closed:
            return
        self.closed = True
        self._close_groups()
        errors = []
        while self._groups:
            try:
                await self._read_group()
            except Exception as e:  # a lost device: keep draining, report once
                errors.append(e)
        self._ready.clear()
        if self.runner._stream is self:
            self.runner._stream = None
        if errors:
            raise errors[0]


async def timed_decode(runner, prompt, n: int, *, depth: int = DEFAULT_DEPTH, group: int = DEFAULT_GROUP,
                       after_token=None, sampler=None) -> tuple:
    """(seconds, stream) for n tokens after `prompt` at the runner's position (greedy, or drawn
    by the GPU sampler with `sampler`'s parameters), for the benchmarks. The prompt's token is read
    back first; the clock starts then, before any decode step is submitted, so every timed token's
    work happens inside the timed span. The stream comes back closed, with its per-step host
    timings. `after_token`: an async callable awaited after each timed token (the browser bench
    reads GPU timestamps there, with depth 1)."""
    first = await runner.feed(prompt, greedy=True)
    t = time.perf_counter()
    stream = await runner.stream([first], max_new=n, depth=depth, group=group, sampler=sampler)
    try:
        for _ in range(n):
            await stream.next()
            if after_token is not None:
                await after_token()
        dt = time.perf_counter() - t
        stream.span_wait_seconds = stream.wait_seconds  # aclose's drain comes after the span
        return dt, stream
    finally:
        await stream.aclose()
