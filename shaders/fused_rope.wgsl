// Interleaved rotary embedding of q AND k in one dispatch (py_engine.apply_rotary_emb_qk):
// threads 0 .. q_pairs-1 rotate xq ([1, S, Hq, D]), the next k_pairs threads rotate xk
// ([1, S, Hkv, D]); both read the first S rows of freqs [S, D/2]. Per pair, the arithmetic
// of rope.wgsl:
//   out[2i]   = x[2i] * cos - x[2i+1] * sin
//   out[2i+1] = x[2i] * sin + x[2i+1] * cos
override WG: u32 = 256;

struct Params {
  q_pairs: u32,   // S * Hq * D/2 at the live S
  k_pairs: u32,   // S * Hkv * D/2
  q_heads: u32,
  k_heads: u32,
  half_dim: u32,  // D/2
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> xq: array<f32>;
@group(0) @binding(1) var<storage, read> xk: array<f32>;
@group(0) @binding(2) var<storage, read> fcos: array<f32>;
@group(0) @binding(3) var<storage, read> fsin: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_q: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_k: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

fn freq_index(pair: u32, heads: u32) -> u32 {
  let i = pair % p.half_dim;
  let s = pair / (p.half_dim * heads);
  return s * p.half_dim + i;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.y * nwg.x + wid.x) * WG + lid;
  if (t < p.q_pairs) {
    let f = freq_index(t, p.q_heads);
    let c = fcos[f];
    let sn = fsin[f];
    let a = xq[2u * t];
    let b = xq[2u * t + 1u];
    out_q[2u * t] = a * c - b * sn;
    out_q[2u * t + 1u] = a * sn + b * c;
  } else if (t < p.q_pairs + p.k_pairs) {
    let pair = t - p.q_pairs;
    let f = freq_index(pair, p.k_heads);
    let c = fcos[f];
    let sn = fsin[f];
    let a = xk[2u * pair];
    let b = xk[2u * pair + 1u];
    out_k[2u * pair] = a * c - b * sn;
    out_k[2u * pair + 1u] = a * sn + b * c;
  }
}
