"""The GEMV kernels in each of their shapes: each adapter gets some (CPU Vulkan: whole rows per
thread; GPUs: 32 lanes per row, or 4 lanes x 4 rows for a vocabulary head), so all of them run
here whatever this machine's adapter is. The GPU shapes run twice: lane sums finished by
subgroup shuffles (as on GPUs with subgroups) and all in workgroup memory; with them, and in
the norm and argmax cases below, reductions run over a GPU's lane count."""
import asyncio

import numpy as np
import pytest

from py_engine.graph import pipelines
from py_engine.ops import argmax, base, fused_linear, quant_kernels
from py_engine.testing import foundation_cases, fusion_cases, quant_cases
from py_engine.testing.harness import run_case

GEMV_CASES = sorted(n for n in quant_cases.CASES if "gguf" in n or "q4gsw" in n or "qcs4w" in n)
FUSED_CASES = sorted(fusion_cases.CASES)


CPU_GEMV = quant_kernels.GemvShape(8, 1, 16)  # a CPU shape (TPR = 1) with 16 rows per thread
SHAPES = {"cpu": CPU_GEMV, "gpu": quant_kernels.GPU_GEMV,
          "gpu_narrow": quant_kernels.GPU_GEMV_NARROW, "gpu_wide": quant_kernels.GPU_GEMV_WIDE}
# (shape, reduction): the CPU shape has one lane per row, so nothing to reduce. The fused linears
# take the shape without a row count: CPU_GEMV or GPU_GEMV only.
VARIANTS = ["cpu"] + [f"{s}-{r}" for s in sorted(SHAPES) if s != "cpu" for r in ("subgroups", "tree")]
FUSED_VARIANTS = ["cpu", "gpu-subgroups", "gpu-tree"]


def _use(backend, monkeypatch, variant):
    shape, _, reduce = variant.partition("-")
    chosen = SHAPES[shape]
    monkeypatch.setattr(quant_kernels, "gemv_shape", lambda backend, rows=0: chosen)  # fused ones too
    # GPU shapes with a GPU's norm reductions too (up to 256 lanes; this CPU adapter takes 32).
    monkeypatch.setattr(base, "REDUCTION_LANES_CPU", 32 if shape == "cpu" else 256)
    monkeypatch.setattr(pipelines, "SUBGROUP_REDUCE", reduce != "tree")
    if reduce == "subgroups":
        assert backend.subgroup_min_size >= 2, (
            f"this adapter ({backend.adapter_info}) offers no subgroups: the subgroup reductions go untested")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", GEMV_CASES)
def test_gemv_case_in_every_shape(native_backend, monkeypatch, variant, name):
    _use(native_backend, monkeypatch, variant)
    asyncio.run(run_case(native_backend, quant_cases.CASES[name](), f"{name} ({variant})"))


@pytest.mark.parametrize("variant", FUSED_VARIANTS)
@pytest.mark.parametrize("name", FUSED_CASES)
def test_fused_case_in_both_shapes(native_backend, monkeypatch, variant, name):
    _use(native_backend, monkeypatch, variant)
    asyncio.run(run_case(native_backend, fusion_cases.CASES[name](), f"{name} ({variant})"))


@pytest.mark.parametrize("name", sorted(n for n in foundation_cases.CASES if "rms_norm" in n or "argmax" in n))
def test_reduction_case_with_gpu_lanes(native_backend, monkeypatch, name):
    # The norms and argmax as GPUs run them: 256 threads (this CPU adapter takes 32), and argmax
    # rows in chunks of 8 elements per thread (this CPU adapter takes 4 chunks per row).
    monkeypatch.setattr(base, "REDUCTION_LANES_CPU", 256)
    monkeypatch.setattr(argmax, "CPU_CHUNKS", 1 << 30)
    asyncio.run(run_case(native_backend, foundation_cases.CASES[name](), f"{name} (256 lanes)"))


def test_kernel_choice_by_rows():
    """GPUs run the GEMV for a decode row and the tiled kernel for a prompt; CPU shapes (TPR = 1)
    run the GEMV for every row count, except the GEMVs with a folded norm (one row each)."""
    cpu, gpu = CPU_GEMV, quant_kernels.GPU_GEMV_NARROW
    assert quant_kernels.matmul_workgroups(1, 576, gpu) == (576, 0)
    assert quant_kernels.matmul_workgroups(16, 576, gpu) == (0, 1 * 9)
    assert quant_kernels.matmul_workgroups(1, 576, cpu) == (5, 0)
    assert quant_kernels.matmul_workgroups(16, 576, cpu) == (16 * 5, 0)
    assert fused_linear.swiglu_workgroups(16, 1536, cpu) == (16 * 12, 0)
    assert fused_linear.swiglu_workgroups(16, 1536, cpu, norm=True)[0] == 0
    assert fused_linear.swiglu_workgroups(16, 1536, quant_kernels.GPU_GEMV)[0] == 0


