"""Register pure-Python wheels in the vendored Pyodide's lock file so `loadPackage` finds them.

Why: pytest-pyodide's run_in_pyodide loads `pytest` (for assertion rewriting inside the page)
and `tblib` (to send tracebacks back) whenever the lock file lists them, and Pyodide 0.27.7's
lock does list them -- but the npm package ships no wheels, and Pyodide's own rebuilt wheels
(whose sha256 the lock pins) live only on its CDN, which we never use. So setup downloads the
same versions from PyPI, and this script rewrites their lock entries with the real file name
and sha256 (Pyodide checks it) and with dependencies that match the wheel's own metadata
(the stock pytest entry still names py, six, atomicwrites, ...).

The pristine lock is kept as pyodide-lock.orig.json; every run starts from it, so re-running
is harmless.

usage: register_pyodide_wheels.py <pyodide dir> <wheel>...
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

# Runtime dependencies of these wheels under Python 3.12 (from their METADATA).
DEPENDS = {
    "pytest": ["iniconfig", "packaging", "pluggy"],
    "iniconfig": [],
    "packaging": [],
    "pluggy": [],
    "tblib": [],
    "jinja2": ["markupsafe"],
    "markupsafe": [],
}
IMPORTS = {"pytest": ["_pytest", "pytest"]}


def register(pyodide_dir: Path, wheels: list[Path]) -> None:
    lock_path = pyodide_dir / "pyodide-lock.json"
    orig_path = pyodide_dir / "pyodide-lock.orig.json"
    if not orig_path.exists():
        shutil.copy2(lock_path, orig_path)
    lock = json.loads(orig_path.read_text())
    for wheel in wheels:
        parts = wheel.name.split("-")
        if len(parts) < 5 or not wheel.name.endswith("-py3-none-any.whl"):
            sys.exit(f"register_pyodide_wheels: {wheel.name} is not a pure-Python wheel")
        name, version = parts[0].lower().replace("_", "-"), parts[1]
        if name not in DEPENDS:
            sys.exit(f"register_pyodide_wheels: no dependency list for {name}; add it to DEPENDS")
        if wheel.parent.resolve() != pyodide_dir.resolve():
            sys.exit(f"register_pyodide_wheels: {wheel} must sit in {pyodide_dir}")
        lock["packages"][name] = {
            "name": name,
            "version": version,
            "file_name": wheel.name,
            "install_dir": "site",
            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "package_type": "package",
            "imports": IMPORTS.get(name, [name]),
            "depends": DEPENDS[name],
            "unvendored_tests": False,
        }
        print(f"register_pyodide_wheels: {name} {version} -> {wheel.name}")
    tmp = lock_path.with_suffix(".json.part")
    tmp.write_text(json.dumps(lock, indent=1, sort_keys=True))
    tmp.replace(lock_path)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    register(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
