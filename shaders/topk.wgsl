// Top-k on the GPU, two entry points sharing one bitonic sort in workgroup memory
// (py_engine/ops/topk.py):
// - main: the K largest logits of each CHUNK-element chunk of a row, with their ids
//   (one workgroup per chunk), written as (f32 bits, id).
// - sample: one workgroup merges those candidates into the row's top_k (top_k <= K) and draws
//   one token from them (temperature -> top-k -> top-p -> min-p -> draw with the host's uniform
//   number u, the order of py_engine/sampling.py), so a sampled decode step reads back 4 bytes.
// Order: value descending, then id ascending. The order key maps floats to u32 so that larger
// floats give larger keys; NaN gets the largest key of all, so a NaN logit always reaches the
// sampler, which then writes NO_TOKEN instead of a token (as for a row with no finite logit).
// Slots past the row end hold (-inf, NO_ID) and sort last.
override WG: u32 = 256;     // threads: CHUNK = 4 * WG
const PER: u32 = 4u;        // elements per thread
override K: u32 = 64u;      // candidates per chunk, <= CHUNK; the largest top_k of `sample`
const NEG_INF_KEY: u32 = 0x007fffffu;  // order_key(-inf), spelled out: Tint rejects an infinite f32 constant
const POS_INF_KEY: u32 = 0xff800000u;  // order_key(+inf)
const NO_ID: u32 = 0xffffffffu;
const NO_TOKEN: u32 = 0xffffffffu;     // read back as -1: the host raises

struct Params {
  width: u32,   // elements of the row
  chunks: u32,  // ceil(width / CHUNK)
  _pad0: u32,
  _pad1: u32,
}

struct SampleParams {
  count: u32,        // candidates (chunks * K)
  top_k: u32,        // 1..K
  temperature: f32,  // > 0
  top_p: f32,        // (0, 1]; 1 = off
  min_p: f32,        // [0, 1]; 0 = off
  u: f32,            // uniform in [0, 1), drawn by the host
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<vec2<u32>>;  // [chunks * K]
@group(0) @binding(2) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read> cands: array<vec2<u32>>;  // main's `out`
@group(0) @binding(1) var<storage, read_write> token: array<u32>;  // [1]
@group(0) @binding(2) var<uniform> s: SampleParams;

var<workgroup> keys: array<u32, 4 * WG>;
var<workgroup> ids: array<u32, 4 * WG>;
var<workgroup> probs: array<f32, K>;

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

// Sorts all 4 * WG slots; called by every thread, and every slot written before the call.
fn sort_slots(lid: u32) {
  let n = PER * WG;
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
      keys[i] = order_key(x[g]);
      ids[i] = g;
    } else {
      keys[i] = NEG_INF_KEY;
      ids[i] = NO_ID;
    }
  }
  sort_slots(lid);
  if (chunk < p.chunks) {
    for (var i = lid; i < K; i += WG) {
      out[chunk * K + i] = vec2<u32>(bitcast<u32>(key_value(keys[i])), ids[i]);
    }
  }
}

@compute @workgroup_size(WG)
fn sample(@builtin(local_invocation_index) lid: u32) {
  // Slots [0, K) keep the best so far (sorted); each round loads the next candidates after them.
  let n = PER * WG;
  for (var i = lid; i < K; i += WG) {
    keys[i] = NEG_INF_KEY;
    ids[i] = NO_ID;
  }
  for (var base = 0u; base < s.count; base += n - K) {
    for (var i = K + lid; i < n; i += WG) {
      let c = base + i - K;
      if (c < s.count && cands[c].y != NO_ID) {
        keys[i] = order_key(bitcast<f32>(cands[c].x));
        ids[i] = cands[c].y;
      } else {
        keys[i] = NEG_INF_KEY;
        ids[i] = NO_ID;
      }
    }
    sort_slots(lid);
  }
  if (lid != 0u) {
    return;
  }
  let k0 = keys[0];
  if (ids[0] == NO_ID || k0 <= NEG_INF_KEY || k0 >= POS_INF_KEY) {
    token[0] = NO_TOKEN;  // NaN, +inf, or no finite logit: the host raises
    return;
  }
  var k = 0u;
  while (k < s.top_k && ids[k] != NO_ID) {
    k++;
  }
  // Probabilities relative to the largest (so probs[0] == 1), over the top k.
  let v0 = key_value(k0);
  var total = 0.0;
  for (var i = 0u; i < k; i++) {
    let q = exp((key_value(keys[i]) - v0) / s.temperature);
    probs[i] = q;
    total += q;
  }
  // top-p: the smallest prefix whose mass reaches top_p (at least one token).
  var keep = k;
  if (s.top_p < 1.0) {
    var mass = 0.0;
    for (var i = 0u; i < k; i++) {
      mass += probs[i];
      if (mass >= s.top_p * total) {
        keep = i + 1u;
        break;
      }
    }
  }
  // min-p: probabilities are sorted, so the survivors are a prefix too.
  var kept = 1u;
  var mass = probs[0];
  while (kept < keep && probs[kept] >= s.min_p) {
    mass += probs[kept];
    kept++;
  }
  // draw: the first token whose cumulative mass exceeds u * mass (if rounding leaves none, the
  // last with a nonzero probability; probs[0] == 1, so there is one).
  let goal = s.u * mass;
  var acc = 0.0;
  var chosen = 0u;
  for (var i = 0u; i < kept; i++) {
    acc += probs[i];
    if (probs[i] > 0.0) {
      chosen = i;
    }
    if (acc > goal) {
      break;
    }
  }
  token[0] = ids[chosen];
}
