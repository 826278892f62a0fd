"""Every ExecuTorch .pte fixture through PteSession on the native (wgpu) backend, step by step
against the eager PyTorch outputs recorded at export (tolerances: py_engine/testing/pte_cases.py)."""
import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from py_engine.graph.errors import OpError, StepError
from py_engine.loaders.pte import PteError
from py_engine.pte_runner import PteSession, example_inputs, run_pte_once
from py_engine.testing import pte_cases
from py_engine.testing.pte_cases import load_fixture_files

FIXTURES = Path(__file__).parent / "fixtures" / "pte"


def test_every_fixture_is_covered():
    """A fixture added to MANIFEST.json without a tolerance (or an error entry) fails here."""
    manifest = json.loads((FIXTURES / "MANIFEST.json").read_text())
    assert sorted(manifest) == sorted(pte_cases.FIXTURES + list(pte_cases.ERROR_FIXTURES))


@pytest.mark.parametrize("name", pte_cases.FIXTURES)
def test_fixture(native_backend, name):
    data, inputs, expected = load_fixture_files(FIXTURES, name)
    result = asyncio.run(pte_cases.run_fixture(native_backend, name, data, inputs, expected))
    print(json.dumps(result))
    assert result["steps"] >= 1


@pytest.mark.parametrize("name", ["tiny_llama_q4", "tiny_llama_q4_emb4"])
def test_tiny_llama_prefill_then_decode(native_backend, name):
    """Prefill (S=5 @0) then 4 decode steps (S=1): logits and greedy ids at every step."""
    data, inputs, expected = load_fixture_files(FIXTURES, name)
    assert inputs["step0.arg0"].shape == (1, 5) and inputs["step1.arg0"].shape == (1, 1)
    result = asyncio.run(pte_cases.run_fixture(native_backend, name, data, inputs, expected))
    want_ids = [int(np.argmax(expected[f"step{t}.out0"][-1])) for t in range(5)]
    assert result["greedy_ids"] == want_ids
    # The expected top-2 logits are further apart than two within-tolerance errors, so any
    # output passing the logits check has these greedy ids: the id check is not flaky.
    scale = max(float(np.abs(expected[f"step{t}.out0"]).max()) for t in range(5))
    assert result["min_top2_gap"] > 2 * pte_cases.REL * scale, result


def test_kv_cache_state_lives_in_the_graph(native_backend):
    """Decode at position 5 depends on the prefill's cache: a fresh session that skips the
    prefill gives different logits, the session that ran it gives the expected ones."""
    data, inputs, expected = load_fixture_files(FIXTURES, "tiny_llama_q4")

    async def run():
        s = await PteSession.create(data, native_backend)
        try:
            cold = (await s.forward(inputs["step1.arg0"], inputs["step1.arg1"]))[0]
        finally:
            s.destroy()
        assert not np.allclose(cold, expected["step1.out0"], rtol=0, atol=1e-3)

    asyncio.run(run())


def test_outputs_widen_to_plan_dtypes(native_backend):
    """int64 inputs are accepted as int64 (and int32); float outputs keep float32."""
    data, inputs, expected = load_fixture_files(FIXTURES, "embedding_q4gsw")

    async def run():
        s = await PteSession.create(data, native_backend)
        try:
            ids = inputs["step0.arg0"]
            assert ids.dtype == np.int64
            a = (await s.forward(ids))[0]
            b = (await s.forward(ids.astype(np.int32)))[0]
            assert a.dtype == np.float32 and np.array_equal(a, b)
            with pytest.raises(StepError, match="do not fit int32"):
                await s.forward(np.full((1, 4), 2**40, dtype=np.int64))
        finally:
            s.destroy()

    asyncio.run(run())


def test_mutated_argument_written_back(native_backend):
    """update_cache into forward arg 1: the caller's array gets the new value (copy_), the
    plan's extra output appears only with include_mutated=True."""
    data, inputs, expected = load_fixture_files(FIXTURES, "update_cache_input_pos5")

    async def run():
        s = await PteSession.create(data, native_backend)
        try:
            v, cache = inputs["step0.arg0"], inputs["step0.arg1"].copy()
            outs = await s.forward(v, cache, include_mutated=True)
            assert len(outs) == 2
            assert np.array_equal(outs[0], expected["step0.arg1.after"])
            assert np.array_equal(outs[1], expected["step0.out0"])
            assert np.array_equal(cache, expected["step0.arg1.after"])
        finally:
            s.destroy()

    asyncio.run(run())


def test_unknown_ops_fail_at_build_with_one_error(native_backend):
    data = (FIXTURES / "add_mul_sigmoid.pte").read_bytes()
    msg = asyncio.run(pte_cases.run_unknown_ops_case(native_backend, data))
    assert msg.startswith("graph: 2 op(s) not implemented"), msg


