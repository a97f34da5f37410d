// im2col / col2im and convolution forward/backward (see adlk/conv.h for layouts,
// workspace and determinism).
//
// Strategy: the work is cut into units, (one image, a block of its output rows) or
// (several small whole images), whose column matrix and output rows fit a per-thread
// budget of kConvBlockBytes; each OpenMP thread builds the columns of its unit in its
// own scratch buffer and runs a single-threaded GEMM on them while they are still in
// that core's cache. The batch's column matrix is never built whole. Columns are
// copied out of a zero-padded, stride-de-interleaved band of input rows (Band), so
// every copy is a contiguous loop whatever the padding and stride; where the band would
// be larger than the columns it serves (a stride, padding or dilation far beyond the
// input's size) they are gathered straight from the input instead, so that time and
// memory follow the input, output and kernel sizes, never the stride or padding.
//
// No exception may leave an OpenMP region (it would terminate the process): every size
// is checked before a region opens, the BLAS dimensions against its 32-bit interface
// too, and per-thread buffers come through a RegionScratch (adlk/scratch.h), whose
// failures are reported after the region.
#include "adlk/conv.h"

#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define ADLK_CONV_X86 1  // the AVX-512 and AVX2 band and panel fills are compiled
#endif

#include "adlk/blas.h"
#include "adlk/packed_gemm.h"
#include "adlk/parallel.h"
#include "adlk/tuning.h"
#include "adlk/scratch.h"
#include "window.h"

namespace adlk {

namespace {

constexpr index_t kParallelGrain = kWindowParallelGrain;  // adlk/tuning.h

// The zero-padded band of input rows that a block of output rows reads. A padded row
// of Wp = W + 2*pW values is stored de-interleaved by the horizontal stride: phase q
// (0 <= q < sW) holds padded columns q, q + sW, q + 2*sW, ... in Wq = ceil(Wp/sW)
// slots. Then the input values of one (kh, kw) row segment, padded columns
// kw*dW + ow*sW for ow < W_out, are contiguous for any stride.
struct Band {
  index_t Wp, Wq, row, rows;  // padded width, slots per phase, row length, row count
  Band(const Conv2dGeom& g, index_t out_rows)
      : Wp(g.W + 2 * g.pW),
        Wq(ceil_div(g.W + 2 * g.pW, g.sW)),
        row(g.sW * ceil_div(g.W + 2 * g.pW, g.sW)),
        rows((out_rows - 1) * g.sH + (g.kH - 1) * g.dH + 1) {}
  index_t elems() const { return mul_saturated(rows, row); }
  index_t slot(index_t col, index_t sW) const { return (col % sW) * Wq + col / sW; }
};

// Elements of the band for blocks of up to `out_rows` output rows, or 0 when the columns
// are to be gathered directly. The band is filled whole, so it pays only when it is no
// larger than the block's columns (kH*kW*out_rows*W_out per channel): true for the usual
// strides and paddings (a 3x3 or 7x7 kernel, stride 1 or 2, padding up to the kernel);
// a stride or padding far beyond the kernel would make it mostly cells nobody reads.
// One choice per call (the band for fewer rows is smaller, so it fits), made from the
// geometry and the plan alone.
index_t band_elems(const Conv2dGeom& g, index_t out_rows) {
  const index_t band = Band(g, out_rows).elems();
  return band <= g.kH * g.kW * out_rows * g.W_out ? band : 0;
}

// The short row loops of the band paths. Band rows never overlap the input, the columns
// or the output they are copied from or to; saying so (restrict) spares the compiler's
// run-time overlap checks, which cost more than the copy on rows of a few dozen values,
// and keeps the generated loop the same wherever it is inlined.
template <typename T>
ADLK_KEEP_LOOPS inline __attribute__((always_inline))
void copy_row(T* __restrict dst, const T* __restrict src, index_t n) {
  for (index_t i = 0; i < n; ++i) dst[i] = src[i];
}

template <typename T>
ADLK_KEEP_LOOPS inline __attribute__((always_inline))
void add_row(T* __restrict dst, const T* __restrict src, index_t n) {
  for (index_t i = 0; i < n; ++i) dst[i] += src[i];
}

// Rows (c, kh, kw) of channel c's column matrix for output rows [oh0, oh1), into out
// (row stride ld), gathered from the input: for each (kh, kw), a few divisions give the
// output positions whose cell is inside it; the rest is zero. Kept out of line (the rare
// path): inlined into im2col_channel, it made GCC compile the band path slower.
template <typename T>
ADLK_KEEP_LOOPS __attribute__((noinline))
void im2col_channel_gather(const T* xplane, const Conv2dGeom& g, index_t oh0, index_t oh1,
                           T* out, index_t ld) {
  const index_t ih0 = oh0 * g.sH - g.pH, nrow = oh1 - oh0;
  for (index_t kh = 0; kh < g.kH; ++kh) {
    index_t r0, r1;  // rows of the block whose tap-kh input row exists
    outputs_in_range(ih0 + kh * g.dH, g.sH, g.H, nrow, r0, r1);
    for (index_t kw = 0; kw < g.kW; ++kw) {
      const index_t off = kw * g.dW - g.pW;
      index_t c0, c1;
      outputs_in_range(off, g.sW, g.W, g.W_out, c0, c1);
      T* dst = out + (kh * g.kW + kw) * ld;
      for (index_t i = 0; i < nrow; ++i, dst += g.W_out) {
        const bool inside = i >= r0 && i < r1;
        const index_t lo = inside ? c0 : g.W_out, hi = inside ? c1 : g.W_out;
        for (index_t ow = 0; ow < lo; ++ow) dst[ow] = T(0);
        if (lo < hi) {
          const T* xr = xplane + (ih0 + i * g.sH + kh * g.dH) * g.W;
          for (index_t ow = lo; ow < hi; ++ow) dst[ow] = xr[ow * g.sW + off];
        }
        for (index_t ow = hi; ow < g.W_out; ++ow) dst[ow] = T(0);
      }
    }
  }
}

// Fills the band of output rows [oh0, oh1) from one channel's plane.
template <typename T>
ADLK_KEEP_LOOPS
void fill_band(const T* xplane, const Conv2dGeom& g, index_t oh0, index_t oh1, T* band) {
  const Band b(g, oh1 - oh0);
  const index_t ih0 = oh0 * g.sH - g.pH;
  // Phase q of a band row: slot m holds input column m*sW + q - pW, zero outside [0, W).
  for (index_t q = 0; q < g.sW; ++q) {
    index_t lo, hi;
    outputs_in_range(q - g.pW, g.sW, g.W, b.Wq, lo, hi);
    for (index_t i = 0; i < b.rows; ++i) {
      T* ph = band + i * b.row + q * b.Wq;
      const index_t ih = ih0 + i;
      const index_t l = ih >= 0 && ih < g.H ? lo : b.Wq, h = ih >= 0 && ih < g.H ? hi : b.Wq;
      const T* xr = xplane + (l < h ? ih : 0) * g.W;  // row 0 when unused: no wild pointer
      for (index_t m = 0; m < l; ++m) ph[m] = T(0);
      if (g.sW == 1) {
        copy_row(ph + l, xr + std::max<index_t>(l - g.pW, 0), h - l);  // l - pW >= 0 if l < h
      } else if (g.sW == 2) {  // a constant stride: vectorized (shuffles)
        const T* xq = xr + q - g.pW;
        for (index_t m = l; m < h; ++m) ph[m] = xq[2 * m];
      } else {
        for (index_t m = l; m < h; ++m) ph[m] = xr[m * g.sW + q - g.pW];
      }
      for (index_t m = h; m < b.Wq; ++m) ph[m] = T(0);
    }
  }
}

// The same rows through the band (band_elems() > 0): after one pass that fills it, every
// row segment is a plain contiguous copy, with no bounds logic and no strided loads,
// which matters for short rows and strided kernels. The loops stay loops (no memcpy
// call per short segment). band == nullptr: gathered instead.
template <typename T>
ADLK_KEEP_LOOPS
void im2col_channel(const T* xplane, const Conv2dGeom& g, index_t oh0, index_t oh1, T* band,
                    T* out, index_t ld) {
  if (!band) return im2col_channel_gather(xplane, g, oh0, oh1, out, ld);
  fill_band(xplane, g, oh0, oh1, band);
  const Band b(g, oh1 - oh0);
  const index_t nrow = oh1 - oh0;
  for (index_t kh = 0; kh < g.kH; ++kh) {
    for (index_t kw = 0; kw < g.kW; ++kw) {
      T* dst = out + (kh * g.kW + kw) * ld;
      const T* src0 = band + kh * g.dH * b.row + b.slot(kw * g.dW, g.sW);
      for (index_t i = 0; i < nrow; ++i, dst += g.W_out)
        copy_row(dst, src0 + i * g.sH * b.row, g.W_out);
    }
  }
}

// Adds the (kh, kw) rows of channel c's column gradient, output rows [oh0, oh1), back
// into that channel's plane of the image, term by term in (kh, kw, row, column) order,
// skipping the positions outside the input. Out of line, as im2col_channel_gather.
template <typename T>
ADLK_KEEP_LOOPS __attribute__((noinline))
void col2im_channel_scatter(const T* dcols, index_t ld, const Conv2dGeom& g, index_t oh0,
                            index_t oh1, T* xplane) {
  const index_t ih0 = oh0 * g.sH - g.pH, nrow = oh1 - oh0;
  for (index_t kh = 0; kh < g.kH; ++kh) {
    index_t r0, r1;
    outputs_in_range(ih0 + kh * g.dH, g.sH, g.H, nrow, r0, r1);
    for (index_t kw = 0; kw < g.kW; ++kw) {
      const index_t off = kw * g.dW - g.pW;
      index_t c0, c1;
      outputs_in_range(off, g.sW, g.W, g.W_out, c0, c1);
      const T* src = dcols + (kh * g.kW + kw) * ld;
      for (index_t i = r0; i < r1; ++i) {
        T* xr = xplane + (ih0 + i * g.sH + kh * g.dH) * g.W;
        const T* s = src + i * g.W_out;
        for (index_t ow = c0; ow < c1; ++ow) xr[ow * g.sW + off] += s[ow];
      }
    }
  }
}

// Adds the interior of the band of output rows [oh0, oh1) (the cells inside the input)
// to the plane: for stride 1 row by row; else phase by phase (slot m of phase q is input
// column m*sW + q - pW), with no division per element.
template <typename T>
ADLK_KEEP_LOOPS inline __attribute__((always_inline))
void add_band_interior(const T* band, const Conv2dGeom& g, index_t oh0, index_t oh1,
                       T* xplane) {
  const Band b(g, oh1 - oh0);
  const index_t ih0 = oh0 * g.sH - g.pH;
  const index_t i_lo = std::max<index_t>(0, -ih0), i_hi = std::min(b.rows, g.H - ih0);
  if (g.sW == 1) {
    for (index_t i = i_lo; i < i_hi; ++i)
      add_row(xplane + (ih0 + i) * g.W, band + i * b.row + g.pW, g.W);
    return;
  }
  for (index_t q = 0; q < g.sW; ++q) {
    index_t lo, hi;
    outputs_in_range(q - g.pW, g.sW, g.W, b.Wq, lo, hi);
    for (index_t i = i_lo; i < i_hi; ++i) {
      const T* ph = band + i * b.row + q * b.Wq;
      T* xr = xplane + (ih0 + i) * g.W;
      for (index_t m = lo; m < hi; ++m) xr[m * g.sW + q - g.pW] += ph[m];
    }
  }
}

// The same through the band: the terms are first summed into it (zeroed; the layout of
// im2col_channel) in one fixed (kh, kw) order, then the band's interior is added to the
// plane: contiguous loops. Either way no atomics, and the same bits for any thread count,
// since callers give each plane to one thread. band == nullptr: scattered directly.
// Always inlined into its callers: measured faster on small planes.
template <typename T>
ADLK_KEEP_LOOPS inline __attribute__((always_inline))
void col2im_channel(const T* dcols, index_t ld, const Conv2dGeom& g, index_t oh0, index_t oh1,
                    T* band, T* xplane) {
  if (!band) return col2im_channel_scatter(dcols, ld, g, oh0, oh1, xplane);
  const Band b(g, oh1 - oh0);
  const index_t nrow = oh1 - oh0;
  std::fill(band, band + b.elems(), T(0));
  for (index_t kh = 0; kh < g.kH; ++kh) {
    for (index_t kw = 0; kw < g.kW; ++kw) {
      const T* src = dcols + (kh * g.kW + kw) * ld;
      T* dst0 = band + kh * g.dH * b.row + b.slot(kw * g.dW, g.sW);
      for (index_t i = 0; i < nrow; ++i, src += g.W_out)
        add_row(dst0 + i * g.sH * b.row, src, g.W_out);
    }
  }
  add_band_interior(band, g, oh0, oh1, xplane);
}

// col2im_channel for channels [c0, c1) of one image (dcols holds all channels' rows).
template <typename T>
void col2im_channels(const T* dcols, index_t ld, const Conv2dGeom& g, index_t c0, index_t c1,
                     index_t oh0, index_t oh1, T* band, T* ximg) {
  const index_t kk = g.kH * g.kW;
  for (index_t c = c0; c < c1; ++c)
    col2im_channel(dcols + c * kk * ld, ld, g, oh0, oh1, band, ximg + c * g.H * g.W);
}

// A 1x1 kernel with stride 1 and no padding reads x itself as the column matrix.
bool is_pointwise(const Conv2dGeom& g) {
  return g.kH == 1 && g.kW == 1 && g.sH == 1 && g.sW == 1 && g.pH == 0 && g.pW == 0;
}

// How the work is cut into units: `images` whole images side by side (one wide GEMM),
// or one image's output rows [b*rows_per_block, (b+1)*rows_per_block).
struct Plan {
  index_t images = 1;                 // images per unit (> 1 only with blocks == 1)
  index_t rows_per_block = 1, blocks = 1;
  index_t units(index_t N) const { return ceil_div(N, images) * blocks; }
  index_t row_begin(index_t b) const { return b * rows_per_block; }
  index_t row_end(index_t b, index_t H_out) const {
    return std::min(H_out, (b + 1) * rows_per_block);
  }
  index_t unit_cols(index_t W_out) const { return images * rows_per_block * W_out; }
};

// Largest divisor of n that is <= cap (>= 1).
index_t largest_divisor_upto(index_t n, index_t cap) {
  for (index_t d = std::max<index_t>(1, std::min(n, cap)); d > 1; --d)
    if (n % d == 0) return d;
  return 1;
}

// `per_thread_images`: images each thread gets when images are dealt out whole (0 when
// they are not); `min_blocks`: row blocks per image needed to give every thread work.
Plan make_plan(const Conv2dGeom& g, std::size_t elem_size, index_t per_thread_images,
               index_t min_blocks) {
  Plan p;
  // A unit's columns and its output (or grad_y) rows should stay in cache together.
  const char* what = "conv: bytes of an output row's columns";
  const index_t row_bytes = std::max<index_t>(
      1, mul_checked(mul_checked(add_checked(g.col_rows(), g.C_out, what), g.W_out, what),
                     index_t(elem_size), what));
  const index_t budget_rows = std::max<index_t>(1, index_t(kConvBlockBytes) / row_bytes);
  if (budget_rows >= g.H_out && per_thread_images > 0) {
    // Whole images fit. Small ones go several side by side, as many as divide each
    // thread's share, so the GEMM is wide enough to run efficiently (that costs a copy
    // of the output out of the stage, which a larger image's own GEMM does not need).
    p.images = g.L() < kConvMinGemmColumns
                   ? largest_divisor_upto(per_thread_images, budget_rows / g.H_out)
                   : 1;
    p.rows_per_block = g.H_out;
    p.blocks = 1;
    return p;
  }
  index_t rpb = std::min(budget_rows, ceil_div(g.H_out, std::max<index_t>(1, min_blocks)));
  p.rows_per_block = std::max<index_t>(1, std::min(rpb, g.H_out));
  p.blocks = ceil_div(g.H_out, p.rows_per_block);
  return p;
}

// Column matrix of images [n0, n0 + nimg), output rows [oh0, oh1), into dst (ld columns
// per row; image j starts at column j*(oh1 - oh0)*W_out).
template <typename T>
void build_columns(const T* x, const Conv2dGeom& g, index_t n0, index_t nimg, index_t oh0,
                   index_t oh1, T* band, T* dst, index_t ld) {
  const index_t Lb = (oh1 - oh0) * g.W_out, kk = g.kH * g.kW;
  for (index_t j = 0; j < nimg; ++j)
    for (index_t c = 0; c < g.C; ++c)
      im2col_channel(x + ((n0 + j) * g.C + c) * g.H * g.W, g, oh0, oh1, band,
                     dst + c * kk * ld + j * Lb, ld);
}

// The columns a GEMM reads for one unit: x itself for a pointwise kernel on one image,
// else built in `scratch` (through `band`). Sets ld.
template <typename T>
const T* unit_columns(const T* x, const Conv2dGeom& g, index_t n0, index_t nimg, index_t oh0,
                      index_t oh1, T* band, T* scratch, index_t& ld) {
  if (is_pointwise(g) && nimg == 1) {
    ld = g.L();
    return x + n0 * g.C * g.H * g.W + oh0 * g.W_out;
  }
  ld = nimg * (oh1 - oh0) * g.W_out;
  build_columns(x, g, n0, nimg, oh0, oh1, band, scratch, ld);
  return scratch;
}

// Elements of the per-thread buffers that units of plan p use (see RegionScratch):
// columns (slot 0; forward, grad_weight), the column gradient (1; grad_x), the staged
// output or grad_y of several images (2) and the band (3). A pointwise kernel with one
// image per unit reads x and writes grad_x in place. The columns have room for one more
// row (the forward's row of ones, see conv2d_forward).
struct UnitBuffers {
  index_t cols = 0, dcols = 0, stage = 0, band = 0;
  UnitBuffers(const Conv2dGeom& g, const Plan& p, bool need_cols, bool need_dcols) {
    const index_t block = mul_checked(g.col_rows(), p.unit_cols(g.W_out), "conv: block");
    const bool builds = !(is_pointwise(g) && p.images == 1);
    if (builds && need_cols) cols = add_checked(block, p.unit_cols(g.W_out), "conv: block");
    if (builds && need_dcols) dcols = block;
    if (p.images > 1) stage = g.C_out * p.unit_cols(g.W_out);
    if (builds) band = band_elems(g, p.rows_per_block);
  }
};

// The GEMMs go through the 32-bit BLAS interface; their dimensions are checked before
// any parallel region (a throw inside one would terminate the process). Every GEMM of a
// call has dimensions among these (or smaller).
void check_gemm_dims(const Conv2dGeom& g, index_t unit_cols) {
  check_blas_dim(g.C_out / g.groups, "conv: C_out/groups");
  check_blas_dim(g.col_rows() / g.groups, "conv: C_in/groups*kH*kW");
  check_blas_dim(g.L(), "conv: H_out*W_out");
  check_blas_dim(unit_cols, "conv: columns of a unit");
}

// Rows [lo, hi) of `total`, split into `parts` near-equal pieces: piece `i`.
void split_range(index_t total, int parts, int i, index_t& lo, index_t& hi) {
  const index_t base = total / parts, extra = total % parts;
  lo = i * base + std::min<index_t>(i, extra);
  hi = lo + base + (i < extra ? 1 : 0);
}

// This thread's band for whole planes (nullptr where band_elems is 0: gathered directly),
// followed by `margin` zeroed values (for reads a little past its last row).
template <typename T>
T* plane_band(RegionScratch& rs, const Conv2dGeom& g, index_t margin, bool& ok) {
  const index_t used = band_elems(g, g.H_out);
  T* band = rs.get<T>(3, used + margin, ok);
  if (band) std::fill(band + used, band + used + margin, T(0));
  return band;
}

// Runs fn(t, band) for every (n, c) plane t of the batch (im2col, col2im, the depthwise
// kernel), each plane on one thread, with that thread's plane_band; one thread below the
// parallel grain.
template <typename T, typename Fn>
void for_each_plane(const Conv2dGeom& g, Fn fn, index_t margin = 0) {
  const index_t total = g.N * g.C;
  if (total == 0) return;
  const int threads = total * g.kH * g.kW * g.L() > kParallelGrain
                          ? int(std::min<index_t>(get_num_threads(), total))
                          : 1;
  RegionScratch rs;
#pragma omp parallel num_threads(threads)
  {
    bool ok = true;
    T* band = plane_band<T>(rs, g, margin, ok);
#pragma omp for schedule(static)
    for (index_t t = 0; t < total; ++t)
      if (ok) fn(t, band);
  }
  rs.check();
}

// ---- float32 forward on the packed-weight kernel ---------------------------------------
//
// The output positions of the whole batch, flattened as (image, oh, ow), are cut into
// panels of kPackedPanel columns. A thread writes a panel's columns straight into rows of
// 32 (or reads them from the bands in place) and multiplies the weight, read in place, by
// them (gemm_rows_row_bias), the bias fused into the kernel's output tile. That is one
// pass over the columns where im2col + BLAS take three (write them, read them to pack,
// read the packing), and a panel runs on from one image into the next, so no lanes idle
// at the end of an image whose output size is not a multiple of 32. Each output element
// is one fused multiply-add chain over k in order, started from its bias (or 0): the same
// bits for any thread count and for the AVX2 and AVX-512 kernels.
//
// The columns come from shifted bands of the image: for channel c, tap column kw and
// vertical phase f, rows m of W_out values, band[m][ow] = x[c, m*sH + f - pH,
// ow*sW + kw*dW - pW] (0 in the padding). Tap (kh, kw) of output position pos = oh*W_out
// + ow is then that band's element (kh*dH / sH)*W_out + pos, with f = kh*dH % sH: the 32
// positions of a panel are 32 consecutive band elements, two plain vector loads per row
// of the panel whatever the padding and stride. The bands hold about kW copies of the
// padded image (per vertical phase used).

// The band and panel fills use the kernel's vector ISA (ADLK_GEMM_ISA=avx2 exercises the
// AVX2 fills on an AVX-512 machine). The portable fills serve the strided bands and
// builds without x86 vector code.
enum class FillIsa { portable, avx2, avx512 };
FillIsa fill_isa() {
  static const FillIsa isa = [] {
    const char* k = gemm_packed_isa();
    if (std::strcmp(k, "avx512") == 0) return FillIsa::avx512;
    if (std::strcmp(k, "avx2") == 0) return FillIsa::avx2;
    return FillIsa::portable;
  }();
  return isa;
}

struct ShiftedBands {
  index_t rows = 0;         // band rows: H_out plus the furthest tap's row shift
  index_t per_channel = 0;  // elements of a channel's bands
  std::vector<index_t> phase;  // vertical phase of each band slot
  std::vector<index_t> taps;   // tap (kh, kw) -> offset of its first element
  explicit ShiftedBands(const Conv2dGeom& g) {
    std::vector<index_t> slot(std::size_t(g.kH));
    for (index_t kh = 0; kh < g.kH; ++kh) {
      const index_t f = kh * g.dH % g.sH;
      const auto it = std::find(phase.begin(), phase.end(), f);
      slot[std::size_t(kh)] = index_t(it - phase.begin());
      if (it == phase.end()) phase.push_back(f);
    }
    rows = g.H_out + (g.kH - 1) * g.dH / g.sH;
    const index_t nph = index_t(phase.size());
    per_channel = g.kW * nph * rows * g.W_out;
    for (index_t kh = 0; kh < g.kH; ++kh)
      for (index_t kw = 0; kw < g.kW; ++kw)
        taps.push_back(((kw * nph + slot[std::size_t(kh)]) * rows + kh * g.dH / g.sH) * g.W_out);
  }
  // Fills the bands of channels [c0, c1) of one image (channel c's at dst + (c - c0) *
  // per_channel; the last row's stores run up to a panel past them).
  void fill(const Conv2dGeom& g, const float* ximage, index_t c0, index_t c1, float* dst) const;
};

// Calls row(dst, xr, l, h) for every band row of one channel, in order: outputs [l, h) of
// the row come from xr (output ow from xr[ow*sW]), the others are 0.
template <typename Row>
inline void for_each_band_row(const ShiftedBands& sb, const Conv2dGeom& g, const float* xplane,
                              float* dst, const Row& row) {
  for (index_t kw = 0; kw < g.kW; ++kw) {
    const index_t off = kw * g.dW - g.pW;
    index_t lo, hi;  // the outputs whose input column ow*sW + off exists
    outputs_in_range(off, g.sW, g.W, g.W_out, lo, hi);
    for (const index_t f : sb.phase)
      for (index_t m = 0; m < sb.rows; ++m, dst += g.W_out) {
        const index_t ih = m * g.sH + f - g.pH;
        const bool inside = ih >= 0 && ih < g.H;
        // xr is only read at the outputs in [l, h) (row 0 when there are none)
        row(dst, xplane + (inside ? ih : 0) * g.W + off, inside ? lo : g.W_out,
            inside ? hi : g.W_out);
      }
  }
}

struct PortableBandRow {
  index_t W_out, sW;
  ADLK_KEEP_LOOPS void operator()(float* dst, const float* xr, index_t l, index_t h) const {
    for (index_t ow = 0; ow < l; ++ow) dst[ow] = 0.0f;
    if (l >= h) {
      for (index_t ow = l; ow < W_out; ++ow) dst[ow] = 0.0f;
      return;
    }
    if (sW == 1)
      copy_row(dst + l, xr + l, h - l);
    else
      for (index_t ow = l; ow < h; ++ow) dst[ow] = xr[ow * sW];
    for (index_t ow = h; ow < W_out; ++ow) dst[ow] = 0.0f;
  }
};

#ifdef ADLK_CONV_X86
// Lanes [a, e) of the 8 from base on, as an AVX2 mask.
__attribute__((target("avx2"))) inline __m256i lane_mask8(index_t a, index_t e, index_t base) {
  const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(int(base)),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(a)), idx);  // idx < a
  const __m256i hi = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(e)), idx);  // idx < e
  return _mm256_andnot_si256(lo, hi);
}

