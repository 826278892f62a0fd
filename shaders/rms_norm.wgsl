// RMSNorm over the last dim: one workgroup per row, a tree reduction of x^2 in workgroup memory.
override WG: u32 = 256;  // a power of two

struct Params {
  rows: u32,
  width: u32,
  eps: f32,
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

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
      let v = x[base + i];
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
    out[base + i] = x[base + i] * scale * w[i];
  }
}
