"""Top-k on the GPU (shaders/topk.wgsl): a logits row's candidates, and sampling from them.

Not ops of the Program: a greedy step never needs them, so they are attached to a built graph
and their dispatches go after a step's table when wanted (`Graph.submit(tail=...)`).

`TopKCandidates`: every chunk of CHUNK logits contributes its K largest (ties: lower id first);
the k <= K largest of the row are always among them, so top-k sampling from these candidates
draws from exactly the distribution the whole row gives (py_engine.sampling.candidate_probs_from).

`TopKSampler`: one more workgroup merges the candidates into the row's top_k and draws a token
with a uniform number the host drew, writing 4 bytes that the next decode step can take as its
input on the GPU (py_engine/token_stream.py): sampling costs no round trip per token.
"""
from __future__ import annotations

import struct

import numpy as np

from ..sampling import SamplingError, SamplingParams
from .base import ceil_div, workgroup_size

PARAMS = struct.Struct("<4I")
assert PARAMS.size == 16  # matches `struct Params` in topk.wgsl
SAMPLE_PARAMS = struct.Struct("<2I4f2I")
assert SAMPLE_PARAMS.size == 32  # matches `struct SampleParams` in topk.wgsl
WG = 256
K = 64
NO_TOKEN = -1  # the sampler's token when the row has NaN / no finite logit (0xffffffff as int32)


class TopKCandidates:
    def __init__(self, graph, logits_vid: int, k: int = K):
        ref = graph.tensor(logits_vid)
        self.width = int(ref.max_dims[-1])
        if int(np.prod(ref.max_dims[:-1])) != 1:
            raise ValueError(f"top-k candidates: logits must be one row, got dims {list(ref.max_dims)}")
        self.wg = min(WG, workgroup_size(graph.limits, WG))
        self.k = min(int(k), 4 * self.wg)
        self.chunks = ceil_div(self.width, 4 * self.wg)
        g = graph
        self.pipe = g.pipelines.get("topk", WG=self.wg, K=self.k)
        self.out = g.backend.create_buffer(self.chunks * self.k * 8, "storage", "topk:out")
        self.params = g.uniforms.alloc(PARAMS.size, "topk")
        self.params.write(PARAMS.pack(self.width, self.chunks, 0, 0))
        self.row = g.side_dispatch(self.pipe, [ref, self.out, self.params], "topk", (self.chunks, 1, 1))
        g.attach(self)

    def destroy(self, g) -> None:
        if not self.out.destroyed:
            g.backend.destroy_buffer(self.out)


def gpu_samplable(params: SamplingParams, max_top_k: int = K) -> bool:
    """Whether the GPU sampler can draw with these parameters: temperature > 0, 1 < top_k <=
    max_top_k, no repetition penalty (it sees only the candidates, not the history)."""
    return not params.greedy and params.repetition_penalty == 1.0 and 0 < params.top_k <= max_top_k


class TopKSampler:
    """Draws the next token on the GPU from the logits a step leaves (top_k <= K, no penalty)."""

    def __init__(self, graph, logits_vid: int):
        self.candidates = TopKCandidates(graph, logits_vid)
        c = self.candidates
        if c.k >= 4 * c.wg:
            raise ValueError(f"top-k sampler: {c.k} candidates leave no room in a {4 * c.wg}-slot workgroup")
        g = graph
        self.token = g.backend.create_buffer(16, "storage", "topk:token")
        self.params = g.uniforms.alloc(SAMPLE_PARAMS.size, "topk:sample")
        pipe = g.pipelines.get("topk", "sample", WG=c.wg, K=c.k)
        row = g.side_dispatch(pipe, [c.out, self.token, self.params], "topk:sample", (1, 1, 1))
        self.rows = np.concatenate([c.row, row])  # Graph.submit(tail=rows)
        g.attach(self)

    @property
    def max_top_k(self) -> int:
        return self.candidates.k

    def check(self, params: SamplingParams) -> None:
        if not gpu_samplable(params, self.max_top_k):
            raise SamplingError(f"GPU sampling needs temperature > 0, 1 < top_k <= {self.max_top_k} and no "
                                f"repetition penalty, got {params}")

    def set_draw(self, params: SamplingParams, u: float) -> None:
        """The parameters (passed by `check` once per stream) and uniform number of the next
        submit that runs `rows` (uniform writes are ordered with submits, so steps already in
        flight keep theirs)."""
        if not 0.0 <= u < 1.0:
            raise SamplingError(f"GPU sampling: uniform number {u} outside [0, 1)")
        u32 = np.float32(u)
        if u32 >= 1.0:  # u just below 1 rounds up in float32
            u32 = np.nextafter(np.float32(1), np.float32(0))
        self.params.write(SAMPLE_PARAMS.pack(self.candidates.chunks * self.candidates.k, params.top_k,
                                             params.temperature, params.top_p, params.min_p, u32, 0, 0))

    def destroy(self, g) -> None:
        if not self.token.destroyed:
            g.backend.destroy_buffer(self.token)
