// Causal GQA attention of a prefill chunk (S > 1) over the KV cache, one query row per thread.
// The S*G query rows of one kv head (G = Hq/Hkv q heads share it) are numbered n = s*G + g; a
// workgroup takes WG consecutive ones. Keys are walked in tiles of TK rows of K and V, loaded
// once into workgroup memory and read by every thread at the same address (a broadcast), so each
// thread keeps its own query row, output row and online-softmax state in registers: no reductions
// across threads. Tiles past the block's last visible key are never visited (causal skip); keys a
// row may not see yet get probability 0.
// Layouts (vec4s, HD a multiple of 4): q/out [1, S, Hq, HD]; caches [1, Cmax, Hkv, HD].
override WG: u32 = 32u;   // query rows (threads) per workgroup
override HD: u32 = 64u;   // head_dim, a multiple of 4, <= 4 * MAXV
override HV: u32 = HD / 4u;
const MAXV: u32 = 16u;    // vec4s per row at most (private arrays need a constant size)
const TK: u32 = 16u;      // keys per tile

struct Params {
  seq: u32,       // S (live)
  group: u32,     // G = Hq / Hkv
  n_kv: u32,      // Hkv
  n_blocks: u32,  // ceil(S * G / WG)
  input_pos: u32,
  scale: f32,
  n_wg: u32,      // n_kv * n_blocks workgroups do work; extra ones from 2D folding return
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> k_cache: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v_cache: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> p: Params;

var<workgroup> k_s: array<vec4<f32>, TK * HV>;
var<workgroup> v_s: array<vec4<f32>, TK * HV>;

const NEG_BIG: f32 = -3.0e38;  // stands in for -inf (keys not visible)

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let w = wid.y * nwg.x + wid.x;
  if (w >= p.n_wg) {
    return;  // the whole workgroup leaves: control flow stays uniform
  }
  let blk = p.n_blocks - 1u - w % p.n_blocks;  // the longest (last) blocks start first
  let hk = w / p.n_blocks;
  let rows = p.seq * p.group;
  let n0 = blk * WG;
  let n = min(n0 + lid, rows - 1u);  // threads past the last row redo it and write nothing
  let s = n / p.group;
  let n_heads = p.n_kv * p.group;
  let row = (s * n_heads + hk * p.group + n % p.group) * HV;
  let last = p.input_pos + s;  // this row sees keys 0 ..= last
  let k_end = p.input_pos + (min(n0 + WG, rows) - 1u) / p.group + 1u;  // the block's key count

  var qv: array<vec4<f32>, MAXV>;
  var acc: array<vec4<f32>, MAXV>;
  for (var i = 0u; i < HV; i++) {
    qv[i] = q[row + i] * p.scale;
    acc[i] = vec4<f32>(0.0);
  }
  var m = NEG_BIG;  // running max of the scores
  var l = 0.0;      // running sum of exp(score - m)
  for (var k0 = 0u; k0 < k_end; k0 += TK) {
    workgroupBarrier();  // the last tile is consumed
    for (var e = lid; e < TK * HV; e += WG) {
      let j = k0 + e / HV;
      var kv = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);
      if (j < k_end) {
        let src = (j * p.n_kv + hk) * HV + e % HV;
        kv = k_cache[src];
        vv = v_cache[src];
      }
      k_s[e] = kv;
      v_s[e] = vv;
    }
    workgroupBarrier();
    var sc: array<f32, TK>;
    var mt = m;
    for (var t = 0u; t < TK; t++) {
      var d4 = vec4<f32>(0.0);
      for (var i = 0u; i < HV; i++) {
        d4 += qv[i] * k_s[t * HV + i];
      }
      sc[t] = select(NEG_BIG, dot(d4, vec4<f32>(1.0)), k0 + t <= last);
      mt = max(mt, sc[t]);
    }
    let corr = exp(m - mt);  // 0 while m is NEG_BIG and mt a score; 1 if neither moved
    l *= corr;
    for (var i = 0u; i < HV; i++) {
      acc[i] *= corr;
    }
    for (var t = 0u; t < TK; t++) {
      let pr = select(0.0, exp(sc[t] - mt), sc[t] > NEG_BIG);
      l += pr;
      for (var i = 0u; i < HV; i++) {
        acc[i] += pr * v_s[t * HV + i];
      }
    }
    m = mt;
  }
  if (n0 + lid < rows) {
    for (var i = 0u; i < HV; i++) {
      out[row + i] = acc[i] / l;  // l >= 1: key 0 is visible to every row
    }
  }
}
