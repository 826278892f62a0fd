// GENERATED from fused_linear.wgsl.in by `python -m py_engine.ops.fused_shader_text`: edit the template.
// Fused GGUF linears over one weight tensor whose rows are several weights one after another.
//   gemv2/gemv3, tiled2/tiled3 (linear_gguf_multi): out_j[m, :] = x[m, :] @ W_j.T for 2 or 3
//     weights; s.n0 / s.n1 = rows of W_0 / W_1, p.N = all rows (output j gets columns of W_j).
//   gemv_swiglu, tiled_swiglu (linear_gguf_swiglu): out0[m, n] = silu(x[m] . Wg[n]) * (x[m] . Wu[n]),
//     up rows start at row s.n0, p.N = F = s.n0 (outputs per row).
// On CPU adapters gemv2_cpu, gemv3_cpu and gemv_swiglu_cpu stream R whole rows per thread instead
// (record formats; others take the entries above there too), and for prompts gemm2_cpu, gemm3_cpu
// and gemm_swiglu_cpu the same for four activation rows at once.
// The dequantization helpers and Params come from quant_weights.wgsl (include lines below),
// so a weight format is decoded by one piece of code; sums run in the same order as its
// gemv/tiled kernels, so fused and unfused results agree bit for bit.
// Bindings are numbered in the order the op passes its buffers (None: one an entry point does not use).
override FMT: u32 = 0u;
override WG: u32 = 64u;   // gemv workgroup size (a power of two)
override TPR: u32 = 16u;  // gemv: threads per output column (a power of two dividing WG)
override PF: bool = true; // tiled: load the next K step while multiplying (GPUs; CPU adapters lose by it)
override SG: u32 = 1u;    // gemv: lanes whose sums subgroup shuffles finish (1: workgroup memory only)
override R: u32 = 1u;     // *_cpu entries (CPU adapters): weight rows per thread (1 .. 192)

// ---- from quant_weights.wgsl (included) ----
struct Params {
  M: u32,          // activation rows (linear) / number of indices (gather)
  N: u32,          // weight rows: output columns (linear) / table rows (gather)
  K: u32,          // elements per weight row
  row_bytes: u32,  // byte stride of one weight row
  group_size: u32, // 4-bit formats: elements per scale, a multiple of 8
  s_stride_g: u32, // 4-bit formats: scale index = (k / group_size) * s_stride_g + n * s_stride_n
  s_stride_n: u32,
  has_bias: u32,
  q_stride: u32,   // repacked formats: quant words per row
  d_off: u32,      // repacked formats: word offset of the d (scale) region
  m_off: u32,      // repacked Q4_1: word offset of the m (min) region
  _pad: u32,
}
// ---- end of quant_weights.wgsl ----

struct Split {
  n0: u32,
  n1: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<u32>;     // x as f32 bits
@group(0) @binding(1) var<storage, read> w: array<u32>;       // raw weight bytes
@group(0) @binding(2) var<storage, read> scales: array<f32>;  // GGUF weights have none: any buffer (BIAS: the biases)
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<uniform> s: Split;
@group(0) @binding(5) var<storage, read_write> out0: array<f32>;
@group(0) @binding(6) var<storage, read_write> out1: array<f32>;
@group(0) @binding(7) var<storage, read_write> out2: array<f32>;
// gemv entry points only: x and the weight as vec4s (see quant_weights.wgsl).
@group(0) @binding(8) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> w4: array<vec4<u32>>;
// *_cpu entry points only (record formats): the weight as Q4 or Q8_0 records (see quant_weights.wgsl).
@group(0) @binding(15) var<storage, read> wr: array<array<vec4<u32>, 3>>;
@group(0) @binding(16) var<storage, read> wr8: array<array<vec4<u32>, 5>>;

// ---- from quant_weights.wgsl (included) ----
struct W8 {
  a: vec4<f32>,
  b: vec4<f32>,
}

// The 4 bytes starting at any byte offset (little endian).
fn word_at(off: u32) -> u32 {
  let i = off >> 2u;
  let sh = (off & 3u) * 8u;
  if (sh == 0u) {
    return w[i];
  }
  return (w[i] >> sh) | (w[i + 1u] << (32u - sh));
}

// An f16 at an even byte offset (never straddles two words).
fn half_at(off: u32) -> f32 {
  let h = unpack2x16float(w[off >> 2u]);
  return select(h.x, h.y, (off & 2u) != 0u);
}

// One nibble from each byte of `word`: low nibbles (shift 0) or high nibbles (shift 4).
fn byte_nibbles(word: u32, shift: u32) -> vec4<f32> {
  return vec4<f32>((vec4<u32>(word) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(shift))) & vec4<u32>(15u));
}

// The four bytes of `word` as signed int8.
fn bytes_i8(word: u32) -> vec4<f32> {
  let v = bitcast<vec4<i32>>(vec4<u32>(word) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
  return vec4<f32>(v);
}

// Four consecutive words / x values (scalar loads: no alignment needed).
fn wvec(i: u32) -> vec4<u32> {
  return vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);
}

fn xvec(i: u32) -> vec4<f32> {
  return bitcast<vec4<f32>>(vec4<u32>(src[i], src[i + 1u], src[i + 2u], src[i + 3u]));
}

// Repacked Q4: nibble `sh / 4` of each word of q.
fn nib4(q: vec4<u32>, sh: u32) -> vec4<f32> {
  return vec4<f32>((q >> vec4<u32>(sh)) & vec4<u32>(15u));
}

// Repacked Q8_0: byte `(24 - sh) / 8` of each word of q, sign-extended.
fn i8x4(q: vec4<u32>, sh: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(q << vec4<u32>(sh)) >> vec4<u32>(24u));
}

fn blk_scale(off: u32, n: u32, blk: u32) -> f32 {
  return bitcast<f32>(w[off + n * (p.K / 32u) + blk]);
}

// 32 consecutive x values (a block's worth) and their sum.
struct X32 {
  v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
  v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>,
  sum: f32,
}

fn x32_of(v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>,
          v4: vec4<f32>, v5: vec4<f32>, v6: vec4<f32>, v7: vec4<f32>) -> X32 {
  let sum = dot((v0 + v1) + (v2 + v3) + (v4 + v5) + (v6 + v7), vec4<f32>(1.0));
  return X32(v0, v1, v2, v3, v4, v5, v6, v7, sum);
}

fn x32(xi: u32) -> X32 {
  return x32_of(x4[xi], x4[xi + 1u], x4[xi + 2u], x4[xi + 3u], x4[xi + 4u], x4[xi + 5u], x4[xi + 6u], x4[xi + 7u]);
}

// Repacked formats (gemv only): block `blk` of weight row n dotted with x.
// Q4_x as d * dot(q, x) (+ m * sum(x) for Q4_1, - 8 d sum(x) for Q4_0): no per-element offsets.
fn q_dot(n: u32, blk: u32, x: X32) -> f32 {
  return q_block_dot(q_load(n, blk), x);
}

// A repacked block as loaded: its quant words (Q8_0: two vec4s, Q4: qa), d, and m (Q4_1), so a
// kernel can issue the loads early (attention_block.wgsl) and dot once they have arrived.
struct QBlock {
  qa: vec4<u32>,
  qb: vec4<u32>,
  d: f32,
  m: f32,
}

fn q_load(n: u32, blk: u32) -> QBlock {
  let d = blk_scale(p.d_off, n, blk);
  if (FMT == 40u) {
    let qi = (n * p.q_stride) / 4u + blk * 2u;
    return QBlock(w4[qi], w4[qi + 1u], d, 0.0);
  }
  var m = 0.0;
  if (FMT == 35u) {
    m = blk_scale(p.m_off, n, blk);
  }
  return QBlock(w4[(n * p.q_stride) / 4u + blk], vec4<u32>(0u), d, m);
}

