"""Top-k candidates of a logits row on the GPU (shaders/topk.wgsl), for host-side sampling.

Not an op of the Program: a greedy step never needs it, so `TopKCandidates` is attached to a
built graph and dispatched on demand after a step (one more small submit). Every chunk of
CHUNK logits contributes its K largest (ties: lower id first); the k <= K largest of the row
are always among them, so sampling with top-k <= K from these candidates draws from exactly
the distribution the whole row gives (py_engine.sampling.candidate_probs_from). The host
reads chunks * K * 8 bytes (~24 KB for a 49k vocabulary) instead of the whole row (196 KB).
"""
from __future__ import annotations

import struct

import numpy as np

from .base import ceil_div, workgroup_size

PARAMS = struct.Struct("<4I")
assert PARAMS.size == 16  # matches `struct Params` in topk.wgsl
WG = 256
K = 64


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
        entries = [(0, ref.buffer, 0, None), (1, self.out, 0, None),
                   (2, self.params.buffer, self.params.offset, self.params.size)]
        self.group = g.backend.create_bind_group(g.pipelines.pipelines[self.pipe], entries, "topk")
        self.graph = g
        g.attach(self)

    async def read(self):
        """(ids int64, values float32) of the candidates of the logits the last step left."""
        g = self.graph
        g.uniforms.flush()
        table = np.array([[self.pipe, 0, self.chunks, 1, 1]], dtype=np.int32)
        g.backend.run(g.pipelines.pipelines, [self.group], table)
        raw = np.frombuffer(await g.backend.read_buffer(self.out), np.uint32).reshape(-1, 2)
        ids = raw[:, 1].astype(np.int64)
        keep = ids < self.width  # chunk padding past the row end
        return ids[keep], raw[keep, 0].view(np.float32)

    def destroy(self, g) -> None:
        if not self.out.destroyed:
            g.backend.destroy_buffer(self.out)
        g.backend.release_bind_group(self.group)
