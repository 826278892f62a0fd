"""`python -m app bench --browser`: the engine in headless Chromium (Pyodide + WebGPU), side by
side with wllama 3.8.1 (llama.cpp in WebAssembly + WebGPU) on the same GGUF, printed as JSON.

How: a local server (app/serve.py's, with a bench_sink) serves web/bench/, the engine wheel and
the model; Chromium opens /bench/index.html?cfg=...; the page runs both benchmarks and POSTs its
log lines and result to the server, so reading the result needs no browser automation. Chromium
is driven by Playwright (default where installed) or started as a plain process (`--driver
process`: the GPU machine, which has no Playwright). Host-only code (CPython).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

from .engine_wheel import REPO, WHEEL_NAME, build_engine_wheel

# Headless Chromium with WebGPU on SwiftShader (a CPU Vulkan), no network (tests/browser_harness.py
# uses the same). On a GPU machine pass --flags with the Vulkan ones instead.
SWIFTSHADER_FLAGS = [
    "--headless", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan",
    "--use-vulkan=swiftshader", "--use-webgpu-adapter=swiftshader", "--disable-gpu-sandbox",
]
QUIET_FLAGS = ["--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--mute-audio"]
# Figures compared with wllama: engine / wllama (throughputs: above 1 means the engine is faster;
# load seconds: below 1 means the engine is faster).
COMPARED = re.compile(r"^(prefill_\d+_tokens_per_s|decode_(short|long)_tokens_per_s|load_(cold|cached)_seconds)$")


def add_arguments(p) -> None:
    """Options of the browser run (besides app/bench.py's --model, --prefill, --decode, ...)."""
    p.add_argument("--browser", action="store_true", help="run in headless Chromium (Pyodide + WebGPU), "
                   "side by side with wllama")
    p.add_argument("--chromium", default=None, help="Chromium binary (default: $CHROMIUM_PATH or Debian's)")
    p.add_argument("--flags", default=None, help="Chromium flags replacing the SwiftShader ones (one string)")
    p.add_argument("--no-wllama", action="store_true", help="skip wllama")
    p.add_argument("--driver", choices=("auto", "playwright", "process"), default="auto",
                   help="how Chromium is started (auto: Playwright where installed)")
    p.add_argument("--wheel", default=None, help="a prebuilt engine wheel (default: build from the tree)")
    p.add_argument("--tokenizer-from", default=None,
                   help="with --synthetic: a GGUF whose tokenizer.* metadata is copied in, so wllama can "
                        "load it (default: --model when it exists)")
    p.add_argument("--max-prefill", type=int, default=512)
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the page's result")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cases", default="",
                   help="comma-separated case modules of py_engine.testing (e.g. quant,fusion,llama) to run first "
                        "on the page's GPU against their numpy references (`cases` in the JSON)")
    p.add_argument("--submit-groups-steps", type=int, default=None,
                   help="decode steps per setting of the submit-grouping replay (0: skip it; default 64 on "
                        "GPUs, skipped on CPU adapters)")


def chromium_path(given: str | None) -> str:
    for path in (given, os.environ.get("CHROMIUM_PATH"), "/usr/lib/chromium/chromium", "/usr/bin/chromium",
                 shutil.which("chromium")):
        if path and os.access(path, os.X_OK):
            return path
    raise SystemExit("bench --browser: no Chromium found; install Debian's 'chromium' or pass --chromium PATH")


def tokenizer_metadata(gguf_path: str | Path) -> dict:
    """The tokenizer.* metadata of a GGUF, with its exact GGUF types (for write_gguf)."""
    from py_engine.loaders.gguf import read_gguf

    with open(gguf_path, "rb") as f:
        g = read_gguf(memoryview(f.read()))
    out = {k: v for k, v in g.typed_metadata().items() if k.startswith("tokenizer.")}
    if "tokenizer.ggml.model" not in out:
        raise SystemExit(f"bench --browser: {gguf_path} has no tokenizer metadata (tokenizer.ggml.model)")
    return out


def write_tokenizer_gguf(src: str | Path, dst: str | Path) -> None:
    """A GGUF with only src's tokenizer metadata (a few MB): carried where the model cannot be."""
    from py_engine.loaders.gguf import write_gguf

    Path(dst).write_bytes(write_gguf(tokenizer_metadata(src), {}))


def synthetic_model(folder: Path, tokenizer_from: str | None, name: str = "smollm2-135m") -> Path:
    """Random weights of the shapes `name` (app.bench.SYNTHETIC), plus a real tokenizer when one
    is at hand (llama.cpp refuses a GGUF without one, and the chat page needs one; the bench's
    engine part does not)."""
    from py_engine.loaders.gguf import read_gguf, write_gguf

    from .bench import SYNTHETIC, synthetic_gguf

    data = synthetic_gguf(**SYNTHETIC[name])
    if tokenizer_from:
        g = read_gguf(memoryview(data))
        meta = {k: v for k, v in g.metadata.items() if not k.startswith("general.alignment")}
        meta.update(tokenizer_metadata(tokenizer_from))
        tensors = {key: (t.ggml_type, tuple(t.dims), bytes(t.data)) for key, t in g.tensors.items()}
        data = write_gguf(meta, tensors)
    path = folder / f"synthetic-{name}.gguf"
    path.write_bytes(data)
    return path


def ratios(engine: dict, wllama: dict | None) -> dict:
    out = {}
    for key in filter(COMPARED.match, engine):
        a, b = engine.get(key), (wllama or {}).get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
            out[key] = round(a / b, 3)
    return out