// Stride 1, all channels of an image (planes plane apart, bands per_channel apart), in
// blocks of Blocks::kLanes floats: a row's block masks depend only on kw (which input
// columns exist), so they are formed once per band, and a band row inside the image is a
// (masked where needed) load and a store per block; rows of the padding are zeros. The
// geometry is read into locals first: the stores go through float pointers, which the
// compiler must otherwise assume may change it, reloading it for every row. Both: 4.6 ->
// 2.4 us per image of the 64x32x14x14 3x3 forward (-3% of its time). Blocks past the
// first kMaxBlocks of a row form their masks as they go. A row's last store runs up to a
// block past it: the rows are written in memory order (the next row, or the next band,
// overwrites it) and the bands end in a margin of a panel. Inlined into the ISA's
// function (flatten), which compiles it for that ISA.
template <typename Blocks>
inline void fill_bands_blocks(const ShiftedBands& sb, const Conv2dGeom& g, const float* ximage,
                              index_t c0, index_t c1, float* dst) {
  constexpr index_t kLanes = Blocks::kLanes, kMaxBlocks = 16;
  const index_t W_out = g.W_out, W = g.W, H = g.H, sH = g.sH, pH = g.pH, kW = g.kW,
                dW = g.dW, pW = g.pW, rows = sb.rows, per_channel = sb.per_channel,
                plane = g.H * g.W;
  const index_t blocks = ceil_div(W_out, kLanes);
  const index_t* phases = sb.phase.data();
  const index_t nph = index_t(sb.phase.size());
  // Channel by channel, in memory order: a row's last store runs past it into the next
  // band, written after it.
  for (index_t c = c0; c < c1; ++c, dst += per_channel) {
    const float* xc = ximage + c * plane;
    float* d = dst;
    for (index_t kw = 0; kw < kW; ++kw) {
      const index_t off = kw * dW - pW;
      index_t lo, hi;  // the outputs whose input column ow + off exists
      outputs_in_range(off, 1, W, W_out, lo, hi);
      typename Blocks::Mask mask[kMaxBlocks];
      for (index_t b = 0; b < std::min(blocks, kMaxBlocks); ++b)
        mask[b] = Blocks::mask(lo - kLanes * b, hi - kLanes * b);
      for (index_t ph = 0; ph < nph; ++ph) {
        const index_t f = phases[ph];
        // band row m reads input row m*sH + f - pH: inside the image for m in [m0, m1)
        const index_t m0 = std::min(rows, (pH - f + sH - 1) / sH);  // pH - f + sH - 1 >= 0
        const index_t m1 = std::max(m0, std::min(rows, (H + pH - f + sH - 1) / sH));
        for (index_t m = 0; m < m0; ++m, d += W_out)
          for (index_t b = 0; b < blocks; ++b) Blocks::zero(d + kLanes * b);
        if (m0 < m1) {
          const float* xr = xc + (m0 * sH + f - pH) * W + off;
          for (index_t m = m0; m < m1; ++m, d += W_out, xr += sH * W)
            for (index_t b = 0; b < blocks; ++b)
              Blocks::copy(d + kLanes * b, xr + kLanes * b,
                           b < kMaxBlocks ? mask[b]
                                          : Blocks::mask(lo - kLanes * b, hi - kLanes * b));
        }
        for (index_t m = m1; m < rows; ++m, d += W_out)
          for (index_t b = 0; b < blocks; ++b) Blocks::zero(d + kLanes * b);
      }
    }
  }
}