fn q_block_dot(b: QBlock, x: X32) -> f32 {
  if (FMT == 40u) {
    let lo = dot(i8x4(b.qa, 24u), x.v0) + dot(i8x4(b.qa, 16u), x.v1) + dot(i8x4(b.qa, 8u), x.v2) + dot(i8x4(b.qa, 0u), x.v3);
    let hi = dot(i8x4(b.qb, 24u), x.v4) + dot(i8x4(b.qb, 16u), x.v5) + dot(i8x4(b.qb, 8u), x.v6) + dot(i8x4(b.qb, 0u), x.v7);
    return b.d * (lo + hi);
  }
  let q = b.qa;
  let s = dot(nib4(q, 0u), x.v0) + dot(nib4(q, 4u), x.v1) + dot(nib4(q, 8u), x.v2) + dot(nib4(q, 12u), x.v3)
        + dot(nib4(q, 16u), x.v4) + dot(nib4(q, 20u), x.v5) + dot(nib4(q, 24u), x.v6) + dot(nib4(q, 28u), x.v7);
  if (FMT == 34u) {
    return b.d * (s - 8.0 * x.sum);
  }
  return b.d * s + b.m * x.sum;
}

// Chunk c of weight row n, dequantized.
fn dq8(n: u32, c: u32) -> W8 {
  if (FMT >= 32u) {
    return decode8(raw8_packed(n, c), c);
  }
  let row = n * p.row_bytes;
  if (FMT == 0u) {
    let i = (row >> 2u) + c * 8u;  // F32 rows are 4-byte aligned
    return W8(bitcast<vec4<f32>>(vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u])),
              bitcast<vec4<f32>>(vec4<u32>(w[i + 4u], w[i + 5u], w[i + 6u], w[i + 7u])));
  }
  if (FMT == 1u) {
    let o = row + c * 16u;  // 2-byte aligned when K is odd
    return W8(vec4<f32>(unpack2x16float(word_at(o)), unpack2x16float(word_at(o + 4u))),
              vec4<f32>(unpack2x16float(word_at(o + 8u)), unpack2x16float(word_at(o + 12u))));
  }
  let blk = c >> 2u;
  let sub = c & 3u;
  if (FMT == 2u || FMT == 3u) {
    // 16 bytes of nibbles: element j < 16 is the low nibble of byte j, j + 16 the high one.
    let head = select(2u, 4u, FMT == 3u);
    let off = row + blk * (head + 16u);
    let d = half_at(off);
    let qs = off + head + (sub & 1u) * 8u;
    let sh = (sub >> 1u) * 4u;
    let qa = byte_nibbles(word_at(qs), sh);
    let qb = byte_nibbles(word_at(qs + 4u), sh);
    if (FMT == 2u) {
      return W8(d * (qa - vec4<f32>(8.0)), d * (qb - vec4<f32>(8.0)));
    }
    let m = vec4<f32>(half_at(off + 2u));
    return W8(d * qa + m, d * qb + m);
  }
  if (FMT == 8u) {
    let off = row + blk * 34u;
    let d = half_at(off);
    let qs = off + 2u + sub * 8u;
    return W8(d * bytes_i8(word_at(qs)), d * bytes_i8(word_at(qs + 4u)));
  }
  // ExecuTorch 4-bit: one word holds 8 nibbles; element i is nibble i after ordering.
  var word = word_at(row + c * 4u);
  if (FMT == 17u) {
    word = ((word >> 4u) & 0x0F0F0F0Fu) | ((word & 0x0F0F0F0Fu) << 4u);
  }
  let s = scales[((c * 8u) / p.group_size) * p.s_stride_g + n * p.s_stride_n];
  let lo = vec4<f32>((vec4<u32>(word) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
  let hi = vec4<f32>((vec4<u32>(word) >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
  return W8(s * (lo - vec4<f32>(8.0)), s * (hi - vec4<f32>(8.0)));
}

// A chunk as loaded from memory, before decoding: repacked formats keep their quant words (q) and
// scales (e = d, m bits), so the tiled kernels can issue the loads of the next K step early and
// decode once the data has arrived; other formats hold the decoded values (q = a, e = b bits).
struct Raw8 {
  q: vec4<u32>,
  e: vec4<u32>,
}

// Repacked formats: chunk c of row n, undecoded.
fn raw8_packed(n: u32, c: u32) -> Raw8 {
  let blk = c >> 2u;
  let d = w[p.d_off + n * (p.K / 32u) + blk];
  if (FMT == 40u) {
    return Raw8(wvec(n * p.q_stride + blk * 8u + ((c & 3u) >> 1u) * 4u), vec4<u32>(d, 0u, 0u, 0u));
  }
  var m = 0u;
  if (FMT == 35u) {
    m = w[p.m_off + n * (p.K / 32u) + blk];
  }
  return Raw8(wvec(n * p.q_stride + blk * 4u), vec4<u32>(d, m, 0u, 0u));
}

fn raw8(n: u32, c: u32) -> Raw8 {
  if (FMT >= 32u) {
    return raw8_packed(n, c);
  }
  let v = dq8(n, c);
  return Raw8(bitcast<vec4<u32>>(v.a), bitcast<vec4<u32>>(v.b));
}

fn decode8(r: Raw8, c: u32) -> W8 {
  if (FMT < 32u) {
    return W8(bitcast<vec4<f32>>(r.q), bitcast<vec4<f32>>(r.e));
  }
  let sub = c & 3u;
  let d = bitcast<f32>(r.e.x);
  let f = 32u + FMT % 32u;  // records (64 + id) decode as their repacked twins (32 + id)
  if (f == 40u) {
    let sh = 24u - (sub & 1u) * 16u;
    return W8(d * i8x4(r.q, sh), d * i8x4(r.q, sh - 8u));
  }
  let a = nib4(r.q, sub * 8u);
  let b = nib4(r.q, sub * 8u + 4u);
  if (f == 34u) {
    return W8(d * (a - vec4<f32>(8.0)), d * (b - vec4<f32>(8.0)));
  }
  let m = vec4<f32>(bitcast<f32>(r.e.y));
  return W8(d * a + m, d * b + m);
}

// Tiled kernels, shared with fused_linear.wgsl.in: a thread's 8 x values of the TM x TK tile
// at K step k0 (thread lid takes elements lid, lid + 64, ...), stored k-major as vec4s along m.
fn tile_x_load(m0: u32, k0: u32, lid: u32) -> array<f32, 8> {
  var v: array<f32, 8>;
  for (var t = 0u; t < 8u; t++) {
    let j = lid + t * 64u;
    let m = m0 + j / TK;
    v[t] = 0.0;
    if (m < p.M) {
      v[t] = x_at(m * p.K, k0 + j % TK);
    }
  }
  return v;
}

fn tile_x_store(v: array<f32, 8>, lid: u32) {
  for (var t = 0u; t < 8u; t++) {
    let j = lid + t * 64u;
    let ml = j / TK;
    xs[(j % TK) * (TM / 4u) + ml / 4u][ml % 4u] = v[t];
  }
}

// Without PF: the thread's x values at K step k0 straight into xs.
fn tile_x_fill(m0: u32, k0: u32, lid: u32) {
  for (var t = 0u; t < 8u; t++) {
    let j = lid + t * 64u;
    let ml = j / TK;
    let m = m0 + ml;
    var v = 0.0;
    if (m < p.M) {
      v = x_at(m * p.K, k0 + j % TK);
    }
    xs[(j % TK) * (TM / 4u) + ml / 4u][ml % 4u] = v;
  }
}

// Chunk c of a weight row (zero when the row does not exist or past K), from its loaded words
// (PF) or read now.
fn tile_w_decoded(r: Raw8, live: bool, c: u32) -> W8 {
  if (!live) {
    return W8(vec4<f32>(0.0), vec4<f32>(0.0));
  }
  return mask8(decode8(r, c), c);
}

fn tile_w_read(n: u32, live: bool, c: u32) -> W8 {
  if (!live) {
    return W8(vec4<f32>(0.0), vec4<f32>(0.0));
  }
  return mask8(dq8(n, c), c);
}

// Chunk cl (0 .. 3) of tile column nl into ws, k-major as vec4s along n.
fn tile_w_put(v: W8, nl: u32, cl: u32) {
  let base = cl * 8u * (TN / 4u) + nl / 4u;
  let comp = nl % 4u;
  let st = TN / 4u;
  ws[base][comp] = v.a.x;
  ws[base + st][comp] = v.a.y;
  ws[base + 2u * st][comp] = v.a.z;
  ws[base + 3u * st][comp] = v.a.w;
  ws[base + 4u * st][comp] = v.b.x;
  ws[base + 5u * st][comp] = v.b.y;
  ws[base + 6u * st][comp] = v.b.z;
  ws[base + 7u * st][comp] = v.b.w;
}

// Zero the elements of a chunk past the row end (K need not be a multiple of 8).
fn mask8(v: W8, c: u32) -> W8 {
  let k = vec4<u32>(c * 8u) + vec4<u32>(0u, 1u, 2u, 3u);
  let kk = vec4<u32>(p.K);
  return W8(select(vec4<f32>(0.0), v.a, k < kk), select(vec4<f32>(0.0), v.b, k + vec4<u32>(4u) < kk));
}

fn x_at(base: u32, k: u32) -> f32 {
  if (k < p.K) {
    return bitcast<f32>(src[base + k]);
  }
  return 0.0;
}

fn x8(base: u32, c: u32) -> W8 {
  let k = c * 8u;
  return W8(vec4<f32>(x_at(base, k), x_at(base, k + 1u), x_at(base, k + 2u), x_at(base, k + 3u)),
            vec4<f32>(x_at(base, k + 4u), x_at(base, k + 5u), x_at(base, k + 6u), x_at(base, k + 7u)));
}

// Lane `lane` of TPR lanes: its share of x[xb ..] . W[n] (lanes stride over blocks or chunks).
// Uses x4 / w4, so only the gemv entry points call it.
fn row_dot(xb: u32, n: u32, lane: u32) -> f32 {
  if (FMT < 32u) {
    return row_dot_chunks(xb, n, lane, TPR);
  }
  var acc = 0.0;
  let blocks = p.K / 32u;
  for (var b = lane; b < blocks; b += TPR) {
    acc += q_dot(n, b, x32((xb + b * 32u) / 4u));
  }
  return acc;
}

// Formats other than the repacked ones: chunks lane, lane + step, .. of x[xb ..] . W[n].
fn row_dot_chunks(xb: u32, n: u32, lane: u32, step: u32) -> f32 {
  var acc = 0.0;
  let chunks = (p.K + 7u) / 8u;
  if (p.K % 8u == 0u) {
    // Whole chunks: no masking, unchecked x loads.
    for (var c = lane; c < chunks; c += step) {
      let wv = dq8(n, c);
      acc += dot(wv.a, xvec(xb + c * 8u)) + dot(wv.b, xvec(xb + c * 8u + 4u));
    }
    return acc;
  }
  for (var c = lane; c < chunks; c += step) {
    let wv = mask8(dq8(n, c), c);
    let xv = x8(xb, c);
    acc += dot(wv.a, xv.a) + dot(wv.b, xv.b);
  }
  return acc;
}

// ---- end of quant_weights.wgsl ----
// ---- from quant_weights.wgsl (included) ----
// ---- CPU path of gemv (gemv_cpu, R <= 192 rows per thread): each thread streams R whole rows.
// On CPU Vulkan a thread is a SIMD lane, so every load is a gather, word by word: the x block is
// loaded once for R rows, the weights as records (one load per 48 bytes), row offsets are
// computed, not kept in a private array (read lane by lane at a computed index), products add
// up as vec4s (one horizontal sum per block) and nibbles convert from i32 (u32 -> f32 has no
// single x86 op).

// No shifts: SwiftShader runs a vector shift lane by lane, at several times the cost of a mask.
// Element k of a word is masked in place (q & mask_k), so it arrives as value * 2^(bits below it)
// and meets x_k scaled by the inverse power of two once per block for all R rows (x32_cpu). A
// Q4 nibble k is n * 2^4k; the top one is taken with its top bit flipped, which as an i32 is
// (n - 8) * 2^28, and `fix` adds back 8 * sum(x_7). Q8_0 bytes 0 .. 2 are biased by 128 (XOR
// of their top bits) and arrive as (q + 128) * 2^8j, byte 3 as the i32 q * 2^24 itself; `fix`
// takes 128 * sum(x) of the biased bytes away. Power-of-two scales are exact.
struct XC {
  x: X32,
  fix: f32,
}

fn x32_cpu(xi: u32) -> XC {
  let x = x32(xi);
  let one = vec4<f32>(1.0);
  if (FMT == 72u) {
    let biased = (x.v0 + x.v1) + (x.v2 + x.v4) + (x.v5 + x.v6);
    return XC(X32(x.v0, x.v1 * 0.00390625, x.v2 * 1.52587890625e-5, x.v3 * 5.9604644775390625e-8,
                  x.v4, x.v5 * 0.00390625, x.v6 * 1.52587890625e-5, x.v7 * 5.9604644775390625e-8, x.sum),
              -128.0 * dot(biased, one));
  }
  return XC(X32(x.v0, x.v1 * 0.0625, x.v2 * 0.00390625, x.v3 * 0.000244140625, x.v4 * 1.52587890625e-5,
                x.v5 * 9.5367431640625e-7, x.v6 * 5.9604644775390625e-8, x.v7 * 3.7252902984619140625e-9, x.sum),
            8.0 * dot(x.v7, one));
}

fn i2f(v: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(v));
}

// A Q4 block (quant words q, scale d, min m; Q4_0: offset -8 d instead) dotted with x (x32_cpu).
fn q4_dot_cpu(q: vec4<u32>, d: f32, m: f32, xc: XC) -> f32 {
  let x = xc.x;
  let s = i2f(q & vec4<u32>(0xfu)) * x.v0 + i2f(q & vec4<u32>(0xf0u)) * x.v1
        + i2f(q & vec4<u32>(0xf00u)) * x.v2 + i2f(q & vec4<u32>(0xf000u)) * x.v3
        + i2f(q & vec4<u32>(0xf0000u)) * x.v4 + i2f(q & vec4<u32>(0xf00000u)) * x.v5
        + i2f(q & vec4<u32>(0xf000000u)) * x.v6 + i2f((q ^ vec4<u32>(0x80000000u)) & vec4<u32>(0xf0000000u)) * x.v7;
  let sd = dot(s, vec4<f32>(1.0)) + xc.fix;
  if (FMT == 66u) {
    return d * (sd - 8.0 * x.sum);
  }
  return d * sd + m * x.sum;
}

// A Q8_0 block (quant words q0, q1, scale d) dotted with x (x32_cpu).
fn q8_dot_cpu(q0: vec4<u32>, q1: vec4<u32>, d: f32, xc: XC) -> f32 {
  let x = xc.x;
  let bias = vec4<u32>(0x00808080u);
  let qa = q0 ^ bias;
  let qb = q1 ^ bias;
  let s = i2f(qa & vec4<u32>(0xffu)) * x.v0 + i2f(qa & vec4<u32>(0xff00u)) * x.v1
        + i2f(qa & vec4<u32>(0xff0000u)) * x.v2 + i2f(qa & vec4<u32>(0xff000000u)) * x.v3
        + i2f(qb & vec4<u32>(0xffu)) * x.v4 + i2f(qb & vec4<u32>(0xff00u)) * x.v5
        + i2f(qb & vec4<u32>(0xff0000u)) * x.v6 + i2f(qb & vec4<u32>(0xff000000u)) * x.v7;
  return d * (dot(s, vec4<f32>(1.0)) + xc.fix);
}

// Where a thread of the CPU entries works (WG * R weight rows per workgroup, R per thread):
// (its first activation row, `rows` per workgroup; its first weight row n0).
fn cpu_place(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, rows: u32) -> vec2<u32> {
  let cols = WG * R;
  let col_blocks = (p.N + cols - 1u) / cols;
  let g = wid.y * nwg.x + wid.x;
  return vec2<u32>((g / col_blocks) * rows, (g % col_blocks) * cols + lid * R);
}

// Rows n0 .. n0 + R - 1 (past `last`: row `last`, dropped by the caller) of x[xb ..] . W (records),
// added to acc[0 .. R - 1] (in place: returning the array would copy it, and compile slower).
// Blocks 2j and 2j + 1 per record; with an odd block count the last record's second block is
// zeros: it adds 0 * x of the row's last block.
fn rows_dot_cpu(xb: u32, n0: u32, last: u32, acc: ptr<function, array<f32, 192>>) {
  let xv = xb / 4u;
  let last_x = xv + (p.K / 32u - 1u) * 8u;
  for (var j = 0u; j < p.q_stride; j++) {
    let x0 = x32_cpu(xv + j * 16u);
    let x1 = x32_cpu(min(xv + j * 16u + 8u, last_x));
    for (var r = 0u; r < R; r++) {
      let at = min(n0 + r, last) * p.q_stride + j;
      if (FMT == 72u) {
        let rec = wr8[at];
        let d = bitcast<vec4<f32>>(rec[4]);
        (*acc)[r] += q8_dot_cpu(rec[0], rec[1], d.x, x0) + q8_dot_cpu(rec[2], rec[3], d.y, x1);
      } else {
        let rec = wr[at];
        let sc = bitcast<vec4<f32>>(rec[2]);
        (*acc)[r] += q4_dot_cpu(rec[0], sc.x, sc.y, x0) + q4_dot_cpu(rec[1], sc.z, sc.w, x1);
      }
    }
  }
}

// ---- CPU path of prompts (gemm_cpu; fused_linear.wgsl's gemm*_cpu): each thread streams its R
// rows for four activation rows m0 .. m0 + 3 at once, so every record is loaded and its quants
// converted once for four rows of x (SwiftShader, Q4_1 1536 x 576 at 16 / 64 rows: 3.86-3.93 ->
// 2.51-3.03 / 15.2-15.4 -> 9.7-10.0 ms). Each row's sum runs in rows_dot_cpu's order: the same
// bits as the GEMV. Rows past p.M repeat row p.M - 1 and are not stored.
const GEMM_R: u32 = 96u;  // rows per thread of the gemm*_cpu entries at most (quant_kernels.CPU_GEMM_MAX_R)

struct XC4 {
  a: XC,
  b: XC,
  c: XC,
  d: XC,
}

// The x blocks at vec4 xi of rows m0 .. m0 + 3 (x32_cpu of each).
fn x4_cpu(m0: u32, xi: u32) -> XC4 {
  let row = p.K / 4u;
  let last = p.M - 1u;
  return XC4(x32_cpu(m0 * row + xi), x32_cpu(min(m0 + 1u, last) * row + xi),
             x32_cpu(min(m0 + 2u, last) * row + xi), x32_cpu(min(m0 + 3u, last) * row + xi));
}

// A block's 32 converted quants (element k of each word scaled as x32_cpu expects).
struct W32 {
  w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>,
  w4: vec4<f32>, w5: vec4<f32>, w6: vec4<f32>, w7: vec4<f32>,
}

// Each of the four rows' dot with the block, `fix` added (q4_dot_cpu's and q8_dot_cpu's order).
fn dots4(w: W32, x: XC4) -> vec4<f32> {
  let a = x.a.x;
  let b = x.b.x;
  let c = x.c.x;
  let e = x.d.x;
  let sa = w.w0 * a.v0 + w.w1 * a.v1 + w.w2 * a.v2 + w.w3 * a.v3 + w.w4 * a.v4 + w.w5 * a.v5 + w.w6 * a.v6 + w.w7 * a.v7;
  let sb = w.w0 * b.v0 + w.w1 * b.v1 + w.w2 * b.v2 + w.w3 * b.v3 + w.w4 * b.v4 + w.w5 * b.v5 + w.w6 * b.v6 + w.w7 * b.v7;
  let sc = w.w0 * c.v0 + w.w1 * c.v1 + w.w2 * c.v2 + w.w3 * c.v3 + w.w4 * c.v4 + w.w5 * c.v5 + w.w6 * c.v6 + w.w7 * c.v7;
  let se = w.w0 * e.v0 + w.w1 * e.v1 + w.w2 * e.v2 + w.w3 * e.v3 + w.w4 * e.v4 + w.w5 * e.v5 + w.w6 * e.v6 + w.w7 * e.v7;
  let one = vec4<f32>(1.0);
  return vec4<f32>(dot(sa, one) + x.a.fix, dot(sb, one) + x.b.fix, dot(sc, one) + x.c.fix, dot(se, one) + x.d.fix);
}

// q4_dot_cpu for the four rows: the block's quants converted once.
fn q4_dot4_cpu(q: vec4<u32>, d: f32, m: f32, x: XC4) -> vec4<f32> {
  let sd = dots4(W32(i2f(q & vec4<u32>(0xfu)), i2f(q & vec4<u32>(0xf0u)), i2f(q & vec4<u32>(0xf00u)),
                     i2f(q & vec4<u32>(0xf000u)), i2f(q & vec4<u32>(0xf0000u)), i2f(q & vec4<u32>(0xf00000u)),
                     i2f(q & vec4<u32>(0xf000000u)), i2f((q ^ vec4<u32>(0x80000000u)) & vec4<u32>(0xf0000000u))), x);
  let sums = vec4<f32>(x.a.x.sum, x.b.x.sum, x.c.x.sum, x.d.x.sum);
  if (FMT == 66u) {
    return d * (sd - 8.0 * sums);
  }
  return d * sd + m * sums;
}

// q8_dot_cpu for the four rows.
fn q8_dot4_cpu(q0: vec4<u32>, q1: vec4<u32>, d: f32, x: XC4) -> vec4<f32> {
  let bias = vec4<u32>(0x00808080u);
  let qa = q0 ^ bias;
  let qb = q1 ^ bias;
  return d * dots4(W32(i2f(qa & vec4<u32>(0xffu)), i2f(qa & vec4<u32>(0xff00u)), i2f(qa & vec4<u32>(0xff0000u)),
                       i2f(qa & vec4<u32>(0xff000000u)), i2f(qb & vec4<u32>(0xffu)), i2f(qb & vec4<u32>(0xff00u)),
                       i2f(qb & vec4<u32>(0xff0000u)), i2f(qb & vec4<u32>(0xff000000u))), x);
}

// rows_dot_cpu for activation rows m0 .. m0 + 3: acc[r] holds row n0 + r's four sums.
fn rows_dot4_cpu(m0: u32, n0: u32, last: u32, acc: ptr<function, array<vec4<f32>, GEMM_R>>) {
  let last_x = (p.K / 32u - 1u) * 8u;
  for (var j = 0u; j < p.q_stride; j++) {
    let x0 = x4_cpu(m0, j * 16u);
    let x1 = x4_cpu(m0, min(j * 16u + 8u, last_x));
    for (var r = 0u; r < R; r++) {
      let at = min(n0 + r, last) * p.q_stride + j;
      if (FMT == 72u) {
        let rec = wr8[at];
        let d = bitcast<vec4<f32>>(rec[4]);
        (*acc)[r] += q8_dot4_cpu(rec[0], rec[1], d.x, x0) + q8_dot4_cpu(rec[2], rec[3], d.y, x1);
      } else {
        let rec = wr[at];
        let sc = bitcast<vec4<f32>>(rec[2]);
        (*acc)[r] += q4_dot4_cpu(rec[0], sc.x, sc.y, x0) + q4_dot4_cpu(rec[1], sc.z, sc.w, x1);
      }
    }
  }
}

// ---- end of quant_weights.wgsl ----
// ---- from quant_weights.wgsl (included) ----
//#if MMA
// ---- tiled_mma core (fused_linear.wgsl includes this block): an MT x NT tile of x[m, :] . W[n, :]
// on the GPU's matrix units (chromium-experimental-subgroup-matrix, f16 x f16 -> f32 in 16 x 16 x 16
// pieces), per workgroup of one subgroup of 32 (checked by the host): subgroup matrix offsets must
// be uniform, and with one subgroup they derive from the workgroup id alone. Per K step of TK the
// x rows and the dequantized weight rows go to workgroup memory as f16 (the inputs' only rounding:
// sums are f32), k-contiguous in rows of KS; up to eight accumulators hold the MI x NJ pieces.
// K must be a multiple of TK (x is read as vec4s; checked by the host).
override MI: u32 = 2u;                   // 16-row pieces along m (1 or 2)
override NJ: u32 = 4u;                   // 16-column pieces along n (2 or 4)
override MPF: bool = false;              // load the next K step into registers during the multiplies
override MT: u32 = 16u * MI;
override NT: u32 = 16u * NJ;
const KS: u32 = 40u;                     // f16 row stride of the tiles: TK + 8 spreads the rows' banks
// Sized for the largest tile (MI = 2, NJ = 4): subgroup matrix loads and stores are checked
// against the arrays' sizes also in branches that smaller tiles never take.
var<workgroup> xh: array<f16, 1280>;     // 32 * KS: x rows
var<workgroup> wh: array<f16, 2560>;     // 64 * KS: weight rows
var<workgroup> cs: array<f32, 2048>;     // 32 * 64: the finished tile, row-major (row stride NT)

alias Left = subgroup_matrix_left<f16, 16, 16>;
alias Right = subgroup_matrix_right<f16, 16, 16>;
alias Res = subgroup_matrix_result<f32, 16, 16>;

// Fills cs with the tile at activation row m0, weight rows mma_row(n0, 0 .. NT-1, swiglu).
fn mma_tile(m0: u32, n0: u32, lid: u32, swiglu: bool) {
  var c00 = Res();
  var c01 = Res();
  var c02 = Res();
  var c03 = Res();
  var c10 = Res();
  var c11 = Res();
  var c12 = Res();
  var c13 = Res();
  // Loaders: thread lid fills x row lid (lid < MT) and weight rows lid, lid + 32 (< NT), TK values each.
  let m = m0 + lid;
  let w0 = mma_row(n0, lid, swiglu);
  let w1 = mma_row(n0, lid + 32u, swiglu);
  let k_steps = p.K / TK;
  var xr: array<vec4<f32>, 8>;  // MPF: the next step's x (TK / 4 vec4s) and weight chunks
  var wr0: array<Raw8, 4>;
  var wr1: array<Raw8, 4>;
  if (MPF) {
    mma_load(m, lid < MT, w0, w1, 0u, &xr, &wr0, &wr1);
  }
  for (var ks = 0u; ks < k_steps; ks++) {
    let k0 = ks * TK;
    if (!MPF) {
      mma_load(m, lid < MT, w0, w1, k0, &xr, &wr0, &wr1);
    }
    if (lid < MT) {
      for (var j = 0u; j < TK / 4u; j++) {
        let v = xr[j];
        let at = lid * KS + 4u * j;
        xh[at] = f16(v.x);
        xh[at + 1u] = f16(v.y);
        xh[at + 2u] = f16(v.z);
        xh[at + 3u] = f16(v.w);
      }
    }
    for (var h = 0u; h < TK / 8u; h++) {
      mma_put_w(tile_w_decoded(wr0[h], w0.y != 0u, k0 / 8u + h), lid * KS + h * 8u);
      if (NT > 32u) {
        mma_put_w(tile_w_decoded(wr1[h], w1.y != 0u, k0 / 8u + h), (lid + 32u) * KS + h * 8u);
      }
    }
    workgroupBarrier();
    if (MPF && ks + 1u < k_steps) {
      mma_load(m, lid < MT, w0, w1, k0 + TK, &xr, &wr0, &wr1);
    }
    for (var kk = 0u; kk < TK; kk += 16u) {
      // left = x rows (row-major), right = W^T: element (k, n) is weight row n's k (column-major)
      let a0 = subgroupMatrixLoad<Left, row_major>(&xh, kk, KS);
      let b0 = subgroupMatrixLoad<Right, col_major>(&wh, kk, KS);
      let b1 = subgroupMatrixLoad<Right, col_major>(&wh, 16u * KS + kk, KS);
      c00 = subgroupMatrixMultiplyAccumulate(a0, b0, c00);
      c01 = subgroupMatrixMultiplyAccumulate(a0, b1, c01);
      if (NJ > 2u) {
        let b2 = subgroupMatrixLoad<Right, col_major>(&wh, 32u * KS + kk, KS);
        let b3 = subgroupMatrixLoad<Right, col_major>(&wh, 48u * KS + kk, KS);
        c02 = subgroupMatrixMultiplyAccumulate(a0, b2, c02);
        c03 = subgroupMatrixMultiplyAccumulate(a0, b3, c03);
        if (MI > 1u) {
          let a1 = subgroupMatrixLoad<Left, row_major>(&xh, 16u * KS + kk, KS);
          c10 = subgroupMatrixMultiplyAccumulate(a1, b0, c10);
          c11 = subgroupMatrixMultiplyAccumulate(a1, b1, c11);
          c12 = subgroupMatrixMultiplyAccumulate(a1, b2, c12);
          c13 = subgroupMatrixMultiplyAccumulate(a1, b3, c13);
        }
      } else if (MI > 1u) {
        let a1 = subgroupMatrixLoad<Left, row_major>(&xh, 16u * KS + kk, KS);
        c10 = subgroupMatrixMultiplyAccumulate(a1, b0, c10);
        c11 = subgroupMatrixMultiplyAccumulate(a1, b1, c11);
      }
    }
    workgroupBarrier();
  }
  subgroupMatrixStore<row_major>(&cs, 0u, c00, NT);
  subgroupMatrixStore<row_major>(&cs, 16u, c01, NT);
  if (NJ > 2u) {
    subgroupMatrixStore<row_major>(&cs, 32u, c02, NT);
    subgroupMatrixStore<row_major>(&cs, 48u, c03, NT);
  }
  if (MI > 1u) {
    subgroupMatrixStore<row_major>(&cs, 16u * NT, c10, NT);
    subgroupMatrixStore<row_major>(&cs, 16u * NT + 16u, c11, NT);
    if (NJ > 2u) {
      subgroupMatrixStore<row_major>(&cs, 16u * NT + 32u, c12, NT);
      subgroupMatrixStore<row_major>(&cs, 16u * NT + 48u, c13, NT);
    }
  }
  workgroupBarrier();
}

// One K step's loads of a loader thread: x row m (lid < MT) and weight rows w0, w1 (NT > 32), from k0.
fn mma_load(m: u32, xrow: bool, w0: vec2<u32>, w1: vec2<u32>, k0: u32, xr: ptr<function, array<vec4<f32>, 8>>,
            wr0: ptr<function, array<Raw8, 4>>, wr1: ptr<function, array<Raw8, 4>>) {
  for (var j = 0u; j < TK / 4u; j++) {
    (*xr)[j] = vec4<f32>(0.0);
    if (xrow && m < p.M) {
      (*xr)[j] = x4[(m * p.K + k0) / 4u + j];
    }
  }
  for (var h = 0u; h < TK / 8u; h++) {
    if (w0.y != 0u) {
      (*wr0)[h] = raw8(w0.x, k0 / 8u + h);
    }
    if (NT > 32u && w1.y != 0u) {
      (*wr1)[h] = raw8(w1.x, k0 / 8u + h);
    }
  }
}

// Eight dequantized weights into wh at `at`, as f16.
fn mma_put_w(v: W8, at: u32) {
  wh[at] = f16(v.a.x);
  wh[at + 1u] = f16(v.a.y);
  wh[at + 2u] = f16(v.a.z);
  wh[at + 3u] = f16(v.a.w);
  wh[at + 4u] = f16(v.b.x);
  wh[at + 5u] = f16(v.b.y);
  wh[at + 6u] = f16(v.b.z);
  wh[at + 7u] = f16(v.b.w);
}

// Tile origin (m0, n0) of workgroup g for `cols` outputs per tile; m0 = p.M past the end.
fn mma_origin(wid: vec3<u32>, nwg: vec3<u32>, cols: u32) -> vec2<u32> {
  let n_tiles = (p.N + cols - 1u) / cols;
  let g = wid.y * nwg.x + wid.x;
  if (g >= ((p.M + MT - 1u) / MT) * n_tiles) {
    return vec2<u32>(p.M, 0u);
  }
  return vec2<u32>((g / n_tiles) * MT, (g % n_tiles) * cols);
}
//#endif
// ---- end of quant_weights.wgsl ----

fn silu_mul(g: f32, u: f32) -> f32 {
  // The unfused chain: sigmoid (unary.wgsl), gate * sig, then * up (binary.wgsl).
  let sg = 1.0 / (1.0 + exp(-g));
  return (g * sg) * u;
}

// Pipelines asked for with BIAS=1 (two- and three-way linears with biases) read the biases, one
// linear's after another, where 4-bit ExecuTorch formats read scales: the fused linears take GGUF
// weights only, which have none.
fn with_bias(n: u32, v: f32) -> f32 {
//#if BIAS
  return v + scales[n];
//#else
  return v;
//#endif
}

// out row n of the concatenated outputs = v (+ bias n).
fn store2(m: u32, n: u32, v: f32) {
  let vb = with_bias(n, v);
  if (n < s.n0) {
    out0[m * s.n0 + n] = vb;
  } else {
    out1[m * (p.N - s.n0) + n - s.n0] = vb;
  }
}

fn store3(m: u32, n: u32, v: f32) {
  let vb = with_bias(n, v);
  let n01 = s.n0 + s.n1;
  if (n < s.n0) {
    out0[m * s.n0 + n] = vb;
  } else if (n < n01) {
    out1[m * s.n1 + n - s.n0] = vb;
  } else {
    out2[m * (p.N - n01) + n - n01] = vb;
  }
}

// ---- gemv: TPR threads stride over the blocks of one (activation row, weight row) pair.
var<workgroup> red: array<f32, WG>;

// CPU adapters (*_cpu entries): each thread streams R whole weight rows of the fused weight, as
// quant_weights.wgsl's gemv_cpu does (the same sums, so fused equals unfused there too).
struct CpuRows {
  m: u32,       // the first activation row (gemm*_cpu: of four)
  n0: u32,      // the first of the thread's R rows (outputs n0 .. n0 + R - 1 below p.N)
  live: bool,
}

// `rows` activation rows per workgroup: 1 (*_cpu), 4 (gemm*_cpu).
fn cpu_rows(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, rows: u32) -> CpuRows {
  let at = cpu_place(wid, nwg, lid, rows);
  return CpuRows(at.x, at.y, at.x < p.M && at.y < p.N);
}

// The thread's rows, or with `up` the up rows s.n0 + n0.. of a SwiGLU weight (p.N = F), into acc.
fn cpu_dot(c: CpuRows, up: bool, acc: ptr<function, array<f32, 192>>) {
  if (c.live) {
    let first = select(0u, s.n0, up);
    rows_dot_cpu(c.m * p.K, first + c.n0, first + p.N - 1u, acc);
  }
}

// Every thread of the workgroup must call this (barriers); lane 0 of each TPR group gets the sum.
fn gemv_dot(m: u32, row: u32, live: bool, lid: u32) -> f32 {
  var acc = 0.0;
  if (live) {
    acc = row_dot(m * p.K, row, lid % TPR);
  }
  return gemv_reduce(acc, lid);
}

// The TPR lanes' partial dots summed (lane 0 of each group gets the sum) as quant_weights.wgsl's
// lanes_sum4 does: strides down to SG in workgroup memory, then subgroup shuffles; all threads call it.
fn gemv_reduce(acc: f32, lid: u32) -> f32 {
  let lane = lid % TPR;
  var v = acc;
  if (TPR > SG) {  // uniform: overrides
    red[lid] = v;
    workgroupBarrier();
    for (var st = TPR / 2u; st >= SG; st >>= 1u) {
      if (lane < st) {
        red[lid] += red[lid + st];
      }
      workgroupBarrier();
    }
    v = red[lid];
  }
//#if SUBGROUPS
  for (var st = min(SG, TPR) / 2u; st > 0u; st >>= 1u) {
    v += subgroupShuffleDown(v, st);
  }
//#endif
  return v;
}

// SwiGLU: each invocation's reduced value and the one `other` invocations further on (the up row
// of a gate row's group); all threads call it.
fn swap_with(v: f32, lid: u32, other: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  return red[lid + other];
}

struct Col {
  m: u32,
  n: u32,
  live: bool,
  v: f32,
}

// WG / TPR output columns per workgroup, as in quant_weights.wgsl's gemv.
fn gemv_col(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Col {
  let cols = WG / TPR;
  let col_blocks = (p.N + cols - 1u) / cols;
  let g = wid.y * nwg.x + wid.x;
  let m = g / col_blocks;
  let n = (g % col_blocks) * cols + lid / TPR;
  let live = m < p.M && n < p.N;
  return Col(m, n, live && lid % TPR == 0u, gemv_dot(m, n, live, lid));
}

@compute @workgroup_size(WG)
fn gemv2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let c = gemv_col(wid, nwg, lid);
  if (c.live) {
    store2(c.m, c.n, c.v);
  }
}

@compute @workgroup_size(WG)
fn gemv3(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
  let c = gemv_col(wid, nwg, lid);
  if (c.live) {
    store3(c.m, c.n, c.v);
  }
}

// SwiGLU: the first half of the TPR groups take gate rows n, the second half up rows s.n0 + n
// of the same columns; WG / TPR / 2 output columns per workgroup.
@compute @workgroup_size(WG)
fn gemv_swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
  let half = WG / TPR / 2u;
  let col_blocks = (p.N + half - 1u) / half;
  let g = wid.y * nwg.x + wid.x;
  let m = g / col_blocks;
  let grp = lid / TPR;
  let is_up = grp >= half;
  let n = (g % col_blocks) * half + grp % half;
  let live = m < p.M && n < p.N;
  let v = gemv_dot(m, select(n, s.n0 + n, is_up), live, lid);
  let up = swap_with(v, lid, select(half * TPR, 0u, is_up));
  if (live && !is_up && lid % TPR == 0u) {
    out0[m * p.N + n] = silu_mul(v, up);
  }
}

// (gemv2_cpu and gemv3_cpu stay apart: a shared body would use out2 statically, and gemv2 has
// no third output to bind there.)
@compute @workgroup_size(WG)
fn gemv2_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let c = cpu_rows(wid, nwg, lid, 1u);
  var acc: array<f32, 192>;
  cpu_dot(c, false, &acc);
  for (var r = 0u; r < R && c.live && c.n0 + r < p.N; r++) {
    store2(c.m, c.n0 + r, acc[r]);
  }
}

