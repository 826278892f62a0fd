"""Fused GGUF linears (shaders/fused_linear.wgsl), emitted by py_engine.passes:

py_engine.linear_gguf_multi.default(x[..., K], weight u8 [N0+N1(+N2), row_bytes], ggml_type,
    splits IntList [N0, N1(, N2)][, bias], outs ValueList [out0[..., N0], out1[..., N1](, out2)])
  Several linears of one input in one dispatch: the weight holds the rows of each linear's
  weight one after another (the pass concatenates them); output j gets its own tensor. The
  optional bias (float32 [N0+N1(+N2)]) holds each linear's bias likewise (outputs stay last).

py_engine.linear_gguf_swiglu.default(x[..., K], weight u8 [2F, row_bytes], ggml_type, out[..., F])
  out = silu(x @ Wg.T) * (x @ Wu.T) with weight = [Wg; Wu]: the gate and up linears, the
  sigmoid and the two muls of a llama FFN in one dispatch.

Like linear_gguf, each records a GEMV dispatch (M == 1, decode) and a tiled one (M > 1,
prefill; none on CPU adapters, whose GEMV takes every M); the live M picks one and the other gets
0 workgroups. The dot products run in the same order as linear_gguf's kernels, so results match
the unfused ops bit for bit.
"""
from __future__ import annotations

import struct

from ..graph.pipelines import subgroup_lanes
from ..graph.registry import register
from ..loaders.gguf import ggml_type_name
from . import quant_kernels  # CPU_GEMM read at build, so `--set ops.quant_kernels.CPU_GEMM=0` reaches it
from .base import Op, ceil_div, numel
from .fused_add_rms_norm import AddRmsNorm
from .linear_gguf import gguf_layout
from .quant_kernels import (FMT_REPACKED, GPU_GEMV, PARAMS, check_dispatch, cpu_gemm_shape, cpu_gemm_workgroups,
                            device_layout, fused_gemv_shape, matmul_workgroups, params_bytes, tiled_dispatch,
                            uses_gemv, weight_buffer)

SHADER = "fused_linear"
SPLIT = struct.Struct("<4I")
assert SPLIT.size == 16  # matches `struct Split` in fused_linear.wgsl
def gemv_cols(shape, norm: bool = False) -> int:
    """Weight rows per GEMV workgroup: with TPR = 1 (CPU adapters) each thread streams R rows;
    otherwise, and in the *_norm entries, each TPR group takes one row."""
    return shape.wg * shape.r if shape.tpr == 1 and not norm else shape.wg // shape.tpr


