// GENERATED from attention_block.wgsl.in by `python -m py_engine.ops.fused_shader_text`: edit the template.
// A decode step's attention folded into the output projection after it (py_engine.linear_gguf_attend,
// ops/attention_block.py). Short contexts: every workgroup computes the step's attention for all
// HQ heads from the rotated q and the KV caches (a few KB of keys, read from L2 by each of the
// workgroups: 72 for SmolLM2 with 8 rows each) into workgroup memory, then multiplies its
// RP * WG / TPR rows of the repacked weight by it, so the attention needs no dispatch of its own
// (nor its split merge). Past MAXK keys the attention runs on its own kernels (bp.attend = 0)
// and this kernel reads their output (x4) instead.
// fused_linear.wgsl's gemv3_norm_rope wrote the rotated q and the step's key and value before.
// Weight rows are dotted as quant_weights.wgsl's gemv does (q_dot over 32-element blocks).
override FMT: u32 = 35u;
override WG: u32 = 256u;   // threads (at least HKV * HD / 4 and HQ)
override TPR: u32 = 32u;   // threads per weight row (a power of two dividing WG)
override RP: u32 = 1u;     // row passes (<= 4): RP * WG / TPR weight rows per workgroup
override SG: u32 = 1u;     // lanes whose sums subgroup shuffles finish (1: workgroup memory only)
override HD: u32 = 64u;    // head_dim, a multiple of 16
override HQ: u32 = 9u;     // q heads
override HKV: u32 = 3u;    // kv heads (G = HQ / HKV <= 8 q heads each)
override MAXK: u32 = 256u; // keys at most with bp.attend = 1 (scores are kept in workgroup memory)
override TT: u32 = 16u;    // threads per head in the softmax (a power of two, HQ * TT <= WG)

override G: u32 = HQ / HKV;
override HD4: u32 = HD / 4u;
override SLOTS: u32 = HKV * HD4;        // (kv head, 4 dims) pairs of the V step
override KG: u32 = clamp(WG / SLOTS, 1u, 8u);  // key groups of the V step (each adds into ao in turn)
override KB: u32 = HQ * HD / 32u;       // weight blocks per row

// ---- from quant_weights.wgsl (included) ----
struct Params {
  M: u32,          // activation rows (linear) / number of indices (gather)
  N: u32,          // weight rows: output columns (linear) / table rows (gather)
  K: u32,          // elements per weight row
  row_bytes: u32,  // byte stride of one weight row
  group_size: u32, // 4-bit formats: elements per scale, a multiple of 8
  s_stride_g: u32, // 4-bit formats: scale index = (k / group_size) * s_stride_g + n * s_stride_n
  s_stride_n: u32,
  has_bias: u32,
  q_stride: u32,   // repacked formats: quant words per row
  d_off: u32,      // repacked formats: word offset of the d (scale) region
  m_off: u32,      // repacked Q4_1: word offset of the m (min) region
  _pad: u32,
}
// ---- end of quant_weights.wgsl ----

// Written once per step for every layer (ops/sdpa.py's plan): the live key count, which kernel
// attends, the scale, and the RoPE row of this position (cos[j] at j, sin[j] at HD / 2 + j,
// head_dim <= 128), which gemv3_norm_rope reads.
struct BlockParams {
  n_keys: u32,
  attend: u32,  // 1: this kernel attends; 0: the attention's own kernels did (x4)
  _p0: u32,
  _p1: u32,
  scale: f32,
  _p2: u32,
  _p3: u32,
  _p4: u32,
  rope: array<vec4<f32>, 32>,
}