@compute @workgroup_size(WG)
fn gemv3_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let c = cpu_rows(wid, nwg, lid, 1u);
  var acc: array<f32, 192>;
  cpu_dot(c, false, &acc);
  for (var r = 0u; r < R && c.live && c.n0 + r < p.N; r++) {
    store3(c.m, c.n0 + r, acc[r]);
  }
}

// R gate rows and their up rows per thread. The gate sums wait in out0 (the thread's own
// elements: no barrier) while the up rows run, so the rows' loop is compiled once.
@compute @workgroup_size(WG)
fn gemv_swiglu_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let c = cpu_rows(wid, nwg, lid, 1u);
  for (var half = 0u; half < 2u; half++) {
    var acc: array<f32, 192>;
    for (var r = 0u; r < R; r++) {
      acc[r] = 0.0;  // explicit: some compilers hoist the declaration out of the loop
    }
    cpu_dot(c, half == 1u, &acc);
    for (var r = 0u; r < R && c.live && c.n0 + r < p.N; r++) {
      let at = c.m * p.N + c.n0 + r;
      out0[at] = select(acc[r], silu_mul(out0[at], acc[r]), half == 1u);
    }
  }
}

// Prompts on CPU adapters (M > 1): the *_cpu entries for four activation rows m0 .. m0 + 3 per
// thread (rows_dot4_cpu: the same sums, each record converted once for the four rows).
fn cpu_dot4(c: CpuRows, up: bool, acc: ptr<function, array<vec4<f32>, GEMM_R>>) {
  if (c.live) {
    let first = select(0u, s.n0, up);
    rows_dot4_cpu(c.m, first + c.n0, first + p.N - 1u, acc);
  }
}