def _commit() -> str | None:
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def page_settings(args, model_url: str) -> dict:
    return {"model": model_url, "context": args.context, "max_prefill": args.max_prefill,
            "prefill": list(args.prefill), "decode": args.decode, "long_context": args.long_context,
            "depth": args.depth, "group": args.group, "submit_groups_steps": args.submit_groups_steps,
            "wllama": not args.no_wllama, "post": True, "set": list(getattr(args, "set", [])),
            "cases": case_modules(getattr(args, "cases", ""))}


class _Sink:
    """What the page POSTs: log lines (echoed to stderr) and the one result."""

    def __init__(self, echo: bool = True):
        self.results: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.echo = echo

    def __call__(self, kind: str, text: str) -> None:
        if kind == "result":
            self.results.put(text)
        else:
            self.log.append(text)
            if self.echo:
                print(text, file=sys.stderr, flush=True)


def _run_page(url: str, args, flags: list[str], sink: _Sink, tmp: Path) -> str:
    driver = args.driver
    if driver == "auto":
        try:
            import playwright.sync_api  # noqa: F401
            driver = "playwright"
        except ImportError:
            driver = "process"
    exe = chromium_path(args.chromium)
    if driver == "playwright":
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            # A profile on disk, as a person's browser has: an incognito context's storage quota
            # is too small to keep a model of a billion parameters in the Cache API.
            context = p.chromium.launch_persistent_context(
                str(tmp / "profile"), executable_path=exe, headless=True,
                args=[f for f in flags if not f.startswith("--headless")])
            try:
                page = context.new_page()
                page.on("pageerror", lambda err: sink("log", f"pageerror: {err}"))
                page.goto(url)
                return _wait(sink, args.timeout, lambda: None)
            finally:
                context.close()
    profile = tmp / "profile"
    cmd = [exe, *flags, f"--user-data-dir={profile}", url]
    if not any(f.startswith("--headless") for f in flags):
        cmd.insert(1, "--headless")
    with open(tmp / "chromium.log", "w") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT)
        try:
            def check():
                if proc.poll() is not None:
                    tail = (tmp / "chromium.log").read_text(errors="replace")[-4000:]
                    raise SystemExit(f"bench --browser: Chromium exited ({proc.returncode}) before the page "
                                     f"reported; its output ends with:\n{tail}")
            return _wait(sink, args.timeout, check)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait(sink: _Sink, timeout: float, check) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return sink.results.get(timeout=1.0)
        except queue.Empty:
            check()
    raise SystemExit(f"bench --browser: no result from the page after {timeout:.0f}s; last log lines:\n"
                     + "\n".join(sink.log[-20:]))


def case_modules(spec: str) -> list:
    """`--cases`: names of py_engine.testing.<name>_cases modules with a CASES table (op cases for
    the harness) or CHECKS (async checks of a backend, e.g. llama's whole models); an unknown one
    is refused here, before a browser starts."""
    import importlib

    names = [c for c in spec.split(",") if c]
    for name in names:
        try:
            mod = importlib.import_module(f"py_engine.testing.{name}_cases")
        except ImportError:
            mod = None
        if not (hasattr(mod, "CASES") or hasattr(mod, "CHECKS")):
            raise SystemExit(f"bench --browser: --cases {name}: no py_engine.testing.{name}_cases module with "
                             f"CASES or CHECKS (e.g. quant, fusion, attention, foundation, rope_symint, llama)")
    return names


def run_browser_bench(args, echo: bool = True) -> dict:
    from .bench import synthetic_label
    from .serve import make_server

    case_modules(getattr(args, "cases", ""))
    with tempfile.TemporaryDirectory(prefix="py_engine-bench-") as tmp_name:
        tmp = Path(tmp_name)
        wheel_dir = tmp / "wheel"
        wheel_dir.mkdir()
        if args.wheel:
            shutil.copy(args.wheel, wheel_dir / WHEEL_NAME)
        else:
            build_engine_wheel(wheel_dir)
        models = tmp / "models"
        models.mkdir()
        if args.synthetic:
            source = args.tokenizer_from or (args.model if Path(args.model).is_file() else None)
            model = synthetic_model(models, source, args.synthetic)
            model_label = synthetic_label(args.synthetic) + (
                "" if source else "; no tokenizer, so no wllama")
            if not source:
                args.no_wllama = True
        else:
            model = Path(args.model)
            if not model.is_file():
                raise SystemExit(f"bench --browser: model {model} not found; run scripts/fetch_model.sh or "
                                 "pass --synthetic")
            os.symlink(model.resolve(), models / model.name)
            model_label = str(args.model)
        sink = _Sink(echo)
        httpd = make_server("127.0.0.1", args.port, wheel_dir, quiet=True, extra_models=[models], bench_sink=sink)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            host, port = httpd.server_address[:2]
            cfg = json.dumps(page_settings(args, f"/models/{model.name}"))
            url = f"http://{host}:{port}/bench/index.html?cfg={urllib.parse.quote(cfg)}"
            flags = shlex.split(args.flags) if args.flags else SWIFTSHADER_FLAGS
            text = _run_page(url, args, [*flags, *QUIET_FLAGS], sink, tmp)
        finally:
            httpd.shutdown()
            httpd.server_close()
    page = json.loads(text)
    if "error" in page and "engine" not in page:
        raise SystemExit(f"bench --browser: the page failed: {page['error']}\n" + "\n".join(sink.log[-20:]))
    engine, wllama = page.pop("engine"), page.pop("wllama", None)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)",
        "commit": _commit(), "model": model_label, **page, "engine": engine,
        "wllama": wllama if wllama is not None else {"skipped": "--no-wllama"},
        "engine_over_wllama": ratios(engine, wllama),
    }


def run(args) -> None:
    print(json.dumps(run_browser_bench(args), indent=2))