// fill_bands_blocks' blocks: lanes [a, e) of a block (clamped to it) read, the rest 0. A
// masked-off lane reads nothing.
struct Avx512Blocks {
  static constexpr index_t kLanes = 16;
  using Mask = __mmask16;
  static Mask mask(index_t a, index_t e) {
    a = std::max<index_t>(a, 0), e = std::min<index_t>(e, kLanes);
    return a < e ? Mask(((1u << (e - a)) - 1) << a) : Mask(0);
  }
  __attribute__((target("avx512f"))) static void zero(float* d) {
    _mm512_storeu_ps(d, _mm512_setzero_ps());
  }
  __attribute__((target("avx512f"))) static void copy(float* d, const float* xr, Mask m) {
    _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(m, xr));
  }
};

struct Avx2Blocks {
  static constexpr index_t kLanes = 8;
  struct Mask {
    int a, e;
  };
  static Mask mask(index_t a, index_t e) {
    return {int(std::clamp<index_t>(a, 0, kLanes)), int(std::clamp<index_t>(e, 0, kLanes))};
  }
  __attribute__((target("avx2"))) static void zero(float* d) {
    _mm256_storeu_ps(d, _mm256_setzero_ps());
  }
  __attribute__((target("avx2"))) static void copy(float* d, const float* xr, Mask m) {
    const bool whole = m.a == 0 && m.e == kLanes;  // a plain load (masked ones cost more)
    _mm256_storeu_ps(d, whole ? _mm256_loadu_ps(xr)
                              : _mm256_maskload_ps(xr, lane_mask8(m.a, m.e, 0)));
  }
};

__attribute__((target("avx512f"), flatten)) void fill_bands_avx512(
    const ShiftedBands& sb, const Conv2dGeom& g, const float* ximage, index_t c0, index_t c1,
    float* dst) {
  fill_bands_blocks<Avx512Blocks>(sb, g, ximage, c0, c1, dst);
}

__attribute__((target("avx2"), flatten)) void fill_bands_avx2(
    const ShiftedBands& sb, const Conv2dGeom& g, const float* ximage, index_t c0, index_t c1,
    float* dst) {
  fill_bands_blocks<Avx2Blocks>(sb, g, ximage, c0, c1, dst);
}

#endif

void ShiftedBands::fill(const Conv2dGeom& g, const float* ximage, index_t c0, index_t c1,
                        float* dst) const {
#ifdef ADLK_CONV_X86
  if (g.sW == 1 && fill_isa() == FillIsa::avx512)
    return fill_bands_avx512(*this, g, ximage, c0, c1, dst);
  if (g.sW == 1 && fill_isa() == FillIsa::avx2)
    return fill_bands_avx2(*this, g, ximage, c0, c1, dst);
#endif
  for (index_t c = c0; c < c1; ++c)
    for_each_band_row(*this, g, ximage + c * g.H * g.W, dst + (c - c0) * per_channel,
                      PortableBandRow{g.W_out, g.sW});
}

// Lanes [lane, lane + len) of every row k = c*kk + t of panel P, from the bands of one
// image (channel c's at bands + c*per_channel): row k's lane j is src_k[j], src_k = bands
// + c*per_channel + taps[t] + shift. `fresh`: the other lanes become 0; else they keep
// their values (a panel continued from the previous image).
void fill_panel_portable(const float* bands, index_t C, index_t per_channel,
                         const index_t* taps, index_t kk, index_t shift, int lane, int len,
                         bool fresh, float* P) {
  for (index_t c = 0; c < C; ++c)
    for (index_t t = 0; t < kk; ++t) {
      const float* src = bands + c * per_channel + taps[t] + shift;
      float* row = P + (c * kk + t) * kPackedPanel;
      if (fresh) std::fill(row, row + kPackedPanel, 0.0f);
      for (int j = lane; j < lane + len; ++j) row[j] = src[j];
    }
}

#ifdef ADLK_CONV_X86
// The same with two vector loads and stores per row; masked loads for a part of a panel
// (a masked-off lane loads nothing, and the bands have a margin of a panel on each side,
// so that no address an instruction forms leaves the buffer either).
// AVX-512F has the integer or only (the float one is AVX-512DQ).
__attribute__((target("avx512f"))) inline __m512 or_ps(__m512 a, __m512 b) {
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

__attribute__((target("avx512f"))) void fill_panel_avx512(
    const float* bands, index_t C, index_t per_channel, const index_t* taps, index_t kk,
    index_t shift, int lane, int len, bool fresh, float* P) {
  constexpr int H = int(kPackedPanel) / 2;
  const bool whole = lane == 0 && len == int(kPackedPanel);
  const auto lanes = [&](int base) {  // mask of [lane, lane + len) within lanes base..base+15
    const int a = std::max(lane - base, 0), e = std::min(lane + len - base, H);
    return a < e ? __mmask16(((1u << (e - a)) - 1) << a) : __mmask16(0);
  };
  const __mmask16 m0 = lanes(0), m1 = lanes(H);
  for (index_t c = 0; c < C; ++c)
    for (index_t t = 0; t < kk; ++t) {
      const float* src = bands + c * per_channel + taps[t] + shift;
      float* row = P + (c * kk + t) * kPackedPanel;
      if (whole) {
        _mm512_storeu_ps(row, _mm512_loadu_ps(src));
        _mm512_storeu_ps(row + H, _mm512_loadu_ps(src + H));
        continue;
      }
      // The lanes being filled are 0 in a continued panel, so or-ing merges.
      const __m512 v0 = fresh ? _mm512_setzero_ps() : _mm512_loadu_ps(row);
      const __m512 v1 = fresh ? _mm512_setzero_ps() : _mm512_loadu_ps(row + H);
      _mm512_storeu_ps(row, or_ps(v0, _mm512_maskz_loadu_ps(m0, src)));
      _mm512_storeu_ps(row + H, or_ps(v1, _mm512_maskz_loadu_ps(m1, src + H)));
    }
}


// The same with AVX2: four 8-lane loads and stores per row (masked loads where the panel
// is filled in part; the lanes being filled are 0 in a continued panel, so or-ing merges).
__attribute__((target("avx2"))) void fill_panel_avx2(const float* bands, index_t C,
                                                    index_t per_channel, const index_t* taps,
                                                    index_t kk, index_t shift, int lane,
                                                    int len, bool fresh, float* P) {
  const bool whole = lane == 0 && len == int(kPackedPanel);
  __m256i m[4];
  for (int q = 0; q < 4; ++q) m[q] = lane_mask8(lane, lane + len, 8 * q);
  for (index_t c = 0; c < C; ++c)
    for (index_t t = 0; t < kk; ++t) {
      const float* src = bands + c * per_channel + taps[t] + shift;
      float* row = P + (c * kk + t) * kPackedPanel;
      for (int q = 0; q < 4; ++q) {
        if (whole) {
          _mm256_storeu_ps(row + 8 * q, _mm256_loadu_ps(src + 8 * q));
          continue;
        }
        const __m256 v = fresh ? _mm256_setzero_ps() : _mm256_loadu_ps(row + 8 * q);
        _mm256_storeu_ps(row + 8 * q, _mm256_or_ps(v, _mm256_maskload_ps(src + 8 * q, m[q])));
      }
    }
}
#endif

void fill_panel(const float* bands, index_t C, index_t per_channel, const index_t* taps,
                index_t kk, index_t shift, int lane, int len, bool fresh, float* P) {
#ifdef ADLK_CONV_X86
  if (fill_isa() == FillIsa::avx512)
    return fill_panel_avx512(bands, C, per_channel, taps, kk, shift, lane, len, fresh, P);
  if (fill_isa() == FillIsa::avx2)
    return fill_panel_avx2(bands, C, per_channel, taps, kk, shift, lane, len, fresh, P);
#endif
  fill_panel_portable(bands, C, per_channel, taps, kk, shift, lane, len, fresh, P);
}

// Elements of one image's bands (all channels), with a margin of a panel each side.
index_t panel_band_elems(const Conv2dGeom& g, const ShiftedBands& sb) {
  return g.C * sb.per_channel + 2 * kPackedPanel;
}

// ADLK_CONV_PANELS: "always" / "never" take / skip the panel path wherever it can run
// (tests, comparisons); anything else leaves the choice to the geometry.
enum class PanelChoice { automatic, always, never };
PanelChoice panel_choice() {
  static const PanelChoice c = [] {
    const char* v = std::getenv("ADLK_CONV_PANELS");
    if (v && std::strcmp(v, "always") == 0) return PanelChoice::always;
    if (v && std::strcmp(v, "never") == 0) return PanelChoice::never;
    return PanelChoice::automatic;
  }();
  return c;
}

// Whether the forward takes the panel path. It can run with a vector kernel where an
// image's bands are no larger than its column matrix (the usual strides and dilations)
// and within kConvBandBytes, so that they stay cached (L2 or L3) while the image's panels
// are filled from them; it does for the geometries where it was measured faster
// (tuning.h).
bool panel_forward_applies(const Conv2dGeom& g) {
  if (std::strcmp(gemm_packed_isa(), "portable") == 0 || g.N == 0) return false;
  const PanelChoice choice = panel_choice();
  if (choice == PanelChoice::never) return false;
  const ShiftedBands sb(g);
  if (sb.per_channel > g.kH * g.kW * g.L() ||
      sb.per_channel > index_t(kConvBandBytes / sizeof(float)) / g.C)
    return false;
  return choice == PanelChoice::always ||
         (g.sH == 1 && g.sW == 1 && g.kH * g.kW > 1 &&
          g.col_rows() / g.groups >= kConvPanelMinDepth);
}

// Whether the float forward's im2col path runs its GEMMs on the packed-weight kernel
// (forward_unit_packed): with a vector kernel, for the kernels larger than 1x1 and the
// depths where it measured faster (tuning.h).
bool packed_columns_forward_applies(const Conv2dGeom& g) {
  if (std::strcmp(gemm_packed_isa(), "portable") == 0) return false;
  const PanelChoice choice = panel_choice();
  return choice == PanelChoice::always ||
         (choice == PanelChoice::automatic && g.kH * g.kW > 1 &&
          g.col_rows() / g.groups >= kConvPackedColumnsMinDepth);
}

// Scratch floats per thread of the panel forward: a panel, its staged outputs, the bands.
index_t panel_forward_elems(const Conv2dGeom& g) {
  return (g.col_rows() + g.C_out) * kPackedPanel + panel_band_elems(g, ShiftedBands(g));
}

// Calls fn(n, pos, lane, len) for each image n that the panel of nc columns from flat
// position q0 touches: its lanes [lane, lane + len) are that image's positions from pos.
template <typename Fn>
inline void for_each_image_piece(index_t q0, int nc, index_t L, Fn&& fn) {
  for (int lane = 0; lane < nc;) {
    const index_t n = (q0 + lane) / L, pos = (q0 + lane) % L;
    const int len = int(std::min<index_t>(nc - lane, L - pos));
    fn(n, pos, lane, len);
    lane += len;
  }
}

// The staged outputs of a panel that spans images (C_out rows of nc columns, row stride
// kPackedPanel; its columns are the flat positions from q0 of images of `per_image`
// positions) into y, where image n's channel co starts at y + (n * C_out + co) * L.
void unstage_panel(const float* stage, const Conv2dGeom& g, index_t q0, int nc,
                   index_t per_image, float* y) {
  for_each_image_piece(q0, nc, per_image, [&](index_t n, index_t pos, int lane, int len) {
    for (index_t co = 0; co < g.C_out; ++co)
      std::memcpy(y + (n * g.C_out + co) * g.L() + pos, stage + co * kPackedPanel + lane,
                  sizeof(float) * std::size_t(len));
  });
}

// Whole panels of one image the panel forward multiplies in one call.
constexpr index_t kPanelsPerCall = 4;

void conv2d_forward_panels(const float* x, const float* weight, const float* bias,
                           const Conv2dGeom& g, float* y) {
  const ShiftedBands sb(g);
  const index_t L = g.L(), kk = g.kH * g.kW, Kg = g.col_rows() / g.groups,
                Cog = g.C_out / g.groups, ximg = g.C * g.H * g.W;
  const index_t columns = g.N * L, panels = ceil_div(columns, kPackedPanel);
  const int nt = get_num_threads();
  // Runs of consecutive panels, claimed at run time (a slow core takes fewer); several per
  // thread, each refilling the bands of at most a few images.
  const index_t chunk = std::max<index_t>(1, ceil_div(panels, index_t(nt) * 8));
  const index_t chunks = ceil_div(panels, chunk);
  const int team = int(std::min<index_t>(nt, chunks));
  // Row k = (c, tap) of a panel inside one image: 32 band elements from this offset plus
  // the panel's first position. Such panels are read from the bands in place.
  std::vector<index_t> band_rows(static_cast<std::size_t>(g.col_rows()));
  for (index_t c = 0; c < g.C; ++c)
    for (index_t t = 0; t < kk; ++t)
      band_rows[std::size_t(c * kk + t)] = c * sb.per_channel + sb.taps[std::size_t(t)];
  // A panel across images is copied into P, rows of 32 floats, and read in place too.
  std::vector<index_t> copied_rows(static_cast<std::size_t>(Kg));
  for (index_t k = 0; k < Kg; ++k) copied_rows[std::size_t(k)] = k * kPackedPanel;
  RegionScratch rs;
#pragma omp parallel num_threads(team)
  {
    bool ok = true;
    float* P = rs.get<float>(0, g.col_rows() * kPackedPanel, ok);
    float* stage = rs.get<float>(2, g.C_out * kPackedPanel, ok);
    const index_t band_elems = panel_band_elems(g, sb);
    float* band_buf = rs.get<float>(3, band_elems, ok);
    float* bands = band_buf ? band_buf + kPackedPanel : nullptr;
    // The margins: an in-place panel's lanes past its last position read into them
    // (ignored lanes, but defined values).
    if (band_buf) {
      std::fill(band_buf, band_buf + kPackedPanel, 0.0f);
      std::fill(band_buf + band_elems - kPackedPanel, band_buf + band_elems, 0.0f);
    }
    index_t have = -1;  // the image whose bands are in `bands`
#pragma omp for schedule(dynamic, 1)
    for (index_t ch = 0; ch < chunks; ++ch) {
      if (!ok) continue;
      const index_t p_end = std::min(panels, (ch + 1) * chunk);
      for (index_t p = ch * chunk; p < p_end; ++p) {
        const index_t q0 = p * kPackedPanel;
        const int nc = int(std::min<index_t>(kPackedPanel, columns - q0));
        const auto load_bands = [&](index_t n) {
          if (n == have) return;
          sb.fill(g, x + n * ximg, 0, g.C, bands);
          have = n;
        };
        const index_t n0 = q0 / L, pos0 = q0 % L;
        const bool direct = pos0 + nc <= L;
        if (direct) {  // one image: the panel is read from its bands in place, into y
          // with the whole panels after it in the image and the chunk, up to
          // kPanelsPerCall (the AVX2 kernel keeps a weight tile in L1 across them)
          index_t run = 1;
          while (run < kPanelsPerCall && p + run < p_end &&
                 pos0 + (run + 1) * kPackedPanel <= L &&
                 q0 + (run + 1) * kPackedPanel <= columns)
            ++run;
          load_bands(n0);
          float* yp = y + n0 * g.C_out * L + pos0;
          for (index_t gi = 0; gi < g.groups; ++gi)
            gemm_rows_row_bias(Cog, run > 1 ? run * kPackedPanel : nc, Kg,
                               weight + gi * Cog * Kg, Kg, bands + pos0,
                               band_rows.data() + gi * Kg, bias ? bias + gi * Cog : nullptr,
                               yp + gi * Cog * L, L);
          p += run - 1;
          continue;
        }
        // Across images: the panel's columns copied, image by image, then through the
        // stage into y.
        for_each_image_piece(q0, nc, L, [&](index_t n, index_t pos, int lane, int len) {
          load_bands(n);
          fill_panel(bands, g.C, sb.per_channel, sb.taps.data(), kk, pos - lane, lane, len,
                     lane == 0, P);
        });
        for (index_t gi = 0; gi < g.groups; ++gi) {
          const float* wg = weight + gi * Cog * Kg;
          gemm_rows_row_bias(Cog, nc, Kg, wg, Kg, P + gi * Kg * kPackedPanel,
                             copied_rows.data(), bias ? bias + gi * Cog : nullptr,
                             stage + gi * Cog * kPackedPanel, kPackedPanel);
        }
        unstage_panel(stage, g, q0, nc, L, y);
      }
    }
  }
  rs.check();
}

// ---- float32 forward by tap classes --------------------------------------------------
//
// Along each axis, the outputs whose window runs into the padding keep fewer of its taps
// than the interior ones: runs of outputs with the same taps [lo, hi) inside the input
// (TapRun). A class is a run of rows times a run of columns; its positions are multiplied,
// 32 output channels at a time, by the weight rows of its taps only
// (gemm_gathered): position i's window is read straight from x (tap k at its
// first kept tap's offset plus the tap's), and the weight, packed once per call, in place
// through the taps' rows. No band copies, and no terms of the padding's zeros (a tenth of
// the work of a 3x3 kernel on 14x14). The tiles hold output positions by channels, so a
// block of output rows is staged so and transposed into y (writing the tiles' columns
// into y straight from registers, 8 positions per channel, was 1.1x slower on the 224x224
// layer below). Every output element is one fused multiply-add chain from its bias (or
// 0) over the kept taps in (c, kh, kw) order: the same bits for any thread count and for
// the AVX2 and AVX-512 kernels, and the same as the chains over all taps of the other
// float paths wherever the weights are finite (a padding term 0 * w then adds nothing).

struct TapRun {
  index_t begin, end;  // outputs [begin, end)
  index_t lo, hi;      // keep taps [lo, hi)
};

// The runs of one axis: n_out outputs of stride s over `size` inputs, k taps of dilation
// d, padding p (a window that keeps no tap: [0, 0)).
std::vector<TapRun> tap_runs(index_t n_out, index_t size, index_t k, index_t s, index_t p,
                             index_t d) {
  std::vector<TapRun> runs;
  for (index_t o = 0; o < n_out; ++o) {
    index_t lo, hi;
    taps_in_range(o * s - p, k, d, size, lo, hi);
    if (lo >= hi) lo = hi = 0;
    if (!runs.empty() && runs.back().lo == lo && runs.back().hi == hi)
      runs.back().end = o + 1;
    else
      runs.push_back({o, o + 1, lo, hi});
  }
  return runs;
}

// How the tap-class forward cuts its work: units of `images` whole images, or of one
// image's block of rows_per_block output rows, each staged (ldst floats per position)
// within kConvTapStageBytes; where whole images fit, several per unit (their small
// classes, such as the corners, then make fuller tiles) as long as each thread gets 4
// units, as many as spread the images most evenly over the threads (13 units of 5 of 64
// images left one of 2 threads idle for a unit: 4-5% of the 14x14 layer's time; 16 of 4).
struct TapUnits {
  index_t rows_per_block, blocks, ldst, images = 1, units;
  TapUnits(const Conv2dGeom& g, int threads) {
    ldst = ceil_div(g.C_out, 16) * 16;
    const index_t stage_elems = index_t(kConvTapStageBytes / sizeof(float));
    rows_per_block =
        std::clamp<index_t>(stage_elems / std::max<index_t>(g.W_out * ldst, 1), 1, g.H_out);
    blocks = ceil_div(g.H_out, rows_per_block);
    if (blocks == 1) {
      const index_t most = std::max<index_t>(
          1, std::min(stage_elems / std::max<index_t>(g.L() * ldst, 1),
                      g.N / (4 * index_t(threads))));
      // i images a unit: a thread claims at most ceil(units / threads) units. The i with
      // the smallest such share of images, the largest i among equals.
      index_t least = -1;
      for (index_t i = 1; i <= most; ++i) {
        const index_t share = ceil_div(ceil_div(g.N, i), index_t(threads)) * i;
        if (least < 0 || share <= least) least = share, images = i;
      }
    }
    units = ceil_div(g.N, images) * blocks;
  }
  index_t unit_positions(const Conv2dGeom& g) const { return images * rows_per_block * g.W_out; }
};

// The classes of kept taps: a run of output rows times a run of output columns.
struct TapClass {
  TapRun rows, cols;
  index_t K = 0;  // kept taps (c, kh, kw)
  // per kept tap: its offset in x from the first kept tap, its row's offset in a packed
  // weight panel (gemm_gathered's pairs)
  std::vector<index_t> taps;
  // Offset in an image's (group's) first channel of the first kept tap of output (oh, ow)
  // (0 when it keeps none).
  index_t first_tap(const Conv2dGeom& g, index_t oh, index_t ow) const {
    if (K == 0) return 0;
    return (oh * g.sH - g.pH + rows.lo * g.dH) * g.W + ow * g.sW - g.pW + cols.lo * g.dW;
  }
};

std::vector<TapClass> tap_classes(const Conv2dGeom& g) {
  const std::vector<TapRun> rr = tap_runs(g.H_out, g.H, g.kH, g.sH, g.pH, g.dH);
  const std::vector<TapRun> cr = tap_runs(g.W_out, g.W, g.kW, g.sW, g.pW, g.dW);
  const index_t Cg = g.C / g.groups;
  std::vector<TapClass> classes;  // row run major
  for (const TapRun& r : rr)
    for (const TapRun& c : cr) {
      TapClass cl{r, c, Cg * (r.hi - r.lo) * (c.hi - c.lo), {}};
      cl.taps.reserve(std::size_t(2 * cl.K));
      for (index_t ci = 0; ci < Cg; ++ci)
        for (index_t kh = r.lo; kh < r.hi; ++kh)
          for (index_t kw = c.lo; kw < c.hi; ++kw) {
            cl.taps.push_back(ci * g.H * g.W + (kh - r.lo) * g.dH * g.W + (kw - c.lo) * g.dW);
            cl.taps.push_back(((ci * g.kH + kh) * g.kW + kw) * packed_row_stride());
          }
      classes.push_back(std::move(cl));
    }
  return classes;
}

// ADLK_CONV_TAPS=never keeps the tap-class forward off (comparisons, tests of the paths
// it replaces).
bool tap_forward_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("ADLK_CONV_TAPS");
    return !(v && std::strcmp(v, "never") == 0);
  }();
  return on;
}

