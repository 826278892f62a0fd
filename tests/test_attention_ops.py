"""The KV-cache attention ops (update_cache, sdpa_with_kv_cache) in CPython on the native (wgpu) backend."""
import asyncio

import numpy as np
import pytest

import py_engine.ops.sdpa as sdpa
from py_engine.graph import Graph
from py_engine.testing.attention_cases import CASES, ERROR_CASES
from py_engine.testing.harness import run_case, run_error_case


def _err(msg):
    return AssertionError(msg)


def _decode_700_inputs(pos: int) -> list:
    """q, k, v of one decode step of sdpa_split_kv_decode_700 (SmolLM2's heads) at `pos`."""
    r = np.random.default_rng(0)
    return [r.standard_normal(s, dtype=np.float32) for s in ((1, 1, 9, 64), (1, 1, 3, 64), (1, 1, 3, 64))] + [pos]


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(native_backend, name):
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_error_case(native_backend, name):
    asyncio.run(run_error_case(native_backend, ERROR_CASES[name](), name))


def test_one_cache_write_dispatch(native_backend):
    """k and v are written by one dispatch: the write, the decode of G rows, sdpa_attend's blocks
    and the merge of key splits (both left out on CPU adapters with their own decode and prefill
    kernels), the GPU decode kernel (not built on CPU adapters) and the prefill kernel: one
    pipeline and one dispatch each."""
    spec = CASES["sdpa_dynamic_seq"]()

    async def run():
        g = await Graph.build(spec.program, native_backend)
        try:
            stats = g.memory_stats()
            op = g.ops[0]
            n = 2 + 2 * op.blocks_and_splits + op.use_fast + op.use_prefill
            assert op.blocks_and_splits == (not native_backend.is_cpu or not (op.use_prefill or op.lanes))
            assert (stats["pipelines"], stats["dispatches"]) == (n, n), stats
        finally:
            g.destroy()

    asyncio.run(run())


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("sdpa_")))
def test_case_cpu_decode_without_lanes(native_backend, monkeypatch, name):
    """The same sdpa cases as CPU adapters without subgroups of head_dim / 16 lanes run them:
    decode steps on sdpa_decode_cpu.wgsl, prompts on sdpa_prefill.wgsl (test_case runs both on
    sdpa_decode_lanes.wgsl where the subgroups hold the lanes)."""
    monkeypatch.setattr(sdpa, "DECODE_LANES", False)
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("sdpa_")))
def test_case_other_decode_kernels(native_backend, monkeypatch, name):
    """The same sdpa cases with decode steps on sdpa_decode.wgsl where the shapes fit (GPUs' path;
    CPU adapters such as this one decode on sdpa_decode_lanes.wgsl or sdpa_decode_cpu.wgsl,
    test_case and test_case_cpu_decode_without_lanes), and on
    sdpa_attend.wgsl (the path of G > 4 on CPU adapters and G > 8 on GPUs). The first run also
    uses the GPUs' merge workgroup size."""
    monkeypatch.setattr(sdpa, "FAST_DECODE_ON_CPU", True)
    monkeypatch.setattr(sdpa, "MERGE_WG_CPU", sdpa.MERGE_WG)
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]
    monkeypatch.setattr(sdpa.SdpaWithKvCache, "decode_kernel_wg", lambda self, ctx: 0)
    monkeypatch.setattr(sdpa, "CPU_DECODE", False)
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.fixture
def cpu_adapter(native_backend, monkeypatch):
    """This machine's adapter taken for a CPU adapter (it is one here; elsewhere it may not be)."""
    monkeypatch.setattr(native_backend, "is_cpu", True)
    monkeypatch.setattr(sdpa, "FAST_DECODE_ON_CPU", False)
    return native_backend