// (gemm2_cpu and gemm3_cpu stay apart for the reason gemv2_cpu and gemv3_cpu do.)
@compute @workgroup_size(WG)
fn gemm2_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let c = cpu_rows(wid, nwg, lid, 4u);
  var acc: array<vec4<f32>, GEMM_R>;
  cpu_dot4(c, false, &acc);
  for (var r = 0u; r < R && c.live && c.n0 + r < p.N; r++) {
    for (var k = 0u; k < 4u && c.m + k < p.M; k++) {
      store2(c.m + k, c.n0 + r, acc[r][k]);
    }
  }
}

@compute @workgroup_size(WG)
fn gemm3_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
  let c = cpu_rows(wid, nwg, lid, 4u);
  var acc: array<vec4<f32>, GEMM_R>;
  cpu_dot4(c, false, &acc);
  for (var r = 0u; r < R && c.live && c.n0 + r < p.N; r++) {
    for (var k = 0u; k < 4u && c.m + k < p.M; k++) {
      store3(c.m + k, c.n0 + r, acc[r][k]);
    }
  }
}

// As gemv_swiglu_cpu, the gate sums waiting in out0 (the loop inlined twice took SwiftShader's
// JIT 0.45 s to compile, once 0.2).
@compute @workgroup_size(WG)
fn gemm_swiglu_cpu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let c = cpu_rows(wid, nwg, lid, 4u);
  for (var half = 0u; half < 2u; half++) {
    var acc: array<vec4<f32>, GEMM_R>;
    for (var r = 0u; r < R; r++) {
      acc[r] = vec4<f32>(0.0);  // as above
    }
    cpu_dot4(c, half == 1u, &acc);
    for (var r = 0u; r < R && c.live && c.n0 + r < p.N; r++) {
      for (var k = 0u; k < 4u && c.m + k < p.M; k++) {
        let at = (c.m + k) * p.N + c.n0 + r;
        out0[at] = select(acc[r][k], silu_mul(out0[at], acc[r][k]), half == 1u);
      }
    }
  }
}

