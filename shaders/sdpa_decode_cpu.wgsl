// Decode attention (S = 1) for CPU adapters (SwiftShader, lavapipe), where an invocation is one
// lane of a CPU SIMD register: loads are fast only when the lanes of a register read the same
// address (broadcast) or consecutive ones (one vector load), private arrays indexed in loops live
// in memory, and every barrier switches between all the workgroup's SIMD groups. So: one
// workgroup per kv head holds its G <= 4 q rows; WG = HD / 4 threads; keys go through in chunks
// of CH with an online softmax and three barriers per chunk:
//   A. scores: thread t takes keys t, t + WG, ... of the chunk (q rows are read as broadcasts,
//      K rows as vec4s); scores go to s_s, the thread's partial maxima to pm_s;
//   B. every thread reads the chunk max from pm_s, turns its own scores into exp(s - max) and
//      leaves its partial sums in ps_s;
//   C. weighted V: thread t owns dims t, t + WG, t + 2 WG, t + 3 WG, so a V row is read by
//      consecutive lanes (vector loads) and each row's accumulator is one vec4 in registers.
// Bindings and Params as sdpa_attend.wgsl, whose decode dispatch this replaces on CPU adapters,
// less `part`: the keys are not split (two cores gain nothing from more workgroups).
override WG: u32 = 16;  // threads = HD / 4
override HD: u32 = 64;  // head_dim, a multiple of 4
override RB: u32 = 3;   // q rows per kv head (G), 1 .. 4
const CH: u32 = 256u;   // keys per chunk
const R4: u32 = 4u;     // rows the arrays are sized for

struct Params {  // sdpa_attend.wgsl's; a decode step reads input_pos, scale and n_wg
  seq: u32,
  group: u32,
  n_kv: u32,
  n_blocks: u32,
  n_splits: u32,
  split_len: u32,
  input_pos: u32,
  scale: f32,
  rows_cap: u32,
  n_wg: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;
//#if KV16
// The caches as packed f16 pairs (element 2i in the low half of word i).
@group(0) @binding(1) var<storage, read> k_cache: array<u32>;
@group(0) @binding(2) var<storage, read> v_cache: array<u32>;
fn v_at(e: u32) -> f32 { return unpack2x16float(v_cache[e / 2u])[e % 2u]; }
//#else
@group(0) @binding(1) var<storage, read> k_cache: array<f32>;
@group(0) @binding(2) var<storage, read> v_cache: array<f32>;
fn v_at(e: u32) -> f32 { return v_cache[e]; }
//#endif
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> q_s: array<vec4<f32>, R4 * HD / 4u>;  // scaled q rows, as vec4s along d
var<workgroup> s_s: array<f32, R4 * CH>;             // scores, then exp(score - max), per row
var<workgroup> pm_s: array<f32, R4 * WG>;            // partial max per (row, thread)
var<workgroup> ps_s: array<f32, R4 * WG>;            // partial sum per (row, thread)

const NEG_BIG: f32 = -3.0e38;

fn k4(at: u32) -> vec4<f32> {
//#if KV16
  return vec4<f32>(unpack2x16float(k_cache[at / 2u]), unpack2x16float(k_cache[at / 2u + 1u]));  // at: a multiple of 4
//#else
  return vec4<f32>(k_cache[at], k_cache[at + 1u], k_cache[at + 2u], k_cache[at + 3u]);
//#endif
}

// Dims t, t + WG, t + 2 WG, t + 3 WG of the V row at `at` (consecutive threads: consecutive words).
fn v4(at: u32) -> vec4<f32> {
  return vec4<f32>(v_at(at), v_at(at + WG), v_at(at + 2u * WG), v_at(at + 3u * WG));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= p.n_wg) {
    return;
  }
  let hk = w;
  let kv_stride = p.n_kv * HD;
  let kv_base = hk * HD;
  for (var i = t; i < RB * HD / 4u; i += WG) {
    let at = hk * RB * HD + 4u * i;  // rows hk*G .. hk*G+G-1 are contiguous at S = 1
    q_s[i] = vec4<f32>(q[at], q[at + 1u], q[at + 2u], q[at + 3u]) * p.scale;
  }
  workgroupBarrier();

