// Merge of split-KV attention partials (flash-decoding): one workgroup per output row combines
// the (acc[HD], max m_i, sum l_i) that sdpa_attend.wgsl / sdpa_decode.wgsl left for each key split:
// out = sum_i acc_i * e_i / sum_i l_i * e_i with e_i = exp(m_i - max_i m_i).
// Rows are numbered as in sdpa_attend: row w = hk * (S*G) + n, n = s*G + g, head hk*G + g.
// Latency, not bandwidth, bounds this: the split stats are loaded by many threads at once (one
// round of loads) and each output dim is summed by SG thread groups over a share of the splits.
const MAXS: u32 = 64u;  // splits at most (MAX_SPLITS in sdpa.py)
override WG: u32 = 256;
override HD: u32 = 64;
override DW: u32 = min(HD, WG);      // dims per round
override SG: u32 = max(WG / HD, 1u); // thread groups sharing the splits of one dim

struct Params {
  rows: u32,       // S * Hq rows do work; extra workgroups from 2D folding return
  group: u32,      // G
  n_kv: u32,       // Hkv
  n_splits: u32,   // <= MAXS
  rows_cap: u32,   // rows per (split, kv head) slot of `part`
  seq: u32,        // S
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> m_s: array<f32, MAXS>;  // max of split i
var<workgroup> l_s: array<f32, MAXS>;  // sum of split i
var<workgroup> e_s: array<f32, MAXS>;  // exp(m_i - m)
var<workgroup> acc_s: array<f32, WG>;  // per-group sums of one round

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
  let n_splits = min(p.n_splits, MAXS);
  for (var i = lid; i < n_splits; i += WG) {
    m_s[i] = part[first + i * split_words + HD];
    l_s[i] = part[first + i * split_words + HD + 1u];
  }
  workgroupBarrier();
  var m = -3.0e38;
  for (var i = 0u; i < n_splits; i++) {
    m = max(m, m_s[i]);
  }
  for (var i = lid; i < n_splits; i += WG) {
    e_s[i] = exp(m_s[i] - m);
  }
  workgroupBarrier();
  var l = 0.0;
  for (var i = 0u; i < n_splits; i++) {
    l += l_s[i] * e_s[i];
  }
  let inv = 1.0 / l;
  let n_heads = p.n_kv * p.group;
  let o = ((n / p.group) * n_heads + hk * p.group + n % p.group) * HD;
  let sg = lid / DW;
  for (var d0 = 0u; d0 < HD; d0 += DW) {
    let d = d0 + lid % DW;
    var a = 0.0;
    if (sg < SG && d < HD) {
      for (var i = sg; i < n_splits; i += SG) {
        a += part[first + i * split_words + d] * e_s[i];
      }
    }
    acc_s[lid] = a;
    workgroupBarrier();
    if (lid < DW && d < HD) {
      var t = 0.0;
      for (var g = 0u; g < SG; g++) {
        t += acc_s[g * DW + lid];
      }
      out[o + d] = t * inv;
    }
    workgroupBarrier();  // acc_s is rewritten by the next round
  }
}