def test_plan_cpu_decode_one_workgroup_per_kv_head(cpu_adapter):
    """On a CPU adapter a decode step runs sdpa_decode_lanes.wgsl (with subgroups of head_dim /
    16 lanes; here 64 / 16 = 4) or sdpa_decode_cpu.wgsl: one workgroup per kv head at every
    context (no key splits, no merge dispatch, nothing of sdpa_attend.wgsl built); G > 4 (here
    32) keeps sdpa_attend.wgsl."""
    async def run():
        g = await Graph.build(CASES["sdpa_split_kv_decode_700"]().program, cpu_adapter)
        try:
            op = g.ops[0]
            assert op.cpu_decode and not op.use_fast
            lanes = cpu_adapter.subgroup_min_size >= 4
            assert op.decode_lanes(cpu_adapter) == lanes, cpu_adapter.subgroup_min_size
            assert g.dispatch_labels[op.d_decode].endswith(":decode_lanes" if lanes else ":decode_cpu")
            for pos in (0, 63, 64, 699):
                plan = op.plan(1, pos, _err)
                assert (plan.decode_workgroups, plan.attend_workgroups, plan.merge_workgroups) == (3, 0, 0)
            await g.step(_decode_700_inputs(699))
            assert g.table[op.d_decode, 2] == 3
            # With sdpa_prefill.wgsl for prompts, or sdpa_decode_lanes.wgsl for every step, no step
            # needs sdpa_attend's blocks or key splits.
            assert op.use_prefill != lanes and (op.d_attend, op.d_merge, op.scratch) == (None, None, None)
            if lanes:  # prompts too: a workgroup per (position, kv head)
                plan = op.plan(5, 40, _err)
                assert (plan.decode_workgroups, plan.prefill_workgroups, plan.attend_workgroups) == (15, 0, 0)
        finally:
            g.destroy()
        g = await Graph.build(CASES["sdpa_wide_group_decode"]().program, cpu_adapter)
        try:
            assert not g.ops[0].cpu_decode  # 32 rows per kv head: decoded in sdpa_attend.wgsl's blocks
        finally:
            g.destroy()

    asyncio.run(run())


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.startswith("sdpa_")))
def test_case_other_prefill_kernels(native_backend, monkeypatch, name):
    """The same sdpa cases with prefill chunks on sdpa_prefill.wgsl as GPUs run it (several key
    lanes per row, merged; this CPU adapter runs one thread per row), then on sdpa_attend.wgsl
    (the path of heads that do not fit sdpa_prefill.wgsl: head_dim over 64 or not a multiple of 4)."""
    monkeypatch.setattr(sdpa, "PREFILL_CPU", sdpa.PREFILL_GPU)
    monkeypatch.setattr(sdpa, "DECODE_LANES", False)  # else CPU adapters' prompts take sdpa_decode_lanes.wgsl
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]
    monkeypatch.setattr(sdpa.SdpaWithKvCache, "prefill_kernel_shape", lambda self, g: None)
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


