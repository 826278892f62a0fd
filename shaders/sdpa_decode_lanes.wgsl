// Decode attention (S = 1) for CPU adapters with subgroups (SwiftShader, lavapipe): no barrier
// inside the key loop and every load a whole 16-float slice. A CPU runs an invocation as one
// lane of a SIMD register and reads memory at a computed index lane by lane, word by word, with
// a fixed cost per read: one read of 16 floats costs about a quarter as much per word as scalar
// reads, and values indexed by constants stay in registers.
//
// One workgroup per kv head. Its threads form KG key groups of L = HD / 16 lanes; lane i of a
// group owns dims 16 i .. 16 i + 15 of the head: its slice of the G <= 4 q rows (in registers),
// of each key's K and V rows (one read each) and of the rows' output accumulators. Group g takes
// keys g, g + KG, ...: each lane dots its slices, a butterfly of subgroup shuffles over the L
// lanes gives all of them the same full scores, and the group keeps its own running max, sum and
// weighted V (online softmax). At the end the KG groups' states merge through workgroup memory.
// Bindings and Params as sdpa_attend.wgsl, whose decode dispatch this replaces (the q, K, V and
// out tensors viewed as 16-float slices; HD a multiple of 16, L a power of two no larger than the
// subgroup). Pipelines set SG = L, which keeps the subgroup code.
override HD: u32 = 64;     // head_dim
override RB: u32 = 3;      // q rows per kv head (G), 1 .. 4
override KG: u32 = 4;      // key groups per workgroup
override SG: u32 = 4;      // = L (the pipeline flag for subgroup code)
override L: u32 = HD / 16u;

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

struct Slice {
  a: vec4<f32>,
  b: vec4<f32>,
  c: vec4<f32>,
  d: vec4<f32>,
}

@group(0) @binding(0) var<storage, read> q: array<Slice>;
@group(0) @binding(1) var<storage, read> k_cache: array<Slice>;
@group(0) @binding(2) var<storage, read> v_cache: array<Slice>;
@group(0) @binding(3) var<storage, read_write> out: array<Slice>;
@group(0) @binding(5) var<uniform> p: Params;

// Per thread: its group's running max and sum of the rows, and its slice of the rows' weighted V.
var<workgroup> m_s: array<vec4<f32>, KG * L>;
var<workgroup> l_s: array<vec4<f32>, KG * L>;
var<workgroup> acc_s: array<array<Slice, 4>, KG * L>;

const NEG_BIG: f32 = -3.0e38;

fn dot16(x: Slice, y: Slice) -> f32 {
  return (dot(x.a, y.a) + dot(x.b, y.b)) + (dot(x.c, y.c) + dot(x.d, y.d));
}

fn scaled(x: Slice, s: f32) -> Slice {
  return Slice(x.a * s, x.b * s, x.c * s, x.d * s);
}

fn divided(x: Slice, s: f32) -> Slice {
  return Slice(x.a / s, x.b / s, x.c / s, x.d / s);
}

// acc * alpha + pj * v
fn blend(acc: Slice, alpha: f32, pj: f32, v: Slice) -> Slice {
  return Slice(acc.a * alpha + pj * v.a, acc.b * alpha + pj * v.b, acc.c * alpha + pj * v.c, acc.d * alpha + pj * v.d);
}

fn q_row(hk: u32, r: u32, lane: u32) -> Slice {
  if (r >= RB) {
    return Slice(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  }
  return scaled(q[(hk * RB + r) * L + lane], p.scale);  // rows hk*G .. hk*G+G-1 are contiguous at S = 1
}

@compute @workgroup_size(KG * L)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) t: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= p.n_wg) {
    return;  // uniform per workgroup
  }
  let hk = w;
  let lane = t % L;
  let grp = t / L;
  let q0 = q_row(hk, 0u, lane);
  let q1 = q_row(hk, 1u, lane);
  let q2 = q_row(hk, 2u, lane);
  let q3 = q_row(hk, 3u, lane);
  let zero = Slice(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  var a0 = zero;
  var a1 = zero;
  var a2 = zero;
  var a3 = zero;
  var m = vec4<f32>(NEG_BIG);  // per row (components past RB unused)
  var l = vec4<f32>(0.0);
  let k_end = p.input_pos + 1u;
  // A loop bound the same for every thread (the shuffles need uniform control flow): in the last
  // round, groups past the end re-read the last key and weigh it 0.
  for (var j0 = 0u; j0 < k_end; j0 += KG) {
    let j = j0 + grp;
    let at = (min(j, k_end - 1u) * p.n_kv + hk) * L + lane;
    let kc = k_cache[at];
    var s = vec4<f32>(dot16(q0, kc), 0.0, 0.0, 0.0);
    if (RB > 1u) { s.y = dot16(q1, kc); }
    if (RB > 2u) { s.z = dot16(q2, kc); }
    if (RB > 3u) { s.w = dot16(q3, kc); }
//#if SUBGROUPS
    for (var st = 1u; st < L; st <<= 1u) {
      s += subgroupShuffleXor(s, st);  // commutative pairs: every lane gets the same sums
    }
//#endif
    let live = j < k_end;
    let m_new = select(m, max(m, s), live);
    let alpha = exp(m - m_new);  // 0 at the first key (m = NEG_BIG), 1 past the end
    let pj = select(vec4<f32>(0.0), exp(s - m_new), live);
    l = l * alpha + pj;
    m = m_new;
    let vc = v_cache[at];
    a0 = blend(a0, alpha.x, pj.x, vc);
    if (RB > 1u) { a1 = blend(a1, alpha.y, pj.y, vc); }
    if (RB > 2u) { a2 = blend(a2, alpha.z, pj.z, vc); }
    if (RB > 3u) { a3 = blend(a3, alpha.w, pj.w, vc); }
  }
  m_s[t] = m;
  l_s[t] = l;
  acc_s[t] = array<Slice, 4>(a0, a1, a2, a3);
  workgroupBarrier();
  if (grp != 0u) {
    return;
  }
  // Group 0 merges: out = sum_g acc_g e^(m_g - M) / sum_g l_g e^(m_g - M), M the largest m_g.
  var mx = vec4<f32>(NEG_BIG);
  for (var g = 0u; g < KG; g++) {
    mx = max(mx, m_s[g * L + lane]);
  }
  var total = vec4<f32>(0.0);
  var o0 = zero;
  var o1 = zero;
  var o2 = zero;
  var o3 = zero;
  for (var g = 0u; g < KG; g++) {
    let f = exp(m_s[g * L + lane] - mx);  // 0 for a group without keys
    total += l_s[g * L + lane] * f;
    let ag = acc_s[g * L + lane];
    o0 = blend(o0, 1.0, f.x, ag[0]);
    o1 = blend(o1, 1.0, f.y, ag[1]);
    o2 = blend(o2, 1.0, f.z, ag[2]);
    o3 = blend(o3, 1.0, f.w, ag[3]);
  }
  let base = hk * RB * L + lane;
  out[base] = divided(o0, total.x);
  if (RB > 1u) { out[base + L] = divided(o1, total.y); }
  if (RB > 2u) { out[base + 2u * L] = divided(o2, total.z); }
  if (RB > 3u) { out[base + 3u * L] = divided(o3, total.w); }
}
