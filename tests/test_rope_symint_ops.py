"""apply_rotary_emb, the SymInt ops, slice_copy and select_copy in CPython on the native (wgpu) backend."""
import asyncio
from pathlib import Path

import numpy as np
import pytest

from py_engine.graph import Graph
from py_engine.loaders.pte import load_pte_file
from py_engine.testing.harness import compare
from py_engine.testing.rope_symint_cases import CASES, CHECKS, ERROR_CASES, ROPE_TOL
from py_engine.testing.harness import run_case, run_error_case

FIXTURES = Path(__file__).parent / "fixtures" / "pte"


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(native_backend, name):
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_error_case(native_backend, name):
    asyncio.run(run_error_case(native_backend, ERROR_CASES[name](), name))


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check(native_backend, name):
    asyncio.run(CHECKS[name](native_backend))


@pytest.mark.parametrize("fixture,tol", [("rope_gqa_static", ROPE_TOL), ("rope_gqa_dynamic", ROPE_TOL),
                                         ("select_negative", ("exact", 0.0))])
def test_exported_pte(native_backend, fixture, tol):
    """Programs exported by ExecuTorch's WebGPU partitioner, against torch's outputs."""
    module = load_pte_file(str(FIXTURES / f"{fixture}.pte"))
    program = module.program
    # forward() argument / output index for each Program input / output id
    arg_of = {f.program_input: f.index for f in module.forward_inputs}
    out_of = {f.program_output: f.index for f in module.forward_outputs}
    inputs = np.load(FIXTURES / f"{fixture}.inputs.npz")
    expected = np.load(FIXTURES / f"{fixture}.expected.npz")
    n_steps = len({k.split(".")[0] for k in inputs.files})

    async def run():
        g = await Graph.build(program, native_backend)
        try:
            for s in range(n_steps):
                outs = await g.step([inputs[f"step{s}.arg{arg_of[vid]}"] for vid in program.input_ids])
                for vid, got in zip(program.output_ids, outs):
                    i = out_of[vid]
                    compare(f"{fixture} step {s} out {i}", got, expected[f"step{s}.out{i}"], *tol)
        finally:
            g.destroy()

    asyncio.run(run())
