"""et_vk.apply_rotary_emb.default(xq, xk, freqs_cos, freqs_sin, out_list): interleaved RoPE, fp32.

xq [1, S, Hq, D], xk [1, S, Hkv, D] (Hq != Hkv allowed), freqs [S, D/2] (leading size-1 dims
allowed, e.g. [1, S, D/2]). out_list is a ValueList [xq_out, xk_out]. Two dispatches of one
kernel (one cached pipeline), each with its own params; one configure maps the live S to
both. freqs may hold more live rows than S (a table, or a slice with a larger bound): the
kernel reads the first S rows, as the Vulkan kernel does.
"""
from __future__ import annotations

import struct

from ..graph.dispatch import fold
from ..graph.registry import register
from .base import Op, ceil_div, numel, workgroup_size

PARAMS = struct.Struct("<4I")
assert PARAMS.size == 16  # matches `struct Params` in rope.wgsl


@register("et_vk.apply_rotary_emb.default")
class ApplyRotaryEmb(Op):
    def validate(self, ctx):
        self.expect_args(5)
        self.xq, self.xk, self.cos, self.sin, out_list = self.args
        self.xq_out, self.xk_out = ctx.value_list(self.name, out_list, "out_list [xq_out, xk_out]", length=2)
        self.check_rope(ctx, ((self.xq_out, "xq_out"), (self.xk_out, "xk_out")))

    def check_rope(self, ctx, outs) -> None:
        """Validation shared with the fused variants: xq/xk/freqs, and `outs` ((vid, what) of
        xq's and, when listed, xk's rotated copy) shaped like their inputs."""
        xq = ctx.tensor(self.name, self.xq, "xq", dtypes=("float32",), rank=4)
        xk = ctx.tensor(self.name, self.xk, "xk", dtypes=("float32",), rank=4)
        if xq.dims[0] != 1 or xk.dims[0] != 1:
            raise self.error(f"batch must be 1, got xq {list(xq.dims)} and xk {list(xk.dims)}")
        _, s, self.hq, d = xq.dims
        _, s_k, self.hkv, d_k = xk.dims
        if s_k != s or d_k != d:
            raise self.error(f"xq {list(xq.dims)} and xk {list(xk.dims)} differ in seq len or head_dim")
        if d == 0 or d % 2:
            raise self.error(f"head_dim must be positive and even, got {d}")
        self.head_dim, self.half = d, d // 2
        cos = ctx.tensor(self.name, self.cos, "freqs_cos", dtypes=("float32",))
        sin = ctx.tensor(self.name, self.sin, "freqs_sin", dtypes=("float32",))
        if tuple(cos.dims) != tuple(sin.dims):
            raise self.error(f"freqs_cos {list(cos.dims)} and freqs_sin {list(sin.dims)} differ")
        if len(cos.dims) < 2 or cos.dims[-1] != self.half or any(x != 1 for x in cos.dims[:-2]):
            raise self.error(f"freqs must be [S, {self.half}] (leading size-1 dims allowed), got {list(cos.dims)}")
        if cos.dims[-2] < s:
            raise self.error(f"freqs hold {cos.dims[-2]} rows, fewer than the seq len bound {s}")
        for (vid, what), want in zip(outs, (xq.dims, xk.dims)):
            ctx.tensor(self.name, vid, what, dtypes=("float32",))
            self.same_dims(ctx, vid, want, what)
        # Both dispatches at the largest S must fit the device before anything is allocated.
        self.wg = workgroup_size(ctx.limits)
        for h, what in ((self.hq, "xq"), (self.hkv, "xk")):
            try:
                fold(ceil_div(s * h * self.half, self.wg), ctx.limits)
            except ValueError as e:
                raise self.error(f"{what} dispatch: {e}") from None
        self.triggers = frozenset([self.xq, self.xk, self.cos, self.sin])

    def build(self, g):
        pipe = g.pipelines.get("rope", WG=self.wg)  # the same index for both dispatches
        cos, sin = g.tensor(self.cos), g.tensor(self.sin)
        self.parts = []
        for x, out, heads, tag in ((self.xq, self.xq_out, self.hq, "xq"), (self.xk, self.xk_out, self.hkv, "xk")):
            params = g.uniforms.alloc(PARAMS.size, f"{self.name}:{tag}")
            d = g.add_dispatch(pipe, [g.tensor(x), cos, sin, g.tensor(out), params], f"{self.name}:{tag}")
            self.parts.append((x, out, heads, params, d))

    def live_seq_len(self, g) -> int:
        """S from the live dims, after checking that only S changed and the freqs cover it."""
        q_dims, k_dims = g.tensor(self.xq).dims, g.tensor(self.xk).dims
        s = q_dims[1]
        if k_dims[1] != s:
            raise self.step_error(f"live seq len of xq ({s}) and xk ({k_dims[1]}) differ")
        if q_dims[2:] != (self.hq, self.head_dim) or k_dims[2:] != (self.hkv, self.head_dim):
            raise self.step_error(f"live xq {list(q_dims)} / xk {list(k_dims)}: only the seq len may change")
        f_dims = g.tensor(self.cos).dims
        if g.tensor(self.sin).dims != f_dims:
            raise self.step_error(f"live freqs_cos {list(f_dims)} and freqs_sin "
                                  f"{list(g.tensor(self.sin).dims)} differ")
        rows = numel(f_dims[:-1])
        if rows < s:
            raise self.step_error(f"freqs have {rows} live rows, fewer than the seq len {s}")
        return s

    def configure(self, g):
        s = self.live_seq_len(g)
        for x, out, heads, params, d in self.parts:
            n_pairs = s * heads * self.half
            params.write(PARAMS.pack(n_pairs, heads, self.half, 0))
            g.set_workgroups(d, ceil_div(n_pairs, self.wg))
            g.set_dims(out, (1, s, heads, self.head_dim))
