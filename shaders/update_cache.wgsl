// KV-cache write: copy the n = S*H*D new words of `value` into `cache` starting at word
// dst_offset = input_pos*H*D. The host verified dst_offset + n <= cache_len; the shader checks
// again without any sum that could wrap u32 (i < n, and i < cache_len - dst_offset).
override WG: u32 = 256;

struct Params {
  n: u32,
  dst_offset: u32,
  cache_len: u32,
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> value: array<f32>;
@group(0) @binding(1) var<storage, read_write> cache: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

// Word i of the new rows lands inside the cache (no sum that could wrap u32).
fn writes(i: u32) -> bool {
  return i < p.n && p.dst_offset <= p.cache_len && i < p.cache_len - p.dst_offset;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (!writes(i)) {
    return;
  }
  cache[p.dst_offset + i] = value[i];
}

// sdpa_with_kv_cache's write of both caches in one dispatch: k -> k_cache and v -> v_cache at
// the same rows (k/v and the two caches have equal shapes, so one Params serves both).
@group(0) @binding(3) var<storage, read> value_v: array<f32>;
@group(0) @binding(4) var<storage, read_write> cache_v: array<f32>;

@compute @workgroup_size(WG)
fn write_kv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (!writes(i)) {
    return;
  }
  cache[p.dst_offset + i] = value[i];
  cache_v[p.dst_offset + i] = value_v[i];
}