// Whether the GEMM kernel in use runs the tap paths (forward, grad_weight) faster than the
// others at this depth (C/groups*kH*kW): AVX-512 at any, AVX2 up to kConvTapMaxDepthAvx2
// (tuning.h: its 6x16 tile gathers 6 values per 12 FMAs where AVX-512's gathers 8 per 16,
// and the tap table's two loads a k weigh more on its shorter step).
bool taps_suit_kernel(const Conv2dGeom& g) {
  const char* isa = gemm_packed_isa();
  return std::strcmp(isa, "avx512") == 0 ||
         (std::strcmp(isa, "avx2") == 0 && g.col_rows() / g.groups <= kConvTapMaxDepthAvx2);
}

// taps_suit_kernel for the forward: deeper as well with the AVX2 kernel, where the panels
// would not run or an image has few output positions (kConvTapDeepMaxPositionsAvx2).
bool taps_suit_forward(const Conv2dGeom& g) {
  return taps_suit_kernel(g) ||
         (std::strcmp(gemm_packed_isa(), "avx2") == 0 &&
          (g.L() < kConvTapDeepMaxPositionsAvx2 || !panel_forward_applies(g)));
}

// Whether the float forward takes the tap-class path: with a vector kernel (unless
// ADLK_CONV_TAPS or ADLK_CONV_PANELS is "never"), where the output falls in at most
// kConvMaxTapClasses classes and one output row's stage fits kConvTapStageBytes, and
// (unless ADLK_CONV_PANELS=always) where taps_suit_forward, for a kernel larger than 1x1
// of depth C/groups*kH*kW >= kConvTapMinDepth whose output channels per group fill 80%
// of the lanes of their 32-channel panels (tuning.h).
bool tap_forward_applies(const Conv2dGeom& g) {
  if (!tap_forward_enabled() || std::strcmp(gemm_packed_isa(), "portable") == 0 || g.N == 0)
    return false;
  const PanelChoice choice = panel_choice();
  if (choice == PanelChoice::never) return false;
  const auto runs = [](index_t n_out, index_t size, index_t k, index_t s, index_t p,
                       index_t d) { return index_t(tap_runs(n_out, size, k, s, p, d).size()); };
  if (runs(g.H_out, g.H, g.kH, g.sH, g.pH, g.dH) * runs(g.W_out, g.W, g.kW, g.sW, g.pW, g.dW) >
          kConvMaxTapClasses ||
      g.W_out * ceil_div(g.C_out, 16) * 16 > index_t(kConvTapStageBytes / sizeof(float)))
    return false;
  const index_t Cog = g.C_out / g.groups;
  return choice == PanelChoice::always ||
         (taps_suit_forward(g) && g.kH * g.kW > 1 &&
          g.col_rows() / g.groups >= kConvTapMinDepth &&
          5 * Cog >= 4 * ceil_div(Cog, kPackedPanel) * kPackedPanel);
}

// Pieces the tap-class forward cuts a class's depth K into: with the AVX2 kernel, K from
// kConvTapSplitDepthAvx2 on in pieces of at most kConvTapPieceDepthAvx2 (tuning.h).
index_t tap_depth_pieces(index_t K) {
  if (K < kConvTapSplitDepthAvx2 || std::strcmp(gemm_packed_isa(), "avx2") != 0)
    return 1;
  return ceil_div(K, kConvTapPieceDepthAvx2);
}

// Scratch floats per thread of the tap-class forward: the stage and two tables of a unit.
index_t tap_forward_elems(const Conv2dGeom& g, int threads) {
  const TapUnits tu(g, threads);
  const index_t positions = tu.unit_positions(g);
  return positions * tu.ldst + 2 * positions * index_t(sizeof(index_t) / sizeof(float));
}

void conv2d_forward_taps(const float* x, const float* weight, const float* bias,
                         const Conv2dGeom& g, float* y) {
  const TapUnits tp(g, get_num_threads());
  const std::vector<TapClass> classes = tap_classes(g);
  const index_t L = g.L(), Kg = g.col_rows() / g.groups, Cog = g.C_out / g.groups,
                Cg = g.C / g.groups, plane = g.H * g.W;
  const index_t panels = ceil_div(Cog, kPackedPanel), wgroup = packed_weight_size(Cog, Kg);
  std::vector<float> wp(std::size_t(g.groups * wgroup));
  for (index_t gi = 0; gi < g.groups; ++gi)
    pack_weight(Cog, Kg, weight + gi * Cog * Kg, Kg, wp.data() + gi * wgroup);
  const index_t unit_pos = tp.unit_positions(g);
  const int team = int(std::min<index_t>(get_num_threads(), tp.units));
  // A y beyond kConvStreamBytes is written with non-temporal stores where its lines allow
  // (transpose_streaming): its lines are then not read in first.
  const bool stream = g.N * g.C_out * L >= index_t(kConvStreamBytes / sizeof(float));
  RegionScratch rs;
#pragma omp parallel num_threads(team)
  {
    bool ok = true;
    float* stage = rs.get<float>(0, unit_pos * tp.ldst, ok);
    index_t* tables = rs.get<index_t>(1, 2 * unit_pos, ok);
#pragma omp for schedule(dynamic, 1)
    for (index_t u = 0; u < tp.units; ++u) {
      if (!ok) continue;
      const index_t n0 = u / tp.blocks * tp.images, ni = std::min(tp.images, g.N - n0),
                    oh0 = (u % tp.blocks) * tp.rows_per_block,
                    oh1 = std::min(g.H_out, oh0 + tp.rows_per_block), pos = (oh1 - oh0) * g.W_out;
      const float* ximages = x + n0 * g.C * plane;
      for (const TapClass& cl : classes) {
        const index_t r0 = std::max(cl.rows.begin, oh0), r1 = std::min(cl.rows.end, oh1);
        if (r0 >= r1) continue;
        // the class's positions in the unit's images, image by image
        index_t* arows = tables;
        index_t* crows = tables + unit_pos;
        index_t m = 0;
        for (index_t j = 0; j < ni; ++j)
          for (index_t oh = r0; oh < r1; ++oh)
            for (index_t ow = cl.cols.begin; ow < cl.cols.end; ++ow, ++m) {
              arows[m] = j * g.C * plane + cl.first_tap(g, oh, ow);
              crows[m] = (j * pos + (oh - oh0) * g.W_out + ow) * tp.ldst;
            }
        const index_t pieces = tap_depth_pieces(cl.K);
        for (index_t gi = 0; gi < g.groups; ++gi)
          for (index_t p = 0; p < panels; ++p) {
            const index_t co = gi * Cog + p * kPackedPanel;
            // the depth in pieces, each continuing the chains of the one before
            for (index_t q = 0; q < pieces; ++q) {
              const index_t k0 = cl.K * q / pieces, k1 = cl.K * (q + 1) / pieces;
              gemm_gathered(m, std::min(kPackedPanel, Cog - p * kPackedPanel), k1 - k0,
                            ximages + gi * Cg * plane, arows,
                            wp.data() + gi * wgroup + p * kPackedPanel * Kg, Kg,
                            cl.taps.data() + 2 * k0, bias && q == 0 ? bias + co : nullptr,
                            q > 0, stage + co, crows);
            }
          }
      }
      for (index_t j = 0; j < ni; ++j)
        (stream ? transpose_streaming : transpose)(pos, g.C_out, stage + j * pos * tp.ldst,
                                                   tp.ldst,
                                                   y + (n0 + j) * g.C_out * L + oh0 * g.W_out, L);
    }
  }
  rs.check();
}

