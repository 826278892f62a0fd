"""The word-copy kernel (copy.wgsl) shared by view_copy, prepack and clone."""
from __future__ import annotations

import struct

from .base import ceil_div, workgroup_size

COPY_PARAMS = struct.Struct("<4I")
assert COPY_PARAMS.size == 16  # matches `struct Params` in copy.wgsl


class CopyKernel:
    """One dispatch of copy.wgsl from one tensor to another, word by word."""

    def __init__(self, g, src, dst, label):
        self.wg = workgroup_size(g.limits)
        pipe = g.pipelines.get("copy", WG=self.wg)
        self.params = g.uniforms.alloc(COPY_PARAMS.size, label)
        self.d = g.add_dispatch(pipe, [src, dst, self.params], label)

    def set(self, g, nbytes: int, src_offset: int = 0, dst_offset: int = 0) -> None:
        words = ceil_div(nbytes, 4)
        self.params.write(COPY_PARAMS.pack(words, src_offset, dst_offset, 0))
        g.set_workgroups(self.d, ceil_div(words, self.wg))
