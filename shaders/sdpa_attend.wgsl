// Causal GQA attention over the KV cache, tiled: one workgroup per (key split, kv head, row block).
// The S*G query rows of one kv head (G = Hq/Hkv q heads share it) are numbered n = s*G + g; a
// block holds RB consecutive ones, so every K/V row a workgroup reads serves all of them (the G
// heads of a decode step, or ~RB/G query positions of a prefill). Keys are walked in tiles of WG
// with an online softmax; tiles past the block's last visible key are never visited (causal skip).
// One split (prefill, short context): the normalized rows go straight to `out`. Several splits
// (decode at long context, flash-decoding): each workgroup covers split_len keys and leaves
// (acc[HD], max, sum) per row in `part`; sdpa_merge.wgsl combines the splits.
// Layouts: q/out [1, S, Hq, HD]; caches [1, Cmax, Hkv, HD]; part [split][Hkv][rows_cap][HD + 2].
const BQ: u32 = 16u;   // query rows per workgroup at most (a const: private arrays are sized by it)
override RB: u32 = 16; // query rows per workgroup of this pipeline, <= BQ (G for a decode step)
const DPT: u32 = 4u;   // output dims per thread at most: HD <= DPT * WG (checked by the host)
override WG: u32 = 64; // threads per workgroup = keys per tile, a power of two
override HD: u32 = 64; // head_dim

