"""Build the py_engine wheel from the working tree, offline, without touching the tree.

The browser installs the engine from this wheel (`pyodide.loadPackage(<url>)`). The build runs
on a private copy of the sources so that concurrent builds never share setuptools' build/ and
*.egg-info folders, and a deleted module can never linger in a stale build/lib.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What the build needs from the tree; everything else (tests, web, models) stays out.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "py_engine", "app", "shaders")
WHEEL_NAME = "py_engine-0.1.0-py3-none-any.whl"


class WheelBuildError(RuntimeError):
    """pip could not build the engine wheel; the message carries pip's output."""


def build_engine_wheel(out_dir: str | Path, repo: str | Path = REPO) -> Path:
    """Build the wheel into out_dir and return its path (named WHEEL_NAME)."""
    repo, out_dir = Path(repo), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="py_engine-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in SOURCES:
            path = repo / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif path.exists():
                shutil.copy2(path, src / name)
            else:
                raise WheelBuildError(f"engine wheel: {path} is missing from the working tree")
        # --no-build-isolation --no-index: build with the venv's setuptools, never the network.
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
               "--no-index", "--wheel-dir", str(out_dir), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise WheelBuildError(f"engine wheel: pip wheel failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    wheel = out_dir / WHEEL_NAME
    if not wheel.is_file():
        raise WheelBuildError(f"engine wheel: pip succeeded but {wheel} was not written; found {sorted(p.name for p in out_dir.iterdir())}")
    return wheel