def test_unknown_ops_error_type(native_backend):
    data = pte_cases.patch_op_names((FIXTURES / "add_mul_sigmoid.pte").read_bytes(),
                                    pte_cases.UNKNOWN_OPS)
    with pytest.raises(OpError, match="fake.mul.Tensor, fake.sigmoid.default"):
        asyncio.run(PteSession.create(data, native_backend))


@pytest.mark.parametrize("name", sorted(pte_cases.ERROR_FIXTURES))
def test_error_fixture(native_backend, name):
    data = (FIXTURES / f"{name}.pte").read_bytes()
    asyncio.run(pte_cases.run_error_fixture(native_backend, name, data))


def test_truncated_file_is_a_pte_error(native_backend):
    data = (FIXTURES / "add_mul_sigmoid.pte").read_bytes()
    with pytest.raises(PteError, match="truncated"):
        asyncio.run(PteSession.create(data[:100], native_backend))


def test_bad_calls_are_step_errors(native_backend):
    data, inputs, _ = load_fixture_files(FIXTURES, "add_mul_sigmoid")
    msgs = asyncio.run(pte_cases.run_bad_call_case(native_backend, data, inputs))
    assert len(msgs) == 3


def test_run_pte_once(native_backend):
    """The web page's entry: example inputs of the plan's shapes, printable results."""
    data = (FIXTURES / "tiny_llama_q4.pte").read_bytes()
    info = asyncio.run(run_pte_once(data, backend=native_backend))
    assert info["inputs_generated"] and [i["shape"] for i in info["inputs"]] == [[1, 7], [1]]
    out = info["outputs"][0]
    assert out["shape"] == [1, 128] and out["dtype"] == "float32" and out["finite"]
    assert len(out["first"]) == 8 and all(isinstance(x, float) for x in out["first"])
    json.dumps(info)  # plain data only
    assert native_backend.memory_stats()["buffers"] == 0


def test_run_pte_once_with_given_inputs(native_backend):
    data, inputs, expected = load_fixture_files(FIXTURES, "add_mul_sigmoid")
    info = asyncio.run(run_pte_once(data, [inputs["step0.arg0"], inputs["step0.arg1"]],
                                    backend=native_backend))
    assert not info["inputs_generated"]
    want = expected["step0.out0"].reshape(-1)[:8]
    assert np.allclose(info["outputs"][0]["first"], want, rtol=pte_cases.REL, atol=0)


def test_example_inputs_follow_the_plan():
    from py_engine.loaders.pte import load_pte
    m = load_pte((FIXTURES / "sdpa_kv_cache.pte").read_bytes())
    args = example_inputs(m)
    assert [(a.shape, a.dtype) for a in args] == [((1, 8, 4, 8), np.float32), ((1, 8, 2, 8), np.float32),
                                                  ((1, 8, 2, 8), np.float32), ((1,), np.int64)]


def test_host_held_mutable_buffer(native_backend):
    """A delegate input that is no forward argument (a mutable buffer the delegate does not
    own): the session feeds it from `state` (zeros at first) and updates it from its copy_
    write-back. No exported fixture has one, so update_cache_input_pos5's cache argument is
    turned into such a buffer here."""
    from py_engine.loaders.pte import StateInput, WriteBack, load_pte

    data, inputs, _ = load_fixture_files(FIXTURES, "update_cache_input_pos5")
    m = load_pte(data)
    cache_arg = m.forward_inputs.pop(1)
    m.state_inputs = [StateInput(cache_arg.evalue, cache_arg.program_input, "cache")]
    m.write_backs = [WriteBack(w.dest_evalue, w.source_program_output, None) for w in m.write_backs]
    m.forward_outputs = [fo for fo in m.forward_outputs if fo.mutated_input is None]
    v = inputs["step0.arg0"]

    async def run():
        s = await PteSession.create(m, native_backend)
        try:
            (out,) = await s.forward(v)
            want = np.zeros((1, 8, 2, 4), np.float32)
            want[:, 5:7] = v
            assert np.array_equal(out, want) and np.array_equal(s.state[cache_arg.evalue], want)
            assert s.mutated == {}
            s.state[cache_arg.evalue] = inputs["step0.arg1"].copy()  # the buffer is fed in
            (out,) = await s.forward(2 * v)
            want = inputs["step0.arg1"].copy()
            want[:, 5:7] = 2 * v
            assert np.array_equal(out, want) and np.array_equal(s.state[cache_arg.evalue], want)
        finally:
            s.destroy()

    asyncio.run(run())
