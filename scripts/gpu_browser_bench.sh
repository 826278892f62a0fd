#!/usr/bin/env bash
# ON THE GPU MACHINE: the browser benchmark (python -m app bench --browser) in headless Chromium on
# the real GPU (Vulkan), without Playwright: Chromium is started as a plain process and the bench
# page POSTs its JSON to the bench's own server. Needs, in the repo copy: .gpubundle/ (made by
# scripts/gpu_browser_bundle.sh), web/vendor/pyodide/ and (for the comparison) web/vendor/wllama/.
# Extra arguments go to the bench (e.g. --decode 64 --no-wllama); CHROME_EXTRA_FLAGS adds Chromium
# flags (e.g. --enable-webgpu-developer-features, which exposes subgroup matrix configs). The model
# is the synthetic one (SmolLM2-135M's shapes, SmolLM2's tokenizer, random weights) unless
# BENCH_MODEL names a GGUF file that is there.
# Writes the JSON to stdout and, when $OUT is set, to $OUT/bench_browser.json (+ .log).
set -euo pipefail
cd "$(dirname "$0")/.."
B="$PWD/.gpubundle"
DIR="${BUNDLE_DIR:-/tmp/chromium-bundle}"
PY="${PYTHON:-python3}"

fail() { echo "gpu_browser_bench: $*" >&2; exit 1; }
[[ -f "$B/MANIFEST" ]] || fail "$B/MANIFEST missing: carry .gpubundle/ (see docs/benchmarks.md)"
(cd "$B" && sha256sum -c --quiet MANIFEST) || fail "some .gpubundle files are missing or differ (above): carry them again"
[[ -f web/vendor/pyodide/pyodide.mjs ]] || fail "web/vendor/pyodide is missing: carry it"
[[ -f web/vendor/wllama/esm/index.js ]] || echo "gpu_browser_bench: web/vendor/wllama missing: wllama will be skipped" >&2

if [[ ! -x "$DIR/chromium/chromium-headless-shell" ]]; then
  mkdir -p "$DIR"
  cat "$B"/chromium.tar.xz.part-* | xz -d | tar -C "$DIR" -xf -
fi
CHROME="$DIR/chromium/chromium-headless-shell"
echo "gpu_browser_bench: $CHROME ($(cat "$DIR/chromium/VERSION"))" >&2

export LD_LIBRARY_PATH="$DIR/chromium/lib:$DIR/chromium${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ICD="${VK_ICD:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}"
[[ -f "$ICD" ]] || echo "gpu_browser_bench: warning: Vulkan ICD $ICD not found" >&2
export VK_DRIVER_FILES="$ICD" VK_ICD_FILENAMES="$ICD"
export XDG_RUNTIME_DIR=/tmp
export BENCH_COMMIT="$(cat "$B/COMMIT")"
FLAGS="--headless --no-sandbox --disable-gpu-sandbox --enable-unsafe-webgpu --enable-features=Vulkan \
--use-vulkan=native --use-angle=vulkan --ignore-gpu-blocklist --disable-vulkan-surface \
--enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia ${CHROME_EXTRA_FLAGS:-}"

model_args=(--synthetic --tokenizer-from "$B/smollm2-tokenizer.gguf")
[[ -f "$B/smollm2-tokenizer.gguf" ]] || model_args=(--synthetic)
[[ -n "${BENCH_MODEL:-}" ]] && model_args=(--model "$BENCH_MODEL")

out="${OUT:-/tmp}"
"$PY" -m app bench --browser --driver process --chromium "$CHROME" --flags "$FLAGS" \
  --wheel "$B/py_engine-0.1.0-py3-none-any.whl" "${model_args[@]}" "$@" \
  2> >(tee "$out/bench_browser.log" >&2) | tee "$out/bench_browser.json"