// ---- pre-norm gemv (linear_gguf_multi_norm, linear_gguf_swiglu_norm; repacked formats, M = 1):
// the residual add + RMSNorm that feeds the linear runs in every workgroup's prologue instead of
// a dispatch of its own: x = a + alpha * b, sum of squares in add_rms_norm's order (VL lanes,
// its workgroup size for this width, then the same tree), xn = x * scale * w in workgroup
// memory; the first workgroup also writes x (the residual stream). Dots then read xn.
struct NormParams {
  eps: f32,
  alpha: f32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(10) var<storage, read> na: array<f32>;
@group(0) @binding(11) var<storage, read> nb: array<f32>;
@group(0) @binding(12) var<storage, read> nw: array<f32>;
@group(0) @binding(13) var<storage, read_write> sum_out: array<f32>;
@group(0) @binding(14) var<uniform> nq: NormParams;

override VL: u32 = 256u;  // lanes of add_rms_norm's reduction (a power of two)
override KV4: u32 = 8u;   // K / 4: vec4s of the normalized row
var<workgroup> xn: array<vec4<f32>, KV4>;
var<workgroup> ssq: array<f32, VL>;

fn norm_prologue(write_sum: bool, lid: u32) {
  for (var v = lid; v < VL; v += WG) {
    var acc = 0.0;
    for (var i = v; i < p.K; i += VL) {
      let x = na[i] + nb[i] * nq.alpha;
      acc += x * x;
    }
    ssq[v] = acc;
  }
  workgroupBarrier();
  // The tree of halving strides over the VL lanes: strides down to SG in workgroup memory, the
  // rest by subgroup shuffles in every subgroup at once (SG <= VL), which lane 0 broadcasts.
  // (Finishing the strides above SG in a private array instead cost ~2 us per kernel on an H200.)
  for (var st = VL / 2u; st >= SG; st >>= 1u) {
    for (var v = lid; v < st; v += WG) {
      ssq[v] += ssq[v + st];
    }
    workgroupBarrier();
  }
//#if SUBGROUPS
  var total = ssq[lid % SG];
  for (var st = SG / 2u; st > 0u; st >>= 1u) {
    total += subgroupShuffleDown(total, st);
  }
  total = subgroupBroadcastFirst(total);  // invocation 0's lane index is 0 (subgroups start at multiples of SG)
//#else
  let total = ssq[0];
//#endif
  let scale = inverseSqrt(total / f32(p.K) + nq.eps);
  for (var i = lid; i < p.K; i += WG) {
    let x = na[i] + nb[i] * nq.alpha;
    if (write_sum) {
      sum_out[i] = x;
    }
    xn[i / 4u][i % 4u] = x * scale * nw[i];
  }
  workgroupBarrier();
}

// row_dot's repacked branch over xn (x32 over workgroup memory): the same sums in the same order.
fn row_dot_n(n: u32, lane: u32) -> f32 {
  var acc = 0.0;
  let blocks = p.K / 32u;
  for (var b = lane; b < blocks; b += TPR) {
    let xi = b * 8u;
    acc += q_dot(n, b, x32_of(xn[xi], xn[xi + 1u], xn[xi + 2u], xn[xi + 3u], xn[xi + 4u], xn[xi + 5u],
                              xn[xi + 6u], xn[xi + 7u]));
  }
  return acc;
}

fn gemv_col_n(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Col {
  let cols = WG / TPR;
  let g = wid.y * nwg.x + wid.x;
  norm_prologue(g == 0u, lid);
  let n = g * cols + lid / TPR;
  let live = n < p.N;
  var acc = 0.0;
  if (live) {
    acc = row_dot_n(n, lid % TPR);
  }
  return Col(0u, n, live && lid % TPR == 0u, gemv_reduce(acc, lid));
}

@compute @workgroup_size(WG)
fn gemv2_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let c = gemv_col_n(wid, nwg, lid);
  if (c.live) {
    store2(0u, c.n, c.v);
  }
}

@compute @workgroup_size(WG)
fn gemv3_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let c = gemv_col_n(wid, nwg, lid);
  if (c.live) {
    store3(0u, c.n, c.v);
  }
}

