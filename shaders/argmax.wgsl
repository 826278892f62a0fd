// Index of the largest value of each row (lowest index on ties): one workgroup per row.
override WG: u32 = 256;  // a power of two

struct Params {
  rows: u32,
  width: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<i32>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// (v, i) beats (bv, bi) when larger, or equal with a lower index. NaN never wins.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return v > bv || (v == bv && i < bi);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  let in_range = row < p.rows;
  var bv = bitcast<f32>(0xff7fffffu);  // -FLT_MAX (Tint rejects the decimal literal)
  var bi = 0xffffffffu;
  if (in_range) {
    let base = row * p.width;
    for (var i = lid; i < p.width; i += WG) {
      let v = x[base + i];
      if (better(v, i, bv, bi)) {
        bv = v;
        bi = i;
      }
    }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s && better(best_v[lid + s], best_i[lid + s], best_v[lid], best_i[lid])) {
      best_v[lid] = best_v[lid + s];
      best_i[lid] = best_i[lid + s];
    }
    workgroupBarrier();
  }
  if (in_range && lid == 0u) {
    // A row of NaNs / -inf only: report index 0 rather than an invalid id.
    out[row] = i32(select(0u, best_i[0], best_i[0] != 0xffffffffu));
  }
}
