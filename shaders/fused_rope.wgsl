// Interleaved rotary embedding of q AND k in one dispatch (py_engine.apply_rotary_emb_qk):
// threads 0 .. q_pairs-1 rotate xq ([1, S, Hq, D]), the next k_pairs threads rotate xk
// ([1, S, Hkv, D]); both read the first S rows of freqs [S, D/2]. Per pair, the arithmetic
// of rope.wgsl:
//   out[2i]   = x[2i] * cos - x[2i+1] * sin
//   out[2i+1] = x[2i] * sin + x[2i+1] * cos
// Entry `rope_kv` (py_engine.apply_rotary_emb_qk_kv) also does the KV-cache write of
// sdpa_with_kv_cache: rotated k goes straight into k_cache and v into v_cache at word
// input_pos * Hkv * D, input_pos read from its SymInt's uniform slot, so a decode step's new
// position costs the host nothing here (the attention checks input_pos + S <= Cmax; the
// shader never writes past the cache either way). With POS_ROWS = 1
// (py_engine.apply_rotary_emb_qk_kv_at) fcos / fsin are whole tables and row s of the step
// rotates by table row input_pos + s instead of row s of a slice. KV16 (rope_kv only): the caches
// are packed f16 pairs (element 2i in the low half of word i), one word per pair.
override WG: u32 = 256;
override POS_ROWS: u32 = 0u;

struct Params {
  q_pairs: u32,   // S * Hq * D/2 at the live S
  k_pairs: u32,   // S * Hkv * D/2
  q_heads: u32,
  k_heads: u32,
  half_dim: u32,  // D/2
  row_words: u32,   // rope_kv: words per cache position (Hkv * D)
  cache_len: u32,   // rope_kv: words per cache
  cache_rows: u32,  // rope_kv: positions per cache (cache_len / row_words)
}

@group(0) @binding(0) var<storage, read> xq: array<f32>;
@group(0) @binding(1) var<storage, read> xk: array<f32>;
@group(0) @binding(2) var<storage, read> fcos: array<f32>;
@group(0) @binding(3) var<storage, read> fsin: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_q: array<f32>;
//#if KV16
@group(0) @binding(5) var<storage, read_write> out_k: array<u32>;
//#else
@group(0) @binding(5) var<storage, read_write> out_k: array<f32>;
//#endif
@group(0) @binding(6) var<uniform> p: Params;

// Row `row0` + s of the freqs for pair `pair` of a [S, heads, D/2 pairs] tensor.
fn freq_index(pair: u32, heads: u32, row0: u32) -> u32 {
  let i = pair % p.half_dim;
  let s = pair / (p.half_dim * heads);
  return (row0 + s) * p.half_dim + i;
}

// rope_kv only.
@group(0) @binding(7) var<storage, read> xv: array<f32>;
//#if KV16
@group(0) @binding(8) var<storage, read_write> v_cache: array<u32>;
//#else
@group(0) @binding(8) var<storage, read_write> v_cache: array<f32>;
//#endif
@group(0) @binding(9) var<uniform> input_pos: vec4<i32>;  // a SymInt slot: the value is .x

// Pair `pair` of x rotated by its frequency: (out[2i], out[2i+1]).
fn rotated(a: f32, b: f32, pair: u32, heads: u32, row0: u32) -> vec2<f32> {
  let f = freq_index(pair, heads, row0);
  let c = fcos[f];
  let sn = fsin[f];
  return vec2<f32>(a * c - b * sn, a * sn + b * c);
}

fn rotate_q(t: u32, row0: u32) {
  let r = rotated(xq[2u * t], xq[2u * t + 1u], t, p.q_heads, row0);
  out_q[2u * t] = r.x;
  out_q[2u * t + 1u] = r.y;
}

// k pair `pair` rotated into out_k at element `at` (even).
fn rotate_k(pair: u32, at: u32, row0: u32) {
  let r = rotated(xk[2u * pair], xk[2u * pair + 1u], pair, p.k_heads, row0);
//#if KV16
  out_k[at / 2u] = pack2x16float(r);
//#else
  out_k[at] = r.x;
  out_k[at + 1u] = r.y;
//#endif
}

// v pair `pair` into v_cache at element `at` (even).
fn put_v(pair: u32, at: u32) {
//#if KV16
  v_cache[at / 2u] = pack2x16float(vec2<f32>(xv[2u * pair], xv[2u * pair + 1u]));
//#else
  v_cache[at] = xv[2u * pair];
  v_cache[at + 1u] = xv[2u * pair + 1u];
//#endif
}

@compute @workgroup_size(WG)
fn rope_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * nwg.x + wid.x) * WG + lid;
  let pos = input_pos.x;
  let row0 = select(0u, u32(max(pos, 0)), POS_ROWS != 0u);
  if (t < p.q_pairs) {
    rotate_q(t, row0);
  } else if (t < p.q_pairs + p.k_pairs) {
    let pair = t - p.q_pairs;
    if (pos < 0 || u32(pos) >= p.cache_rows) {
      return;
    }
    let dst = u32(pos) * p.row_words;  // < cache_len: no wrap
    if (2u * pair + 1u >= p.cache_len - dst) {
      return;
    }
    let at = dst + 2u * pair;
    rotate_k(pair, at, row0);
    put_v(pair, at);
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * nwg.x + wid.x) * WG + lid;
  if (t < p.q_pairs) {
    rotate_q(t, 0u);
  } else if (t < p.q_pairs + p.k_pairs) {
    let pair = t - p.q_pairs;
    rotate_k(pair, 2u * pair, 0u);
  }
}
