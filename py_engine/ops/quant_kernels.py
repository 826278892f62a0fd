"""Kernels over packed weight rows (shaders/quant_weights.wgsl), shared by the quantized
linear and embedding op families.

A `WeightLayout` says how row n of a weight tensor is stored (format, byte stride, scale
indexing); `QuantMatmul` records a GEMV dispatch (M == 1, decode) and a tiled one (M > 1,
prefill) and `set_rows` gives the unused one 0 workgroups (CPU adapters: the GEMV for every M and
no tiled dispatch); `QuantGather` gathers rows by index.
Also the common validation and resize hook of the linear ops (`QuantLinearOp`).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from ..graph.context import BuildContext
from ..graph.pipelines import subgroup_lanes
from .base import Op, ceil_div, numel, workgroup_size

SHADER = "quant_weights"
PARAMS = struct.Struct("<12I")
assert PARAMS.size == 48  # matches `struct Params` in quant_weights.wgsl

# Weight formats (the shader's FMT override): GGUF types keep their ggml ids.
FMT_F32, FMT_F16, FMT_Q4_0, FMT_Q4_1, FMT_Q8_0 = 0, 1, 2, 3, 8
FMT_Q4_LOW_EVEN = 16   # q4gsw linear packing: low nibble = even k
FMT_Q4_HIGH_EVEN = 17  # qcs4w / embedding_4bit packing: high nibble = even k
FMT_REPACKED = 32      # + ggml id: GGUF blocks repacked by weight_repack.py (Q4_0, Q4_1, Q8_0)
FMT_RECORDS = 64       # + ggml id: the same blocks as CPU records (weight_repack.repack_records)

CHUNK = 8          # elements the shader dequantizes at a time; 4-bit group sizes are multiples
GEMV_MAX_ROWS = 1  # activation rows up to which the GEMV kernel is used (decode)
# Workgroups of 64 threads: WebGPU guarantees at least 256, so no clamping is needed.
# GEMV: 64 threads, TPR per group of R output columns (each x block loaded once for R rows).
# TPR = 1 (every thread streams R whole rows: the shader's gemv_cpu) is fastest on CPU Vulkan
# (lavapipe, SwiftShader), where per-lane loads dominate; the fused GEMVs (fused_linear.wgsl) do the same.
@dataclass(frozen=True)
class GemvShape:
    """How a GEMV workgroup covers output rows: WG threads, TPR threads per row, R rows each."""
    wg: int
    tpr: int
    r: int

    @property
    def cols(self) -> int:
        return self.wg // self.tpr * self.r


# CPU Vulkan (SwiftShader, lavapipe): each thread streams R whole rows and loads each x block
# once for them, so the larger R, the fewer x loads per weight (SwiftShader, SmolLM2 decode step
# with R = 8 / 16 / 32 / 48 rows per thread: 96.6 / 77.6 / 66.8 / 64.4 ms). R is capped by the
# shader's row arrays and chosen so that the workgroups come in multiples of the CPU's cores
# (SwiftShader runs one workgroup per core at a time): 576 rows on 2 cores are 2 workgroups, not
# 3 (the o-proj / down linears 539 -> 458 us each at 8 threads x 36 rows). A workgroup is one
# SIMD row of threads: 4 on SwiftShader (SSE; 8 threads x 48 rows at most: 55.8-57.4 ms, 4 x 192:
# 51.7-53.0), 8 on lavapipe (256-bit; 4 threads: 53-56 -> 63-64 ms).
CPU_MAX_R = 192  # rows per thread: rows_dot_cpu's arrays


def cpu_gemv_shape(rows: int, cores: int, lanes: int = 8, cap: int = CPU_MAX_R) -> GemvShape:
    """The CPU shape for `rows` output rows: workgroups of `lanes` threads, the fewest of them in
    multiples of `cores` with at most `cap` rows per thread."""
    cores = max(1, cores)
    groups = cores
    while ceil_div(max(rows, 1), lanes * groups) > cap:
        groups += cores
    return GemvShape(lanes, 1, ceil_div(max(rows, 1), lanes * groups))


# GPUs: TPR lanes per row read consecutive blocks, so loads coalesce. Timed on an H100
# (bench_kernels, GPU time of back-to-back dispatches in one pass, us):
#                   576x576  576x1536  49152x576 (Q8_0 head)
#   (256, 32, 2)      5.07     7.00      31.7
#   (32, 32, 1)       4.10     5.31      43.9     one warp per row: best for the layers' matrices
#   (128, 4, 4)      13.4     28.8       15.0     4 lanes x 4 rows: best for the vocabulary head
GPU_GEMV = GemvShape(256, 32, 2)       # the fused linears (their template has no R)
GPU_GEMV_NARROW = GemvShape(32, 32, 1)
GPU_GEMV_WIDE = GemvShape(128, 4, 4)
WIDE_ROWS = 16384  # output rows from which a plain GEMV takes the wide shape


def gemv_shape(backend, rows: int = 0) -> GemvShape:
    """The GEMV shape for this adapter and `rows` output rows (0: the fused linears' GPU shape)."""
    if getattr(backend, "is_cpu", False):
        return cpu_gemv_shape(rows, getattr(backend, "cpu_cores", 1), getattr(backend, "cpu_simd_lanes", 8))
    if not rows:
        return GPU_GEMV
    return GPU_GEMV_WIDE if rows >= WIDE_ROWS else GPU_GEMV_NARROW


def fused_gemv_shape(backend, rows: int) -> GemvShape:
    """The fused linears' shape: the CPU one for their `rows` outputs, else GPU_GEMV."""
    shape = gemv_shape(backend, rows)
    return shape if shape.tpr == 1 else GPU_GEMV


TILE_M, TILE_N = 16, 64         # must match TM / TN of `tiled` (64 threads, 4 x 4 outputs each)
# `PF` of the tiled kernels: load the next K step while multiplying. H100, 512 tokens: 155 -> 82
# us per o-proj/down linear; SwiftShader: prefill at 16 / 32 tokens 4.74 / 5.06 -> 4.10 / 4.21
# tokens/s, so CPU adapters keep loading each step just before it.
TILED_PREFETCH_ON_CPU = False


# Prompts' tiled linears on the matrix units where the adapter has them (backend.mma_f16): the
# `*_mma` entries, a tile of MI x NJ 16 x 16 pieces per workgroup of one subgroup of 32, x and the
# dequantized weights rounded to f16, sums in f32. Off by default, as slower so far: on the H200 a
# 512-token prefill pass took 23.9 ms with 32 x 64 tiles and 18.5 with 16 x 32 tiles and MPF,
# against 12.6 with the f32 tiled kernels (one warp per workgroup: each SM has few to switch
# between while they load and convert). `--set ops.quant_kernels.MMA=1`, with `MMA_MI`,
# `MMA_NJ`, `MMA_PF`.
MMA = False
MMA_MI, MMA_NJ = 2, 4  # 16 x 16 pieces per tile along m (1, 2) and n (2, 4): `MI`, `NJ` of mma_tile
MMA_PF = False         # `MPF`: load the next K step during the multiplies
MMA_SHARED_BYTES = (1280 + 2560) * 2 + 2048 * 4  # mma_tile's xh, wh (f16) and cs (f32), sized for the largest tile


def mma_tile_shape() -> tuple:
    return 16 * MMA_MI, 16 * MMA_NJ


def uses_mma(backend, layout) -> bool:
    """Whether the tiled linears over `layout` run their `*_mma` entries on this device (K a
    multiple of the K step: x is read as vec4s, and whole steps only)."""
    return (MMA and getattr(backend, "mma_f16", False) and layout.width % 32 == 0
            and backend.limits.max_workgroup_storage_size >= MMA_SHARED_BYTES
            and workgroup_size(backend.limits, 32) == 32)


def tile_shape(mma: bool) -> tuple:
    """(rows, columns) of a tiled workgroup's tile: tiled_mma's or the f32 kernels'."""
    return mma_tile_shape() if mma else (TILE_M, TILE_N)


def tiled_dispatch(g, shader: str, entry: str, layout, buffers, mma_buffers, label: str, **switches) -> tuple:
    """The prompts' tiled dispatch of `entry`: its `_mma` variant (binding `mma_buffers`) where
    uses_mma, else the f32 one (binding `buffers`); `switches`: more pipeline keys (BIAS=1).
    Returns (dispatch row, whether mma)."""
    if uses_mma(g.backend, layout):
        pipe = g.pipelines.get(shader, f"{entry}_mma", FMT=layout.fmt, MMA=1, MI=MMA_MI, NJ=MMA_NJ, MPF=int(MMA_PF),
                               **switches)
        return g.add_dispatch(pipe, mma_buffers, f"{label}:tiled"), True
    pipe = g.pipelines.get(shader, entry, FMT=layout.fmt, PF=tiled_prefetch(g.backend), **switches)
    return g.add_dispatch(pipe, buffers, f"{label}:tiled"), False


def tiled_prefetch(backend) -> int:
    """The `PF` override of the tiled kernels on this adapter (1 or 0)."""
    return int(TILED_PREFETCH_ON_CPU or not getattr(backend, "is_cpu", False))


GATHER_WG = 64


@dataclass(frozen=True)
class WeightLayout:
    fmt: int
    rows: int         # N (linear) or V (embedding)
    width: int        # K (linear) or E (embedding): elements per row
    row_bytes: int    # byte stride between rows
    group_size: int = CHUNK  # 4-bit formats: elements per scale (a multiple of CHUNK)
    s_stride_g: int = 0      # scale index = (k // group_size) * s_stride_g + n * s_stride_n
    s_stride_n: int = 0
    q_stride: int = 0        # repacked formats: quant words per row, word offsets of d and m
    d_off: int = 0
    m_off: int = 0

    @property
    def uses_scales(self) -> bool:
        return self.fmt in (FMT_Q4_LOW_EVEN, FMT_Q4_HIGH_EVEN)

    @property
    def repacked(self) -> bool:
        return self.fmt >= FMT_REPACKED

    @property
    def records(self) -> bool:
        return self.fmt >= FMT_RECORDS


def device_layout(backend, layout: WeightLayout) -> WeightLayout:
    """The layout the kernels of this adapter read: with the CPU GEMV shape (CPU adapters)
    repacked GGUF blocks are read as records (q_stride = records per row), else as validated."""
    if gemv_shape(backend).tpr != 1 or not layout.repacked or layout.records:
        return layout
    from .weight_repack import record_count

    t = layout.fmt - FMT_REPACKED
    return replace(layout, fmt=FMT_RECORDS + t, q_stride=record_count(layout.width), d_off=0, m_off=0)


def weight_buffer(g, layout: WeightLayout, weight_id: int):
    """What to bind as the weight: the tensor, or its repacked buffer (shared per tensor and layout)."""
    if not layout.repacked:
        return g.tensor(weight_id)
    from .weight_repack import LAYOUT_KEY, RECORDS_KEY, repack_gguf, repack_records

    if layout.records:
        t = layout.fmt - FMT_RECORDS
        return g.repacked(weight_id, (RECORDS_KEY, t), lambda raw: repack_records(t, raw, layout.rows))
    t = layout.fmt - FMT_REPACKED
    return g.repacked(weight_id, (LAYOUT_KEY, t), lambda raw: repack_gguf(t, raw, layout.rows))


def params_bytes(layout: WeightLayout, m: int, n: int, has_bias: bool) -> bytes:
    """The Params uniform for m activation rows (or indices) and n weight rows."""
    return PARAMS.pack(m, n, layout.width, layout.row_bytes, layout.group_size, layout.s_stride_g,
                       layout.s_stride_n, int(has_bias), layout.q_stride, layout.d_off, layout.m_off, 0)


def check_group_size(op: Op, group_size: int) -> None:
    if group_size <= 0 or group_size % CHUNK:
        raise op.error(f"group_size {group_size} must be a positive multiple of {CHUNK}")


def check_dispatch(op: Op, ctx: BuildContext, total: int, what: str) -> None:
    cap = ctx.limits.max_workgroups_per_dim
    if total > cap * cap:
        raise op.error(f"{what} needs {total} workgroups, more than the device's {cap} x {cap}")


def uses_gemv(m: int, shape: GemvShape, norm: bool = False) -> bool:
    """Whether m activation rows run on the GEMV kernel rather than the tiled one: on GPUs for
    decode rows only; on CPU adapters (TPR = 1) for every m, as their tiled kernels run slower
    than a GEMV per row there (SwiftShader, a 16-token prompt of SmolLM2: linears 9.1 -> 5.7 ms
    each, 1.63 -> 1.08 s of GPU time for the prompt). The GEMVs with a folded norm (`norm`,
    fused_linear.wgsl's *_norm entries) take one activation row per workgroup only."""
    return m <= GEMV_MAX_ROWS or (shape.tpr == 1 and not norm)


# CPU shapes run prompts (M > 1) on the gemm*_cpu entries where the weight is records: four
# activation rows per thread, each record converted once for the four (SwiftShader, Q4_1
# 1536 x 576 at 16 / 64 rows: 3.86-3.93 -> 2.51-3.03 ms / 15.2-15.4 -> 9.7-10.0), at most
# CPU_GEMM_MAX_R rows per thread (their arrays, `GEMM_R` in quant_weights.wgsl: lavapipe took
# 8 s to compile one at 192 rows, 2.2 at 96; at 16 rows 192 ran 2.3 ms, 32 2.9).
GEMM_ROWS = 4
CPU_GEMM_MAX_R = 96
CPU_GEMM = True  # a switch for benchmarks: False builds no prompt kernels (prompts take the GEMV)


def cpu_gemm_shape(backend, rows: int) -> GemvShape:
    """The gemm*_cpu shape for `rows` output rows (as the CPU GEMV's, with fewer rows per thread)."""
    return cpu_gemv_shape(rows, getattr(backend, "cpu_cores", 1), getattr(backend, "cpu_simd_lanes", 8),
                          CPU_GEMM_MAX_R)


def cpu_gemm_workgroups(m: int, n: int, shape: GemvShape) -> int:
    """Workgroups of a gemm*_cpu dispatch for m activation rows (0 for a decode row: the GEMV)."""
    return ceil_div(m, GEMM_ROWS) * ceil_div(n, shape.cols) if m > 1 and n else 0


def matmul_workgroups(m: int, n: int, shape: GemvShape = GPU_GEMV, mma: bool = False) -> tuple:
    """(gemv, tiled) workgroup counts for m activation rows and n outputs; one of them is 0.
    The default shape is the one with the most GEMV workgroups (for validation); `mma`: the
    tiled dispatch is tiled_mma's (mma_tile_shape() per workgroup)."""
    if m == 0 or n == 0:
        return 0, 0
    if uses_gemv(m, shape):
        return m * ceil_div(n, shape.cols), 0
    tm, tn = tile_shape(mma)
    return 0, ceil_div(m, tm) * ceil_div(n, tn)


def _params(layout: WeightLayout, m: int, has_bias: bool) -> bytes:
    return params_bytes(layout, m, layout.rows, has_bias)


class QuantMatmul:
    """out[M, N] = x[M, K] @ dequant(W)[N, K].T (+ bias)."""

    def __init__(self, g, layout: WeightLayout, x, weight, scales, bias, out, label: str, max_rows: int):
        """`max_rows`: the most activation rows a step may bring (1: no prompt kernel to make)."""
        self.layout = layout
        self.has_bias = bias is not None
        self.shape = gemv_shape(g.backend, layout.rows)
        self.params = g.uniforms.alloc(PARAMS.size, label)
        # Unused bindings get a read-only buffer already bound (read-only aliasing is allowed).
        buffers = [x, weight, scales if scales is not None else weight, out, self.params,
                   bias if bias is not None else weight]
        self.d_tiled = None  # CPU shapes run every M on their own kernels: no tiled pipeline to compile
        self.d_gemm = None
        self.mma = False
        if self.shape.tpr == 1:
            # gemv_cpu also binds x as vec4s (binding 6) and the weight as Q4 and Q8_0 records (8, 9).
            gemv = g.pipelines.get(SHADER, "gemv_cpu", FMT=layout.fmt, WG=self.shape.wg, R=self.shape.r)
            self.d_gemv = g.add_dispatch(gemv, buffers + [x, None, weight, weight], f"{label}:gemv")
            shape = self.gemm_shape = cpu_gemm_shape(g.backend, layout.rows)
            if layout.records and CPU_GEMM and max_rows > 1:  # prompts: four activation rows per thread
                self.d_gemm = g.defer_dispatch(
                    lambda: g.pipelines.get(SHADER, "gemm_cpu", FMT=layout.fmt, WG=shape.wg, R=shape.r),
                    [None, None, None] + buffers[3:] + [x, None, weight, weight], f"{label}:gemm", self.d_gemv)
        else:
            gemv = g.pipelines.get(SHADER, "gemv", FMT=layout.fmt, WG=self.shape.wg, TPR=self.shape.tpr,
                                   R=self.shape.r, SG=subgroup_lanes(g.backend, self.shape.tpr))
            # gemv also binds x and the weight as vec4 arrays (bindings 6, 7).
            self.d_gemv = g.add_dispatch(gemv, buffers + [x, weight], f"{label}:gemv")
            # tiled_mma also reads x as vec4s (binding 6)
            self.d_tiled, self.mma = tiled_dispatch(g, SHADER, "tiled", layout, buffers, [None] + buffers[1:] + [x],
                                                    label)

    def set_rows(self, g, m: int) -> None:
        self.params.write(_params(self.layout, m, self.has_bias))
        gemv, tiled = matmul_workgroups(m, self.layout.rows, self.shape, self.mma)
        if self.d_gemm is not None:
            gemm = cpu_gemm_workgroups(m, self.layout.rows, self.gemm_shape)
            g.set_workgroups(self.d_gemm, gemm)
            gemv = 0 if gemm else gemv
        g.set_workgroups(self.d_gemv, gemv)
        if self.d_tiled is not None:
            g.set_workgroups(self.d_tiled, tiled)


class QuantGather:
    """out[I, E] = dequant(W)[indices[I], :]; indices outside [0, V) give zero rows."""

    def __init__(self, g, layout: WeightLayout, indices, weight, scales, out, label: str):
        self.layout = layout
        self.params = g.uniforms.alloc(PARAMS.size, label)
        if layout.records:
            pipe = g.pipelines.get(SHADER, "gather_records", FMT=layout.fmt, WG=GATHER_WG)
            self.d = g.add_dispatch(pipe, [indices, None, None, out, self.params, None, None, None, weight, weight],
                                    label)
            return
        pipe = g.pipelines.get(SHADER, "gather", FMT=layout.fmt, WG=GATHER_WG)
        self.d = g.add_dispatch(pipe, [indices, weight, scales if scales is not None else weight, out,
                                       self.params], label)

    def set_count(self, g, n_indices: int) -> None:
        self.params.write(_params(self.layout, n_indices, False))
        g.set_workgroups(self.d, gather_workgroups(n_indices, self.layout.width))


def gather_workgroups(n_indices: int, width: int) -> int:
    return ceil_div(n_indices * ceil_div(width, CHUNK), GATHER_WG)


class QuantLinearOp(Op):
    """Shared shape of the quantized linears: x[..., K] (float32) -> out[..., N].

    Subclasses set `self.x`, `self.weight`, `self.scales` (or None), `self.bias` (or None),
    `self.out`; their `validate` calls `check_activation` (-> K), checks the weight, then
    `check_bias_and_out` with the weight's layout.
    """

    def check_activation(self, ctx: BuildContext) -> int:
        x = ctx.tensor(self.name, self.x, "input", dtypes=("float32",))
        if not x.dims:
            raise self.error("input must have at least one dim")
        k = int(x.dims[-1])
        if k == 0:
            raise self.error("input has K = 0")
        self.x_dims = tuple(x.dims)
        return k

    def check_bias_and_out(self, ctx: BuildContext, layout: WeightLayout) -> None:
        n = layout.rows
        if self.bias is not None:
            ctx.tensor(self.name, self.bias, "bias", dtypes=("float32",))
            self.same_dims(ctx, self.bias, (n,), "bias")
        ctx.tensor(self.name, self.out, "out", dtypes=("float32",))
        self.same_dims(ctx, self.out, self.x_dims[:-1] + (n,), "out")
        m_max = numel(self.x_dims[:-1])
        check_dispatch(self, ctx, max(matmul_workgroups(m_max, n)), "the matmul")
        self.layout = layout
        self.triggers = frozenset([self.x])

    def repacked_ids(self) -> frozenset:
        return frozenset([self.weight]) if self.layout.repacked else frozenset()

    def build(self, g):
        t = g.tensor
        self.layout = device_layout(g.backend, self.layout)
        self.mm = QuantMatmul(g, self.layout, t(self.x), weight_buffer(g, self.layout, self.weight),
                              t(self.scales) if self.scales is not None else None,
                              t(self.bias) if self.bias is not None else None, t(self.out), self.name,
                              numel(self.x_dims[:-1]))

    def configure(self, g):
        dims = g.tensor(self.x).dims
        if dims[-1] != self.layout.width:
            raise self.step_error(f"live input K {dims[-1]} differs from the weight's K {self.layout.width}")
        self.mm.set_rows(g, numel(dims[:-1]))
        g.set_dims(self.out, tuple(dims[:-1]) + (self.layout.rows,))
