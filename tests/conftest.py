"""Shared test setup: the browser harness fixtures, the `browser` marker and the per-environment
summary line (`tests: cpython N passed, browser M passed`)."""
from __future__ import annotations

import pytest

from browser_harness import (  # noqa: F401  (fixtures are found by name)
    chromium,
    configure_pytest_pyodide,
    engine_wheel,
    playwright_browsers,
    selenium_module_scope,
    web_server_main,
)


def pytest_configure(config):
    configure_pytest_pyodide(config)


def _is_browser_test(item) -> bool:
    # pytest-pyodide parametrizes run_in_pyodide tests with its `runtime` fixture.
    return "runtime" in getattr(item, "fixturenames", ()) or item.get_closest_marker("browser") is not None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_browser_test(item):
            item.add_marker(pytest.mark.browser)
    # CPython tests first (fast feedback), browser tests after; the sort is stable, so modules
    # stay together. It also means session fixtures that call asyncio.run() (native_backend)
    # are created before Playwright's sync API holds a loop in this thread.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # One outcome per test: any failing phase (setup/call/teardown) makes it failed.
    outcome_of: dict[str, tuple[str, str]] = {}
    rank = {"passed": 0, "skipped": 1, "failed": 2}
    for stat, reports in terminalreporter.stats.items():
        for report in reports:
            if not hasattr(report, "nodeid") or not hasattr(report, "when"):
                continue
            if stat == "passed" and report.when != "call":
                continue
            outcome = {"passed": "passed", "xpassed": "passed", "skipped": "skipped",
                       "xfailed": "skipped"}.get(stat, "failed" if stat in ("failed", "error") else None)
            if outcome is None:
                continue
            env = "browser" if "browser" in getattr(report, "keywords", {}) else "cpython"
            old = outcome_of.get(report.nodeid)
            if old is None or rank[outcome] > rank[old[1]]:
                outcome_of[report.nodeid] = (env, outcome)
    parts = []
    for env in ("cpython", "browser"):
        n = {o: sum(1 for e, out in outcome_of.values() if e == env and out == o) for o in rank}
        text = f"{env} {n['passed']} passed"
        text += "".join(f", {n[o]} {o}" for o in ("failed", "skipped") if n[o])
        parts.append(text)
    terminalreporter.write_line("tests: " + ", ".join(parts))


@pytest.fixture(scope="session")
def native_backend():
    """One wgpu device for the whole CPython run (lavapipe here, a real GPU elsewhere)."""
    import asyncio

    from py_engine.gpu.native import NativeBackend

    return asyncio.run(NativeBackend.create())