def test_matrix_unit_tiles_by_shape_and_device(native_backend, monkeypatch):
    """The *_mma entries are chosen only when switched on, on a device with f16 subgroup matrices
    in subgroups of 32 (mma_f16: never here, whose adapters have none) and for K in whole steps
    of 32; their tiles are MI x NJ pieces of 16 x 16 (SwiGLU tiles: half the columns)."""
    layout = quant_kernels.WeightLayout(fmt=35, rows=576, width=576, row_bytes=360)
    assert not quant_kernels.uses_mma(native_backend, layout)  # lavapipe: mma_f16 is False
    monkeypatch.setattr(native_backend, "mma_f16", True)
    assert not quant_kernels.uses_mma(native_backend, layout)  # switched off by default
    monkeypatch.setattr(quant_kernels, "MMA", True)
    assert quant_kernels.uses_mma(native_backend, layout)
    assert not quant_kernels.uses_mma(native_backend, quant_kernels.WeightLayout(fmt=0, rows=8, width=40, row_bytes=160))
    gpu = quant_kernels.GPU_GEMV
    assert quant_kernels.matmul_workgroups(100, 576, gpu, mma=True) == (0, 4 * 9)  # 32 x 64 tiles
    assert fused_linear.swiglu_workgroups(100, 1536, gpu, mma=True) == (0, 4 * 48)
    monkeypatch.setattr(quant_kernels, "MMA_MI", 1)
    monkeypatch.setattr(quant_kernels, "MMA_NJ", 2)
    assert quant_kernels.matmul_workgroups(100, 576, gpu, mma=True) == (0, 7 * 18)  # 16 x 32 tiles
    assert fused_linear.swiglu_workgroups(100, 1536, gpu, mma=True) == (0, 7 * 96)
    assert quant_kernels.matmul_workgroups(1, 576, gpu, mma=True)[1] == 0  # decode rows: the GEMV


def test_matrix_unit_graphs_get_f16_input_tolerances():
    """Cases whose graph built *_mma pipelines are checked with at least the harness's f16-input
    tolerances; exact comparisons and other graphs keep the case's own."""
    from py_engine.testing import harness

    class G:
        def __init__(self, entries):
            self.pipelines = type("P", (), {"entries": lambda _self: set(entries)})()

    spec = harness.CaseSpec(None, [], atol=2e-4, rtol=1e-4)
    assert harness.tolerance(G({"gemv", "tiled"}), spec) == (2e-4, 1e-4)
    assert harness.tolerance(G({"gemv", "tiled2_mma"}), spec) == (harness.MMA_ATOL, harness.MMA_RTOL)
    assert harness.tolerance(G({"tiled_mma"}), harness.CaseSpec(None, [], atol="exact")) == ("exact", 0.0)


def test_cpu_shape_by_rows_and_cores():
    """CPU adapters: workgroups of one SIMD row of threads with up to CPU_MAX_R rows each, as
    few workgroups as that allows in multiples of the cores (SmolLM2's 576 rows on SwiftShader
    with 2 cores: 2 workgroups of 4 threads x 72 rows)."""
    shape, cap = quant_kernels.cpu_gemv_shape, quant_kernels.CPU_MAX_R
    assert shape(576, 2, 4) == quant_kernels.GemvShape(4, 1, 72)
    assert shape(576, 2, 8) == quant_kernels.GemvShape(8, 1, 36)
    assert shape(1536, 2, 4).r == 192 and shape(49152, 2, 4).r == 192
    assert shape(576, 8, 4).r == 18 and shape(1, 8, 4).r == 1 and shape(0, 2, 4).r == 1
    for rows in (1, 70, 576, 960, 1536, 49152):
        for cores in (1, 2, 3, 8, 16):
            for lanes in (4, 8):
                r = shape(rows, cores, lanes).r
                k = quant_kernels.ceil_div(rows, lanes * r * cores)  # workgroups: at most k x cores
                assert 1 <= r <= cap and r == quant_kernels.ceil_div(rows, lanes * cores * k), (rows, cores, r)
                assert k == 1 or quant_kernels.ceil_div(rows, lanes * cores * (k - 1)) > cap, (rows, cores, r)