// gemv3_norm of a layer's q/k/v linear in an attention block (py_engine.linear_gguf_multi_norm_rope,
// ops/attention_block.py): q and k rows come out rotated (RoPE, rope.wgsl's arithmetic on the
// pair of rows 2j, 2j + 1, which are neighbouring TPR groups of one workgroup), q into out0, the
// step's key and value straight into the caches (bound as out1, out2) at row input_pos =
// bp.n_keys - 1, so no dispatch between this one and the attention rotates or writes.
// ---- from attention_block.wgsl.in (included) ----
struct BlockParams {
  n_keys: u32,
  attend: u32,  // 1: this kernel attends; 0: the attention's own kernels did (x4)
  _p0: u32,
  _p1: u32,
  scale: f32,
  _p2: u32,
  _p3: u32,
  _p4: u32,
  rope: array<vec4<f32>, 32>,
}
// ---- end of attention_block.wgsl.in ----
@group(0) @binding(17) var<uniform> bp: BlockParams;
override RHD: u32 = 64u;  // head_dim (even, <= 128)

@compute @workgroup_size(WG)
fn gemv3_norm_rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
  let c = gemv_col_n(wid, nwg, lid);
  red[lid] = c.v;  // gemv_reduce's last reads of red were each thread's own element
  workgroupBarrier();
  let partner = red[lid ^ TPR];  // lane 0 of the group of row n ^ 1 (WG / TPR rows, an even count)
  if (c.live) {
    let row = bp.n_keys - 1u;
    let n01 = s.n0 + s.n1;
    if (c.n < n01) {
      let el = select(c.n - s.n0, c.n, c.n < s.n0);  // element of the q or k rows
      let j = (el % RHD) / 2u;
      let ci = RHD / 2u + j;
      let cs = bp.rope[j / 4u][j % 4u];
      let sn = bp.rope[ci / 4u][ci % 4u];
      let odd = (c.n & 1u) == 1u;
      let a = select(c.v, partner, odd);  // x[2j]
      let b = select(partner, c.v, odd);  // x[2j + 1]
      let v = select(a * cs - b * sn, a * sn + b * cs, odd);
      if (c.n < s.n0) {
        out0[c.n] = v;
      } else {
        out1[row * s.n1 + c.n - s.n0] = v;
      }
    } else {
      out2[row * (p.N - n01) + c.n - n01] = c.v;
    }
  }
}

