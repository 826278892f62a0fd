// Elementwise unary op: OP 0 sigmoid, 1 silu (x * sigmoid(x)).
override WG: u32 = 256;
override OP: u32 = 0;

struct Params {
  n: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= p.n) {
    return;
  }
  let v = x[i];
  let s = 1.0 / (1.0 + exp(-v));
  if (OP == 1u) {
    out[i] = v * s;
  } else {
    out[i] = s;
  }
}
