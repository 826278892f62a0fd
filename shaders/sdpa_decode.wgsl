// Decode attention (S = 1): one workgroup per (key split, kv head) holds all G = Hq/Hkv q rows of
// that kv head, so each K/V row is read once for the G heads. Keys are walked in tiles of TILE
// with an online softmax and three barriers per tile:
//   A. scores: LPK consecutive threads share one key, each a strided slice of head_dim (a K row is
//      read by consecutive threads: coalesced); partial dots go to red_s;
//   B. a team of TPR threads per row sums the partials of its keys, masks keys past the end and
//      takes a partial max (pm_s);
//   C. every thread of a team reads the team's partial maxima (the tile max), turns its scores
//      into exp(score - running max) and leaves a partial sum (ps_s) and the rescale (alpha_s);
//   D. weighted V: thread (key group, dim) accumulates its dims over its keys (V rows coalesced).
// Key groups are added once at the end. One split: normalized rows go to `out`; several splits
// (flash-decoding): (acc[HD], max, sum) per row go to `part` and sdpa_merge.wgsl combines them.
// Layouts: q/out [1, 1, Hq, HD]; caches [1, Cmax, Hkv, HD]; part [split][Hkv][rows_cap][HD + 2].
// Entry `main_rope` (py_engine.rope_sdpa_kv) also does the step's RoPE and KV-cache write, so
// the rope_kv dispatch before it idles on decode steps: q arrives unrotated and is rotated as it
// is loaded (rope.wgsl's arithmetic), and the workgroup whose split ends at the new key writes
// that key (rotated) and value into the caches before reading them.
const BQ: u32 = 8u;     // rows per workgroup at most (private arrays are sized by it)
const DPT: u32 = 4u;    // dims per thread in the V step at most: HD <= DPT * WG (checked by the host)
const LPK: u32 = 8u;    // threads sharing one key's dot product
const TILE: u32 = 32u;  // keys per tile (a multiple of WG / LPK; mirrored as DECODE_TILE in sdpa.py)
override RB: u32 = 3;   // rows = G, <= BQ
override WG: u32 = 128; // threads, a power of two in [LPK, 512]
override HD: u32 = 64;  // head_dim
override POS_ROWS: u32 = 0u;  // main_rope: fcos / fsin are whole tables (see below)

override KPP: u32 = WG / LPK;                  // keys per score pass
const R8: u32 = 8u;                         // row teams are laid out for up to BQ rows
override TPR: u32 = min(WG / R8, 8u);          // threads per row team in steps B and C
override KG: u32 = max(WG / HD, 1u);           // key groups of the V step

struct Params {
  n_kv: u32,       // Hkv
  group: u32,      // G (= RB)
  n_splits: u32,   // 1: write out directly; more: write partials
  split_len: u32,  // keys per split, a multiple of TILE
  n_keys: u32,     // input_pos + 1
  scale: f32,
  rows_cap: u32,   // rows per (split, kv head) slot of `part`
  n_wg: u32,       // n_splits * n_kv workgroups do work; extra ones from 2D folding return
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
//#if KV16
// The caches as packed f16 pairs (element 2i in the low half of word i); main_rope writes pairs.
@group(0) @binding(1) var<storage, read_write> k_cache: array<u32>;  // written by main_rope only
@group(0) @binding(2) var<storage, read_write> v_cache: array<u32>;
fn k_at(e: u32) -> f32 { return unpack2x16float(k_cache[e / 2u])[e % 2u]; }
fn v_at(e: u32) -> f32 { return unpack2x16float(v_cache[e / 2u])[e % 2u]; }
//#else
@group(0) @binding(1) var<storage, read_write> k_cache: array<f32>;  // written by main_rope only
@group(0) @binding(2) var<storage, read_write> v_cache: array<f32>;
fn k_at(e: u32) -> f32 { return k_cache[e]; }
fn v_at(e: u32) -> f32 { return v_cache[e]; }
//#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
// main_rope only: the step's k and v ([1, 1, Hkv, HD], unrotated k) and the cos / sin row of
// its position ([1, HD / 2]), or with POS_ROWS = 1 the whole tables ([R, HD / 2], row
// n_keys - 1 = input_pos; py_engine.rope_sdpa_kv_at).
@group(0) @binding(6) var<storage, read> k_new: array<f32>;
@group(0) @binding(7) var<storage, read> v_new: array<f32>;
@group(0) @binding(8) var<storage, read> fcos: array<f32>;
@group(0) @binding(9) var<storage, read> fsin: array<f32>;

var<workgroup> q_s: array<f32, RB * HD>;            // scaled query rows
var<workgroup> red_s: array<f32, RB * TILE * LPK>;  // partial dots; at the end, key-group sums
var<workgroup> p_s: array<f32, RB * TILE>;          // scores, then exp(score - running max)
var<workgroup> pm_s: array<f32, R8 * TPR>;          // partial max per team thread
var<workgroup> ps_s: array<f32, R8 * TPR>;          // partial sum per team thread
var<workgroup> alpha_s: array<f32, BQ>;             // rescale of the accumulators for this tile
var<workgroup> l_s: array<f32, BQ>;                 // final sums (one split)

const NEG_BIG: f32 = -3.0e38;  // stands in for -inf (masked keys)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= p.n_wg) {
    return;  // the whole workgroup leaves: control flow stays uniform
  }
  let hk = w % p.n_kv;
  for (var i = lid; i < RB * HD; i += WG) {
    q_s[i] = q[hk * RB * HD + i] * p.scale;  // rows hk*G .. hk*G+G-1 are contiguous at S = 1
  }
  workgroupBarrier();
  attend(w, lid);
}

