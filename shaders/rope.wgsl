// Interleaved rotary embedding (et_vk.apply_rotary_emb): x is [1, S, H, D] contiguous, freqs
// are [S, D/2] (only the first S rows are read). One thread per (even, odd) pair of a head row:
//   out[2i]   = x[2i] * cos - x[2i+1] * sin
//   out[2i+1] = x[2i] * sin + x[2i+1] * cos
override WG: u32 = 256;

struct Params {
  n_pairs: u32,   // S * H * D/2 at the live S
  n_heads: u32,
  half_dim: u32,  // D/2
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> fcos: array<f32>;
@group(0) @binding(2) var<storage, read> fsin: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let pair = (wid.y * nwg.x + wid.x) * WG + lid;
  if (pair >= p.n_pairs) {
    return;
  }
  let i = pair % p.half_dim;
  let s = pair / (p.half_dim * p.n_heads);
  let f = s * p.half_dim + i;
  let c = fcos[f];
  let sn = fsin[f];
  let a = x[2u * pair];
  let b = x[2u * pair + 1u];
  out[2u * pair] = a * c - b * sn;
  out[2u * pair + 1u] = a * sn + b * c;
}