struct Params {
  seq: u32,        // S (live)
  group: u32,      // G = Hq / Hkv
  n_kv: u32,       // Hkv
  n_blocks: u32,   // ceil(S * G / RB)
  n_splits: u32,   // 1: write out directly; more: write partials
  split_len: u32,  // keys per split, a multiple of WG
  input_pos: u32,
  scale: f32,
  rows_cap: u32,   // rows per (split, kv head) slot of `part`
  n_wg: u32,       // n_splits * n_kv * n_blocks workgroups do work; extra ones from 2D folding return
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
//#if KV16
// The caches as packed f16 pairs (element 2i in the low half of word i).
@group(0) @binding(1) var<storage, read> k_cache: array<u32>;
@group(0) @binding(2) var<storage, read> v_cache: array<u32>;
fn k_at(e: u32) -> f32 { return unpack2x16float(k_cache[e / 2u])[e % 2u]; }
fn v_at(e: u32) -> f32 { return unpack2x16float(v_cache[e / 2u])[e % 2u]; }
//#else
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
fn k_at(e: u32) -> f32 { return k_cache[e]; }
fn v_at(e: u32) -> f32 { return v_cache[e]; }
//#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> q_s: array<f32, RB * HD>;  // scaled query rows of the block
var<workgroup> p_s: array<f32, RB * WG>;  // this tile's scores, then exp(score - running max)
var<workgroup> m_s: array<f32, RB>;       // running max per row
var<workgroup> l_s: array<f32, RB>;       // running sum of exp(score - max) per row
var<workgroup> alpha_s: array<f32, RB>;   // rescale of the accumulators for this tile

const NEG_BIG: f32 = -3.0e38;  // stands in for -inf (masked keys)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= p.n_wg) {
    return;  // the whole workgroup leaves: control flow stays uniform
  }
  let blk = p.n_blocks - 1u - w % p.n_blocks;  // the longest (last) blocks start first
  let hk = (w / p.n_blocks) % p.n_kv;
  let split = w / (p.n_blocks * p.n_kv);
  let n_heads = p.n_kv * p.group;
  let kv_stride = p.n_kv * HD;
  let kv_base = hk * HD;
  let n0 = blk * RB;
  let n_rows = min(RB, p.seq * p.group - n0);

  for (var i = lid; i < RB * HD; i += WG) {
    let r = i / HD;
    var x = 0.0;
    if (r < n_rows) {
      let n = n0 + r;
      let h = hk * p.group + n % p.group;
      x = q[((n / p.group) * n_heads + h) * HD + i % HD] * p.scale;
    }
    q_s[i] = x;
  }
  if (lid < RB) {
    m_s[lid] = NEG_BIG;
    l_s[lid] = 0.0;
  }
  workgroupBarrier();

  // Keys this workgroup visits: its split, cut at the block's last visible key.
  let k_begin = split * p.split_len;
  let k_end = min(k_begin + p.split_len, p.input_pos + (n0 + n_rows - 1u) / p.group + 1u);
  var acc: array<array<f32, BQ>, DPT>;
  for (var k0 = k_begin; k0 < k_end; k0 += WG) {
    // Scores: thread lid owns key j, for every row of the block.
    let j = k0 + lid;
    var sc: array<f32, BQ>;
    for (var r = 0u; r < RB; r++) {
      sc[r] = 0.0;  // explicit: some compilers hoist the declaration out of the loop
    }
    if (j < k_end) {
      let kb = j * kv_stride + kv_base;
      for (var d = 0u; d < HD; d++) {
        let kv = k_at(kb + d);
        for (var r = 0u; r < RB; r++) {
          sc[r] += q_s[r * HD + d] * kv;
        }
      }
    }
    for (var r = 0u; r < RB; r++) {
      // causal: row n = s*G + g sees keys 0 .. input_pos + s
      let visible = r < n_rows && j < k_end && j <= p.input_pos + (n0 + r) / p.group;
      p_s[r * WG + lid] = select(NEG_BIG, sc[r], visible);
    }
    workgroupBarrier();
    if (lid < RB) {
      let base = lid * WG;
      var mx = NEG_BIG;
      for (var t = 0u; t < WG; t++) {
        mx = max(mx, p_s[base + t]);
      }
      let m_old = m_s[lid];
      let m_new = max(m_old, mx);
      var sum = 0.0;
      for (var t = 0u; t < WG; t++) {
        let sv = p_s[base + t];
        var e = 0.0;
        if (sv > NEG_BIG) {
          e = exp(sv - m_new);
        }
        p_s[base + t] = e;
        sum += e;
      }
      let alpha = exp(m_old - m_new);  // 0 when m_old is NEG_BIG and m_new a real score
      alpha_s[lid] = alpha;
      l_s[lid] = l_s[lid] * alpha + sum;
      m_s[lid] = m_new;
    }
    workgroupBarrier();
    // Weighted V: thread lid owns dims lid, lid + WG, ... (reads of a V row are coalesced).
    let n_tile = min(WG, k_end - k0);
    for (var i = 0u; i < DPT; i++) {
      let d = lid + i * WG;
      if (d < HD) {
        for (var r = 0u; r < RB; r++) {
          acc[i][r] *= alpha_s[r];
        }
        var vb = k0 * kv_stride + kv_base + d;
        for (var t = 0u; t < n_tile; t++) {
          let vv = v_at(vb);
          for (var r = 0u; r < RB; r++) {
            acc[i][r] += p_s[r * WG + t] * vv;
          }
          vb += kv_stride;
        }
      }
    }
    workgroupBarrier();  // p_s and the row stats are rewritten by the next tile
  }

  let slot = (split * p.n_kv + hk) * p.rows_cap;  // partials of row r live at slot + r
  for (var i = 0u; i < DPT; i++) {
    let d = lid + i * WG;
    if (d < HD) {
      for (var r = 0u; r < RB; r++) {
        if (r < n_rows) {
          if (p.n_splits == 1u) {
            let n = n0 + r;
            let h = hk * p.group + n % p.group;
            out[((n / p.group) * n_heads + h) * HD + d] = acc[i][r] / l_s[r];
          } else {
            part[(slot + r) * (HD + 2u) + d] = acc[i][r];
          }
        }
      }
    }
  }
  if (p.n_splits > 1u && lid < n_rows) {
    part[(slot + lid) * (HD + 2u) + HD] = m_s[lid];
    part[(slot + lid) * (HD + 2u) + HD + 1u] = l_s[lid];
  }
}
