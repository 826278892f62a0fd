"""The first ops and the graph core, in CPython on the native (wgpu) backend."""
import asyncio

import pytest

from py_engine.testing.foundation_cases import CASES, ERROR_CASES
from py_engine.testing.harness import run_case, run_error_case


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(native_backend, name):
    result = asyncio.run(run_case(native_backend, CASES[name](), name))
    assert result["after_destroy"]["buffers"] == 0, result["after_destroy"]


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_error_case(native_backend, name):
    asyncio.run(run_error_case(native_backend, ERROR_CASES[name](), name))


def test_hooks_are_inert_on_a_static_graph(native_backend):
    """A graph whose inputs keep their shapes never reconfigures an op after build, and its
    dispatch table stays exactly what build recorded."""
    from py_engine.graph import Graph
    from py_engine.testing.foundation_cases import chain_static

    spec = chain_static()

    async def run():
        g = await Graph.build(spec.program, native_backend)
        try:
            calls = []
            for op in g.ops:
                original = op.configure
                op.configure = (lambda f, name: (lambda graph: (calls.append(name), f(graph))))(original, op.name)
            table = g.table.copy()
            for step in spec.steps:
                await g.step(step.inputs)
            return calls, table, g.table.copy()
        finally:
            g.destroy()

    calls, before, after = asyncio.run(run())
    assert calls == []
    assert (before == after).all()