@compute @workgroup_size(WG)
fn gemv_swiglu_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let half = WG / TPR / 2u;
  let g = wid.y * nwg.x + wid.x;
  norm_prologue(g == 0u, lid);
  let grp = lid / TPR;
  let is_up = grp >= half;
  let n = g * half + grp % half;
  let live = n < p.N;
  var acc = 0.0;
  if (live) {
    acc = row_dot_n(select(n, s.n0 + n, is_up), lid % TPR);
  }
  let v = gemv_reduce(acc, lid);
  let up = swap_with(v, lid, select(half * TPR, 0u, is_up));
  if (live && !is_up && lid % TPR == 0u) {
    out0[n] = silu_mul(v, up);
  }
}

// ---- tiled: a TM x TN tile of (activation row, weight row) dot products per workgroup of 64
// threads (4 x 16), each thread 4 x 4, exactly as quant_weights.wgsl's tiled.
const TM: u32 = 16u;
const TN: u32 = 64u;
const TK: u32 = 32u;
var<workgroup> xs: array<vec4<f32>, 128>;  // TK * TM / 4
var<workgroup> ws: array<vec4<f32>, 512>;  // TK * TN / 4

struct Acc {
  r0: vec4<f32>,
  r1: vec4<f32>,
  r2: vec4<f32>,
  r3: vec4<f32>,
}

// Weight row of tile column nl (0 .. TN-1) and whether it exists. Plain tiles: rows n0 + nl.
// SwiGLU tiles cover TN / 2 outputs: columns < TN / 2 are gate rows, the rest the up rows.
fn tile_row(n0: u32, nl: u32, swiglu: bool) -> vec2<u32> {
  if (swiglu) {
    let n = n0 + nl % (TN / 2u);
    return vec2<u32>(select(n, s.n0 + n, nl >= TN / 2u), u32(n < p.N));
  }
  return vec2<u32>(n0 + nl, u32(n0 + nl < p.N));
}

