#!/usr/bin/env bash
# Creates .venv-export: a host-only environment (never needed by CI or the browser) with
# PyTorch (CPU build) and ExecuTorch, used by scripts/export_pte_fixtures.py to regenerate
# the committed .pte fixtures in tests/fixtures/pte/.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-export
TORCH_VERSION=2.13.0
EXECUTORCH_VERSION=1.5.1

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --upgrade pip wheel
# Torch first, on its own: on the project machines pip's find-links holds the CPU wheel
# (torch-2.13.0+cpu), which wins over PyPI's CUDA build because a local version label sorts
# higher. Export needs no CUDA. Refuse to go on if a CUDA build slipped in anyway.
"$VENV/bin/python" -m pip install "torch==${TORCH_VERSION}"
"$VENV/bin/python" -c "import torch, sys; sys.exit('torch is a CUDA build; install the CPU wheel' if torch.version.cuda else 0)"
# ExecuTorch must reuse that torch, not replace it.
"$VENV/bin/python" -m pip install "executorch==${EXECUTORCH_VERSION}" "torch==${TORCH_VERSION}"
"$VENV/bin/python" -c "import torch, executorch; print('torch', torch.__version__); print('executorch ok')"
