// Causal GQA attention of a prefill chunk (S > 1) over the KV cache. The S*G query rows of one kv
// head (G = Hq/Hkv q heads share it) are numbered n = s*G + g; a workgroup takes RW consecutive
// ones, and each row is shared by KL threads ("key lanes") that take every KL-th key of each tile,
// so a 512-token prompt keeps tens of thousands of threads busy. Keys are walked in tiles of TK rows
// of K and V, loaded once into workgroup memory (rows padded by one vec4 so the key lanes hit
// different banks); each thread keeps its query row, its output row and its online-softmax state in
// registers, and loads its share of the next tile into registers while working on this one. At
// the end the KL partial states of a row are merged through workgroup memory (GPUs; CPU adapters
// run KL = 1, one thread per row). Tiles past the block's last visible key are never visited
// (causal skip); keys a row may not see yet get probability 0.
// Layouts (vec4s, HD a multiple of 4): q/out [1, S, Hq, HD]; caches [1, Cmax, Hkv, HD].
override RW: u32 = 8u;    // query rows per workgroup
override KL: u32 = 8u;    // key lanes per row, a power of two dividing TK; RW * KL threads
override HD: u32 = 64u;   // head_dim, a multiple of 4, <= 4 * MAXV
override HV: u32 = HD / 4u;
override PV: u32 = HV + 1u;  // padded row stride of the tiles, in vec4s
override TK: u32 = 16u;   // keys per tile, a multiple of KL, <= MAXJ * KL
override SUB: u32 = 2u;   // merge: lanes handing over their rows at a time (RW * SUB * HV <= TK * PV)
const MAXV: u32 = 16u;    // vec4s per row at most (private arrays need a constant size)
const MAXJ: u32 = 16u;    // keys per lane per tile at most
const MAXE: u32 = 8u;     // tile vec4s per thread at most
override TE: u32 = TK * HV / (RW * KL);  // tile vec4s per thread (the host makes it whole, <= MAXE)

struct Params {
  seq: u32,       // S (live)
  group: u32,     // G = Hq / Hkv
  n_kv: u32,      // Hkv
  n_blocks: u32,  // ceil(S * G / RW)
  input_pos: u32,
  scale: f32,
  n_wg: u32,      // n_kv * n_blocks workgroups do work; extra ones from 2D folding return
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
//#if KV16
// The caches as packed f16 pairs: a vec4 of elements is 2 words (element 2i in the low half of word i).
@group(0) @binding(1) var<storage, read> k_cache: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec2<u32>>;
fn widened(h: vec2<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y)); }
fn k4(at: u32) -> vec4<f32> { return widened(k_cache[at]); }
fn v4(at: u32) -> vec4<f32> { return widened(v_cache[at]); }
//#else
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<f32>>;
fn k4(at: u32) -> vec4<f32> { return k_cache[at]; }
fn v4(at: u32) -> vec4<f32> { return v_cache[at]; }
//#endif
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;

// The K and V tiles; after the last tile, k_s holds partial output rows for the merge.
var<workgroup> k_s: array<vec4<f32>, TK * PV>;
var<workgroup> v_s: array<vec4<f32>, TK * PV>;
var<workgroup> ml_s: array<vec2<f32>, RW * KL>;  // (max, sum) of every thread, for the merge

const NEG_BIG: f32 = -3.0e38;  // stands in for -inf (keys not visible)

// Elements e = lid + i * RW * KL (i < TE) of the tile at key k0: K and V rows k0 + e / HV,
// vec4 e % HV of head hk; zero past the block's keys.
fn load_tile(kr: ptr<function, array<vec4<f32>, MAXE>>, vr: ptr<function, array<vec4<f32>, MAXE>>,
             k0: u32, k_end: u32, hk: u32, lid: u32) {
  for (var i = 0u; i < TE; i++) {
    let e = lid + i * RW * KL;
    let j = k0 + e / HV;
    (*kr)[i] = vec4<f32>(0.0);
    (*vr)[i] = vec4<f32>(0.0);
    if (j < k_end) {
      let src = (j * p.n_kv + hk) * HV + e % HV;
      (*kr)[i] = k4(src);
      (*vr)[i] = v4(src);
    }
  }
}