fn tiled_acc(m0: u32, n0: u32, lid: u32, swiglu: bool) -> Acc {
  let tm = lid / 16u;
  let tn = lid % 16u;
  // Four named accumulators, constant indices only: keeps them in registers.
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  // The thread's weight chunks: tile column lid / 4 + 16 t, chunk lid % 4 (4 per thread);
  // loaded one K step ahead, as in quant_weights.wgsl's tiled.
  let cl = lid % 4u;
  var rows: array<vec2<u32>, 4>;
  var wr: array<Raw8, 4>;
  var xr: array<f32, 8>;
  for (var t = 0u; t < 4u; t++) {
    rows[t] = tile_row(n0, lid / 4u + t * 16u, swiglu);
  }
  let k_steps = (p.K + TK - 1u) / TK;
  for (var ks = 0u; ks < k_steps; ks++) {
    let k0 = ks * TK;
    let c = k0 / 8u + cl;
    if (PF) {
      if (ks == 0u) {
        xr = tile_x_load(m0, k0, lid);
        for (var t = 0u; t < 4u; t++) {
          if (rows[t].y != 0u) {
            wr[t] = raw8(rows[t].x, c);
          }
        }
      }
      tile_x_store(xr, lid);
      for (var t = 0u; t < 4u; t++) {
        tile_w_put(tile_w_decoded(wr[t], rows[t].y != 0u, c), lid / 4u + t * 16u, cl);
      }
    } else {
      tile_x_fill(m0, k0, lid);
      for (var t = 0u; t < 4u; t++) {
        tile_w_put(tile_w_read(rows[t].x, rows[t].y != 0u, c), lid / 4u + t * 16u, cl);
      }
    }
    workgroupBarrier();
    if (PF && ks + 1u < k_steps) {
      xr = tile_x_load(m0, k0 + TK, lid);
      for (var t = 0u; t < 4u; t++) {
        if (rows[t].y != 0u) {
          wr[t] = raw8(rows[t].x, (k0 + TK) / 8u + cl);
        }
      }
    }
    for (var kl = 0u; kl < TK; kl++) {
      let xv = xs[kl * (TM / 4u) + tm];
      let wv = ws[kl * (TN / 4u) + tn];
      acc0 += xv.x * wv;
      acc1 += xv.y * wv;
      acc2 += xv.z * wv;
      acc3 += xv.w * wv;
    }
    workgroupBarrier();
  }
  return Acc(acc0, acc1, acc2, acc3);
}

// Tile origin (m0, n0) of workgroup g for `cols` outputs per tile; m0 = p.M when g is past the end.
fn tile_origin(wid: vec3<u32>, nwg: vec3<u32>, cols: u32) -> vec2<u32> {
  let n_tiles = (p.N + cols - 1u) / cols;
  let g = wid.y * nwg.x + wid.x;
  if (g >= ((p.M + TM - 1u) / TM) * n_tiles) {
    return vec2<u32>(p.M, 0u);
  }
  return vec2<u32>((g / n_tiles) * TM, (g % n_tiles) * cols);
}

@compute @workgroup_size(64)
fn tiled2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let o = tile_origin(wid, nwg, TN);
  if (o.x >= p.M) {
    return;  // uniform per workgroup
  }
  let a = tiled_acc(o.x, o.y, lid, false);
  var rows = array<vec4<f32>, 4>(a.r0, a.r1, a.r2, a.r3);
  let m = o.x + (lid / 16u) * 4u;
  let n = o.y + (lid % 16u) * 4u;
  for (var r = 0u; r < 4u; r++) {
    for (var j = 0u; j < 4u; j++) {
      if (m + r < p.M && n + j < p.N) {
        store2(m + r, n + j, rows[r][j]);
      }
    }
  }
}

@compute @workgroup_size(64)
fn tiled3(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let o = tile_origin(wid, nwg, TN);
  if (o.x >= p.M) {
    return;  // uniform per workgroup
  }
  let a = tiled_acc(o.x, o.y, lid, false);
  var rows = array<vec4<f32>, 4>(a.r0, a.r1, a.r2, a.r3);
  let m = o.x + (lid / 16u) * 4u;
  let n = o.y + (lid % 16u) * 4u;
  for (var r = 0u; r < 4u; r++) {
    for (var j = 0u; j < 4u; j++) {
      if (m + r < p.M && n + j < p.N) {
        store3(m + r, n + j, rows[r][j]);
      }
    }
  }
}

// SwiGLU tiles: TN / 2 outputs; the gate and up sums of one output sit in different threads,
// so the tile goes through workgroup memory (ws is free after tiled_acc's last barrier).
@compute @workgroup_size(64)
fn tiled_swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let o = tile_origin(wid, nwg, TN / 2u);
  if (o.x >= p.M) {
    return;  // uniform per workgroup
  }
  let a = tiled_acc(o.x, o.y, lid, true);
  let row0 = (lid / 16u) * 4u;  // tile rows row0 .. row0 + 3, tile columns 4 * (lid % 16) ..
  let tn = lid % 16u;
  ws[row0 * 16u + tn] = a.r0;
  ws[(row0 + 1u) * 16u + tn] = a.r1;
  ws[(row0 + 2u) * 16u + tn] = a.r2;
  ws[(row0 + 3u) * 16u + tn] = a.r3;
  workgroupBarrier();
  let half = TN / 2u;
  for (var t = 0u; t < TM * half / 64u; t++) {
    let j = lid + t * 64u;
    let ml = j / half;
    let c = j % half;
    let m = o.x + ml;
    let n = o.y + c;
    if (m < p.M && n < p.N) {
      let gv = ws[ml * 16u + c / 4u][c % 4u];
      let uv = ws[ml * 16u + (c + half) / 4u][c % 4u];
      out0[m * p.N + n] = silu_mul(gv, uv);
    }
  }
}

//#if MMA
// ---- *_mma: the tiled entries on the matrix units (quant_weights.wgsl's mma_tile), same stores.
// Weight row of tile column nl, and whether it exists. SwiGLU tiles cover NT / 2 outputs: columns
// < NT / 2 are gate rows, the rest the up rows (as tile_row's).
fn mma_row(n0: u32, nl: u32, swiglu: bool) -> vec2<u32> {
  if (swiglu) {
    let n = n0 + nl % (NT / 2u);
    return vec2<u32>(select(n, s.n0 + n, nl >= NT / 2u), u32(n < p.N));
  }
  return vec2<u32>(n0 + nl, u32(n0 + nl < p.N));
}

@compute @workgroup_size(32)
fn tiled2_mma(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let o = mma_origin(wid, nwg, NT);
  if (o.x >= p.M) {
    return;  // uniform per workgroup
  }
  mma_tile(o.x, o.y, lid, false);
  for (var t = 0u; t < MT * NT / 32u; t++) {
    let j = lid + t * 32u;
    let m = o.x + j / NT;
    let n = o.y + j % NT;
    if (m < p.M && n < p.N) {
      store2(m, n, cs[j]);
    }
  }
}

@compute @workgroup_size(32)
fn tiled3_mma(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
  let o = mma_origin(wid, nwg, NT);
  if (o.x >= p.M) {
    return;  // uniform per workgroup
  }
  mma_tile(o.x, o.y, lid, false);
  for (var t = 0u; t < MT * NT / 32u; t++) {
    let j = lid + t * 32u;
    let m = o.x + j / NT;
    let n = o.y + j % NT;
    if (m < p.M && n < p.N) {
      store3(m, n, cs[j]);
    }
  }
}

// NT / 2 outputs per tile: tile column c holds gate row n, column NT / 2 + c its up row.
@compute @workgroup_size(32)
fn tiled_swiglu_mma(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let half = NT / 2u;
  let o = mma_origin(wid, nwg, half);
  if (o.x >= p.M) {
    return;  // uniform per workgroup
  }
  mma_tile(o.x, o.y, lid, true);
  for (var t = 0u; t < MT * half / 32u; t++) {
    let j = lid + t * 32u;
    let ml = j / half;
    let c = j % half;
    let m = o.x + ml;
    let n = o.y + c;
    if (m < p.M && n < p.N) {
      out0[m * p.N + n] = silu_mul(cs[ml * NT + c], cs[ml * NT + half + c]);
    }
  }
}
//#endif