@group(0) @binding(0) var<storage, read> qv: array<vec4<f32>>;  // rotated q [HQ * HD]
@group(0) @binding(1) var<storage, read> w: array<u32>;         // the repacked weight
@group(0) @binding(2) var<storage, read> kc: array<vec4<f32>>;  // k_cache [C, HKV, HD]
@group(0) @binding(3) var<storage, read> vc: array<vec4<f32>>;  // v_cache
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
@group(0) @binding(6) var<storage, read> x4: array<vec4<f32>>;  // the attention's output (bp.attend = 0)
@group(0) @binding(7) var<storage, read> w4: array<vec4<u32>>;
@group(0) @binding(8) var<uniform> bp: BlockParams;

// ---- from quant_weights.wgsl (included) ----
// Repacked Q4: nibble `sh / 4` of each word of q.
fn nib4(q: vec4<u32>, sh: u32) -> vec4<f32> {
  return vec4<f32>((q >> vec4<u32>(sh)) & vec4<u32>(15u));
}

// Repacked Q8_0: byte `(24 - sh) / 8` of each word of q, sign-extended.
fn i8x4(q: vec4<u32>, sh: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(q << vec4<u32>(sh)) >> vec4<u32>(24u));
}

fn blk_scale(off: u32, n: u32, blk: u32) -> f32 {
  return bitcast<f32>(w[off + n * (p.K / 32u) + blk]);
}

// 32 consecutive x values (a block's worth) and their sum.
struct X32 {
  v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
  v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>,
  sum: f32,
}

fn x32_of(v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
          v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>) -> X32 {
  let sum = dot((v0 + v1) + (v2 + v3) + (v4 + v5) + (v6 + v7), vec4<f32>(1.0));
  return X32(v0, v1, v2, v3, v4, v5, v6, v7, sum);
}

fn x32(xi: u32) -> X32 {
  return x32_of(x4[xi], x4[xi + 1u], x4[xi + 2u], x4[xi + 3u], x4[xi + 4u], x4[xi + 5u], x4[xi + 6u], x4[xi + 7u]);
}

// Repacked formats (gemv only): block `blk` of weight row n dotted with x.
// Q4_x as d * dot(q, x) (+ m * sum(x) for Q4_1, - 8 d sum(x) for Q4_0): no per-element offsets.
fn q_dot(n: u32, blk: u32, x: X32) -> f32 {
  return q_block_dot(q_load(n, blk), x);
}

// A repacked block as loaded: its quant words (Q8_0: two vec4s, Q4: qa), d, and m (Q4_1), so a
// kernel can issue the loads early (attention_block.wgsl) and dot once they have arrived.
struct QBlock {
  qa: vec4<u32>,
  qb: vec4<u32>,
  d: f32,
  m: f32,
}

fn q_load(n: u32, blk: u32) -> QBlock {
  let d = blk_scale(p.d_off, n, blk);
  if (FMT == 40u) {
    let qi = (n * p.q_stride) / 4u + blk * 2u;
    return QBlock(w4[qi], w4[qi + 1u], d, 0.0);
  }
  var m = 0.0;
  if (FMT == 35u) {
    m = blk_scale(p.m_off, n, blk);
  }
  return QBlock(w4[(n * p.q_stride) / 4u + blk], vec4<u32>(0u), d, m);
}

fn q_block_dot(b: QBlock, x: X32) -> f32 {
  if (FMT == 40u) {
    let lo = dot(i8x4(b.qa, 24u), x.v0) + dot(i8x4(b.qa, 16u), x.v1) + dot(i8x4(b.qa, 8u), x.v2) + dot(i8x4(b.qa, 0u), x.v3);
    let hi = dot(i8x4(b.qb, 24u), x.v4) + dot(i8x4(b.qb, 16u), x.v5) + dot(i8x4(b.qb, 8u), x.v6) + dot(i8x4(b.qb, 0u), x.v7);
    return b.d * (lo + hi);
  }
  let q = b.qa;
  let s = dot(nib4(q, 0u), x.v0) + dot(nib4(q, 4u), x.v1) + dot(nib4(q, 8u), x.v2) + dot(nib4(q, 12u), x.v3)
        + dot(nib4(q, 16u), x.v4) + dot(nib4(q, 20u), x.v5) + dot(nib4(q, 24u), x.v6) + dot(nib4(q, 28u), x.v7);
  if (FMT == 34u) {
    return b.d * (s - 8.0 * x.sum);
  }
  return b.d * s + b.m * x.sum;
}