// grad_x of a stride-1 convolution is the forward convolution of grad_y with the weight
// transposed (input and output channels swapped, per group) and flipped in kh and kw, and
// padding d*(k - 1) - p: the geometry of that forward.
Conv2dGeom transposed_geom(const Conv2dGeom& g) {
  Conv2dGeom t;
  t.N = g.N, t.C = g.C_out, t.H = g.H_out, t.W = g.W_out, t.C_out = g.C;
  t.kH = g.kH, t.kW = g.kW, t.dH = g.dH, t.dW = g.dW, t.groups = g.groups;
  t.pH = g.dH * (g.kH - 1) - g.pH, t.pW = g.dW * (g.kW - 1) - g.pW;
  t.finalize();
  return t;
}

// Whether the float grad_x runs as that forward on the packed-weight kernel (tap classes
// or panels): stride 1 with padding at most the dilated kernel's reach, at least a tile's
// 8 rows of input channels per group, and one of those paths for the transposed
// geometry. Measured on the panels with 2 threads (AMD EPYC, AVX-512, 2026-12-06)
// against GEMM + col2im: 0.8-0.96x the time for 8-128 input channels (3x3, 14x14 to
// 56x56), 4x for one channel.
bool transposed_grad_x_applies(const Conv2dGeom& g) {
  if (g.sH != 1 || g.sW != 1 || g.N == 0 || g.C / g.groups < 8) return false;
  if (g.pH > g.dH * (g.kH - 1) || g.pW > g.dW * (g.kW - 1)) return false;
  const Conv2dGeom t = transposed_geom(g);
  return tap_forward_applies(t) || panel_forward_applies(t);
}

// The float forward on the packed-weight kernel: the tap classes or the panels, or false
// where neither applies.
bool conv2d_forward_packed(const float* x, const float* weight, const float* bias,
                           const Conv2dGeom& g, float* y) {
  if (tap_forward_applies(g)) return conv2d_forward_taps(x, weight, bias, g, y), true;
  if (panel_forward_applies(g)) return conv2d_forward_panels(x, weight, bias, g, y), true;
  return false;
}

// ---- float32 grad_weight on the packed-weight kernel ------------------------------
//
// For each group, the transpose dW_g^T (Kg x Cog) = cols_g (Kg x P) @ dy_g^T (P x Cog)
// over the positions P of all images: the column matrix is A, read in place, and grad_y
// is the packed operand, packed image by image (it is already "transposed": a panel row
// is 32 output channels at one position). Every element is one FMA chain over the
// images, then the positions, in order, so the result has the same bits for any thread
// count. The team packs a block of images' grad_y, then each thread takes its fixed share
// of the rows (c, kh, kw) of those images' columns and multiplies: read in place from its
// channels' shifted bands, an image at a time (WeightGradPlan::bands), or else built by
// im2col, a block of output rows at a time. At the end it writes its rows of dW^T into
// grad_weight.
struct WeightGradPlan {
  index_t packed_group, packed_image, block_images;  // packed grad_y sizes (floats)
  index_t tiles;                                     // 8-row tiles of the C*kH*kW rows
  ShiftedBands sb;
  // The columns read in place from the shifted bands of each image's channels (as the
  // panel forward's; the band fill writes about kW copies of the input where im2col
  // writes kH*kW): where an image's bands are no larger than its columns and fit
  // kConvBandBytes, unless ADLK_CONV_PANELS=never. The same bits either way.
  bool bands;
  explicit WeightGradPlan(const Conv2dGeom& g) : sb(g) {
    const char* what = "conv: packed grad_y";
    packed_group = packed_weight_size(g.C_out / g.groups, g.L());
    packed_image = mul_checked(g.groups, packed_group, what);
    block_images = std::clamp<index_t>(index_t(kConvBlockBytes / sizeof(float)) / packed_image,
                                       1, std::max<index_t>(g.N, 1));
    mul_checked(block_images, packed_image, what);
    tiles = ceil_div(g.col_rows(), kRowTile);
    bands = panel_choice() != PanelChoice::never && sb.per_channel <= g.kH * g.kW * g.L() &&
            sb.per_channel <= index_t(kConvBandBytes / sizeof(float)) / std::max<index_t>(g.C, 1);
  }
  static constexpr index_t kRowTile = 8;
  // A thread's rows [r0, r1) (whole tiles), the channels they come from, and the output
  // rows per block whose columns of those channels fit kConvBlockBytes.
  struct Share {
    index_t r0, r1, c_lo, c_hi, out_rows;
    index_t col_elems(const Conv2dGeom& g) const {
      return (c_hi - c_lo) * g.kH * g.kW * out_rows * g.W_out;
    }
  };
  Share share(const Conv2dGeom& g, int team, int t) const {
    const Span s = split(tiles, team, t);
    Share sh;
    sh.r0 = s.begin * kRowTile;
    sh.r1 = std::min(g.col_rows(), s.end * kRowTile);
    const index_t kk = g.kH * g.kW;
    sh.c_lo = sh.r0 / kk;
    sh.c_hi = sh.r1 > sh.r0 ? (sh.r1 - 1) / kk + 1 : sh.c_lo;
    const index_t row_elems = std::max<index_t>(1, (sh.c_hi - sh.c_lo) * kk * g.W_out);
    sh.out_rows = std::clamp<index_t>(index_t(kConvBlockBytes / sizeof(float)) / row_elems, 1,
                                      g.H_out);
    return sh;
  }
  int team(int threads) const { return int(std::clamp<index_t>(tiles, 1, threads)); }
  // Per-thread scratch of the band path (floats): the share's channels' bands with a
  // panel's margin for the fill's last stores.
  index_t share_band_elems(const Share& sh) const {
    return (sh.c_hi - sh.c_lo) * sb.per_channel + kPackedPanel;
  }
  // Per-thread scratch (floats), the largest share's: its columns and band, or its bands
  // and their row offsets.
  index_t thread_elems(const Conv2dGeom& g, int threads) const {
    index_t most = 0;
    const int nt = team(threads);
    for (int t = 0; t < nt; ++t) {
      const Share sh = share(g, nt, t);
      const char* what = "conv: grad_weight scratch";
      const index_t offsets = (sh.r1 - sh.r0) * index_t(sizeof(index_t) / sizeof(float));
      most = std::max(most, bands ? add_checked(share_band_elems(sh), offsets, what)
                                  : add_checked(sh.col_elems(g), band_elems(g, sh.out_rows), what));
    }
    return most;
  }
};

// Inside a parallel region, by the team: grad_y of images [n0, n0 + nb) packed as the
// panels of the packed-weight kernel (image j's group gi at packed + (j * groups + gi) *
// packed_group), then a barrier.
void pack_grad_y_block(const float* dy, const Conv2dGeom& g, const WeightGradPlan& wp,
                       index_t n0, index_t nb, float* packed) {
  const index_t Cog = g.C_out / g.groups, L = g.L();
#pragma omp for schedule(static)
  for (index_t q = 0; q < nb * g.groups; ++q)
    pack_weight(Cog, L, dy + ((n0 + q / g.groups) * g.C_out + q % g.groups * Cog) * L, L,
                packed + q * wp.packed_group);
}

void conv2d_backward_weight_packed(const float* x, const float* dy, const Conv2dGeom& g,
                                   float* dweight) {
  const WeightGradPlan wp(g);
  const index_t L = g.L(), kk = g.kH * g.kW, rows = g.col_rows(), Kg = rows / g.groups,
                Cog = g.C_out / g.groups, ximg = g.C * g.H * g.W, plane = g.H * g.W;
  // The calling thread's slot 2 holds the packed block (team members use slots 0 and 3).
  float* packed = thread_scratch_as<float>(2, std::size_t(wp.block_images * wp.packed_image));
  std::vector<float> dwT(std::size_t(rows * Cog));
  const int team = wp.team(get_num_threads());
  RegionScratch rs;
#pragma omp parallel num_threads(team)
  {
    const WeightGradPlan::Share sh = wp.share(g, omp_get_num_threads(), omp_get_thread_num());
    bool ok = true;
    float* cols = wp.bands ? nullptr : rs.get<float>(0, sh.col_elems(g), ok);
    float* band = wp.bands ? nullptr : rs.get<float>(3, band_elems(g, sh.out_rows), ok);
    // band path: the share's bands and its rows' offsets into them
    float* bands = wp.bands ? rs.get<float>(3, wp.share_band_elems(sh), ok) : nullptr;
    index_t* arows = wp.bands ? rs.get<index_t>(0, sh.r1 - sh.r0, ok) : nullptr;
    if (arows)
      for (index_t r = sh.r0; r < sh.r1; ++r)
        arows[r - sh.r0] = (r / kk - sh.c_lo) * wp.sb.per_channel + wp.sb.taps[std::size_t(r % kk)];
    for (index_t n0 = 0; n0 < g.N; n0 += wp.block_images) {
      const index_t nb = std::min(wp.block_images, g.N - n0);
      pack_grad_y_block(dy, g, wp, n0, nb, packed);
      for (index_t j = 0; j < nb && ok && sh.r1 > sh.r0 && wp.bands; ++j) {
        // each image's columns in one pass over its positions, read from the bands
        const index_t n = n0 + j;
        wp.sb.fill(g, x + n * ximg, sh.c_lo, sh.c_hi, bands);
        for (index_t r = sh.r0; r < sh.r1;) {  // the share's rows, group by group
          const index_t gi = r / Kg, r_end = std::min(sh.r1, (gi + 1) * Kg);
          gemm_packed_arows(r_end - r, Cog, L, bands, arows + (r - sh.r0),
                            packed + (j * g.groups + gi) * wp.packed_group, n > 0,
                            dwT.data() + r * Cog, Cog);
          r = r_end;
        }
      }
      for (index_t j = 0; j < nb && ok && sh.r1 > sh.r0 && !wp.bands; ++j) {
        const index_t n = n0 + j;
        for (index_t oh0 = 0; oh0 < g.H_out; oh0 += sh.out_rows) {
          const index_t oh1 = std::min(g.H_out, oh0 + sh.out_rows), Lb = (oh1 - oh0) * g.W_out;
          for (index_t c = sh.c_lo; c < sh.c_hi; ++c)
            im2col_channel(x + n * ximg + c * plane, g, oh0, oh1, band,
                           cols + (c - sh.c_lo) * kk * Lb, Lb);
          const bool accumulate = n > 0 || oh0 > 0;
          for (index_t r = sh.r0; r < sh.r1;) {  // the share's rows, group by group
            const index_t gi = r / Kg, r_end = std::min(sh.r1, (gi + 1) * Kg);
            // the block's Lb positions: rows [oh0 * W_out, ...) of panels packed L deep
            const float* Wp = packed + (j * g.groups + gi) * wp.packed_group +
                              oh0 * g.W_out * packed_row_stride();
            gemm_packed(r_end - r, Cog, Lb, cols + (r - sh.c_lo * kk) * Lb, Lb, Wp, accumulate,
                        dwT.data() + r * Cog, Cog, L);
            r = r_end;
          }
        }
      }
      // the next block's packing overwrites `packed`
#pragma omp barrier
    }
    for (index_t r = sh.r0; r < sh.r1 && ok;) {  // its rows of dW^T into dW, by group
      const index_t gi = r / Kg, r_end = std::min(sh.r1, (gi + 1) * Kg);
      transpose(r_end - r, Cog, dwT.data() + r * Cog, Cog, dweight + gi * Cog * Kg + r - gi * Kg,
                Kg);
      r = r_end;
    }
  }
  rs.check();
}

// Whether the float32 grad_weight runs on the packed-weight kernel: with a vector kernel,
// where it was measured faster (many rows C/groups*kH*kW; tuning.h), or where
// ADLK_CONV_PANELS=always / never says so.
bool packed_weight_grad_applies(const Conv2dGeom& g) {
  if (std::strcmp(gemm_packed_isa(), "portable") == 0 || g.N == 0) return false;
  const PanelChoice choice = panel_choice();
  // One image's packed grad_y is kept whole: beyond a bound, the BLAS path (which needs
  // only blocks of output rows) keeps the scratch small.
  const index_t packed_image =
      mul_saturated(g.groups, packed_weight_size(g.C_out / g.groups, g.L()));
  if (packed_image > index_t(kConvGradPackMaxBytes / sizeof(float))) return false;
  if (choice != PanelChoice::automatic) return choice == PanelChoice::always;
  return g.col_rows() / g.groups >= kConvWeightGradMinRows;
}

// ---- float32 grad_weight by taps -------------------------------------------------------
//
// Row (c, kh, kw) of dW^T sums, over the images and the output positions where tap (kh, kw)
// falls inside the input, x[n, c, the tap's input cell] times grad_y[n, :, position]. Each
// thread owns whole channels; for each tap, its channels' rows run against grad_y packed
// as on the packed path (gemm_gathered: x read in place through a table of the tap's
// positions, as (x offset, packed row) pairs), one call per image continuing the chains.
// No band fills and no terms of the padding's zeros; each element one chain over the
// images, then the positions in order: the bits of the packed path for finite inputs.
// Its tables hold two offsets per tap and output position; beyond kConvBandBytes of them
// (a large kernel on a large image) the packed path keeps the memory small.
bool tap_weight_grad_applies(const Conv2dGeom& g) {
  return tap_forward_enabled() && g.groups == 1 && g.C >= 8 &&
         (panel_choice() == PanelChoice::always || taps_suit_kernel(g)) &&
         mul_saturated(g.kH * g.kW, g.L()) <= index_t(kConvBandBytes / (2 * sizeof(index_t))) &&
         packed_weight_grad_applies(g);
}