@pytest.mark.parametrize("variant", ["cpu", "gpu-tree"])
def test_tiled_dispatches_only_for_gpu_shapes(native_backend, monkeypatch, variant):
    """CPU shapes take every M on the GEMV, so their linears build no tiled pipeline (less to
    compile at load); GPU shapes build both. A plain linear and a fused SwiGLU, each run at
    M = 17 and M = 1 (or S = 17, 1, 3, 17) by its case."""
    from py_engine.graph import Graph

    _use(native_backend, monkeypatch, variant)

    async def run():
        labels = []
        for case in (quant_cases.CASES["linear_gguf_q4_1"], fusion_cases.CASES["swiglu_q4_0_dynamic_s"]):
            g = await Graph.build(case().program, native_backend)
            labels += g.dispatch_labels
            g.destroy()
        return labels

    labels = asyncio.run(run())
    tiled = [x for x in labels if x.endswith(":tiled")]
    assert any(x.endswith(":gemv") for x in labels), labels
    assert (not tiled) if variant == "cpu" else len(tiled) == 2, labels


def test_cpu_prompts_take_the_four_row_kernels(native_backend, monkeypatch):
    """CPU shapes run a prompt (M > 1) on gemm*_cpu, four activation rows per thread (the GEMV
    idles), and a decode row on the GEMV: a plain linear at M = 17, 1 and a fused SwiGLU at
    S = 17, 1, 3, 17, with the workgroup counts each should get (the prompt kernels' shape has
    at most CPU_GEMM_MAX_R rows per thread)."""
    from py_engine.graph import Graph

    _use(native_backend, monkeypatch, "cpu")

    async def run():
        seen = []
        for case in (quant_cases.CASES["linear_gguf_q4_1"], fusion_cases.CASES["swiglu_q4_0_dynamic_s"]):
            spec = case()
            g = await Graph.build(spec.program, native_backend)
            try:
                op = g.ops[-1]
                kernel = getattr(op, "mm", op)  # the plain linear's QuantMatmul, or the fused op
                assert kernel.gemm_shape.r <= quant_kernels.CPU_GEMM_MAX_R, kernel.gemm_shape
                n = spec.steps[0].expected[0].shape[-1]
                for st in spec.steps:
                    await g.step(st.inputs, read=[])
                    m = int(np.prod(st.inputs[0].shape[:-1]))
                    seen.append((m, quant_kernels.ceil_div(n, kernel.gemm_shape.cols),
                                 quant_kernels.ceil_div(n, kernel.shape.cols),
                                 int(g.table[kernel.d_gemm, 2]), int(g.table[kernel.d_gemv, 2])))
            finally:
                g.destroy()
        return seen

    seen = asyncio.run(run())
    assert sorted({m for m, *_ in seen}) == [1, 3, 17], seen
    for m, gemm_cols, gemv_cols, gemm, gemv in seen:
        want = (quant_kernels.ceil_div(m, 4) * gemm_cols, 0) if m > 1 else (0, gemv_cols)
        assert (gemm, gemv) == want, (m, gemm, gemv, want)


def test_cpu_prompt_kernels_compile_after_the_load(native_backend, monkeypatch):
    """The prompt kernels are left out of Graph.build (no gemm pipeline in the cache), made by
    the first submit that needs one, and then also used by a shape configured before that (its
    snapshot): steps M = 1, 3, 1, 3, 17 of one graph, each against numpy."""
    from py_engine.graph import Graph
    from py_engine.testing.harness import compare

    _use(native_backend, monkeypatch, "cpu")
    spec = quant_cases._linear_gguf("q4_1", (1, 3, 1, 3, 17), 96, 70, True, 21)

    async def run():
        g = await Graph.build(spec.program, native_backend)
        try:
            made = lambda: {key[1] for key in g.pipelines._index}  # noqa: E731
            assert "gemm_cpu" not in made(), made()
            for i, st in enumerate(spec.steps):
                (got,) = await g.step(st.inputs)
                compare(f"step {i}", got, st.expected[0], spec.atol, spec.rtol)
                assert ("gemm_cpu" in made()) == (i >= 1), (i, made())
            mm = g.ops[-1].mm
            assert g.table[mm.d_gemm, 0] != g.table[mm.d_gemv, 0]
        finally:
            g.destroy()

    asyncio.run(run())


@pytest.mark.parametrize("cpu", [True, False])
def test_argmax_chunks_per_adapter(native_backend, monkeypatch, cpu):
    """A 49152-logit row: CPU adapters scan it in CPU_CHUNKS long chunks, GPUs in chunks of 8
    elements per thread (24 with 256 threads); both give the reference's index."""
    from py_engine.graph import Graph

    monkeypatch.setattr(native_backend, "is_cpu", cpu)
    spec = foundation_cases.CASES["argmax_vocab_row"]()

    async def run():
        g = await Graph.build(spec.program, native_backend)
        try:
            op = g.ops[0]
            assert op.chunks == (argmax.CPU_CHUNKS if cpu else 49152 // (op.wg * argmax.CHUNK_PER_THREAD)), op.chunks
        finally:
            g.destroy()
        await run_case(native_backend, spec, f"argmax (cpu={cpu})")

    asyncio.run(run())