// ---- end of quant_weights.wgsl ----

var<workgroup> red: array<f32, WG>;
// ---- from fused_linear.wgsl.in (included) ----
// The TPR lanes' partial dots summed (lane 0 of each group gets the sum) as quant_weights.wgsl's
// lanes_sum4 does: strides down to SG in workgroup memory, then subgroup shuffles; all threads call it.
fn gemv_reduce(acc: f32, lid: u32) -> f32 {
  let lane = lid % TPR;
  var v = acc;
  if (TPR > SG) {  // uniform: overrides
    red[lid] = v;
    workgroupBarrier();
    for (var st = TPR / 2u; st >= SG; st >>= 1u) {
      if (lane < st) {
        red[lid] += red[lid + st];
      }
      workgroupBarrier();
    }
    v = red[lid];
  }
//#if SUBGROUPS
  for (var st = min(SG, TPR) / 2u; st > 0u; st >>= 1u) {
    v += subgroupShuffleDown(v, st);
  }
//#endif
  return v;
}

// ---- end of fused_linear.wgsl.in ----

var<workgroup> qs: array<vec4<f32>, HQ * HD4>;  // scaled q
var<workgroup> ao: array<vec4<f32>, HQ * HD4>;  // attention output: the weight rows' x
var<workgroup> sc: array<f32, HQ * MAXK>;       // scores, then exp(score - max)
var<workgroup> tmax: array<f32, HQ * TT>;       // the softmax teams' partial maxima
var<workgroup> tsum: array<f32, HQ * TT>;       // ... and partial sums

const NEG_BIG: f32 = -3.0e38;

// All HQ heads' attention over keys 0 .. bp.n_keys - 1 into ao (every thread calls it).
fn attend_all(lid: u32) {
  let n_keys = bp.n_keys;
  for (var i = lid; i < HQ * HD4; i += WG) {
    qs[i] = qv[i] * bp.scale;
    ao[i] = vec4<f32>(0.0);
  }
  workgroupBarrier();
  // Scores: thread per (key, kv head); each K row is read once for its G q heads.
  for (var pr = lid; pr < n_keys * HKV; pr += WG) {
    let hk = pr % HKV;
    var s: array<f32, 8>;
    for (var g = 0u; g < G; g++) {
      s[g] = 0.0;
    }
    for (var i = 0u; i < HD4; i += 4u) {  // four loads in flight at a time (HD a multiple of 16)
      let b = pr * HD4 + i;  // row (key * HKV + hk)
      let k0 = kc[b];
      let k1 = kc[b + 1u];
      let k2 = kc[b + 2u];
      let k3 = kc[b + 3u];
      for (var g = 0u; g < G; g++) {
        let qb = (hk * G + g) * HD4 + i;
        s[g] += dot(qs[qb], k0) + dot(qs[qb + 1u], k1) + dot(qs[qb + 2u], k2) + dot(qs[qb + 3u], k3);
      }
    }
    for (var g = 0u; g < G; g++) {
      sc[(hk * G + g) * MAXK + pr / HKV] = s[g];
    }
  }
  workgroupBarrier();
  // Softmax per head, TT threads a head: partial maxima, then exponentials and partial sums.
  let h = lid / TT;
  let sub = lid % TT;
  if (h < HQ) {
    var mx = NEG_BIG;
    for (var j = sub; j < n_keys; j += TT) {
      mx = max(mx, sc[h * MAXK + j]);
    }
    tmax[lid] = mx;
  }
  workgroupBarrier();
  if (h < HQ) {
    var mx = NEG_BIG;
    for (var t = 0u; t < TT; t++) {
      mx = max(mx, tmax[h * TT + t]);
    }
    var sum = 0.0;
    for (var j = sub; j < n_keys; j += TT) {
      let e = exp(sc[h * MAXK + j] - mx);
      sc[h * MAXK + j] = e;
      sum += e;
    }
    tsum[lid] = sum;
  }
  workgroupBarrier();
  // Weighted V: thread (key group, kv head, 4 dims) over keys kg, kg + KG, ... for its G heads;
  // the key groups add into ao one after another.
  let kg = lid / SLOTS;
  let r = lid % SLOTS;
  let hk = r / HD4;
  let d4 = r % HD4;
  var acc: array<vec4<f32>, 8>;
  for (var g = 0u; g < G; g++) {
    acc[g] = vec4<f32>(0.0);
  }
  if (kg < KG) {
    // Four keys' V loads issued together (past the end: the last key again, weight 0).
    for (var j0 = kg; j0 < n_keys; j0 += 4u * KG) {
      var vs: array<vec4<f32>, 4>;
      for (var u = 0u; u < 4u; u++) {
        vs[u] = vc[min(j0 + u * KG, n_keys - 1u) * SLOTS + r];
      }
      for (var u = 0u; u < 4u; u++) {
        let j = j0 + u * KG;
        if (j < n_keys) {
          for (var g = 0u; g < G; g++) {
            acc[g] += sc[(hk * G + g) * MAXK + j] * vs[u];
          }
        }
      }
    }
  }
  for (var turn = 0u; turn < KG; turn++) {
    if (kg == turn) {
      for (var g = 0u; g < G; g++) {
        ao[(hk * G + g) * HD4 + d4] += acc[g];
      }
    }
    workgroupBarrier();
  }
  for (var i = lid; i < HQ * HD4; i += WG) {
    let hh = i / HD4;
    var l = 0.0;
    for (var t = 0u; t < TT; t++) {
      l += tsum[hh * TT + t];
    }
    ao[i] = ao[i] / l;
  }
}

