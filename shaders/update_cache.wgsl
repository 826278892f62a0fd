// KV-cache write: copy the n = S*H*D new elements of `value` into `cache` starting at element
// dst_offset = input_pos*H*D. The host verified dst_offset + n <= cache_len; the shader checks
// again without any sum that could wrap u32 (i < n, and i < cache_len - dst_offset).
// KV16 (caches of packed f16 pairs: element 2j in the low half of word j): thread i writes word
// i of the new rows, elements 2i and 2i + 1 (a row, H*D elements, is even; so are n and dst_offset).
override WG: u32 = 256;

struct Params {
  n: u32,
  dst_offset: u32,
  cache_len: u32,
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> value: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
// sdpa_with_kv_cache's write of both caches in one dispatch (`write_kv`): k -> cache and
// v -> cache_v at the same rows (k/v and the two caches have equal shapes: one Params serves both).
@group(0) @binding(3) var<storage, read> value_v: array<f32>;
//#if KV16
@group(0) @binding(1) var<storage, read_write> cache: array<u32>;
@group(0) @binding(4) var<storage, read_write> cache_v: array<u32>;
//#else
@group(0) @binding(1) var<storage, read_write> cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> cache_v: array<f32>;
//#endif

// Element i of the new rows lands inside the cache (no sum that could wrap u32).
fn writes(i: u32) -> bool {
  return i < p.n && p.dst_offset <= p.cache_len && i < p.cache_len - p.dst_offset;
}

fn thread(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = thread(wid, nwg, lid);
//#if KV16
  if (writes(2u * i)) {
    cache[p.dst_offset / 2u + i] = pack2x16float(vec2<f32>(value[2u * i], value[2u * i + 1u]));
  }
//#else
  if (writes(i)) {
    cache[p.dst_offset + i] = value[i];
  }
//#endif
}

@compute @workgroup_size(WG)
fn write_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = thread(wid, nwg, lid);
//#if KV16
  if (writes(2u * i)) {
    let w = p.dst_offset / 2u + i;
    cache[w] = pack2x16float(vec2<f32>(value[2u * i], value[2u * i + 1u]));
    cache_v[w] = pack2x16float(vec2<f32>(value_v[2u * i], value_v[2u * i + 1u]));
  }
//#else
  if (writes(i)) {
    cache[p.dst_offset + i] = value[i];
    cache_v[p.dst_offset + i] = value_v[i];
  }
//#endif
}
