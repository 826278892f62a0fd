// Strided row copy (slice_copy / select_copy): the input is viewed as [outer, src_rows, row]
// and the output as [outer, rows_out, row]; output row j of block o is input row
// start + j * step of block o. Rows are whole 32-bit words, one word per thread.
override WG: u32 = 256;

struct Params {
  n: u32,          // output words
  row_words: u32,  // words per row (the contiguous dims after the sliced one)
  rows_out: u32,   // rows kept per block
  src_rows: u32,   // live size of the sliced dim in the input
  start: u32,
  step: u32,
  _pad0: u32,
  _pad1: u32,
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
  let w = i % p.row_words;
  let r = i / p.row_words;
  let j = r % p.rows_out;
  let o = r / p.rows_out;
  let src_row = o * p.src_rows + p.start + j * p.step;
  dst[i] = src[src_row * p.row_words + w];
}
