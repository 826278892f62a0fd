// The K largest logits of each CHUNK-element chunk of a row, with their ids, for sampling on the
// host from a few thousand candidates instead of the whole vocabulary (py_engine/ops/topk.py).
// One workgroup per chunk: a bitonic sort in workgroup memory by (value descending, id
// ascending), then the first K go out as (f32 bits, id). The order key maps floats to u32 so
// that larger floats give larger keys; NaN gets the largest key of all, so a NaN logit is
// always a candidate and the host's NaN check sees it. Chunk slots past the row end hold
// (-inf, id past the row) and sort last.
override WG: u32 = 256;     // threads: CHUNK = 4 * WG
const PER: u32 = 4u;        // elements per thread
override K: u32 = 64u;      // candidates per chunk, <= CHUNK

struct Params {
  width: u32,   // elements of the row
  chunks: u32,  // ceil(width / CHUNK)
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec2<u32>>;  // [chunks * K]
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> keys: array<u32, 4 * WG>;
var<workgroup> ids: array<u32, 4 * WG>;

fn order_key(v: f32) -> u32 {
  if (v != v) {
    return 0xffffffffu;  // NaN
  }
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn key_value(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// (ka, ia) comes before (kb, ib) in the sorted order.
fn before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
  return ka > kb || (ka == kb && ia < ib);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let chunk = wid.y * nwg.x + wid.x;
  let n = PER * WG;
  let base = chunk * n;
  for (var j = 0u; j < PER; j++) {
    let i = lid + j * WG;
    let g = base + i;
    if (chunk < p.chunks && g < p.width) {
      let v = x[g];
      keys[i] = order_key(v);
      ids[i] = g;
    } else {
      keys[i] = 0x007fffffu;  // order_key(-inf), spelled out: Tint rejects an infinite f32 constant
      ids[i] = 0xffffffffu;
    }
  }
  workgroupBarrier();
  for (var size = 2u; size <= n; size <<= 1u) {
    for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
      for (var j = 0u; j < PER / 2u; j++) {
        // Each thread handles PER / 2 of the n / 2 compare-exchange pairs of this stage.
        let t = lid + j * WG;
        let lo = 2u * stride * (t / stride) + t % stride;
        let hi = lo + stride;
        let forward = (lo & size) == 0u;  // blocks alternate direction; the last stage is forward
        let swap = select(before(keys[lo], ids[lo], keys[hi], ids[hi]),
                          before(keys[hi], ids[hi], keys[lo], ids[lo]), forward);
        if (swap) {
          let k = keys[lo];
          keys[lo] = keys[hi];
          keys[hi] = k;
          let d = ids[lo];
          ids[lo] = ids[hi];
          ids[hi] = d;
        }
      }
      workgroupBarrier();
    }
  }
  if (chunk < p.chunks) {
    for (var i = lid; i < K; i += WG) {
      out[chunk * K + i] = vec2<u32>(bitcast<u32>(key_value(keys[i])), ids[i]);
    }
  }
}