def test_plan_prefill_kernel_blocks(native_backend, monkeypatch):
    """Prefill chunks run sdpa_prefill.wgsl in blocks of its RW rows per kv head (the attend and
    merge dispatches idle); a decode step goes back to the decode path."""
    monkeypatch.setattr(sdpa, "DECODE_LANES", False)  # CPU adapters' prompts would take the lanes kernel

    async def run():
        g = await Graph.build(CASES["sdpa_prefill_blocks_nonzero_pos"]().program, native_backend)
        try:
            op = g.ops[0]
            assert op.use_prefill
            r = np.random.default_rng(0)
            for s, pos in ((40, 37), (1, 77)):
                await g.step([r.standard_normal(d, dtype=np.float32) for d in ((1, s, 9, 64), (1, s, 3, 64),
                                                                             (1, s, 3, 64))] + [pos])
                want = -(-s * 3 // op.prefill_shape[0]) * 3 if s > 1 else 0
                assert g.table[op.d_prefill, 2] == want, (s, g.table[op.d_prefill])
                if s > 1 and op.blocks_and_splits:
                    assert g.table[op.d_attend, 2] == 0 and g.table[op.d_merge, 2] == 0
                decode = (g.table[op.d_decode, 2] if op.d_decode is not None else 0) + \
                    (g.table[op.d_fast, 2] if op.d_fast is not None else 0)
                assert (decode > 0) == (s == 1), (s, decode)
        finally:
            g.destroy()

    asyncio.run(run())


def test_plan_fast_decode_splits(native_backend, monkeypatch):
    """sdpa_decode.wgsl: up to 2 tiles of 32 keys in one workgroup per kv head (no merge), longer
    contexts in splits of whole tiles (at most 64); the dispatch table follows the live position."""
    monkeypatch.setattr(sdpa, "FAST_DECODE_ON_CPU", True)

    async def run():
        g = await Graph.build(CASES["sdpa_split_kv_decode_700"]().program, native_backend)
        try:
            op = g.ops[0]
            assert op.use_fast == (sdpa.FAST_DECODE_ON_CPU or not native_backend.is_cpu)
            short = op.plan(1, 63, _err)  # 64 keys = 2 tiles
            assert (short.fast_workgroups, short.decode_workgroups, short.merge_workgroups) == (3, 0, 0)
            mid = op.plan(1, 64, _err)  # 65 keys = 3 tiles: 3 splits of one tile
            assert (mid.fast_workgroups, mid.merge_workgroups) == (3 * 3, 9)
            long = op.plan(1, 699, _err)  # 22 tiles: 22 splits
            assert (long.fast_workgroups, long.attend_workgroups, long.merge_workgroups) == (22 * 3, 0, 9)
            await g.step(_decode_700_inputs(699))
            assert (g.table[op.d_fast, 2], g.table[op.d_decode, 2], g.table[op.d_merge, 2]) == (66, 0, 9)
            assert op.split_cap == 22  # scratch for one split per tile of the 704-row cache
        finally:
            g.destroy()

    asyncio.run(run())


def test_plan_splits_follow_live_context(native_backend, monkeypatch):
    """Decode on sdpa_attend.wgsl splits the keys into 64-key chunks (merge on), short contexts and
    prefill blocks do not; the dispatch table follows the live (S, input_pos) after a step."""
    monkeypatch.setattr(sdpa.SdpaWithKvCache, "decode_kernel_wg", lambda self, ctx: 0)
    monkeypatch.setattr(sdpa.SdpaWithKvCache, "prefill_kernel_shape", lambda self, g: None)
    monkeypatch.setattr(sdpa, "CPU_DECODE", False)

    async def run():
        g = await Graph.build(CASES["sdpa_split_kv_decode_700"]().program, native_backend)
        try:
            op = g.ops[0]
            long = op.plan(1, 699, _err)
            assert (long.decode_workgroups, long.attend_workgroups, long.merge_workgroups) == (11 * 3, 0, 9)
            short = op.plan(1, 10, _err)
            assert (short.decode_workgroups, short.attend_workgroups, short.merge_workgroups) == (3, 0, 0)
            await g.step(_decode_700_inputs(699))
            assert (g.table[op.d_decode, 2], g.table[op.d_attend, 2], g.table[op.d_merge, 2]) == (33, 0, 9)
        finally:
            g.destroy()
        g = await Graph.build(CASES["sdpa_prefill_blocks_nonzero_pos"]().program, native_backend)
        try:
            rows_per_block = sdpa.BLOCK_ROWS
            prefill = g.ops[0].plan(40, 37, _err)  # 40 positions x 3 q heads per kv head, 3 kv heads
            assert (prefill.attend_workgroups, prefill.decode_workgroups, prefill.merge_workgroups) == (
                -(-40 * 3 // rows_per_block) * 3, 0, 0)
            small = g.ops[0].plan(5, 100, _err)  # 15 rows; 105 keys split 2 ways when they fit one block
            if 15 <= rows_per_block:
                assert (small.attend_workgroups, small.merge_workgroups) == (2 * 3, 5 * 9)
            else:
                assert (small.attend_workgroups, small.merge_workgroups) == (-(-15 // rows_per_block) * 3, 0)
        finally:
            g.destroy()

    asyncio.run(run())


def test_step_needing_left_out_kernels_is_refused(cpu_adapter, monkeypatch):
    """Where the build left sdpa_attend's blocks and the merge out, a step whose plan needs them
    (here: prefill with the prefill kernel switched off after the build) is an error, not a
    silent skip."""
    from py_engine.graph.errors import StepError

    monkeypatch.setattr(sdpa, "DECODE_LANES", False)  # prompts on sdpa_prefill.wgsl, not the lanes kernel

    async def run():
        g = await Graph.build(CASES["sdpa_split_kv_small_prefill"]().program, cpu_adapter)
        try:
            op = g.ops[0]
            assert not op.blocks_and_splits
            for member in op.layers.members:
                member.use_prefill = False
            monkeypatch.setattr(sdpa, "_PLANS", {})
            r = np.random.default_rng(0)
            with pytest.raises(StepError, match="left out"):
                await g.step([r.standard_normal(s, dtype=np.float32) for s in ((1, 5, 9, 64), (1, 5, 3, 64),
                                                                             (1, 5, 3, 64))] + [100])
        finally:
            g.destroy()

    asyncio.run(run())
