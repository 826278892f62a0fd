// Residual add + RMSNorm over the last dim: sum = a + alpha * b, norm = rms_norm(sum) * w.
// One workgroup per row, the same tree reduction as rms_norm.wgsl (same WG, same order), so
// both outputs equal the unfused add + rms_norm bit for bit.
override WG: u32 = 256;  // a power of two

struct Params {
  rows: u32,
  width: u32,
  eps: f32,
  alpha: f32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> sum_out: array<f32>;
@group(0) @binding(4) var<storage, read_write> norm_out: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  // Rows past the end still take part in the barriers below (uniform control flow).
  let in_range = row < p.rows;
  let base = row * p.width;
  var acc = 0.0;
  if (in_range) {
    for (var i = lid; i < p.width; i += WG) {
      let v = a[base + i] + b[base + i] * p.alpha;
      sum_out[base + i] = v;
      acc += v * v;
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      partial[lid] += partial[lid + s];
    }
    workgroupBarrier();
  }
  if (!in_range) {
    return;
  }
  let scale = inverseSqrt(partial[0] / f32(p.width) + p.eps);
  for (var i = lid; i < p.width; i += WG) {
    // Recomputed rather than read back: no storage read-after-write to reason about.
    let v = a[base + i] + b[base + i] * p.alpha;
    norm_out[base + i] = v * scale * w[i];
  }
}