void conv2d_backward_weight_taps(const float* x, const float* dy, const Conv2dGeom& g,
                                 float* dweight) {
  const WeightGradPlan wp(g);
  const index_t L = g.L(), kk = g.kH * g.kW, rows = g.col_rows(), Cog = g.C_out,
                plane = g.H * g.W, ximg = g.C * plane, panels = ceil_div(Cog, kPackedPanel);
  // per tap, the output positions whose cell is inside the input
  std::vector<std::vector<index_t>> taps(static_cast<std::size_t>(kk));
  for (index_t kh = 0; kh < g.kH; ++kh)
    for (index_t kw = 0; kw < g.kW; ++kw) {
      const index_t offh = kh * g.dH - g.pH, offw = kw * g.dW - g.pW;
      index_t oh_lo, oh_hi, ow_lo, ow_hi;
      outputs_in_range(offh, g.sH, g.H, g.H_out, oh_lo, oh_hi);
      outputs_in_range(offw, g.sW, g.W, g.W_out, ow_lo, ow_hi);
      std::vector<index_t>& tt = taps[std::size_t(kh * g.kW + kw)];
      for (index_t oh = oh_lo; oh < oh_hi; ++oh)
        for (index_t ow = ow_lo; ow < ow_hi; ++ow) {
          tt.push_back((oh * g.sH + offh) * g.W + ow * g.sW + offw);
          tt.push_back((oh * g.W_out + ow) * packed_row_stride());
        }
    }
  // The calling thread's slot 2 holds the packed block (team members use slot 0).
  float* packed = thread_scratch_as<float>(2, std::size_t(wp.block_images * wp.packed_image));
  std::vector<float> dwT(std::size_t(rows * Cog));
  const int team = int(std::clamp<index_t>(g.C / 8, 1, get_num_threads()));
  RegionScratch rs;
#pragma omp parallel num_threads(team)
  {
    const Span ch = split(g.C, omp_get_num_threads(), omp_get_thread_num());
    bool ok = true;
    index_t* arows = rs.get<index_t>(0, 2 * ch.size(), ok);  // then the rows of dW^T
    index_t* crows = arows ? arows + ch.size() : nullptr;
    for (index_t i = 0; arows && i < ch.size(); ++i) {
      arows[i] = (ch.begin + i) * plane;
      crows[i] = (ch.begin + i) * kk * Cog;
    }
    for (index_t n0 = 0; n0 < g.N; n0 += wp.block_images) {
      const index_t nb = std::min(wp.block_images, g.N - n0);
      pack_grad_y_block(dy, g, wp, n0, nb, packed);
      for (index_t j = 0; j < nb && ok && ch.size() > 0; ++j)
        for (index_t t = 0; t < kk; ++t)
          for (index_t q = 0; q < panels; ++q) {
            const std::vector<index_t>& tt = taps[std::size_t(t)];
            gemm_gathered(ch.size(), std::min(kPackedPanel, Cog - q * kPackedPanel),
                          index_t(tt.size() / 2), x + (n0 + j) * ximg, arows,
                          packed + j * wp.packed_image + q * kPackedPanel * L, L, tt.data(),
                          nullptr, n0 + j > 0, dwT.data() + t * Cog + q * kPackedPanel, crows);
          }
      // the next block's packing overwrites `packed`
#pragma omp barrier
    }
    if (ok && ch.size() > 0)  // its channels' rows of dW^T into dW
      transpose(ch.size() * kk, Cog, dwT.data() + ch.begin * kk * Cog, Cog,
                dweight + ch.begin * kk, rows);
  }
  rs.check();
}

// float forward of one unit of the im2col path on the packed-weight kernel: the unit's
// column matrix (rows of ld floats, nimg images of Lb positions each) read in place, 32
// positions at a time (a partial last panel copied into `tail`, so that no read leaves
// the matrix), the bias fused; a panel spanning two images goes through `stage`. y_unit:
// y at the unit's first image and output row. `rows`: Kg offsets (scratch).
void forward_unit_packed(const Conv2dGeom& g, const float* cols, index_t ld, index_t nimg,
                         index_t Lb, const float* weight, const float* bias, float* y_unit,
                         index_t* rows, float* tail, float* stage) {
  const index_t L = g.L(), Kg = g.col_rows() / g.groups, Cog = g.C_out / g.groups;
  const index_t N_gemm = nimg * Lb;
  for (index_t k = 0; k < Kg; ++k) rows[k] = k * ld;
  for (index_t p0 = 0; p0 < N_gemm; p0 += kPackedPanel) {
    const int nc = int(std::min<index_t>(kPackedPanel, N_gemm - p0));
    const index_t j0 = p0 / Lb, j1 = (p0 + nc - 1) / Lb;
    float* out = j0 == j1 ? y_unit + j0 * g.C_out * L + (p0 - j0 * Lb) : stage;
    const index_t ldc = j0 == j1 ? L : kPackedPanel;
    for (index_t gi = 0; gi < g.groups; ++gi) {
      const float* A = weight + gi * Cog * Kg;
      const float* bg = bias ? bias + gi * Cog : nullptr;
      const float* src = cols + gi * Kg * ld + p0;
      float* C = out + gi * Cog * ldc;
      if (nc == int(kPackedPanel)) {
        gemm_rows_row_bias(Cog, nc, Kg, A, Kg, src, rows, bg, C, ldc);
        continue;
      }
      pack_weight_transposed(nc, Kg, src, ld, tail);  // the rows' nc columns, zero-padded
      gemm_packed_row_bias(Cog, nc, Kg, A, Kg, tail, bg, C, ldc);
    }
    if (j0 != j1) unstage_panel(stage, g, p0, nc, Lb, y_unit);
  }
}

// Sums over images and positions of the channels of dy (N, C_out, L), in double, each in
// kSumLanes fixed lanes (position l of every image goes to lane l % kSumLanes; within a
// lane, images then positions in order) that are added in order at the end: one thread
// per channel, so the bits depend on neither the thread count nor how the compiler
// vectorizes. A single running sum was a chain of dependent double additions, 4 cycles
// an element (15% of a 64x32x14x14 grad_weight).
constexpr index_t kSumLanes = 16;

// out[co] for channels [co0, co1): images outer, so that dy is read in order (a channel
// at a time, images far apart, left the prefetchers a few KiB per stream: 0.45x the time
// on 64x128x28x28), each channel in its own lanes of acc ((co1 - co0) * kSumLanes).
template <typename T>
ADLK_MULTIVERSION void channel_sums(const T* dy, index_t N, index_t C_out, index_t L,
                                    index_t co0, index_t co1, double* acc, T* out) {
  std::fill(acc, acc + (co1 - co0) * kSumLanes, 0.0);
  const index_t full = L - L % kSumLanes;
  for (index_t n = 0; n < N; ++n)
    for (index_t co = co0; co < co1; ++co) {
      const T* src = dy + (n * C_out + co) * L;
      double a[kSumLanes];  // the channel's lanes, in registers over the image
      std::copy(acc + (co - co0) * kSumLanes, acc + (co - co0 + 1) * kSumLanes, a);
      for (index_t l = 0; l < full; l += kSumLanes)
        for (index_t j = 0; j < kSumLanes; ++j) a[j] += double(src[l + j]);
      for (index_t l = full; l < L; ++l) a[l - full] += double(src[l]);
      std::copy(a, a + kSumLanes, acc + (co - co0) * kSumLanes);
    }
  for (index_t co = co0; co < co1; ++co) {
    double s = 0.0;
    for (index_t j = 0; j < kSumLanes; ++j) s += acc[(co - co0) * kSumLanes + j];
    out[co] = T(s);
  }
}

// ---- depthwise: one input channel per group ------------------------------------------
//
// groups == C with a few output channels per group (a depthwise convolution, as in
// MobileNet): on the im2col path each image and group is a GEMM of C_out/groups rows and
// depth kH*kW, a matrix-vector product over a column matrix kH*kW times the plane's size.
// Here each (image, channel) plane is copied once into its zero-padded band (im2col's
// layout, all output rows) and the outputs are summed straight from it, in tiles of
// kDwRows rows by kDwCols columns held in registers: x is read once and y written once.
// Each output is its bias (or 0) plus the terms in (kh, kw) order. grad_x of stride 1
// with one output per group is the same forward over grad_y (depthwise_grad_x_as_forward);
// otherwise the terms are summed into the band in (output channel, kh, kw) order, then
// the band's interior is the plane. grad_weight sums each element over the images, then
// the tiles' rows and columns, into kDwRows x kDwCols partial sums, added in order at
// the end, by one thread. The same bits for any thread count.
constexpr int kDwRows = 4, kDwCols = 8;

// Whether the forward (the backward: depthwise_grad_applies) takes the depthwise kernel:
// one input channel per group, few outputs per group (tuning.h), and a band no larger
// than the columns (band_elems).
bool depthwise_applies(const Conv2dGeom& g) {
  return g.groups > 1 && g.groups == g.C && g.C_out / g.groups <= kConvDepthwiseMaxOutputs &&
         band_elems(g, g.H_out) > 0;
}
bool depthwise_grad_applies(const Conv2dGeom& g) {
  return depthwise_applies(g) && g.C_out / g.groups <= kConvDepthwiseGradMaxOutputs;
}

// Whether grad_x runs as the depthwise forward of grad_y with the kernel flipped, padding
// d*(k-1) - p (transposed_geom): stride 1, one output channel per group, padding within
// the dilated kernel's reach. Each element is then summed in registers: 0.65x the time of
// the sums into the band (64x128x28x28 3x3, 2 threads).
bool depthwise_grad_x_as_forward(const Conv2dGeom& g) {
  return g.C_out == g.groups && g.sH == 1 && g.sW == 1 && g.pH <= g.dH * (g.kH - 1) &&
         g.pW <= g.dW * (g.kW - 1) && depthwise_applies(transposed_geom(g));
}

// Offsets in the band of all output rows of the (kh, kw) taps' segments for output row
// 0, in (kh, kw) order.
std::vector<index_t> depthwise_taps(const Conv2dGeom& g) {
  const Band b(g, g.H_out);
  std::vector<index_t> offs;
  for (index_t kh = 0; kh < g.kH; ++kh)
    for (index_t kw = 0; kw < g.kW; ++kw)
      offs.push_back(kh * g.dH * b.row + b.slot(kw * g.dW, g.sW));
  return offs;
}

// The helpers below are always inlined, so the ABI note about passing 32- and 64-byte
// vectors in the baseline (non-AVX) clone does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
// A row of kDwCols values in one (GCC generic) vector: SSE pairs in the baseline build,
// AVX registers in the AVX2 one (ADLK_MULTIVERSION), without intrinsics per ISA. An
// array of them indexed by constants only stays in registers.
template <typename T> struct DwVecOf;
template <> struct DwVecOf<float> { typedef float type __attribute__((vector_size(32))); };
template <> struct DwVecOf<double> { typedef double type __attribute__((vector_size(64))); };
template <typename T> using DwVec = typename DwVecOf<T>::type;

template <typename T>
inline __attribute__((always_inline)) DwVec<T> dw_load(const T* p) {
  DwVec<T> v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
// R output rows by nc <= kDwCols columns: out[r*ldo + j] = bias + sum over taps t of
// w[t] * src[r*rstep + offs[t] + j], with bias and w[t] given in every lane (kDwCols
// copies each: GCC assembled a broadcast in the tile from single inserts). Reads all
// kDwCols columns of src (the band has a margin after it); the lanes from nc on are
// dropped.
template <typename T, int R>
inline __attribute__((always_inline)) void depthwise_tile(const T* src, index_t rstep,
                                                          const index_t* offs, const T* w,
                                                          index_t kk, const T* bias, T* out,
                                                          index_t ldo, index_t nc) {
  DwVec<T> acc[R];
  _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r) acc[r] = dw_load(bias);
  for (index_t t = 0; t < kk; ++t) {
    const DwVec<T> wt = dw_load(w + t * kDwCols);
    const T* s = src + offs[t];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r) acc[r] += wt * dw_load(s + r * rstep);
  }
  _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r) {
    if (nc == kDwCols) {
      __builtin_memcpy(out + r * ldo, &acc[r], sizeof acc[r]);
    } else {
      T row[kDwCols];
      __builtin_memcpy(row, &acc[r], sizeof row);
      for (index_t j = 0; j < nc; ++j) out[r * ldo + j] = row[j];
    }
  }
}

// One output plane (H_out x W_out) from the band of its channel; w and bias as
// depthwise_tile's.
template <typename T>
ADLK_MULTIVERSION void depthwise_plane(const T* band, const Conv2dGeom& g, const index_t* offs,
                                       const T* w, const T* bias, T* y) {
  const index_t rstep = g.sH * Band(g, g.H_out).row, kk = g.kH * g.kW;
  index_t oh = 0;
  for (; oh + kDwRows <= g.H_out; oh += kDwRows)
    for (index_t ow = 0; ow < g.W_out; ow += kDwCols)
      depthwise_tile<T, kDwRows>(band + oh * rstep + ow, rstep, offs, w, kk, bias,
                                 y + oh * g.W_out + ow, g.W_out,
                                 std::min<index_t>(kDwCols, g.W_out - ow));
  for (; oh < g.H_out; ++oh)
    for (index_t ow = 0; ow < g.W_out; ow += kDwCols)
      depthwise_tile<T, 1>(band + oh * rstep + ow, rstep, offs, w, kk, bias,
                           y + oh * g.W_out + ow, g.W_out,
                           std::min<index_t>(kDwCols, g.W_out - ow));
}

template <typename T>
void depthwise_forward(const T* x, const T* weight, const T* bias, const Conv2dGeom& g, T* y) {
  const std::vector<index_t> offs = depthwise_taps(g);
  const index_t m = g.C_out / g.groups, kk = g.kH * g.kW, plane = g.H * g.W, L = g.L();
  // each weight and bias in kDwCols lanes (depthwise_tile)
  std::vector<T> lanes(std::size_t(g.C_out * (kk + 1) * kDwCols));
  for (index_t i = 0; i < g.C_out * kk; ++i)
    std::fill_n(lanes.data() + i * kDwCols, kDwCols, weight[i]);
  T* bias_lanes = lanes.data() + g.C_out * kk * kDwCols;
  for (index_t co = 0; co < g.C_out; ++co)
    std::fill_n(bias_lanes + co * kDwCols, kDwCols, bias ? bias[co] : T(0));
  // (the tiles read up to kDwCols - 1 values past the band, into lanes they drop)
  for_each_plane<T>(g, [&](index_t t, T* band) {
    const index_t n = t / g.C, c = t % g.C;
    fill_band(x + t * plane, g, 0, g.H_out, band);
    for (index_t j = 0; j < m; ++j) {
      const index_t co = c * m + j;
      depthwise_plane(band, g, offs.data(), lanes.data() + co * kk * kDwCols,
                      bias_lanes + co * kDwCols, y + (n * g.C_out + co) * L);
    }
  }, kDwCols);
}

// grad_x of one input plane: the terms w[co, t] * dy[co] of its output channels, summed
// into the zeroed band in (co, t, row) order, then its interior written to the plane.
template <typename T>
ADLK_MULTIVERSION void depthwise_grad_x_plane(const T* dy, const T* w, index_t m,
                                              const Conv2dGeom& g, const index_t* offs,
                                              T* band, T* dxplane) {
  const Band b(g, g.H_out);
  const index_t rstep = g.sH * b.row, kk = g.kH * g.kW, L = g.L();
  std::fill(band, band + b.elems(), T(0));
  for (index_t j = 0; j < m; ++j)
    for (index_t t = 0; t < kk; ++t) {
      const T wt = w[j * kk + t];
      for (index_t oh = 0; oh < g.H_out; ++oh) {
        T* __restrict dst = band + oh * rstep + offs[t];
        const T* __restrict src = dy + j * L + oh * g.W_out;
        for (index_t ow = 0; ow < g.W_out; ++ow) dst[ow] += wt * src[ow];
      }
    }
  std::fill(dxplane, dxplane + g.H * g.W, T(0));
  add_band_interior(band, g, 0, g.H_out, dxplane);
}

