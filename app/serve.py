"""`python -m app serve`: a small static server for web/, plus the engine wheel and the models.

URLs:
  /                 web/ (index.html, vendor/pyodide/, ...)
  /engine/<wheel>   the py_engine wheel, built from the working tree when the server starts
  /models/<file>    models/ (GGUF files fetched by scripts/fetch_model.sh), then each folder
                    of $PY_ENGINE_EXTRA_MODELS (os.pathsep-separated; tests serve the tiny model so)
Pages: / (chat), /diagnostics.html (Pyodide + WebGPU check), /demo-host.html (the widget),
/bench/ (browser benchmark: `python -m app bench --browser`; served cross-origin isolated so that
wllama may use threads, and POST /bench/result and /bench/log go to the server's bench_sink).
Host-only code (CPython): never imported by the page.
"""
from __future__ import annotations

import functools
import http.server
import os
import sys
import tempfile
from pathlib import Path

from .engine_wheel import REPO, WHEEL_NAME, build_engine_wheel

WEB_DIR = REPO / "web"
MODELS_DIR = REPO / "models"

# Pyodide needs application/wasm for streaming compilation and a JavaScript type for modules.
EXTRA_MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".gguf": "application/octet-stream",
    ".pte": "application/octet-stream",
    ".wgsl": "text/plain",
}


class EngineRequestHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **EXTRA_MIME_TYPES}

    def __init__(self, *args, engine_dir: Path, quiet: bool = False, extra_models=(), request_log=None,
                 bench_sink=None, **kwargs):
        self.engine_dir = engine_dir
        self.bench_sink = bench_sink
        self.request_log = request_log
        self.quiet = quiet
        self.models_dirs = [*map(Path, extra_models), MODELS_DIR]
        super().__init__(*args, directory=str(WEB_DIR), **kwargs)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if clean == f"/engine/{WHEEL_NAME}":
            return str(self.engine_dir / WHEEL_NAME)
        if clean.startswith("/models/"):
            name = clean[len("/models/"):]
            # Only plain file names: no sub-folders, no way out of models/.
            if name and "/" not in name and "\\" not in name and not name.startswith("."):
                for folder in self.models_dirs:
                    if (folder / name).is_file():
                        return str(folder / name)
                return str(MODELS_DIR / name)
            return str(MODELS_DIR / ".forbidden")
        return super().translate_path(path)

    def send_response(self, code, message=None):
        if self.request_log is not None:  # tests assert what the browser asked for
            self.request_log.append((self.command, self.path, code))
        super().send_response(code, message)

    def end_headers(self):
        # The wheel and pages change while developing: never let the browser reuse a stale copy.
        self.send_header("Cache-Control", "no-store")
        if self.path.startswith("/bench/"):
            # Cross-origin isolation gives the page SharedArrayBuffer (wllama's threads).
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()

    def do_POST(self):
        # Only the bench page posts: its result JSON and log lines, handed to bench_sink(kind, text).
        kind = {"/bench/result": "result", "/bench/log": "log"}.get(self.path.split("?", 1)[0])
        if kind is None or self.bench_sink is None:
            self.send_error(404, "no such POST endpoint")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        self.bench_sink(kind, body)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format, *args):
        if not self.quiet:
            super().log_message(format, *args)


def extra_models_from_env() -> list[Path]:
    raw = os.environ.get("PY_ENGINE_EXTRA_MODELS", "")
    return [Path(p) for p in raw.split(os.pathsep) if p]


def make_server(host: str, port: int, engine_dir: Path, quiet: bool = True,
                extra_models=(), request_log: list | None = None, bench_sink=None) -> http.server.ThreadingHTTPServer:
    """The HTTP server (not started): tests run it in a thread with their own model folders and
    a request_log list that receives (method, path, status) of every request. bench_sink(kind,
    text) receives what the bench page POSTs (app/bench_browser.py)."""
    handler = functools.partial(EngineRequestHandler, engine_dir=Path(engine_dir), quiet=quiet,
                                extra_models=tuple(extra_models), request_log=request_log, bench_sink=bench_sink)
    httpd = http.server.ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    return httpd


def serve(host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> None:
    if not (WEB_DIR / "vendor" / "pyodide" / "pyodide.mjs").is_file():
        sys.exit(f"serve: {WEB_DIR / 'vendor' / 'pyodide'} is missing Pyodide; run scripts/setup.sh (or make serve)")
    with tempfile.TemporaryDirectory(prefix="py_engine-serve-") as tmp:
        wheel = build_engine_wheel(tmp)
        with make_server(host, port, Path(tmp), quiet, extra_models_from_env()) as httpd:
            bound_host, bound_port = httpd.server_address[:2]
            print(f"serve: engine wheel {wheel.name} ({wheel.stat().st_size} bytes)", flush=True)
            print(f"serve: http://{bound_host}:{bound_port}/ (Ctrl-C stops)", flush=True)
            try:
                httpd.serve_forever()
            except KeyboardInterrupt:
                print("serve: stopped", flush=True)
