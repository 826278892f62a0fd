// Merge of split-KV attention partials (flash-decoding): one workgroup per output row combines
// the (acc[HD], max m_i, sum l_i) that sdpa_attend.wgsl left for each key split:
// out = sum_i acc_i * e_i / sum_i l_i * e_i with e_i = exp(m_i - max_i m_i).
// Rows are numbered as in sdpa_attend: row w = hk * (S*G) + n, n = s*G + g, head hk*G + g.
override WG: u32 = 64;
override HD: u32 = 64;

struct Params {
  rows: u32,       // S * Hq rows do work; extra workgroups from 2D folding return
  group: u32,      // G
  n_kv: u32,       // Hkv
  n_splits: u32,
  rows_cap: u32,   // rows per (split, kv head) slot of `part`
  seq: u32,        // S
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= p.rows) {
    return;
  }
  let per_kv = p.seq * p.group;
  let hk = w / per_kv;
  let n = w % per_kv;
  let row_words = HD + 2u;
  let split_words = p.n_kv * p.rows_cap * row_words;
  let first = (hk * p.rows_cap + n) * row_words;  // this row's slot in split 0
  var m = -3.0e38;
  for (var i = 0u; i < p.n_splits; i++) {
    m = max(m, part[first + i * split_words + HD]);
  }
  var l = 0.0;
  for (var i = 0u; i < p.n_splits; i++) {
    let at = first + i * split_words;
    l += part[at + HD + 1u] * exp(part[at + HD] - m);
  }
  let inv = 1.0 / l;
  let n_heads = p.n_kv * p.group;
  let o = ((n / p.group) * n_heads + hk * p.group + n % p.group) * HD;
  for (var d = lid; d < HD; d += WG) {
    var a = 0.0;
    for (var i = 0u; i < p.n_splits; i++) {
      let at = first + i * split_words;
      a += part[at + d] * exp(part[at + HD] - m);
    }
    out[o + d] = a * inv;
  }
}
