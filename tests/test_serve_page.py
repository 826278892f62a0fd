"""`python -m app serve` serves the chat page and the diagnostics page (diagnostics.html), which runs
the engine in Chromium."""
from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGE_TIMEOUT_S = 240  # SwiftShader on 2 cores: Pyodide + numpy + the demo graph


@pytest.fixture(scope="module")
def served_url():
    """Start `python -m app serve --port 0` and return its base URL (port read from its output)."""
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", "0", "--quiet"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen, url, deadline = [], None, time.monotonic() + 60
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        seen.append(line)
        if line.startswith("serve: http://"):
            url = line.split()[1]
    try:
        if url is None:
            pytest.fail("app serve did not report its URL; output:\n" + "".join(seen))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.browser
def test_serve_delivers_page_wheel_and_wasm_with_right_types(served_url):
    import urllib.request

    def head(path):
        with urllib.request.urlopen(served_url + path) as r:
            return r.headers.get_content_type(), r.read(4)

    assert head("")[0] == "text/html"
    assert head("diagnostics.html")[0] == "text/html"
    assert head("engine.js")[0] == "text/javascript"
    assert head("vendor/pyodide/pyodide.asm.wasm") == ("application/wasm", b"\0asm")
    assert head("vendor/pyodide/pyodide.mjs")[0] == "text/javascript"
    assert head("engine/py_engine-0.1.0-py3-none-any.whl") == ("application/zip", b"PK\x03\x04")


@pytest.mark.browser
@pytest.mark.timeout(PAGE_TIMEOUT_S + 60)
def test_page_shows_adapter_and_checked_result(served_url, chromium):
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page = chromium.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
    try:
        page.goto(served_url + "diagnostics.html")
        try:
            page.wait_for_function(
                "['done', 'error'].includes(document.getElementById('status').dataset.state)",
                timeout=PAGE_TIMEOUT_S * 1000)
        except PlaywrightTimeoutError:
            pytest.fail(f"page not done after {PAGE_TIMEOUT_S}s; status: {page.inner_text('#status')!r}\n"
                        "console:\n" + "\n".join(console))
        status = page.inner_text("#status")
        adapter = page.inner_text("#adapter")
        result = page.inner_text("#result")
        log = page.inner_text("#log")
        print(f"status: {status}\nadapter: {adapter}\nresult: {result}\nlog:\n{log}")
        assert page.get_attribute("#status", "data-state") == "done", f"{status}\n{log}"
        assert adapter.strip() not in ("", "–") and not adapter.startswith("no "), adapter
        assert "swiftshader" in adapter.lower(), adapter  # our flags force the SwiftShader adapter
        assert "ok: true" in result.lower(), result
        assert "max_err" in result
    finally:
        page.close()
