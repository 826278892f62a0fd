"""Fixtures for the chat page and widget tests: the app's server in a thread (the same handler as
`python -m app serve`) with the tiny test model at /models/tiny.gguf, and a request log.

Screenshots go to test-artifacts/ (git-ignored)."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.serve import make_server
from py_engine.testing.tiny_gguf import make_tiny_llama_gguf

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
TINY = "tiny.gguf"
LOAD_TIMEOUT_MS = 180_000   # Pyodide + numpy + wheel in a worker, pipelines on SwiftShader (about 15 s here)
REPLY_TIMEOUT_MS = 120_000


class Site:
    def __init__(self, base: str, log: list, models: Path):
        self.base = base          # http://127.0.0.1:PORT/
        self.log = log            # [(method, path, status)] as the server saw them
        self.models = models

    @property
    def port(self) -> int:
        return int(self.base.rstrip("/").rsplit(":", 1)[1])

    def hits(self, path_part: str) -> int:
        return sum(1 for _, path, _ in self.log if path_part in path)


@pytest.fixture(scope="module")
def site(tmp_path_factory, engine_wheel):
    models = tmp_path_factory.mktemp("models")
    (models / TINY).write_bytes(make_tiny_llama_gguf(seed=0))
    log: list = []
    httpd = make_server("127.0.0.1", 0, engine_wheel.parent, extra_models=[models], request_log=log)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{httpd.server_address[1]}/", log, models)
    finally:
        httpd.shutdown()
        httpd.server_close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def wait_ready(page, timeout=LOAD_TIMEOUT_MS) -> str:
    """Wait until #status is ready or error; returns the state (the problem text is in the message)."""
    page.wait_for_function("['ready', 'error'].includes(document.getElementById('status').dataset.state)",
                           timeout=timeout)
    state = page.get_attribute("#status", "data-state")
    if state != "ready":
        detail = page.inner_text("#problem") if page.is_visible("#problem") else page.inner_text("#status")
        raise AssertionError(f"page did not get ready: {detail}")
    return state


def ask(page, text: str, *, max_tokens: int = 6, wait: bool = True) -> dict:
    """Type `text` into the composer and press Enter; returns the finished reply's stats."""
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#temperature", "0")
    done_before = page.locator(".msg.assistant[data-done=true]").count()
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    if not wait:
        return {}
    page.wait_for_function(f"document.querySelectorAll('.msg.assistant[data-done=true]').length > {done_before}",
                           timeout=REPLY_TIMEOUT_MS)
    return page.evaluate("window.pyEngineChat.lastStats")
