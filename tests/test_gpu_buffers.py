"""Buffers created with their data, natively and in the browser."""
import asyncio

from pytest_pyodide import run_in_pyodide

EXPECTED = {7: 8, 16: 64, 1 << 20: (1 << 20) + 12, 0: 16}


def test_buffer_data(native_backend):
    from py_engine.testing.buffer_cases import buffer_data_cases

    assert asyncio.run(buffer_data_cases(native_backend)) == EXPECTED


@run_in_pyodide
async def test_buffer_data_in_browser(selenium):
    from py_engine.testing.buffer_cases import buffer_data_cases
    from py_engine.testing.shared_backend import shared_backend

    assert await buffer_data_cases(await shared_backend()) == {7: 8, 16: 64, 1 << 20: (1 << 20) + 12, 0: 16}
