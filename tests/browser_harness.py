"""In-browser tests: pytest-pyodide's `run_in_pyodide` in headless Chromium with WebGPU.

How to write a browser test
---------------------------
Put it in any ``tests/test_*.py`` module::

    from pytest_pyodide import run_in_pyodide

    @run_in_pyodide
    async def test_my_op_in_the_browser(selenium, case_data):   # first arg: `selenium`
        import numpy as np                 # numpy 2.0.2 is already loaded
        from py_engine.gpu import create_backend   # the engine wheel is installed
        backend = await create_backend()   # async is fine: JS promises are awaitable
        ...
        assert np.allclose(got, want, atol=1e-5)

* The function body runs inside Pyodide (Python 3.12) in the page; it is shipped there as
  source, so import everything inside the body. Extra arguments after ``selenium`` are pytest
  fixtures evaluated on the host (CPython) and pickled into the page: use them to pass numpy
  arrays or test-case data. A returned value is pickled back (keep it small and plain).
* ``assert`` gets pytest's rewriting (pytest is loaded in the page), ``pytest.raises`` works,
  and a failing test shows the Pyodide traceback. ``print`` output lands in the page console,
  which pytest shows for failing tests.
* Each test module gets one page: Pyodide, numpy and the engine wheel load once per module
  (a few seconds), and every test of the module shares that interpreter. So tests in one
  module must not depend on each other's leftovers; free GPU objects you create.
  The browser is started once per module too (about a second).
* While a browser module runs, Playwright's sync API holds an asyncio loop in the host
  process: do not call asyncio.run() on the host inside browser test modules.
* The engine wheel is built from the working tree at the start of the session
  (`app.engine_wheel`), so the browser always runs the code you are editing.
* Every such test is marked ``browser`` automatically; ``pytest -m browser`` runs only them,
  ``pytest -m "not browser"`` only the CPython ones.
* Long GPU work on SwiftShader is slow: mark a test ``@pytest.mark.timeout(600)`` if needed.
* For tests that drive a whole page instead (like test_serve_page.py), use the module fixture
  ``chromium`` (a Playwright Browser with the WebGPU flags) and open your own page.

Wiring (why this module exists): pytest-pyodide's Playwright runner would launch Playwright's
own browser, which cannot be installed here; we override its ``playwright_browsers`` fixture to
launch Debian's Chromium with WebGPU flags, its ``web_server_main`` fixture to also serve the
engine wheel under /engine/, and its ``selenium_module_scope`` fixture to install numpy and the
wheel once per module. tests/conftest.py imports these fixtures.
"""
from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest
from pytest_pyodide import get_global_config, spawn_web_server
from pytest_pyodide.fixture import selenium_common
from pytest_pyodide.server import DefaultHandler

from app.engine_wheel import WHEEL_NAME, build_engine_wheel

REPO = Path(__file__).resolve().parent.parent
PYODIDE_DIR = REPO / "web" / "vendor" / "pyodide"

# Headless Chromium with WebGPU on SwiftShader (a CPU Vulkan), and no attempts to reach the
# network (this machine has none; the flags keep startup fast and quiet).
WEBGPU_FLAGS = [
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-webgpu-adapter=swiftshader",
    "--disable-gpu-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENGINE_URL_PATH = f"/engine/{WHEEL_NAME}"
MODELS_URL_PATH = "/models/"


def chromium_path() -> str:
    """Debian's Chromium (or $CHROMIUM_PATH); Playwright's own browsers are never installed here."""
    candidates = [os.environ.get("CHROMIUM_PATH"), "/usr/lib/chromium/chromium", "/usr/bin/chromium",
                  shutil.which("chromium") or None]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise RuntimeError("browser tests: no Chromium found; run scripts/setup.sh (Debian package 'chromium') "
                       "or set CHROMIUM_PATH")


def configure_pytest_pyodide(config: pytest.Config) -> None:
    """Give pytest-pyodide's Chrome runner our flags (called from conftest's pytest_configure)."""
    get_global_config().set_flags("chrome", ["--js-flags=--expose-gc", *WEBGPU_FLAGS])


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=WEBGPU_FLAGS)


@pytest.fixture(scope="session")
def engine_wheel(tmp_path_factory) -> Path:
    """The py_engine wheel built from the working tree (once per session)."""
    return build_engine_wheel(tmp_path_factory.mktemp("engine-wheel"))


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this thread
# while it is alive, which would break asyncio.run() in CPython tests of other modules.
@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (Playwright Browser) for the current test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def playwright_browsers(chromium):
    """Overrides pytest-pyodide's fixture (which would launch Playwright's own browser)."""
    return {"chrome": chromium}


class _EngineHandler(DefaultHandler):
    """pytest-pyodide's server (Pyodide dist + its test pages), plus the engine wheel."""

    def __init__(self, *args, engine_dir: str, **kwargs):
        self.engine_dir = engine_dir
        super().__init__(*args, **kwargs)

    def translate_path(self, path):
        clean = path.split("?", 1)[0]
        if clean == ENGINE_URL_PATH:
            return os.path.join(self.engine_dir, WHEEL_NAME)
        if clean.startswith(MODELS_URL_PATH):
            # The default model from setup, fetched by the page rather than pickled into it.
            return str(REPO / "models" / os.path.basename(clean))
        return super().translate_path(path)


@pytest.fixture(scope="session")
def web_server_main(request, engine_wheel):
    """Overrides pytest-pyodide's server so the page can fetch the wheel at /engine/<wheel>."""
    handler = functools.partial(_EngineHandler, engine_dir=str(engine_wheel.parent), extra_headers={})
    with spawn_web_server(request.config.option.dist_dir, handler_cls=handler) as output:
        yield output


@pytest.fixture(scope="module")
def selenium_module_scope(request, runtime, web_server_main, playwright_browsers):
    """Overrides pytest-pyodide's fixture: one page per module with numpy and the engine loaded."""
    with selenium_common(request, runtime, web_server_main, browsers=playwright_browsers) as selenium:
        selenium.load_package(["numpy", selenium.base_url + ENGINE_URL_PATH])
        yield selenium
