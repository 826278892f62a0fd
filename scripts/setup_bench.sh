#!/usr/bin/env bash
# Development dependency of the browser benchmark (python -m app bench --browser): wllama
# (llama.cpp in WebAssembly + WebGPU), from the npm registry only, into web/vendor/wllama/
# (git-ignored: web/vendor/ is). Not needed by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${WLLAMA_VERSION:-3.8.1}"
DEST=web/vendor/wllama
if [[ -f "$DEST/package.json" ]] && grep -q "\"version\": \"$VERSION\"" "$DEST/package.json"; then
  echo "setup_bench: @wllama/wllama@$VERSION already in $DEST"; exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# npm pack fetches the published tarball (no install scripts run, no dependencies).
(cd "$tmp" && npm pack --silent "@wllama/wllama@$VERSION" >/dev/null)
rm -rf "$DEST"
mkdir -p "$DEST"
tar -xzf "$tmp"/wllama-wllama-"$VERSION".tgz -C "$DEST" --strip-components=1
# Keep what the page loads (esm/index.js, esm/wasm/wllama.wasm), the types and the docs; the
# rest (sources, C++, duplicate bundles) only makes the folder heavier to carry to a GPU machine.
find "$DEST" -mindepth 1 -maxdepth 1 ! -name esm ! -name package.json ! -name README.md ! -name LICENCE \
  ! -name guides -exec rm -rf {} +
rm -f "$DEST"/esm/index.cjs "$DEST"/esm/index.min.js "$DEST"/esm/index.min.js.map
echo "setup_bench: @wllama/wllama@$VERSION in $DEST"
ls "$DEST"
