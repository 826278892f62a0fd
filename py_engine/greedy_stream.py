"""Greedy decoding that never waits for the host: the token goes from step to step on the GPU.

Each decode step's submit starts with a 4-byte copy of the last step's argmax (`next_token`)
into the token input and ends with a copy of its own argmax into a small mappable buffer.
The host therefore does not need a step's token to submit the next one, so up to `depth`
steps are in flight while the host waits for the oldest token's map: the per-token readback
round trip overlaps GPU work instead of adding to it.

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

DEFAULT_DEPTH = 4  # steps in flight; GPU work per step (~1 ms) vs. a map round trip (~1-3 ms)
TOKEN_BYTES = 4


class GreedyStream:
    """Async iterator of greedy token ids after a prompt; use `LlamaRunner.greedy_stream`."""

    def __init__(self, runner, max_new: int, depth: int = DEFAULT_DEPTH):
        if max_new < 1:
            raise ValueError(f"greedy stream: max_new must be at least 1, got {max_new}")
        if depth < 1:
            raise ValueError(f"greedy stream: depth must be at least 1, got {depth}")
        self.runner = runner
        self.graph = runner.graph
        self.max_new = int(max_new)
        self.depth = int(depth)
        lp = runner.lp
        self._argmax = self.graph.tensor(lp.next_token_id).buffer
        self._tokens = self.graph.tensor(lp.tokens_id).buffer
        self._tokens_id = lp.tokens_id
        self._one = np.zeros((1, 1), np.int32)  # live dims of a decode step (value comes from the GPU)
        self._pending: deque = deque()  # (readback buffer, pending map) oldest first
        self.start_pos = runner.pos
        self.produced = 0   # tokens whose producing submit is made
        self.yielded = 0
        self.closed = False
        self.host_seconds: list = []     # prepare + submit time of each decode step
        self.prepare_seconds: list = []  # the prepare part of it (Python resize hooks)

    async def start(self, ids) -> "GreedyStream":
        """Submit the prompt (its last chunk also produces token 1)."""
        try:
            self.runner._submit_chunks(ids, after=self._readback_copy())
        except BaseException:
            await self.aclose()
            raise
        self.start_pos = self.runner.pos  # token 1 is not fed yet
        self.produced = 1
        return self

    def _readback_copy(self):
        buf = self.graph.take_readback(TOKEN_BYTES)
        self._pending.append([buf, None])
        return [(self._argmax, 0, buf, 0, TOKEN_BYTES)]

    def _can_submit(self, i: int) -> bool:
        """Step i produces token i+1 from position start_pos+i-1."""
        return i + 1 <= self.max_new and self.start_pos + i - 1 < self.runner.context

    def _submit_step(self) -> None:
        i = self.produced
        t = time.perf_counter()
        staged = self.graph.prepare([self._one, np.array([self.start_pos + i - 1], np.int32)])
        self.prepare_seconds.append(time.perf_counter() - t)
        self.graph.submit(staged, gpu_inputs=(self._tokens_id,),
                          before=[(self._argmax, 0, self._tokens, 0, TOKEN_BYTES)],
                          after=self._readback_copy())
        self.host_seconds.append(time.perf_counter() - t)
        self.produced += 1

    def _start_maps(self) -> None:
        for entry in self._pending:
            if entry[1] is None:
                entry[1] = self.graph.backend.start_map(entry[0])

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
        while len(self._pending) < self.depth and self._can_submit(self.produced):
            self._submit_step()
        self._start_maps()
        buf, pending = self._pending.popleft()
        try:
            data = await self.graph.backend.finish_map(buf, pending, TOKEN_BYTES)
        except BaseException:
            self.graph.give_readback(buf)
            await self.aclose()
            raise
        self.graph.give_readback(buf)
        self.yielded += 1
        return int(np.frombuffer(data, np.int32)[0])

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
        self._start_maps()
        errors = []
        while self._pending:
            buf, pending = self._pending.popleft()
            try:
                await self.graph.backend.finish_map(buf, pending, TOKEN_BYTES)
            except Exception as e:  # a lost device: keep draining, report once
                errors.append(e)
            self.graph.give_readback(buf)
        if self.runner._stream is self:
            self.runner._stream = None
        if errors:
            raise errors[0]
