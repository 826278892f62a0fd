"""aten.argmax.default(x, dim=-1, keepdim, out): per-row argmax on the GPU, so decode reads
back a 4-byte token id instead of the whole logits row.

Rows longer than CHUNK_PER_THREAD elements per thread (a 49152-token vocabulary) run in two
dispatches, `partial` over chunks of the row in parallel then `merge`; one workgroup walking
the whole row took ~45 us on an H100, most of a decode step's tail."""
from __future__ import annotations

import struct

from ..graph.registry import register
from .base import Op, numel, reduction_lanes

PARAMS = struct.Struct("<4I")
assert PARAMS.size == 16  # matches `struct Params` in argmax.wgsl
CHUNK_PER_THREAD = 8  # elements each thread of a `partial` workgroup scans
# CPU adapters: a row in this many chunks at most. Each workgroup's reduction costs SwiftShader a
# round of barriers over all its SIMD groups, so a few long chunks beat many short ones (49152
# logits: 192 chunks 1.45-2.04 ms, 4 chunks 0.31-0.42 ms).
CPU_CHUNKS = 4


@register("aten.argmax.default")
class Argmax(Op):
    def validate(self, ctx):
        self.expect_args(4)
        self.x, dim_id, keep_id, self.out = self.args
        x = ctx.tensor(self.name, self.x, "self", dtypes=("float32",))
        if not x.dims or x.dims[-1] == 0:
            raise self.error("needs a non-empty last dim")
        dim = ctx.int(self.name, dim_id, "dim")
        if dim not in (-1, len(x.dims) - 1):
            raise self.error(f"only the last dim is supported, got dim {dim}")
        keep = ctx.bool(self.name, keep_id, "keepdim", default=False)
        want = tuple(x.dims[:-1]) + ((1,) if keep else ())
        self.keep = keep
        out = ctx.tensor(self.name, self.out, "out", dtypes=("int32", "int64"))
        if tuple(out.dims) != want:
            raise self.error(f"out has dims {list(out.dims)}, expected {list(want)}")
        self.width = int(x.dims[-1])
        self.max_rows = numel(x.dims[:-1])
        self.triggers = frozenset([self.x])
        self.part = None

    def build(self, g):
        self.wg = reduction_lanes(g, 256)
        self.params = g.uniforms.alloc(PARAMS.size, self.name)
        bindings = [g.tensor(self.x), g.tensor(self.out), self.params]
        self.d = g.add_dispatch(g.pipelines.get("argmax", WG=self.wg), bindings, self.name)
        per_thread = CHUNK_PER_THREAD
        if getattr(g.backend, "is_cpu", False):
            per_thread = max(per_thread, -(-self.width // (self.wg * CPU_CHUNKS)))
        self.chunk = self.wg * per_thread
        self.chunks = -(-self.width // self.chunk)
        self.d_partial = self.d_merge = None
        if self.chunks > 1:
            self.part = g.backend.create_buffer(self.max_rows * self.chunks * 8, "storage", f"{self.name}:part")
            self.d_partial = g.add_dispatch(g.pipelines.get("argmax", "partial", WG=self.wg),
                                            [bindings[0], None, self.params, self.part], f"{self.name}:partial")
            self.d_merge = g.add_dispatch(g.pipelines.get("argmax", "merge", WG=self.wg),
                                          [None] + bindings[1:] + [self.part], f"{self.name}:merge")

    def destroy(self, g):
        if self.part is not None and not self.part.destroyed:
            g.backend.destroy_buffer(self.part)
        self.part = None

    def configure(self, g):
        dims = g.tensor(self.x).dims
        if dims[-1] != self.width:
            raise self.step_error(f"live row width {dims[-1]} differs from the built width {self.width}")
        rows = numel(dims[:-1])
        self.params.write(PARAMS.pack(rows, self.width, self.chunk, self.chunks))
        if self.d_partial is None:
            g.set_workgroups(self.d, rows)
        else:
            g.set_workgroups(self.d, 0)
            g.set_workgroups(self.d_partial, rows * self.chunks)
            g.set_workgroups(self.d_merge, rows)
        g.set_dims(self.out, tuple(dims[:-1]) + ((1,) if self.keep else ()))
