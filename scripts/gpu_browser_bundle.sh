#!/usr/bin/env bash
# Builds what the GPU machine needs for the browser benchmark and has not got (it has Python 3.12
# + numpy, no Chromium, no Playwright, no network), into .gpubundle/ (git-ignored via
# .git/info/exclude). Run HERE; scripts/gpu_browser_bench.sh runs it THERE.
#   chromium.tar.xz.part-NN  a portable chromium-headless-shell: the binary, paks, icudtl.dat,
#                            snapshot blobs, libvulkan/libEGL/libGLESv2/SwiftShader, en-US.pak and
#                            every library ldd lists except glibc's (in lib/); xz, split < 60 MB
#   py_engine-0.1.0-py3-none-any.whl   the engine wheel (no pip/setuptools needed there)
#   smollm2-tokenizer.gguf   SmolLM2's tokenizer metadata only, so wllama can load the synthetic
#                            model (the 98 MB model itself is too big to carry in one call)
#   MANIFEST                 sha256 of every file (checked there), COMMIT
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
OUT="$REPO/.gpubundle"
PART_SIZE="${PART_SIZE:-55m}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
MODEL="${MODEL:-$REPO/models/SmolLM2-135M-Instruct.Q4_1.gguf}"

grep -qxF "/.gpubundle/" .git/info/exclude 2>/dev/null || echo "/.gpubundle/" >> .git/info/exclude
rm -rf "$OUT"
mkdir -p "$OUT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "bundle: downloading chromium-headless-shell and chromium-common (Debian)"
(cd "$work" && apt-get download chromium-headless-shell chromium-common >/dev/null 2>&1) \
  || { echo "bundle: apt-get download failed (run apt-get update?)" >&2; exit 1; }
for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
src="$work/root/usr/lib/chromium"
[[ -x "$src/chromium-headless-shell" ]] || { echo "bundle: no chromium-headless-shell in the package" >&2; exit 1; }

dest="$work/chromium"
mkdir -p "$dest/lib" "$dest/locales"
for f in chromium-headless-shell icudtl.dat snapshot_blob.bin v8_context_snapshot.bin \
         libvulkan.so.1 libEGL.so libGLESv2.so libvk_swiftshader.so vk_swiftshader_icd.json; do
  [[ -e "$src/$f" ]] && cp -a "$src/$f" "$dest/"
done
cp -a "$src"/*.pak "$dest/"
cp -a "$src/locales/en-US.pak" "$dest/locales/"

# Every library the binary and its GL/Vulkan companions need, except glibc's own (the GPU machine's
# glibc must be used: it goes with its dynamic loader).
glibc='^(libc|libm|libpthread|libdl|librt|libresolv|libutil|libanl|libnsl|ld-linux-x86-64|linux-vdso)\.so'
for bin in "$dest/chromium-headless-shell" "$dest/libvulkan.so.1" "$dest/libvk_swiftshader.so" \
           "$dest/libEGL.so" "$dest/libGLESv2.so"; do
  LD_LIBRARY_PATH="$dest" ldd "$bin" | awk '/=> \// {print $1, $3}'
done | sort -u | while read -r name path; do
  [[ "$name" =~ $glibc ]] && continue
  [[ -e "$dest/$name" ]] && continue  # shipped by the package itself
  cp -L "$path" "$dest/lib/$name"
done
missing="$(LD_LIBRARY_PATH="$dest/lib:$dest" ldd "$dest/chromium-headless-shell" | grep 'not found' || true)"
[[ -z "$missing" ]] || { printf "bundle: unresolved libraries:\n%s\n" "$missing" >&2; exit 1; }
dpkg-deb -f "$work"/chromium-headless-shell_*.deb Version > "$dest/VERSION"

echo "bundle: compressing ($(du -sh "$dest" | cut -f1) before xz)"
tar -C "$work" -cf - chromium | xz -T0 -6 > "$work/chromium.tar.xz"
split -b "$PART_SIZE" -d -a 2 "$work/chromium.tar.xz" "$OUT/chromium.tar.xz.part-"

echo "bundle: engine wheel and tokenizer"
"$PY" -c "from app.engine_wheel import build_engine_wheel; build_engine_wheel('$OUT')"
if [[ -f "$MODEL" ]]; then
  "$PY" -c "from app.bench_browser import write_tokenizer_gguf; write_tokenizer_gguf('$MODEL', '$OUT/smollm2-tokenizer.gguf')"
else
  echo "bundle: $MODEL missing: no tokenizer, so wllama will be skipped there" >&2
fi
git rev-parse --short HEAD > "$OUT/COMMIT"
(cd "$OUT" && sha256sum -- * > "$work/MANIFEST" && mv "$work/MANIFEST" MANIFEST)
ls -la "$OUT"
echo "bundle: done; parts under $PART_SIZE each"