def swiglu_workgroups(m: int, f: int, shape=GPU_GEMV, norm: bool = False, mma: bool = False) -> tuple:
    """(gemv, tiled) workgroup counts for m activation rows and f outputs; one of them is 0.
    A GEMV workgroup covers gemv_cols outputs with TPR = 1 (each thread its gate and up rows),
    else half as many (gate and up rows in separate thread groups)."""
    if m == 0 or f == 0:
        return 0, 0
    if uses_gemv(m, shape, norm):
        per_wg = gemv_cols(shape, norm) // (1 if shape.tpr == 1 and not norm else 2)
        return m * ceil_div(f, per_wg), 0
    tm, tn = quant_kernels.tile_shape(mma)
    return 0, ceil_div(m, tm) * ceil_div(f, tn // 2)


class _FusedGgufLinear(Op):
    """Shared validation and resize hook; subclasses set `self.outs` [(vid, n)], `self.n_total`,
    `self.split` (the Split uniform's n0, n1), the entry point names and `self.workgroups`."""

    N_PREFIX = 0  # arguments before the linear's own (x, weight, ...)
    bias = None   # a two- or three-way linear's concatenated biases (read by BIAS=1 pipelines)

    def linear_args(self, n: int) -> tuple:
        """The linear's n arguments, x first. The folded-norm ops (_PreNorm) start with
        add_rms_norm's 7, whose last, norm_out, is their x."""
        self.expect_args(self.N_PREFIX + n)
        return self.args[self.N_PREFIX:]

    def check_x_and_weight(self, ctx, weight_id: int, type_id: int) -> int:
        x = ctx.tensor(self.name, self.x, "input", dtypes=("float32",))
        if not x.dims or int(x.dims[-1]) == 0:
            raise self.error(f"input must have a nonzero last dim, got dims {list(x.dims)}")
        self.x_dims = tuple(int(d) for d in x.dims)
        self.layout = gguf_layout(self, ctx, weight_id, type_id)
        if self.layout.width != self.x_dims[-1]:
            raise self.error(f"input K={self.x_dims[-1]} differs from the weight's K={self.layout.width} "
                             f"({self.layout.row_bytes} bytes per row of {ggml_type_name(self.layout.fmt % FMT_REPACKED)})")
        return self.layout.rows

    def check_outs(self, ctx) -> None:
        for i, (vid, n) in enumerate(self.outs):
            ctx.tensor(self.name, vid, f"out {i}", dtypes=("float32",))
            self.same_dims(ctx, vid, self.x_dims[:-1] + (n,), f"out {i}")
        check_dispatch(self, ctx, max(self.workgroups(numel(self.x_dims[:-1]))), "the matmul")
        self.triggers = frozenset([self.x])

    def repacked_ids(self) -> frozenset:
        return frozenset([self.weight]) if self.layout.repacked else frozenset()

    def build(self, g):
        self.layout = device_layout(g.backend, self.layout)
        fmt = self.layout.fmt
        self.shape = fused_gemv_shape(g.backend, self.n_total)
        if self.shape.tpr == 1 and not self.layout.records:
            self.shape = GPU_GEMV  # *_cpu entries read records only: other formats take the GPUs' entries
        self.params = g.uniforms.alloc(PARAMS.size, self.name)
        split = self.split_slot = g.uniforms.alloc(SPLIT.size, f"{self.name}:split")
        split.write(SPLIT.pack(*self.split, 0, 0))
        w = weight_buffer(g, self.layout, self.weight)
        # Binding 2 (scales) is read only by ExecuTorch's 4-bit formats, never here: the weight
        # stands in, or a biased linear's biases, which its BIAS=1 pipelines read there.
        bias = {"BIAS": 1} if self.bias is not None else {}
        sc = g.tensor(self.bias) if self.bias is not None else w
        x = g.tensor(self.x)
        buffers = [x, w, sc, self.params, split] + [g.tensor(v) for v, _ in self.outs]
        pad = [None] * (8 - len(buffers))
        self.d_tiled = None  # CPU shapes run every M on their own kernels: no tiled pipeline to compile
        self.d_gemm = None
        self.mma = False
        if self.shape.tpr == 1:
            # *_cpu entry points read x as vec4s at binding 8 and the weight as records at 15, 16;
            # gemm*_cpu take prompts, four activation rows per thread.
            cpu_buffers = [None, None, sc if bias else None] + buffers[3:] + pad + [x] + [None] * 6 + [w, w]
            gemv = g.pipelines.get(SHADER, f"{self.gemv_entry}_cpu", FMT=fmt, WG=self.shape.wg, R=self.shape.r, **bias)
            self.d_gemv = g.add_dispatch(gemv, cpu_buffers, f"{self.name}:gemv")
            self.gemm_shape = cpu_gemm_shape(g.backend, self.n_total)
            if quant_kernels.CPU_GEMM and numel(self.x_dims[:-1]) > 1:  # prompts can come
                entry, shape = self.gemv_entry.replace("gemv", "gemm") + "_cpu", self.gemm_shape
                self.d_gemm = g.defer_dispatch(
                    lambda: g.pipelines.get(SHADER, entry, FMT=fmt, WG=shape.wg, R=shape.r, **bias),
                    cpu_buffers, f"{self.name}:gemm", self.d_gemv)
            return
        gemv = g.pipelines.get(SHADER, self.gemv_entry, FMT=fmt, WG=self.shape.wg, TPR=self.shape.tpr,
                               SG=subgroup_lanes(g.backend, self.shape.tpr), **bias)
        # gemv entry points also read x and the weight as vec4s at bindings 8, 9.
        self.d_gemv = g.add_dispatch(gemv, buffers + pad + [x, w], f"{self.name}:gemv")
        # the *_mma entries also read x as vec4s (binding 8)
        self.d_tiled, self.mma = tiled_dispatch(g, SHADER, self.tiled_entry, self.layout, buffers,
                                                [None] + buffers[1:] + pad + [x], self.name, **bias)

    def configure(self, g):
        dims = g.tensor(self.x).dims
        if dims[-1] != self.layout.width:
            raise self.step_error(f"live input K {dims[-1]} differs from the weight's K {self.layout.width}")
        m = numel(dims[:-1])
        self.params.write(params_bytes(self.layout, m, self.n_total, False))
        gemv, tiled = self.workgroups(m, self.shape, mma=self.mma)
        if self.d_gemm is not None:
            gemm = cpu_gemm_workgroups(m, self.n_total, self.gemm_shape)  # SwiGLU: n_total = F, R gate + R up rows
            g.set_workgroups(self.d_gemm, gemm)
            gemv = 0 if gemm else gemv
        g.set_workgroups(self.d_gemv, gemv)
        if self.d_tiled is not None:
            g.set_workgroups(self.d_tiled, tiled)
        for vid, n in self.outs:
            g.set_dims(vid, tuple(dims[:-1]) + (n,))


@register("py_engine.linear_gguf_multi.default")
class LinearGgufMulti(_FusedGgufLinear):
    def validate(self, ctx):
        n_args = 6 if len(self.args) == self.N_PREFIX + 6 else 5  # the biases before outs, or none
        self.x, self.weight, type_id, splits_id, *bias, outs_id = self.linear_args(n_args)
        rows = self.check_x_and_weight(ctx, self.weight, type_id)
        if bias:
            self.bias = bias[0]
            ctx.tensor(self.name, self.bias, "bias", dtypes=("float32",))
            self.same_dims(ctx, self.bias, (rows,), "bias")
        splits = ctx.int_list(self.name, splits_id, "splits")
        if len(splits) not in (2, 3) or any(n <= 0 for n in splits):
            raise self.error(f"splits must be 2 or 3 positive row counts, got {list(splits)}")
        if sum(splits) != rows:
            raise self.error(f"splits {list(splits)} add up to {sum(splits)}, the weight has {rows} rows")
        outs = ctx.value_list(self.name, outs_id, "outs", length=len(splits))
        self.outs = list(zip(outs, splits))
        self.n_total = rows
        self.split = (splits[0], splits[1])
        self.gemv_entry, self.tiled_entry = f"gemv{len(splits)}", f"tiled{len(splits)}"
        self.check_outs(ctx)

    def workgroups(self, m: int, shape=GPU_GEMV, norm: bool = False, mma: bool = False) -> tuple:
        if m == 0 or self.n_total == 0:
            return 0, 0
        if uses_gemv(m, shape, norm):
            return m * ceil_div(self.n_total, gemv_cols(shape, norm)), 0
        return matmul_workgroups(m, self.n_total, mma=mma)


@register("py_engine.linear_gguf_swiglu.default")
class LinearGgufSwiglu(_FusedGgufLinear):
    def validate(self, ctx):
        self.x, self.weight, type_id, out = self.linear_args(4)
        rows = self.check_x_and_weight(ctx, self.weight, type_id)
        if rows % 2:
            raise self.error(f"weight must hold gate and up rows (an even count), got {rows}")
        f = rows // 2
        self.outs = [(out, f)]
        self.n_total = f
        self.split = (f, 0)
        self.gemv_entry, self.tiled_entry = "gemv_swiglu", "tiled_swiglu"
        self.check_outs(ctx)

    def workgroups(self, m: int, shape=GPU_GEMV, norm: bool = False, mma: bool = False) -> tuple:
        return swiglu_workgroups(m, self.n_total, shape, norm, mma)


# The widest input (K) whose add + RMSNorm is folded into the linear's GEMV (0: any). Every
# workgroup redoes the norm over K: on the H100 the 1B-shaped model's folded SwiGLU GEMV (K 2,048,
# 2,048 workgroups) ran at 375 GB/s. `--set ops.fused_linear.FOLD_NORM_MAX_K=1024` runs the norm on
# its own above that, to compare (not measured yet).
FOLD_NORM_MAX_K = 0

NORM_PARAMS = struct.Struct("<ff2I")
assert NORM_PARAMS.size == 16  # matches `struct NormParams` in fused_linear.wgsl


class _PreNorm:
    """A fused linear whose input is add_rms_norm's norm_out, with that op folded in:
    args = (a, b, alpha, norm_weight, eps, sum_out, norm_out) + the linear's args after x.

    Prefill (and any device the fused kernel does not fit) runs add_rms_norm's own dispatch,
    then the linear reading norm_out. A decode step (M = 1, repacked weights) runs one
    `*_norm` GEMV whose workgroups each redo the add + RMSNorm of the row in workgroup memory
    (576 floats for SmolLM2: cheaper than a dispatch of its own); the first also writes
    sum_out. norm_out then stays stale: the pass only folds a norm_out nothing else reads."""

    N_PREFIX = 6  # a, b, alpha, norm weight, eps, sum_out; then norm_out (the linear's x), ...

    def validate(self, ctx):
        if len(self.args) < 8:
            raise self.error(f"expected add_rms_norm's 7 arguments and the linear's, got {len(self.args)}")
        self.norm = AddRmsNorm(ctx, f"{self.name}:norm", self.args[:7])
        super().validate(ctx)
        self.triggers = frozenset([self.norm.a, self.norm.b])
        k = self.layout.width
        # Storage buffers of the folded kernel: w, w4, a, b, norm weight, sum_out, the outputs
        # and any biases.
        storage = 6 + len(self.outs) + (self.bias is not None)
        self.fold_norm = (self.layout.repacked and k % 32 == 0 and (not FOLD_NORM_MAX_K or k <= FOLD_NORM_MAX_K)
                          and storage <= ctx.limits.max_storage_buffers_per_stage)

    def build(self, g):
        self.norm.build(g)
        super().build(g)
        self.vl = self.norm.wg  # add_rms_norm's lanes: its reduction order
        self.d_norm_gemv = None
        shared = (self.shape.wg + self.layout.width + self.vl) * 4  # red, xn, ssq
        # The *_norm GEMVs read the repacked layout with TPR lanes per row: not on CPU adapters.
        if self.fold_norm and not self.layout.records and shared <= g.limits.max_workgroup_storage_size:
            biased = self.bias is not None
            pipe = g.pipelines.get(SHADER, f"{self.gemv_entry}_norm", FMT=self.layout.fmt, WG=self.shape.wg,
                                   TPR=self.shape.tpr, VL=self.vl, KV4=self.layout.width // 4,
                                   SG=subgroup_lanes(g.backend, min(self.shape.tpr, self.vl)),
                                   **({"BIAS": 1} if biased else {}))
            nparams = g.uniforms.alloc(NORM_PARAMS.size, f"{self.name}:norm")
            nparams.write(NORM_PARAMS.pack(self.norm.eps, self.norm.alpha, 0, 0))
            w = weight_buffer(g, self.layout, self.weight)
            outs = [g.tensor(v) for v, _ in self.outs]
            t = g.tensor
            buffers = ([None, w, t(self.bias) if biased else None, self.params, self.split_slot] + outs
                       + [None] * (3 - len(outs))
                       + [None, w, t(self.norm.a), t(self.norm.b), t(self.norm.w), t(self.norm.sum_out), nparams])
            self.norm_buffers = buffers  # py_engine.linear_gguf_multi_norm_rope binds them too
            self.d_norm_gemv = g.add_dispatch(pipe, buffers, f"{self.name}:gemv_norm")

    def configure(self, g):
        self.norm.configure(g)
        super().configure(g)
        if self.d_norm_gemv is None:
            return
        m = numel(g.tensor(self.x).dims[:-1])
        gemv, _ = self.workgroups(m, self.shape, norm=True)
        # Decode: the folded kernel does the norm and the linear; the two-dispatch path idles.
        g.set_workgroups(self.d_norm_gemv, gemv)
        if gemv:
            g.set_workgroups(self.norm.d, 0)
            g.set_workgroups(self.d_gemv, 0)


@register("py_engine.linear_gguf_multi_norm.default")
class LinearGgufMultiNorm(_PreNorm, LinearGgufMulti):
    pass


@register("py_engine.linear_gguf_swiglu_norm.default")
class LinearGgufSwigluNorm(_PreNorm, LinearGgufSwiglu):
    pass
