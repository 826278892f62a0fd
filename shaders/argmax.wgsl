// Index of the largest value of each row (lowest index on ties).
//   main: one workgroup per row (short rows).
//   partial + merge: long rows (a vocabulary) in two dispatches, so the row is read by many
//     workgroups at once: `partial` leaves the best (value, index) of each chunk of
//     `chunk` elements in `part`, `merge` reduces a row's chunks (one workgroup per row).
// Every stage keeps the lowest index among equal values, so the result equals main's.
override WG: u32 = 256;  // a power of two

struct Params {
  rows: u32,
  width: u32,
  chunk: u32,   // partial: elements per chunk (a multiple of WG)
  chunks: u32,  // chunks per row
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<i32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read_write> part: array<vec2<u32>>;  // (value bits, index)

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// (v, i) beats (bv, bi) when larger, or equal with a lower index. NaN never wins.
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
  return v > bv || (v == bv && i < bi);
}

// Tree over the workgroup's candidates; every thread must call it. Result in slot 0.
fn reduce_best(bv: f32, bi: u32, lid: u32) {
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
}

@compute @workgroup_size(WG)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * nwg.x + wid.x;
  let in_range = g < p.rows * p.chunks;
  var bv = bitcast<f32>(0xff7fffffu);
  var bi = 0xffffffffu;
  if (in_range) {
    let row = g / p.chunks;
    let start = (g % p.chunks) * p.chunk;
    let end = min(start + p.chunk, p.width);
    for (var i = start + lid; i < end; i += WG) {
      let v = x[row * p.width + i];
      if (better(v, i, bv, bi)) {
        bv = v;
        bi = i;
      }
    }
  }
  reduce_best(bv, bi, lid);
  if (in_range && lid == 0u) {
    part[g] = vec2<u32>(bitcast<u32>(best_v[0]), best_i[0]);
  }
}

@compute @workgroup_size(WG)
fn merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let row = wid.y * nwg.x + wid.x;
  let in_range = row < p.rows;
  var bv = bitcast<f32>(0xff7fffffu);
  var bi = 0xffffffffu;
  if (in_range) {
    for (var c = lid; c < p.chunks; c += WG) {
      let e = part[row * p.chunks + c];
      let v = bitcast<f32>(e.x);
      if (better(v, e.y, bv, bi)) {
        bv = v;
        bi = e.y;
      }
    }
  }
  reduce_best(bv, bi, lid);
  if (in_range && lid == 0u) {
    out[row] = i32(select(0u, best_i[0], best_i[0] != 0xffffffffu));
  }
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
  reduce_best(bv, bi, lid);
  if (in_range && lid == 0u) {
    // A row of NaNs / -inf only: report index 0 rather than an invalid id.
    out[row] = i32(select(0u, best_i[0], best_i[0] != 0xffffffffu));
  }
}
