// Copy n 32-bit words from src (starting at word src_offset) to dst (at word dst_offset).
override WG: u32 = 256;

struct Params {
  n: u32,
  src_offset: u32,
  dst_offset: u32,
  _pad: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= p.n) {
    return;
  }
  dst[p.dst_offset + i] = src[p.src_offset + i];
}