// Element 2j or 2j+1 of a rotated pair (a, b) = (x[2j], x[2j+1]).
fn rotated(a: f32, b: f32, j: u32, odd: bool) -> f32 {
  let f = select(0u, (p.n_keys - 1u) * (HD / 2u), POS_ROWS != 0u) + j;
  let c = fcos[f];
  let sn = fsin[f];
  return select(a * c - b * sn, a * sn + b * c, odd);
}

@compute @workgroup_size(WG)
fn main_rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= p.n_wg) {
    return;
  }
  let hk = w % p.n_kv;
  for (var i = lid; i < RB * HD; i += WG) {
    let pair = hk * RB * HD + (i & ~1u);
    q_s[i] = rotated(q[pair], q[pair + 1u], (i % HD) / 2u, (i & 1u) == 1u) * p.scale;
  }
  if (w / p.n_kv == p.n_splits - 1u) {  // the split holding key n_keys - 1, the new one
    let at = (p.n_keys - 1u) * p.n_kv * HD + hk * HD;
//#if KV16
    for (var j = lid; j < HD / 2u; j += WG) {  // pair j: elements 2j, 2j + 1
      let pair = hk * HD + 2u * j;
      let k = vec2<f32>(rotated(k_new[pair], k_new[pair + 1u], j, false), rotated(k_new[pair], k_new[pair + 1u], j, true));
      k_cache[at / 2u + j] = pack2x16float(k);
      v_cache[at / 2u + j] = pack2x16float(vec2<f32>(v_new[pair], v_new[pair + 1u]));
    }
//#else
    for (var d = lid; d < HD; d += WG) {
      let pair = hk * HD + (d & ~1u);
      k_cache[at + d] = rotated(k_new[pair], k_new[pair + 1u], d / 2u, (d & 1u) == 1u);
      v_cache[at + d] = v_new[hk * HD + d];
    }
//#endif
  }
  storageBarrier();  // the new row is read by other threads of this workgroup below
  workgroupBarrier();
  attend(w, lid);
}