  let k_end = p.input_pos + 1u;
  var m_run = vec4<f32>(NEG_BIG);  // per row (components past RB unused)
  var l_run = vec4<f32>(0.0);
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var c0 = 0u; c0 < k_end; c0 += CH) {
    let cn = min(CH, k_end - c0);
    // A. scores of keys c0 + j, j = t, t + WG, ...
    var mx = vec4<f32>(NEG_BIG);
    for (var j = t; j < cn; j += WG) {
      let kb = (c0 + j) * kv_stride + kv_base;
      var s = vec4<f32>(0.0);
      for (var i = 0u; i < HD / 4u; i++) {
        let kv = k4(kb + 4u * i);
        s.x += dot(q_s[i], kv);
        if (RB > 1u) { s.y += dot(q_s[HD / 4u + i], kv); }
        if (RB > 2u) { s.z += dot(q_s[2u * HD / 4u + i], kv); }
        if (RB > 3u) { s.w += dot(q_s[3u * HD / 4u + i], kv); }
      }
      for (var r = 0u; r < RB; r++) {
        s_s[r * CH + j] = s[r];
      }
      mx = max(mx, s);
    }
    for (var r = 0u; r < RB; r++) {
      pm_s[r * WG + t] = mx[r];
    }
    workgroupBarrier();
    // B. chunk max, exponentials of this thread's keys, partial sums.
    var cmax = vec4<f32>(NEG_BIG);
    for (var u = 0u; u < WG; u++) {
      cmax = max(cmax, vec4<f32>(pm_s[u], pm_s[WG + u], pm_s[2u * WG + u], pm_s[3u * WG + u]));
    }
    let m_new = max(m_run, cmax);
    var sum = vec4<f32>(0.0);
    for (var j = t; j < cn; j += WG) {
      for (var r = 0u; r < RB; r++) {
        let e = exp(s_s[r * CH + j] - m_new[r]);
        s_s[r * CH + j] = e;
        sum[r] += e;
      }
    }
    for (var r = 0u; r < RB; r++) {
      ps_s[r * WG + t] = sum[r];
    }
    let alpha = exp(m_run - m_new);  // 0 on the first chunk (m_run = NEG_BIG)
    m_run = m_new;
    workgroupBarrier();
    // C. weighted V of the chunk; the row sums.
    var total = vec4<f32>(0.0);
    for (var u = 0u; u < WG; u++) {
      total += vec4<f32>(ps_s[u], ps_s[WG + u], ps_s[2u * WG + u], ps_s[3u * WG + u]);
    }
    l_run = l_run * alpha + total;
    acc0 *= alpha.x;
    acc1 *= alpha.y;
    acc2 *= alpha.z;
    acc3 *= alpha.w;
    var vb = c0 * kv_stride + kv_base + t;
    for (var j = 0u; j < cn; j++) {
      let vv = v4(vb);
      acc0 += s_s[j] * vv;
      if (RB > 1u) { acc1 += s_s[CH + j] * vv; }
      if (RB > 2u) { acc2 += s_s[2u * CH + j] * vv; }
      if (RB > 3u) { acc3 += s_s[3u * CH + j] * vv; }
      vb += kv_stride;
    }
    workgroupBarrier();  // s_s, pm_s and ps_s are rewritten by the next chunk
  }

  for (var r = 0u; r < RB; r++) {
    var a = acc0;
    if (r == 1u) { a = acc1; }
    if (r == 2u) { a = acc2; }
    if (r == 3u) { a = acc3; }
    for (var i = 0u; i < 4u; i++) {
      out[(hk * RB + r) * HD + t + i * WG] = a[i] / l_run[r];
    }
  }
}