// Lanes [0, nc) of v, the others 0 (an inf or NaN there is dropped, not multiplied).
template <typename T>
inline __attribute__((always_inline)) DwVec<T> dw_first(DwVec<T> v, index_t nc) {
  typedef decltype(v < v) Mask;  // integer lanes of the same width
  Mask lane{};
  for (int j = 0; j < kDwCols; ++j) lane[j] = j;
  return lane < Mask{} + int(nc) ? v : DwVec<T>{};
}

// Rows [oh, oh + R) of the products of grad_y and one tap's band segment into a[0..R):
// a[r] lane j sums the products at columns j, j + kDwCols, ...; a row's last partial tile
// reads past its end (the next rows of grad_y's plane, or, for rows after `safe` (Copy),
// a copy: nothing past the plane is read; the band's margin) and drops those lanes.
template <typename T, int R, bool Copy>
inline __attribute__((always_inline)) void depthwise_grad_w_rows(const T* src, index_t rstep,
                                                                 const T* dy,
                                                                 const Conv2dGeom& g,
                                                                 index_t oh, index_t safe,
                                                                 DwVec<T>* a) {
  const index_t full_cols = g.W_out - g.W_out % kDwCols, nc = g.W_out - full_cols;
  for (index_t ow = 0; ow < full_cols; ow += kDwCols)
    _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r)
      a[r] += dw_load(dy + (oh + r) * g.W_out + ow) * dw_load(src + (oh + r) * rstep + ow);
  if (nc == 0) return;
  _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r) {
    const T* d = dy + (oh + r) * g.W_out + full_cols;
    T tail[kDwCols] = {};
    if (Copy && oh + r > safe) {
      for (index_t j = 0; j < nc; ++j) tail[j] = d[j];
      d = tail;
    }
    a[r] += dw_first<T>(dw_load(d) * dw_load(src + (oh + r) * rstep + full_cols), nc);
  }
}

// The partial sums of grad_weight row co over one image: acc[t][r][j] += the products of
// grad_y and tap t's band segment at output rows r, r + kDwRows, ..., columns j, j +
// kDwCols, ...
template <typename T>
ADLK_MULTIVERSION void depthwise_grad_w_image(const T* band, const T* dy, const Conv2dGeom& g,
                                              const index_t* offs, T* acc) {
  const index_t rstep = g.sH * Band(g, g.H_out).row, kk = g.kH * g.kW;
  const index_t full_rows = g.H_out - g.H_out % kDwRows;
  // the last row whose partial tile can be read in place, the plane's next values
  // filling its lanes (-1: none)
  const index_t full_cols = g.W_out - g.W_out % kDwCols;
  const index_t safe = g.L() - full_cols - kDwCols >= 0
                           ? (g.L() - full_cols - kDwCols) / g.W_out : -1;
  for (index_t t = 0; t < kk; ++t) {
    DwVec<T> a[kDwRows];
    T* at = acc + t * kDwRows * kDwCols;
    _Pragma("GCC unroll 8") for (int r = 0; r < kDwRows; ++r) a[r] = dw_load(at + r * kDwCols);
    const T* src = band + offs[t];
    for (index_t oh = 0; oh < full_rows; oh += kDwRows) {
      if (oh + kDwRows - 1 <= safe)
        depthwise_grad_w_rows<T, kDwRows, false>(src, rstep, dy, g, oh, safe, a);
      else
        depthwise_grad_w_rows<T, kDwRows, true>(src, rstep, dy, g, oh, safe, a);
    }
    static_assert(kDwRows == 4, "one case per remainder");
    switch (g.H_out - full_rows) {  // the plane's last rows
      case 1: depthwise_grad_w_rows<T, 1, true>(src, rstep, dy, g, full_rows, safe, a); break;
      case 2: depthwise_grad_w_rows<T, 2, true>(src, rstep, dy, g, full_rows, safe, a); break;
      case 3: depthwise_grad_w_rows<T, 3, true>(src, rstep, dy, g, full_rows, safe, a); break;
      default: break;
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < kDwRows; ++r)
      __builtin_memcpy(at + r * kDwCols, &a[r], sizeof a[r]);
  }
}

template <typename T>
void depthwise_backward(const T* dy, const T* x, const T* weight, const Conv2dGeom& g, T* dx,
                        T* dweight) {
  const std::vector<index_t> offs = depthwise_taps(g);
  const index_t m = g.C_out / g.groups, kk = g.kH * g.kW, plane = g.H * g.W, L = g.L();
  const index_t tile = kDwRows * kDwCols;
  const int nt = get_num_threads();
  const bool parallel = g.N * (g.C * plane + g.C_out * L) > kParallelGrain;
  if (dx && depthwise_grad_x_as_forward(g)) {
    std::vector<T> flipped(static_cast<std::size_t>(g.C_out * kk));
    for (index_t co = 0; co < g.C_out; ++co)
      for (index_t t = 0; t < kk; ++t) flipped[co * kk + t] = weight[co * kk + kk - 1 - t];
    depthwise_forward(dy, flipped.data(), static_cast<const T*>(nullptr), transposed_geom(g),
                      dx);
    dx = nullptr;
  }
  if (dx)
    for_each_plane<T>(g, [&](index_t t, T* band) {
      const index_t n = t / g.C, c = t % g.C;
      depthwise_grad_x_plane(dy + (n * g.C_out + c * m) * L, weight + c * m * kk, m, g,
                             offs.data(), band, dx + t * plane);
    });
  if (dweight) {
    // Each thread owns a range of output channels and runs through the images in order
    // (contiguous reads of x and grad_y), each channel's partial sums kept apart.
    RegionScratch rs;
#pragma omp parallel num_threads(nt) if (parallel)
    {
      index_t co0, co1;
      split_range(g.C_out, omp_get_num_threads(), omp_get_thread_num(), co0, co1);
      bool ok = true;
      T* band = plane_band<T>(rs, g, kDwCols, ok);  // margin: depthwise_grad_w_rows
      T* acc = rs.get<T>(0, (co1 - co0) * kk * tile, ok);
      if (ok && co1 > co0) {
        std::fill(acc, acc + (co1 - co0) * kk * tile, T(0));
        for (index_t n = 0; n < g.N; ++n)
          for (index_t co = co0; co < co1; ++co) {
            if (co == co0 || co % m == 0)  // the band of channel co / m
              fill_band(x + (n * g.C + co / m) * plane, g, 0, g.H_out, band);
            depthwise_grad_w_image(band, dy + (n * g.C_out + co) * L, g, offs.data(),
                                   acc + (co - co0) * kk * tile);
          }
        for (index_t co = co0; co < co1; ++co)
          for (index_t t = 0; t < kk; ++t) {
            const T* a = acc + ((co - co0) * kk + t) * tile;
            T sum = T(0);
            for (index_t i = 0; i < tile; ++i) sum += a[i];
            dweight[co * kk + t] = sum;
          }
      }
    }
    rs.check();
  }
}

}  // namespace

index_t conv_output_size(index_t n, index_t k, index_t s, index_t p, index_t d) {
  const index_t span = d * (k - 1) + 1;
  const index_t padded = add_checked(n, 2 * p, "conv: padded size");
  check(padded >= span, "conv: the (dilated) kernel is larger than the padded input");
  return (padded - span) / s + 1;
}

void Conv2dGeom::finalize() {
  check(N >= 0, "conv: batch size must be >= 0");
  check(C >= 1 && H >= 1 && W >= 1, "conv: channels, height and width must be >= 1");
  check(C_out >= 0, "conv: output channels must be >= 0");
  check(kH >= 1 && kW >= 1 && kH < kMaxGeomArg && kW < kMaxGeomArg,
        "conv: kernel_size must be in [1, 2^31)");
  check(sH >= 1 && sW >= 1 && sH < kMaxGeomArg && sW < kMaxGeomArg,
        "conv: stride must be in [1, 2^31)");
  check(pH >= 0 && pW >= 0 && pH < kMaxGeomArg && pW < kMaxGeomArg,
        "conv: padding must be in [0, 2^31)");
  check(dH >= 1 && dW >= 1 && dH < kMaxGeomArg && dW < kMaxGeomArg,
        "conv: dilation must be in [1, 2^31)");
  check(groups >= 1 && C % groups == 0, "conv: groups must divide the input channels");
  check(C_out % groups == 0, "conv: groups must divide the output channels");
  H_out = conv_output_size(H, kH, sH, pH, dH);
  W_out = conv_output_size(W, kW, sW, pW, dW);
  // Every size the kernels compute from here on is one of these or a part of one.
  mul_checked(mul_checked(N, C, "conv: input size"), mul_checked(H, W, "conv: input size"),
              "conv: input size N*C*H*W");
  const index_t l = mul_checked(H_out, W_out, "conv: output positions H_out*W_out");
  const index_t rows = mul_checked(C, mul_checked(kH, kW, "conv: kernel size"),
                                   "conv: column rows C*kH*kW");
  const index_t cols = mul_checked(rows, l, "conv: column matrix of an image");
  if (C_out == 0) mul_checked(N, cols, "conv: column matrix N*C*kH*kW*H_out*W_out");
  mul_checked(N, mul_checked(C_out, l, "conv: output size"), "conv: output size");
  mul_checked(C_out, rows / groups, "conv: weight size");
}

std::size_t conv_workspace_bytes(const Conv2dGeom& g, std::size_t elem_size, int threads) {
  if (g.N == 0) return 0;
  const char* what = "conv: workspace size";
  // the depthwise kernel: a band per thread (grad_y's for grad_x as a forward), and the
  // grad_weight partial sums
  index_t depthwise_band_elems = depthwise_applies(g) ? band_elems(g, g.H_out) + kDwCols : 0;
  if (depthwise_grad_applies(g) && depthwise_grad_x_as_forward(g)) {
    const Conv2dGeom t = transposed_geom(g);
    depthwise_band_elems = std::max(depthwise_band_elems, band_elems(t, t.H_out) + kDwCols);
  }
  if (depthwise_grad_applies(g)) {
    const index_t per_thread = add_checked(
        depthwise_band_elems,
        mul_checked(ceil_div(g.C_out, threads), g.kH * g.kW * kDwRows * kDwCols, what), what);
    return std::size_t(
        mul_checked(mul_checked(per_thread, threads, what), index_t(elem_size), what));
  }
  const index_t per_thread_images = g.N >= threads ? g.N / threads : 0;
  const Plan p = make_plan(g, elem_size, per_thread_images, 1);
  const index_t cols = p.unit_cols(g.W_out);
  const index_t wsize = g.C_out * (g.col_rows() / g.groups);
  // backward: columns, their gradient, the input band and (several images) the staged
  // grad_y per thread, plus a grad_weight partial per thread
  index_t per_thread = mul_checked(mul_checked(g.col_rows(), cols, what), 2, what);
  per_thread = add_checked(per_thread, add_checked(band_elems(g, p.rows_per_block), wsize, what),
                           what);
  if (p.images > 1) per_thread = add_checked(per_thread, g.C_out * cols, what);
  per_thread = std::max(per_thread, depthwise_band_elems);
  const auto packed_forward_elems = [threads](const Conv2dGeom& f) {
    return tap_forward_applies(f)     ? tap_forward_elems(f, threads)
           : panel_forward_applies(f) ? panel_forward_elems(f)
                                      : 0;
  };
  if (elem_size == sizeof(float)) {
    per_thread = std::max(per_thread, packed_forward_elems(g));
    if (transposed_grad_x_applies(g))  // as its forward
      per_thread = std::max(per_thread, packed_forward_elems(transposed_geom(g)));
  }
  index_t shared = 0;
  if (elem_size == sizeof(float) && packed_weight_grad_applies(g)) {
    // the packed grad_w: its packed grad_y block (the caller's) and grad_w^T
    const WeightGradPlan wp(g);
    per_thread = std::max(per_thread, wp.thread_elems(g, threads));
    shared = add_checked(mul_checked(wp.block_images, wp.packed_image, what), wsize, what);
  }
  const index_t total = add_checked(mul_checked(per_thread, threads, what), shared, what);
  return std::size_t(mul_checked(total, index_t(elem_size), what));
}

template <typename T>
void im2col(const T* x, const Conv2dGeom& g, T* cols) {
  const index_t plane = g.H * g.W, rows = g.kH * g.kW * g.L();
  for_each_plane<T>(g, [&](index_t t, T* band) {
    im2col_channel(x + t * plane, g, 0, g.H_out, band, cols + t * rows, g.L());
  });
}

template <typename T>
void col2im(const T* cols, const Conv2dGeom& g, T* x) {
  const index_t plane = g.H * g.W, rows = g.kH * g.kW * g.L();
  for_each_plane<T>(g, [&](index_t t, T* band) {
    std::fill(x + t * plane, x + (t + 1) * plane, T(0));
    col2im_channel(cols + t * rows, g.L(), g, 0, g.H_out, band, x + t * plane);
  });
}

