// Attention over the KV cache for CPU adapters with subgroups (SwiftShader, lavapipe), decode
// steps and prompts alike: no barrier, no workgroup memory, and every load a 16-float slice. A CPU runs an invocation as one
// lane of a SIMD register and reads memory at a computed index lane by lane, word by word, with
// a fixed cost per read: one read of 16 floats costs about a quarter as much per word as scalar
// reads, and values indexed by constants stay in registers.
//
// One workgroup of L = HD / 16 lanes per (query position s, kv head); it sees keys 0 ..=
// input_pos + s (causal). Lane i owns dims 16 i .. 16 i + 15 of the head:
// its slice of the G <= 4 q rows (in registers), of each key's K and V rows (one read each) and
// of the rows' output accumulators. For each key the lanes dot their slices, a butterfly of
// subgroup shuffles gives all of them the same full scores, and an online softmax updates the
// rows' running max, sum and weighted V. (Several such groups per workgroup, each over a share
// of the keys and merged at the end, ran no faster on SwiftShader, which runs a workgroup's SIMD
// groups one after another, and their merge took Chrome 0.35 s more to compile.)
// Bindings and Params as sdpa_attend.wgsl, whose dispatches this replaces (the q, K, V and
// out tensors viewed as 16-float slices; HD a multiple of 16, L a power of two no larger than the
// subgroup). Pipelines set SG = L, which keeps the subgroup code.
override HD: u32 = 64;     // head_dim
override RB: u32 = 3;      // q rows per kv head (G), 1 .. 4
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
//#if KV16
// The caches as packed f16 pairs: a slice is 8 words (element 2i in the low half of word i).
struct Half16 {
  a: vec4<u32>,
  b: vec4<u32>,
}
@group(0) @binding(1) var<storage, read> k_cache: array<Half16>;
@group(0) @binding(2) var<storage, read> v_cache: array<Half16>;

fn widened(h: Half16) -> Slice {
  return Slice(vec4<f32>(unpack2x16float(h.a.x), unpack2x16float(h.a.y)),
               vec4<f32>(unpack2x16float(h.a.z), unpack2x16float(h.a.w)),
               vec4<f32>(unpack2x16float(h.b.x), unpack2x16float(h.b.y)),
               vec4<f32>(unpack2x16float(h.b.z), unpack2x16float(h.b.w)));
}
fn k_slice(at: u32) -> Slice { return widened(k_cache[at]); }
fn v_slice(at: u32) -> Slice { return widened(v_cache[at]); }
//#else
@group(0) @binding(1) var<storage, read> k_cache: array<Slice>;
@group(0) @binding(2) var<storage, read> v_cache: array<Slice>;
fn k_slice(at: u32) -> Slice { return k_cache[at]; }
fn v_slice(at: u32) -> Slice { return v_cache[at]; }
//#endif
@group(0) @binding(3) var<storage, read_write> out: array<Slice>;
@group(0) @binding(5) var<uniform> p: Params;

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

// Row r of the G q rows of a (position, kv head) pair whose first row is `first` (rows of one
// position are [Hq, HD] with the G rows of a kv head next to each other).
fn q_row(first: u32, r: u32, lane: u32) -> Slice {
  if (r >= RB) {
    return Slice(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  }
  return scaled(q[(first + r) * L + lane], p.scale);
}

@compute @workgroup_size(L)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= p.n_wg) {
    return;  // uniform per workgroup
  }
  let hk = w % p.n_kv;
  let pos_s = w / p.n_kv;
  let first = w * RB;  // (pos_s * n_kv + hk) * G
  let q0 = q_row(first, 0u, lane);
  let q1 = q_row(first, 1u, lane);
  let q2 = q_row(first, 2u, lane);
  let q3 = q_row(first, 3u, lane);
  let zero = Slice(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
  var a0 = zero;
  var a1 = zero;
  var a2 = zero;
  var a3 = zero;
  var m = vec4<f32>(NEG_BIG);  // per row (components past RB unused)
  var l = vec4<f32>(0.0);
  let k_end = p.input_pos + pos_s + 1u;
  let stride = p.n_kv * L;  // slices per cache row (all kv heads)
  var at = hk * L + lane;
  for (var j = 0u; j < k_end; j++) {
    let kc = k_slice(at);
    var s = vec4<f32>(dot16(q0, kc), 0.0, 0.0, 0.0);
    if (RB > 1u) { s.y = dot16(q1, kc); }
    if (RB > 2u) { s.z = dot16(q2, kc); }
    if (RB > 3u) { s.w = dot16(q3, kc); }
//#if SUBGROUPS
    for (var st = 1u; st < L; st <<= 1u) {
      s += subgroupShuffleXor(s, st);  // commutative pairs: every lane gets the same sums
    }
//#endif
    let m_new = max(m, s);
    let alpha = exp(m - m_new);  // 0 at the first key (m = NEG_BIG)
    let pj = exp(s - m_new);
    l = l * alpha + pj;
    m = m_new;
    let vc = v_slice(at);
    a0 = blend(a0, alpha.x, pj.x, vc);
    if (RB > 1u) { a1 = blend(a1, alpha.y, pj.y, vc); }
    if (RB > 2u) { a2 = blend(a2, alpha.z, pj.z, vc); }
    if (RB > 3u) { a3 = blend(a3, alpha.w, pj.w, vc); }
    at += stride;
  }
  let base = first * L + lane;
  out[base] = divided(a0, l.x);
  if (RB > 1u) { out[base + L] = divided(a1, l.y); }
  if (RB > 2u) { out[base + 2u * L] = divided(a2, l.z); }
  if (RB > 3u) { out[base + 3u * L] = divided(a3, l.w); }
}