// Everything after q_s is loaded: online softmax over this workgroup's keys, then out or part.
fn attend(w: u32, lid: u32) {
  let hk = w % p.n_kv;
  let split = w / p.n_kv;
  let kv_stride = p.n_kv * HD;
  let kv_base = hk * HD;
  let lane = lid % LPK;
  let team_row = lid / TPR;  // row of this thread's team (>= RB: idle in B and C)
  let sub = lid % TPR;
  let kg = lid / HD;         // key group of the V step (>= KG: idle there)
  var m_run = NEG_BIG;       // running max of team_row (identical across its team)
  var l_run = 0.0;           // running sum of team_row (kept by every team thread)
  var acc: array<array<f32, BQ>, DPT>;
  for (var i = 0u; i < DPT; i++) {
    for (var r = 0u; r < BQ; r++) {
      acc[i][r] = 0.0;
    }
  }

  let k_begin = split * p.split_len;
  let k_end = min(k_begin + p.split_len, p.n_keys);
  for (var k0 = k_begin; k0 < k_end; k0 += TILE) {
    // A. partial dots: key k0 + key, dims lane, lane + LPK, ... Trip counts are constants and
    // rows past k_end are clamped to the last valid one (B masks them) so loads issue back to back.
    for (var ps = 0u; ps < TILE / KPP; ps++) {
      let key = ps * KPP + lid / LPK;
      let kb = min(k0 + key, k_end - 1u) * kv_stride + kv_base;
      var sc: array<f32, BQ>;
      for (var r = 0u; r < RB; r++) {
        sc[r] = 0.0;
      }
      for (var i = 0u; i < (HD + LPK - 1u) / LPK; i++) {
        let d = lane + i * LPK;
        if (d < HD) {
          let kv = k_at(kb + d);
          for (var r = 0u; r < RB; r++) {
            sc[r] += q_s[r * HD + d] * kv;
          }
        }
      }
      for (var r = 0u; r < RB; r++) {
        red_s[(r * TILE + key) * LPK + lane] = sc[r];
      }
    }
    workgroupBarrier();
    // B. scores of the team's row: keys sub, sub + TPR, ...; partial max.
    if (team_row < RB) {
      var mx = NEG_BIG;
      for (var key = sub; key < TILE; key += TPR) {
        let at = (team_row * TILE + key) * LPK;
        var s = 0.0;
        for (var l = 0u; l < LPK; l++) {
          s += red_s[at + l];
        }
        s = select(NEG_BIG, s, k0 + key < k_end);
        p_s[team_row * TILE + key] = s;
        mx = max(mx, s);
      }
      pm_s[lid] = mx;
    }
    workgroupBarrier();
    // C. tile max, exponentials (this thread's own keys), partial sum, rescale.
    if (team_row < RB) {
      var mx = NEG_BIG;
      for (var t = 0u; t < TPR; t++) {
        mx = max(mx, pm_s[team_row * TPR + t]);
      }
      let m_new = max(m_run, mx);
      var sum = 0.0;
      for (var key = sub; key < TILE; key += TPR) {
        let s = p_s[team_row * TILE + key];
        var e = 0.0;
        if (s > NEG_BIG) {
          e = exp(s - m_new);
        }
        p_s[team_row * TILE + key] = e;
        sum += e;
      }
      ps_s[lid] = sum;
      let alpha = exp(m_run - m_new);  // 0 when m_run is NEG_BIG and m_new a real score
      if (sub == 0u) {
        alpha_s[team_row] = alpha;
      }
      l_run *= alpha;
      m_run = m_new;
    }
    workgroupBarrier();
    // D. weighted V over this tile (and the team's sum; ps_s is stable until the next C).
    if (team_row < RB) {
      var sum = 0.0;
      for (var t = 0u; t < TPR; t++) {
        sum += ps_s[team_row * TPR + t];
      }
      l_run += sum;
    }
    if (kg < KG) {
      for (var i = 0u; i < DPT; i++) {
        let d = lid % HD + i * WG;
        if (d < HD) {
          for (var r = 0u; r < RB; r++) {
            acc[i][r] *= alpha_s[r];
          }
          // constant trip count; keys past k_end have weight 0 and read the last valid row
          for (var u = 0u; u < (TILE + KG - 1u) / KG; u++) {
            let t_raw = u * KG + kg;  // past TILE only when KG does not divide TILE: weight 0
            let t = min(t_raw, TILE - 1u);
            let vv = v_at(min(k0 + t, k_end - 1u) * kv_stride + kv_base + d) * select(0.0, 1.0, t_raw < TILE);
            for (var r = 0u; r < RB; r++) {
              acc[i][r] += p_s[r * TILE + t] * vv;
            }
          }
        }
      }
    }
    // No barrier here: the next tile's A writes only red_s, and B/C rewrite p_s/alpha_s/ps_s
    // behind A's barrier.
  }

  // Add the key groups' accumulators (red_s holds RB * TILE * LPK >= KG * RB * HD floats).
  workgroupBarrier();  // the last tile's red_s reads (B) are long done; D's p_s reads too
  if (kg < KG) {
    for (var i = 0u; i < DPT; i++) {
      let d = lid % HD + i * WG;
      if (d < HD) {
        for (var r = 0u; r < RB; r++) {
          red_s[(kg * RB + r) * HD + d] = acc[i][r];
        }
      }
    }
  }
  if (team_row < RB && sub == 0u) {
    l_s[team_row] = l_run;
    if (p.n_splits > 1u) {
      let at = ((split * p.n_kv + hk) * p.rows_cap + team_row) * (HD + 2u);
      part[at + HD] = m_run;
      part[at + HD + 1u] = l_run;
    }
  }
  workgroupBarrier();
  let slot = (split * p.n_kv + hk) * p.rows_cap;
  for (var i = lid; i < RB * HD; i += WG) {
    let r = i / HD;
    let d = i % HD;
    var a = 0.0;
    for (var g = 0u; g < KG; g++) {
      a += red_s[(g * RB + r) * HD + d];
    }
    if (p.n_splits == 1u) {
      out[hk * RB * HD + i] = a / l_s[r];
    } else {
      part[(slot + r) * (HD + 2u) + d] = a;
    }
  }
}
