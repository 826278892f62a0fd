// Causal GQA attention over the KV cache, flash style: one workgroup per (query row s, q head h),
// walking the visible cache rows 0 .. input_pos+s in chunks of WG keys with an online softmax.
// No scores scratch: one kernel serves prefill (S*Hq workgroups) and decode (Hq workgroups).
// Layouts: q/out [1, S, Hq, HD]; caches [1, Cmax, Hkv, HD]; q head h reads kv head h / group.
override WG: u32 = 64;   // a power of two: keys per chunk and threads per workgroup
override HD: u32 = 64;   // head_dim

struct Params {
  rows: u32,       // S * Hq workgroups do work; extra ones from 2D folding return
  n_heads: u32,    // Hq
  group: u32,      // Hq / Hkv
  kv_stride: u32,  // Hkv * HD: words per cache row
  input_pos: u32,
  scale: f32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> q_row: array<f32, HD>;  // scaled query row
var<workgroup> acc: array<f32, HD>;    // unnormalized output row; thread t owns dims t, t+WG, ...
var<workgroup> prob: array<f32, WG>;   // this chunk's exp(score - running max)
var<workgroup> red: array<f32, WG>;    // reduction scratch

const NEG_BIG: f32 = -3.0e38;  // stands in for -inf (masked keys)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;  // = s * Hq + h
  if (row >= p.rows) {
    return;  // the whole workgroup leaves: control flow stays uniform
  }
  let s = row / p.n_heads;
  let h = row % p.n_heads;
  let kv_base = (h / p.group) * HD;
  let q_base = row * HD;
  for (var d = lid; d < HD; d += WG) {
    q_row[d] = q[q_base + d] * p.scale;
    acc[d] = 0.0;
  }
  workgroupBarrier();

  let n_keys = p.input_pos + s + 1u;  // causal: row s sees cache rows 0 .. input_pos+s
  var m = NEG_BIG;  // running max, identical in every thread
  var l = 0.0;      // this thread's part of the running sum of exp(score - m)
  for (var c0 = 0u; c0 < n_keys; c0 += WG) {
    let c = c0 + lid;
    var score = NEG_BIG;
    if (c < n_keys) {
      let kb = c * p.kv_stride + kv_base;
      var dot = 0.0;
      for (var d = 0u; d < HD; d++) {
        dot += q_row[d] * k_cache[kb + d];
      }
      score = dot;
    }
    red[lid] = score;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (lid < st) {
        red[lid] = max(red[lid], red[lid + st]);
      }
      workgroupBarrier();
    }
    let m_new = max(m, red[0]);
    let alpha = exp(m - m_new);
    var pr = 0.0;
    if (c < n_keys) {
      pr = exp(score - m_new);
    }
    prob[lid] = pr;
    l = l * alpha + pr;
    m = m_new;
    workgroupBarrier();
    let n_chunk = min(WG, n_keys - c0);
    for (var d = lid; d < HD; d += WG) {
      var a = acc[d] * alpha;
      var vb = c0 * p.kv_stride + kv_base + d;
      for (var j = 0u; j < n_chunk; j++) {
        a += prob[j] * v_cache[vb];
        vb += p.kv_stride;
      }
      acc[d] = a;
    }
    workgroupBarrier();  // red and prob are rewritten by the next chunk
  }

  red[lid] = l;
  workgroupBarrier();
  for (var st = WG / 2u; st > 0u; st >>= 1u) {
    if (lid < st) {
      red[lid] += red[lid + st];
    }
    workgroupBarrier();
  }
  let inv = 1.0 / red[0];
  for (var d = lid; d < HD; d += WG) {
    out[q_base + d] = acc[d] * inv;
  }
}
