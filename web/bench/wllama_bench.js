// wllama (@wllama/wllama, llama.cpp in WebAssembly + WebGPU) on the same GGUF as the engine, for
// comparison. Installed by scripts/setup_bench.sh into web/vendor/wllama/ (not part of the tests).
// Figures come from llama.cpp's own timings (prompt_per_second, predicted_per_second), which
// count only the work, not the worker round trips; the wall times are recorded beside them.
const WLLAMA_DIR = new URL("../vendor/wllama/esm/", import.meta.url);

// Prompts of ordinary words: each is about one token. The token count actually used is taken
// from llama.cpp's timings (prompt_n), so the figures never depend on this being exact.
const WORDS = ("time year people way day man thing woman life child world school state family student " +
  "group country problem hand part place case week company system program question work government " +
  "number night point home water room mother area money story fact month lot right study book eye job " +
  "word business issue side kind head house service friend father power hour game line end member law " +
  "car city community name president team minute idea kid body information back parent face others " +
  "level office door health person art war history party result change morning reason research girl " +
  "guy moment air teacher force education").split(" ");

function prompt(nWords, seed) {
  let x = seed * 2654435761 % 4294967296 || 1;
  const out = [];
  for (let i = 0; i < nWords; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out.push(WORDS[x % WORDS.length]);
  }
  return out.join(" ");
}

function makeLogger(lines) {
  const keep = (level) => (...args) => lines.push(`${level}: ${args.map(String).join(" ")}`);
  return { debug: keep("debug"), log: keep("log"), warn: keep("warn"), error: keep("error") };
}

// Which backend llama.cpp used: its load report ("offloaded N/M layers to GPU" where it prints
// one), else the model buffers it allocated ("WebGPU model buffer" / "CPU model buffer") and the
// number of backends the context enumerated (1: the CPU only).
export function backendFromLog(lines) {
  let offloaded = null, nBackends = null;
  const buffers = new Set();
  for (const line of lines) {
    let m = /offloaded (\d+)\/(\d+) layers to GPU/.exec(line);
    if (m) offloaded = { layers: Number(m[1]), of: Number(m[2]) };
    m = /(\S+) model buffer size/.exec(line);
    if (m) buffers.add(m[1]);
    m = /backend_ptrs\.size\(\) = (\d+)/.exec(line);
    if (m) nBackends = Number(m[1]);
  }
  const onGpu = [...buffers].some((b) => !/^CPU/i.test(b));
  let backend = "unknown";
  if (offloaded) backend = offloaded.layers > 0 ? "webgpu" : "cpu";
  else if (buffers.size) backend = onGpu ? "webgpu" : "cpu";
  else if (nBackends === 1) backend = "cpu";
  const notable = [...new Set(lines.filter((l) =>
    /webgpu|offload|shader-f16|model buffer|backend_ptrs|system_info|n_threads = /i.test(l)))];
  return { backend, offloaded, model_buffers: [...buffers], n_backends: nBackends, notable: notable.slice(0, 30) };
}

async function load(Wllama, cfg, lines) {
  const w = new Wllama({ default: new URL("wasm/wllama.wasm", WLLAMA_DIR).href }, { logger: makeLogger(lines) });
  const t = performance.now();
  // log_level 1 (DEBUG): llama.cpp's load report ("offloaded N/M layers to GPU") is among them.
  await w.loadModelFromUrl(new URL(cfg.model, location.href).href,
                           { n_ctx: cfg.context, n_batch: 512, n_ubatch: 512, log_level: 1 });
  return { w, seconds: Number(((performance.now() - t) / 1000).toFixed(3)) };
}

async function complete(w, text, maxTokens) {
  const t = performance.now();
  const r = await w.createCompletion({ prompt: text, max_tokens: maxTokens, temperature: 0, ignore_eos: true,
                                       cache_prompt: false });
  return { timings: r.timings || {}, wall_s: (performance.now() - t) / 1000 };
}

export async function benchWllama(cfg, log) {
  let mod;
  try {
    mod = await import(new URL("index.js", WLLAMA_DIR).href);
  } catch (err) {
    log(`wllama: not installed (${err.message}); run scripts/setup_bench.sh`);
    return { skipped: "web/vendor/wllama is missing: run scripts/setup_bench.sh" };
  }
  const { Wllama } = mod;
  const lines = [];
  const out = { version: "3.8.1", libllama: Wllama.getLibllamaVersion ? Wllama.getLibllamaVersion() : null };
  // Cold: nothing in wllama's cache (OPFS); then a second instance loads the cached copy.
  try { await new Wllama({ default: "" }).cacheManager.clear(); } catch (err) { log(`wllama: cache clear: ${err}`); }
  let { w, seconds } = await load(Wllama, cfg, lines);
  out.load_cold_seconds = seconds;
  log(`wllama: loaded (cold) in ${seconds}s`);
  await w.exit();
  ({ w, seconds } = await load(Wllama, cfg, lines));
  out.load_cached_seconds = seconds;
  log(`wllama: loaded (cached) in ${seconds}s`);
  out.multithread = w.isMultithread();
  out.threads = w.getNumThreads();
  out.webgpu_available = w.isSupportWebGPU();
  Object.assign(out, backendFromLog(lines));
  out.log_lines = lines.length;
  if (out.backend === "unknown") out.log_tail = lines.slice(-30);
  log(`wllama: backend ${out.backend} (offloaded ${JSON.stringify(out.offloaded)}), threads ${out.threads}`);

  let seed = 1;
  for (const n of cfg.prefill) {
    if (n >= cfg.context) continue;
    await complete(w, prompt(n, seed++), 1);  // warm-up at this size, as for the engine
    const r = await complete(w, prompt(n, seed++), 1);
    out[`prefill_${n}_tokens_per_s`] = Number((r.timings.prompt_per_second || 0).toFixed(2));
    out[`prefill_${n}_prompt_tokens`] = r.timings.prompt_n;
    log(`wllama: prefill ${n} (${r.timings.prompt_n} tokens): ${out[`prefill_${n}_tokens_per_s`]} tokens/s`);
  }
  const longStart = Math.max(16, Math.min(cfg.context - cfg.decode - 8, cfg.long_context));
  for (const [label, start] of [["short", 16], ["long", longStart]]) {
    const r = await complete(w, prompt(start, seed++), cfg.decode);
    out[`decode_${label}_context`] = r.timings.prompt_n;
    out[`decode_${label}_tokens_per_s`] = Number((r.timings.predicted_per_second || 0).toFixed(2));
    out[`decode_${label}_tokens`] = r.timings.predicted_n;
    // Wall clock less llama.cpp's prompt time: what a caller sees, worker round trips included.
    const wallDecode = r.wall_s - (r.timings.prompt_ms || 0) / 1000;
    out[`decode_${label}_wall_tokens_per_s`] = Number((r.timings.predicted_n / wallDecode).toFixed(2));
    log(`wllama: decode ${label} (context ${r.timings.prompt_n}): ${out[`decode_${label}_tokens_per_s`]} tokens/s`);
  }
  await w.exit();
  return out;
}