@compute @workgroup_size(RW * KL)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= p.n_wg) {
    return;  // the whole workgroup leaves: control flow stays uniform
  }
  let blk = p.n_blocks - 1u - w % p.n_blocks;  // the longest (last) blocks start first
  let hk = w / p.n_blocks;
  let rows = p.seq * p.group;
  let n0 = blk * RW;
  let r = lid / KL;
  let lane = lid % KL;
  let n = min(n0 + r, rows - 1u);  // threads past the last row redo it and write nothing
  let s = n / p.group;
  let row = (s * p.n_kv * p.group + hk * p.group + n % p.group) * HV;
  let last = p.input_pos + s;  // this row sees keys 0 ..= last
  let k_end = p.input_pos + (min(n0 + RW, rows) - 1u) / p.group + 1u;  // the block's key count

  var qv: array<vec4<f32>, MAXV>;
  var acc: array<vec4<f32>, MAXV>;
  for (var i = 0u; i < HV; i++) {
    qv[i] = q[row + i] * p.scale;
    acc[i] = vec4<f32>(0.0);
  }
  var m = NEG_BIG;  // running max of this lane's scores
  var l = 0.0;      // running sum of exp(score - m)
  // This thread's share of a tile: elements lid, lid + RW * KL, ... (TE of them), loaded one
  // tile ahead so the loads' latency overlaps the work on the current tile.
  var kr: array<vec4<f32>, MAXE>;
  var vr: array<vec4<f32>, MAXE>;
  load_tile(&kr, &vr, 0u, k_end, hk, lid);
  for (var k0 = 0u; k0 < k_end; k0 += TK) {
    workgroupBarrier();  // the last tile is consumed
    for (var i = 0u; i < TE; i++) {
      let e = lid + i * RW * KL;
      k_s[(e / HV) * PV + e % HV] = kr[i];
      v_s[(e / HV) * PV + e % HV] = vr[i];
    }
    workgroupBarrier();
    if (k0 + TK < k_end) {
      load_tile(&kr, &vr, k0 + TK, k_end, hk, lid);
    }
    var sc: array<f32, MAXJ>;
    var mt = m;
    for (var jj = 0u; jj < TK / KL; jj++) {
      let t = lane + jj * KL;
      var d4 = vec4<f32>(0.0);
      for (var i = 0u; i < HV; i++) {
        d4 += qv[i] * k_s[t * PV + i];
      }
      sc[jj] = select(NEG_BIG, dot(d4, vec4<f32>(1.0)), k0 + t <= last);
      mt = max(mt, sc[jj]);
    }
    let corr = exp(m - mt);  // 0 while m is NEG_BIG and mt a score; 1 if neither moved
    l *= corr;
    for (var i = 0u; i < HV; i++) {
      acc[i] *= corr;
    }
    for (var jj = 0u; jj < TK / KL; jj++) {
      let pr = select(0.0, exp(sc[jj] - mt), sc[jj] > NEG_BIG);
      l += pr;
      let t = lane + jj * KL;
      for (var i = 0u; i < HV; i++) {
        acc[i] += pr * v_s[t * PV + i];
      }
    }
    m = mt;
  }

  // Merge the KL lanes of each row: rescale to the row's max, then add pairwise halves.
  ml_s[lid] = vec2<f32>(m, l);
  workgroupBarrier();
  var mr = NEG_BIG;
  for (var k = 0u; k < KL; k++) {
    mr = max(mr, ml_s[r * KL + k].x);
  }
  var lr = 0.0;
  for (var k = 0u; k < KL; k++) {
    let o = ml_s[r * KL + k];
    lr += o.y * exp(o.x - mr);
  }
  let own = exp(m - mr);  // key 0 is visible to every row, so mr is a real score
  for (var i = 0u; i < HV; i++) {
    acc[i] *= own;
  }
  for (var half = KL / 2u; half > 0u; half >>= 1u) {
    // Lanes [half, 2 half) hand their rows to lanes [0, half), SUB lanes at a time (the room
    // k_s has).
    for (var part = 0u; part < half; part += SUB) {
      let giver = half + part;
      if (lane >= giver && lane < min(giver + SUB, 2u * half)) {
        let slot = (r * SUB + lane - giver) * HV;
        for (var i = 0u; i < HV; i++) {
          k_s[slot + i] = acc[i];
        }
      }
      workgroupBarrier();
      if (lane >= part && lane < min(part + SUB, half)) {
        let slot = (r * SUB + lane - part) * HV;
        for (var i = 0u; i < HV; i++) {
          acc[i] += k_s[slot + i];
        }
      }
      workgroupBarrier();
    }
  }
  if (lane == 0u && n0 + r < rows) {
    for (var i = 0u; i < HV; i++) {
      out[row + i] = acc[i] / lr;  // lr >= 1: the row's largest score contributes exp(0)
    }
  }
}