template <typename T>
void conv2d_forward(const T* x, const T* weight, const T* bias, const Conv2dGeom& g, T* y) {
  check(g.C_out >= 1, "conv2d_forward: output channels must be >= 1");
  if (g.N == 0) return;
  if (depthwise_applies(g)) return depthwise_forward(x, weight, bias, g, y);
  if constexpr (std::is_same_v<T, float>)
    if (conv2d_forward_packed(x, weight, bias, g, y)) return;
  const index_t L = g.L(), rows = g.col_rows();
  const index_t Kg = rows / g.groups, Cog = g.C_out / g.groups;
  const int nt = get_num_threads();
  // Whole images per unit when the batch deals out evenly; otherwise row blocks, enough
  // of them (4 per thread) to even out the load.
  const Plan p = g.N % nt == 0 ? make_plan(g, sizeof(T), g.N / nt, 1)
                               : make_plan(g, sizeof(T), 0, ceil_div(4 * nt, g.N));
  const index_t units = p.units(g.N);
  const int team = int(std::min<index_t>(nt, units));
  check_gemm_dims(g, p.unit_cols(g.W_out));
  const UnitBuffers buf(g, p, true, false);
  // float: the units' GEMMs on the packed-weight kernel, where it runs vector code (a
  // table of row offsets, a tail panel and a panel's stage per thread).
  const bool packed = std::is_same_v<T, float> && packed_columns_forward_applies(g);
  std::vector<index_t> row_tables(packed ? std::size_t(team) * std::size_t(Kg) : 0);
  std::vector<float> panel_bufs(packed ? std::size_t(team) * std::size_t(Kg + g.C_out) *
                                             std::size_t(kPackedPanel)
                                       : 0);
  // One image per unit, built columns, a bias, one group: the bias goes into the GEMM as
  // one more depth term, [weight | bias] against the columns and a row of ones, so that y
  // is written once (filling y with the bias for a beta = 1 GEMM cost a pass over it:
  // -10 to -14% time on 64x1x28x28 5x5 -> 32). Not where Kg + 1 would pass the BLAS's
  // 32-bit depth.
  const bool bias_in_gemm = bias && g.groups == 1 && p.images == 1 && !is_pointwise(g) &&
                            Kg < INT_MAX && !packed;
  std::vector<T> weight_bias(bias_in_gemm ? std::size_t(g.C_out * (Kg + 1)) : 0);
  if (bias_in_gemm)
    for (index_t co = 0; co < g.C_out; ++co) {
      std::copy(weight + co * Kg, weight + (co + 1) * Kg, weight_bias.data() + co * (Kg + 1));
      weight_bias.data()[co * (Kg + 1) + Kg] = bias[co];
    }
  RegionScratch rs;
#pragma omp parallel num_threads(team)
  {
    bool ok = true;
    T* scratch = rs.get<T>(0, buf.cols, ok);
    T* stage = rs.get<T>(2, buf.stage, ok);
    T* band = rs.get<T>(3, buf.band, ok);
    const std::size_t me = std::size_t(omp_get_thread_num());
#pragma omp for schedule(static)
    for (index_t u = 0; u < units; ++u) {
      if (!ok) continue;
      const index_t n0 = (u / p.blocks) * p.images, b = u % p.blocks;
      const index_t nimg = std::min(p.images, g.N - n0);
      const index_t oh0 = p.row_begin(b), oh1 = p.row_end(b, g.H_out);
      const index_t Lb = (oh1 - oh0) * g.W_out;
      index_t ld;
      const T* cols = unit_columns(x, g, n0, nimg, oh0, oh1, band, scratch, ld);
      const index_t N_gemm = nimg * Lb;
      if constexpr (std::is_same_v<T, float>) {
        if (packed) {
          float* bufs = panel_bufs.data() + me * std::size_t(Kg + g.C_out) * kPackedPanel;
          forward_unit_packed(g, cols, ld, nimg, Lb, weight, bias,
                              y + n0 * g.C_out * L + oh0 * g.W_out,
                              row_tables.data() + me * std::size_t(Kg), bufs,
                              bufs + Kg * kPackedPanel);
          continue;
        }
      }
      if (bias_in_gemm) {
        T* ones = scratch + Kg * ld;  // cols == scratch, ld == Lb
        std::fill(ones, ones + Lb, T(1));
        gemm<T>(false, false, g.C_out, Lb, Kg + 1, T(1), weight_bias.data(), Kg + 1, cols, ld,
                T(0), y + n0 * g.C_out * L + oh0 * g.W_out, L);
      } else if (nimg == 1) {
        // Straight into y; the bias is the GEMM's initial C (beta = 1).
        T* yb = y + n0 * g.C_out * L + oh0 * g.W_out;
        if (bias)
          for (index_t co = 0; co < g.C_out; ++co) std::fill(yb + co * L, yb + co * L + Lb, bias[co]);
        for (index_t gi = 0; gi < g.groups; ++gi)
          gemm<T>(false, false, Cog, Lb, Kg, T(1), weight + gi * Cog * Kg, Kg, cols + gi * Kg * ld,
                  ld, bias ? T(1) : T(0), yb + gi * Cog * L, L);
      } else {
        // Several images make one wide GEMM into a cached stage, then go to y with the bias.
        for (index_t gi = 0; gi < g.groups; ++gi)
          gemm<T>(false, false, Cog, N_gemm, Kg, T(1), weight + gi * Cog * Kg, Kg,
                  cols + gi * Kg * ld, ld, T(0), stage + gi * Cog * N_gemm, N_gemm);
        for (index_t j = 0; j < nimg; ++j)
          for (index_t co = 0; co < g.C_out; ++co) {
            const T* src = stage + co * N_gemm + j * L;
            T* dst = y + ((n0 + j) * g.C_out + co) * L;
            const T bv = bias ? bias[co] : T(0);
            for (index_t l = 0; l < L; ++l) dst[l] = src[l] + bv;
          }
      }
    }
  }
  rs.check();
}

template <typename T>
void conv2d_backward(const T* dy, const T* x, const T* weight, const Conv2dGeom& g, T* dx,
                     T* dweight, T* dbias) {
  check(g.C_out >= 1, "conv2d_backward: output channels must be >= 1");
  const index_t L = g.L(), rows = g.col_rows(), plane = g.C * g.H * g.W;
  const index_t Kg = rows / g.groups, Cog = g.C_out / g.groups, wsize = g.C_out * Kg;
  const int nt = get_num_threads();

  if (dbias) {
    RegionScratch rs;
#pragma omp parallel num_threads(nt) if (g.N * g.C_out * L > kParallelGrain)
    {
      index_t co0, co1;
      split_range(g.C_out, omp_get_num_threads(), omp_get_thread_num(), co0, co1);
      bool ok = true;
      double* acc = rs.get<double>(0, (co1 - co0) * kSumLanes, ok);
      if (acc) channel_sums(dy, g.N, g.C_out, L, co0, co1, acc, dbias);
    }
    rs.check();
  }
  if (depthwise_grad_applies(g)) return depthwise_backward(dy, x, weight, g, dx, dweight);
  if constexpr (std::is_same_v<T, float>) {
    if (dweight && packed_weight_grad_applies(g)) {  // writes every element
      if (tap_weight_grad_applies(g))
        conv2d_backward_weight_taps(x, dy, g, dweight);
      else
        conv2d_backward_weight_packed(x, dy, g, dweight);
      dweight = nullptr;  // done; the rest computes grad_x only
    }
    if (dx && transposed_grad_x_applies(g)) {  // writes every element
      const Conv2dGeom gt = transposed_geom(g);
      // weight_t[c][o][kh][kw] = weight[o][c][kH-1-kh][kW-1-kw] within each group
      const index_t Cg = g.C / g.groups, kk = g.kH * g.kW;
      std::vector<float> weight_t(static_cast<std::size_t>(wsize));
      for (index_t gi = 0; gi < g.groups; ++gi)
        for (index_t o = 0; o < Cog; ++o)
          for (index_t c = 0; c < Cg; ++c) {
            const float* src = weight + ((gi * Cog + o) * Cg + c) * kk;
            float* dst = weight_t.data() + ((gi * Cg + c) * Cog + o) * kk;
            for (index_t t = 0; t < kk; ++t) dst[t] = src[kk - 1 - t];
          }
      conv2d_forward_packed(dy, weight_t.data(), nullptr, gt, dx);
      dx = nullptr;  // done
    }
  }
  if (dweight) std::fill(dweight, dweight + wsize, T(0));
  if ((!dx && !dweight) || g.N == 0) return;

  const bool pointwise = is_pointwise(g);

  // Images [0, n_split) are dealt out whole, each thread summing its own grad_weight
  // partial; the rest (fewer than nt) are shared by all threads one at a time.
  const index_t n_split = g.N >= nt ? g.N - g.N % nt : 0;

  if (n_split > 0) {
    const Plan p = make_plan(g, sizeof(T), n_split / nt, 1);
    check_gemm_dims(g, p.unit_cols(g.W_out));
    const UnitBuffers buf(g, p, dweight != nullptr, dx != nullptr);
    const index_t n_partials =
        dweight && nt > 1 ? mul_checked(nt - 1, wsize, "conv: grad_weight partials") : 0;
    std::vector<T> partials(std::size_t(n_partials), T(0));
    RegionScratch rs;
#pragma omp parallel num_threads(nt)
    {
      const int tid = omp_get_thread_num();
      bool ok = true;
      T* cols_buf = rs.get<T>(0, buf.cols, ok);
      T* dcols_buf = rs.get<T>(1, buf.dcols, ok);
      T* dy_stage = rs.get<T>(2, buf.stage, ok);
      T* band = rs.get<T>(3, buf.band, ok);
      T* dw_mine = dweight ? (tid == 0 ? dweight : partials.data() + (tid - 1) * wsize) : nullptr;
      // A group of images belongs to one thread for all its row blocks: grad_x is
      // cleared at the first block and accumulated by the later ones.
#pragma omp for schedule(static)
      for (index_t grp = 0; grp < n_split / p.images; ++grp) {
      for (index_t b = 0; b < p.blocks && ok; ++b) {
        const index_t n0 = grp * p.images;
        const index_t nimg = p.images;  // n_split is a multiple of p.images
        const index_t oh0 = p.row_begin(b), oh1 = p.row_end(b, g.H_out);
        const index_t Lb = (oh1 - oh0) * g.W_out, N_gemm = nimg * Lb;
        // grad_y of the unit as (C_out, N_gemm) with row stride ld_dy.
        const T* dyc = dy + n0 * g.C_out * L + oh0 * g.W_out;
        index_t ld_dy = L;
        if (nimg > 1) {
          for (index_t co = 0; co < g.C_out; ++co)
            for (index_t j = 0; j < nimg; ++j)
              std::memcpy(dy_stage + co * N_gemm + j * L, dy + ((n0 + j) * g.C_out + co) * L,
                          sizeof(T) * L);
          dyc = dy_stage;
          ld_dy = N_gemm;
        }
        if (dw_mine) {
          index_t ld;
          const T* cols = unit_columns(x, g, n0, nimg, oh0, oh1, band, cols_buf, ld);
          for (index_t gi = 0; gi < g.groups; ++gi)
            gemm<T>(false, true, Cog, Kg, N_gemm, T(1), dyc + gi * Cog * ld_dy, ld_dy,
                    cols + gi * Kg * ld, ld, T(1), dw_mine + gi * Cog * Kg, Kg);
        }
        if (dx) {
          T* dximg = dx + n0 * plane;
          if (pointwise && nimg == 1) {
            // The column gradient is grad_x itself.
            for (index_t gi = 0; gi < g.groups; ++gi)
              gemm<T>(true, false, Kg, Lb, Cog, T(1), weight + gi * Cog * Kg, Kg,
                      dyc + gi * Cog * ld_dy, ld_dy, T(0), dximg + gi * Kg * L + oh0 * g.W_out, L);
            continue;
          }
          for (index_t gi = 0; gi < g.groups; ++gi)
            gemm<T>(true, false, Kg, N_gemm, Cog, T(1), weight + gi * Cog * Kg, Kg,
                    dyc + gi * Cog * ld_dy, ld_dy, T(0), dcols_buf + gi * Kg * N_gemm, N_gemm);
          if (b == 0) std::fill(dximg, dximg + nimg * plane, T(0));
          for (index_t j = 0; j < nimg; ++j)
            col2im_channels(dcols_buf + j * Lb, N_gemm, g, 0, g.C, oh0, oh1, band,
                            dximg + j * plane);
        }
      }
      }
    }
    rs.check();
    // Fixed-order sum of the partials.
    for (int t = 1; t < nt && dweight; ++t) {
      const T* part = partials.data() + (t - 1) * wsize;
      for (index_t i = 0; i < wsize; ++i) dweight[i] += part[i];
    }
  }

  // Remaining images: all threads on one image at a time. grad_weight rows and the
  // columns of the block's column gradient are split among threads; col2im by channel.
  if (n_split < g.N) {
    const Plan p = make_plan(g, sizeof(T), 0, 1);
    check_gemm_dims(g, p.unit_cols(g.W_out));
    // The block's columns and their gradient are shared by the team: the calling
    // thread's; each member builds or sums its channels through its own band.
    const index_t block_elems = mul_checked(rows, p.unit_cols(g.W_out), "conv: block");
    const std::size_t shared_elems = std::size_t(block_elems);
    T* cols_shared = dweight && !pointwise ? thread_scratch_as<T>(0, shared_elems) : nullptr;
    T* dcols_shared = dx && !pointwise ? thread_scratch_as<T>(1, shared_elems) : nullptr;
    const index_t band_n = pointwise ? 0 : band_elems(g, p.rows_per_block);
    for (index_t n = n_split; n < g.N; ++n) {
      const T* ximg = x + n * plane;
      T* dximg = dx ? dx + n * plane : nullptr;
      if (dximg && !pointwise) std::fill(dximg, dximg + plane, T(0));
      for (index_t b = 0; b < p.blocks; ++b) {
        const index_t oh0 = p.row_begin(b), oh1 = p.row_end(b, g.H_out), Lb = (oh1 - oh0) * g.W_out;
        const T* dyb = dy + n * g.C_out * L + oh0 * g.W_out;
        const index_t cols_ld = pointwise ? L : Lb;
        const T* cols = pointwise ? ximg + oh0 * g.W_out : cols_shared;
        RegionScratch rs;
#pragma omp parallel num_threads(nt)
        {
          const int tid = omp_get_thread_num(), team = omp_get_num_threads();
          bool ok = true;  // else this member skips its share, never a construct
          T* band = rs.get<T>(3, band_n, ok);
          if (dweight) {
            if (!pointwise) {
#pragma omp for schedule(static)
              for (index_t c = 0; c < g.C; ++c)
                if (ok)
                  im2col_channel(ximg + c * g.H * g.W, g, oh0, oh1, band,
                                 cols_shared + c * g.kH * g.kW * Lb, Lb);
            }
            index_t co0, co1;
            split_range(g.C_out, team, tid, co0, co1);
            for (index_t gi = 0; gi < g.groups; ++gi) {
              const index_t a = std::max(co0, gi * Cog), e = std::min(co1, (gi + 1) * Cog);
              if (a >= e) continue;
              gemm<T>(false, true, e - a, Kg, Lb, T(1), dyb + a * L, L, cols + gi * Kg * cols_ld,
                      cols_ld, T(1), dweight + a * Kg, Kg);
            }
          }
          if (dximg) {
            T* dcols = pointwise ? dximg + oh0 * g.W_out : dcols_shared;
            index_t l0, l1;
            split_range(Lb, team, tid, l0, l1);
            if (l1 > l0)
              for (index_t gi = 0; gi < g.groups; ++gi)
                gemm<T>(true, false, Kg, l1 - l0, Cog, T(1), weight + gi * Cog * Kg, Kg,
                        dyb + gi * Cog * L + l0, L, T(0), dcols + gi * Kg * cols_ld + l0, cols_ld);
            if (!pointwise) {
#pragma omp barrier
#pragma omp for schedule(static)
              for (index_t c = 0; c < g.C; ++c)
                if (ok) col2im_channels(dcols, Lb, g, c, c + 1, oh0, oh1, band, dximg);
            }
          }
        }
        rs.check();
      }
    }
  }
}

#define ADLK_INSTANTIATE_CONV(T)        \
  ADLK_INSTANTIATE(im2col, T)           \
  ADLK_INSTANTIATE(col2im, T)           \
  ADLK_INSTANTIATE(conv2d_forward, T)   \
  ADLK_INSTANTIATE(conv2d_backward, T)
ADLK_INSTANTIATE_CONV(float)
ADLK_INSTANTIATE_CONV(double)
#undef ADLK_INSTANTIATE_CONV

}  // namespace adlk