fn ao32(b: u32) -> X32 {
  let xi = b * 8u;
  return x32_of(ao[xi], ao[xi + 1u], ao[xi + 2u], ao[xi + 3u], ao[xi + 4u], ao[xi + 5u], ao[xi + 6u], ao[xi + 7u]);
}

// Lane `lane` (< KB) of TPR: its share of weight row n . ao (quant_weights.wgsl's row_dot over
// ao), its first block `first` loaded already.
fn row_dot_ao(n: u32, lane: u32, first: QBlock) -> f32 {
  var acc = q_block_dot(first, ao32(lane));
  for (var b = lane + TPR; b < KB; b += TPR) {
    acc += q_dot(n, b, ao32(b));
  }
  return acc;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let wg = wid.y * nwg.x + wid.x;
  let cols = WG / TPR;
  let lane = lid % TPR;
  // The first weight block of each of this thread's rows, loaded before the attention so that
  // its trip to memory overlaps it.
  var first: array<QBlock, 4>;  // RP <= 4
  for (var rp = 0u; rp < RP; rp++) {
    let n = (wg * RP + rp) * cols + lid / TPR;
    if (n < p.N && lane < KB) {
      first[rp] = q_load(n, lane);
    }
  }
  if (bp.attend != 0u) {  // uniform: every thread takes the same branch
    attend_all(lid);
  } else {
    for (var i = lid; i < HQ * HD4; i += WG) {
      ao[i] = x4[i];
    }
  }
  workgroupBarrier();
  for (var rp = 0u; rp < RP; rp++) {
    let n = (wg * RP + rp) * cols + lid / TPR;
    let live = n < p.N;
    var acc = 0.0;
    if (live && lane < KB) {
      acc = row_dot_ao(n, lane, first[rp]);
    }
    let v = gemv_reduce(acc, lid);
    if (live && lane == 0u) {
      out[n] = v;
    }
  }
}
