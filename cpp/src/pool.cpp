// Pooling kernels (see adlk/pool.h for semantics and determinism).
//
// Every kernel works row by row on output rows and vectorizes across output columns:
// for each in-range kernel cell (kh, kw) one loop runs over the output columns whose
// window holds that cell, updating the whole output row (running max and argmax, or
// running sum). Cells are visited in scan order, so the result equals the per-window
// definition. Column strides 1 and 2 (2x2/s2 and 3x3/s2 pooling among them) get
// constant-stride copies of the loops; each plane function is compiled for baseline
// x86-64 and for AVX2 (x86-64-v3), picked once at load time.
#include "adlk/pool.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "adlk/parallel.h"
#include "adlk/tuning.h"
#include "adlk/scratch.h"
#include "window.h"

namespace adlk {

index_t pooled_output_size(index_t in, index_t k, index_t s, index_t p, index_t d, bool ceil_mode) {
  // The span may be negative (a ceil_mode window hanging over the edge): floor division.
  const index_t padded = add_checked(in, 2 * p + (ceil_mode ? s - 1 : 0), "pool: padded size");
  const index_t num = padded - d * (k - 1) - 1;
  index_t out = (num >= 0 ? num / s : -ceil_div(-num, s)) + 1;
  // A last window that would start inside the right/bottom padding is dropped.
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

namespace {

constexpr index_t kParallelGrain = kWindowParallelGrain;  // adlk/tuning.h

// Column geometry shared by every row of every plane, computed once per call (it costs
// divisions, which per row would dominate small planes): the kernel columns kw that some
// window reads inside the input, ascending, each as its cell offset kw*dW - pW and the
// output columns [lo, hi) whose cell is in range; for each output column the first
// in-range input column of its window (-1: none); and the output columns [a, b) whose
// windows lie entirely inside the input's width. Listing only the kernel columns in use
// keeps the cost of a row proportional to the cells it reads, however wide the kernel
// (with padding up to half of it, most of a huge kernel lies outside a small input).
struct ColTaps {
  std::vector<index_t> off, lo, hi;
  std::vector<std::int64_t> first;
  index_t a = 0, b = 0;
  explicit ColTaps(const Pool2dGeom& g) : first(g.W_out) {
    // Output column ow reads kernel columns [k0, k1); both ends only grow as ow falls, so
    // walking ow downwards lists their union in ascending order, each column once.
    index_t listed = 0;  // kernel columns below this are listed (or unused)
    for (index_t ow = g.W_out - 1; ow >= 0; --ow) {
      const index_t wstart = ow * g.sW - g.pW;
      index_t k0, k1;
      taps_in_range(wstart, g.kW, g.dW, g.W, k0, k1);
      first[ow] = k0 < k1 ? wstart + k0 * g.dW : -1;
      for (index_t kw = std::max(k0, listed); kw < k1; ++kw) {
        off.push_back(kw * g.dW - g.pW);
        index_t l, h;
        outputs_in_range(off.back(), g.sW, g.W, g.W_out, l, h);
        lo.push_back(l);
        hi.push_back(h);
      }
      listed = std::max(listed, k1);
    }
    const index_t span = g.dW * (g.kW - 1) + 1;
    a = std::min(g.W_out, ceil_div(g.pW, g.sW));
    b = g.W >= span ? std::max(a, std::min(g.W_out, (g.W - span + g.pW) / g.sW + 1)) : a;
  }
  index_t taps() const { return index_t(off.size()); }
};

// One tap (cell ih, kw) of a max-pooling row: for output columns [lo, hi), compare
// x[ow*s + off] with the running max. SW is the column stride when it is a constant.
template <typename T, int SW>
inline __attribute__((always_inline)) void max_tap(const T* __restrict xr, index_t row_base,
                                                   index_t off, index_t s_rt, index_t lo,
                                                   index_t hi, T* __restrict ym,
                                                   std::int64_t* __restrict im) {
  const index_t s = SW ? SW : s_rt;
  for (index_t ow = lo; ow < hi; ++ow) {
    const index_t iw = ow * s + off;
    const T v = xr[iw];
    const bool take = (v > ym[ow]) || (v != v);  // NaN wins, as PyTorch
    ym[ow] = take ? v : ym[ow];
    im[ow] = take ? row_base + iw : im[ow];
  }
}

// Output columns [c0, c1) of output row oh, tap by tap (any geometry).
template <typename T, int SW>
inline __attribute__((always_inline)) void maxpool_row_generic(
    const T* __restrict x, const Pool2dGeom& g, const ColTaps& ct, index_t oh, index_t c0,
    index_t c1, T* __restrict ym, std::int64_t* __restrict im) {
  if (c0 >= c1) return;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const index_t hstart = oh * g.sH - g.pH;
  index_t kh_lo, kh_hi;
  taps_in_range(hstart, g.kH, g.dH, g.H, kh_lo, kh_hi);
  // Start at -inf on the first in-range cell of each window (-1: none in range).
  const index_t ih0 = hstart + kh_lo * g.dH;
  for (index_t ow = c0; ow < c1; ++ow) {
    ym[ow] = neg_inf;
    im[ow] = (kh_lo < kh_hi && ct.first[ow] >= 0) ? ih0 * g.W + ct.first[ow] : -1;
  }
  for (index_t kh = kh_lo; kh < kh_hi; ++kh) {
    const index_t ih = hstart + kh * g.dH;
    for (index_t j = 0; j < ct.taps(); ++j)
      max_tap<T, SW>(x + ih * g.W, ih * g.W, ct.off[j], g.sW, std::max(ct.lo[j], c0),
                     std::min(ct.hi[j], c1), ym, im);
  }
}

// One output (oh, ow) scanned cell by cell: for the few border windows of a row whose
// other windows take the fast path (a tap loop over one column costs more in setup).
template <typename T>
inline void maxpool_window(const T* __restrict x, const Pool2dGeom& g, index_t oh, index_t ow,
                           T* __restrict ym, std::int64_t* __restrict im) {
  const index_t hstart = oh * g.sH - g.pH, wstart = ow * g.sW - g.pW;
  index_t kh_lo, kh_hi, kw_lo, kw_hi;
  taps_in_range(hstart, g.kH, g.dH, g.H, kh_lo, kh_hi);
  taps_in_range(wstart, g.kW, g.dW, g.W, kw_lo, kw_hi);
  T m = -std::numeric_limits<T>::infinity();
  std::int64_t best = (kh_lo < kh_hi && kw_lo < kw_hi)
                          ? (hstart + kh_lo * g.dH) * g.W + wstart + kw_lo * g.dW
                          : -1;
  for (index_t kh = kh_lo; kh < kh_hi; ++kh)
    for (index_t kw = kw_lo; kw < kw_hi; ++kw) {
      const index_t pos = (hstart + kh * g.dH) * g.W + wstart + kw * g.dW;
      const T v = x[pos];
      if (v > m || v != v) m = v, best = pos;
    }
  ym[ow] = m;
  im[ow] = best;
}

// Windows of KH x KW cells, column stride S, no dilation, entirely inside the input:
// the whole window is reduced in registers, vectorized across output columns. The
// winner is tracked as a 32-bit offset inside its window (the caller ensures KH*W fits)
// and widened to the 64-bit plane index once per output, so every lane operation but
// the last is 32 bits wide.
template <typename T, int KH, int KW, int S>
inline __attribute__((always_inline)) void maxpool_row_interior(
    const T* __restrict x, index_t W, index_t hstart, index_t pW, index_t c0, index_t c1,
    T* __restrict ym, std::int64_t* __restrict im) {
  const std::int32_t w32 = std::int32_t(W);
  const T* __restrict x0 = x + hstart * W - pW;
  const std::int64_t base = hstart * W - pW;
  for (index_t ow = c0; ow < c1; ++ow) {
    const T* __restrict win = x0 + ow * S;
    T m = win[0];
    std::int32_t best = 0;
    for (int kh = 0; kh < KH; ++kh)
      for (int kw = 0; kw < KW; ++kw) {
        if (kh == 0 && kw == 0) continue;
        const std::int32_t off = kh * w32 + kw;
        const T v = win[off];
        const bool take = (v > m) || (v != v);
        m = take ? v : m;
        best = take ? off : best;
      }
    ym[ow] = m;
    im[ow] = base + ow * S + best;
  }
}

// float32, column stride 2: eight outputs at a time in explicit 8-lane vectors. The
// cells x[2*ow + kw] of eight consecutive windows are the even lanes of the 15 floats
// from 2*ow0 + kw: two loads (at +0 and +7, so nothing past the last cell is read) and
// one shuffle. A last partial group is redone overlapping the previous one (outputs are
// pure functions of x), so short rows need no scalar tail. Same scan order, NaN and tie
// rules as maxpool_window_fixed's scalar form in maxpool_row_interior.
#ifdef ADLK_VECTOR_EXT
// The 8-lane helpers are always inlined, so the ABI note about passing 32-byte vectors
// in the baseline (non-AVX) clone does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8f __attribute__((vector_size(32)));
typedef std::int32_t v8i __attribute__((vector_size(32)));

inline __attribute__((always_inline)) v8f even_lanes(const float* __restrict p) {
  v8f lo, hi;
  std::memcpy(&lo, p, sizeof lo);
  std::memcpy(&hi, p + 7, sizeof hi);
  return __builtin_shuffle(lo, hi, v8i{0, 2, 4, 6, 9, 11, 13, 15});
}

template <int KH, int KW>
inline __attribute__((always_inline)) void maxpool_group_s2_f32(
    const float* __restrict x0, std::int32_t w32, index_t ow0, std::int64_t base,
    float* __restrict ym, std::int64_t* __restrict im) {
  const float* __restrict p = x0 + 2 * ow0;
  v8f m = even_lanes(p);
  v8i best = v8i{} ;
  for (int kh = 0; kh < KH; ++kh)
    for (int kw = 0; kw < KW; ++kw) {
      if (kh == 0 && kw == 0) continue;
      const std::int32_t off = kh * w32 + kw;
      const v8f v = even_lanes(p + off);
      const v8i take = (v > m) | (v != v);
      m = take ? v : m;
      best = take ? v8i{} + off : best;
    }
  std::memcpy(ym + ow0, &m, sizeof m);
  for (int j = 0; j < 8; ++j) im[ow0 + j] = base + 2 * (ow0 + j) + best[j];
}

template <int KH, int KW>
inline __attribute__((always_inline)) bool maxpool_row_s2_f32(
    const float* __restrict x, index_t W, index_t hstart, index_t pW, index_t c0, index_t c1,
    float* __restrict ym, std::int64_t* __restrict im) {
  if (c1 - c0 < 8 || KH * W >= (index_t(1) << 31)) return false;
  const float* __restrict x0 = x + hstart * W - pW;
  const std::int64_t base = hstart * W - pW;
  const std::int32_t w32 = std::int32_t(W);
  for (index_t ow0 = c0;; ow0 += 8) {
    if (ow0 + 8 > c1) ow0 = c1 - 8;
    maxpool_group_s2_f32<KH, KW>(x0, w32, ow0, base, ym, im);
    if (ow0 + 8 >= c1) break;
  }
  return true;
}

#endif  // ADLK_VECTOR_EXT

template <typename T, int KH, int KW, int S>
inline __attribute__((always_inline)) bool maxpool_row_vector(const T*, index_t, index_t, index_t,
                                                              index_t, index_t, T*,
                                                              std::int64_t*) {
  return false;
}
#ifdef ADLK_VECTOR_EXT
template <>
inline __attribute__((always_inline)) bool maxpool_row_vector<float, 2, 2, 2>(
    const float* x, index_t W, index_t hstart, index_t pW, index_t c0, index_t c1, float* ym,
    std::int64_t* im) {
  return maxpool_row_s2_f32<2, 2>(x, W, hstart, pW, c0, c1, ym, im);
}
template <>
inline __attribute__((always_inline)) bool maxpool_row_vector<float, 3, 3, 2>(
    const float* x, index_t W, index_t hstart, index_t pW, index_t c0, index_t c1, float* ym,
    std::int64_t* im) {
  return maxpool_row_s2_f32<3, 3>(x, W, hstart, pW, c0, c1, ym, im);
}
#endif  // ADLK_VECTOR_EXT

// KH = 0: no fixed-size fast path for this kernel.
template <typename T, int SW, int KH, int KW>
ADLK_MULTIVERSION
void maxpool_plane(const T* x, const Pool2dGeom& g, const ColTaps& ct, T* y,
                   std::int64_t* ind) {
  const index_t a = ct.a, b = ct.b;
  for (index_t oh = 0; oh < g.H_out; ++oh) {
    T* ym = y + oh * g.W_out;
    std::int64_t* im = ind + oh * g.W_out;
    const index_t hstart = oh * g.sH - g.pH;
    if (KH > 0 && hstart >= 0 && hstart + KH <= g.H && KH * g.W < (index_t(1) << 31)) {
      // The first cell of an interior window is in range, so starting from it equals
      // starting from -inf on it.
      for (index_t ow = 0; ow < a; ++ow) maxpool_window(x, g, oh, ow, ym, im);
      constexpr int kh_ = KH > 0 ? KH : 1, kw_ = KW > 0 ? KW : 1, s_ = SW > 0 ? SW : 1;
      if (!maxpool_row_vector<T, kh_, kw_, s_>(x, g.W, hstart, g.pW, a, b, ym, im))
        maxpool_row_interior<T, kh_, kw_, s_>(x, g.W, hstart, g.pW, a, b, ym, im);
      for (index_t ow = b; ow < g.W_out; ++ow) maxpool_window(x, g, oh, ow, ym, im);
    } else {
      maxpool_row_generic<T, SW>(x, g, ct, oh, 0, g.W_out, ym, im);
    }
  }
}

template <typename T, int SW>
inline __attribute__((always_inline)) void sum_tap(const T* __restrict xr, index_t off, index_t s_rt,
                                                   index_t lo, index_t hi, T* __restrict acc) {
  const index_t s = SW ? SW : s_rt;
  for (index_t ow = lo; ow < hi; ++ow) acc[ow] += xr[ow * s + off];
}

template <typename T, int SW>
inline __attribute__((always_inline)) void scatter_tap(const T* __restrict g_row, index_t off, index_t s_rt,
                                                       index_t lo, index_t hi, T* __restrict dxr) {
  const index_t s = SW ? SW : s_rt;
  for (index_t ow = lo; ow < hi; ++ow) dxr[ow * s + off] += g_row[ow];
}

// PyTorch's divisor of window (oh, ow).
inline index_t avg_divisor(const Pool2dGeom& g, index_t oh, index_t ow, bool count_include_pad) {
  index_t hstart = oh * g.sH - g.pH, wstart = ow * g.sW - g.pW;
  index_t hend = std::min(hstart + g.kH, g.H + g.pH), wend = std::min(wstart + g.kW, g.W + g.pW);
  const index_t pool_size = (hend - hstart) * (wend - wstart);
  if (count_include_pad) return pool_size;
  hstart = std::max<index_t>(hstart, 0), wstart = std::max<index_t>(wstart, 0);
  hend = std::min(hend, g.H), wend = std::min(wend, g.W);
  return (hend - hstart) * (wend - wstart);
}

// Output columns [c0, c1) of output row oh, tap by tap (any geometry).
template <typename T, int SW>
inline __attribute__((always_inline)) void avgpool_row_generic(
    const T* __restrict x, const Pool2dGeom& g, const ColTaps& ct, bool count_include_pad,
    index_t oh, index_t c0, index_t c1, T* __restrict yr) {
  if (c0 >= c1) return;
  const index_t hstart = oh * g.sH - g.pH;
  index_t kh_lo, kh_hi;
  taps_in_range(hstart, g.kH, 1, g.H, kh_lo, kh_hi);
  std::fill(yr + c0, yr + c1, T(0));
  for (index_t kh = kh_lo; kh < kh_hi; ++kh) {
    const T* xr = x + (hstart + kh) * g.W;
    for (index_t j = 0; j < ct.taps(); ++j)
      sum_tap<T, SW>(xr, ct.off[j], g.sW, std::max(ct.lo[j], c0), std::min(ct.hi[j], c1), yr);
  }
  for (index_t ow = c0; ow < c1; ++ow) {
    const index_t div = avg_divisor(g, oh, ow, count_include_pad);
    yr[ow] = div > 0 ? yr[ow] / T(div) : T(0);
  }
}

// Windows of KH x KW cells, column stride S, entirely inside the input: summed in
// registers in the same (kh, kw) order as the generic path, divided by KH*KW.
template <typename T, int KH, int KW, int S>
inline __attribute__((always_inline)) void avgpool_row_interior(
    const T* __restrict x, index_t W, index_t hstart, index_t pW, index_t c0, index_t c1,
    T* __restrict yr) {
  for (index_t ow = c0; ow < c1; ++ow) {
    const T* w0 = x + hstart * W + ow * S - pW;
    T sum = T(0);
    for (int kh = 0; kh < KH; ++kh)
      for (int kw = 0; kw < KW; ++kw) sum += w0[kh * W + kw];
    yr[ow] = sum / T(KH * KW);
  }
}

template <typename T, int SW, int KH, int KW>
ADLK_MULTIVERSION
void avgpool_plane(const T* x, const Pool2dGeom& g, const ColTaps& ct, bool count_include_pad,
                   T* y) {
  const index_t a = ct.a, b = ct.b;
  for (index_t oh = 0; oh < g.H_out; ++oh) {
    T* yr = y + oh * g.W_out;
    const index_t hstart = oh * g.sH - g.pH;
    if (KH > 0 && hstart >= 0 && hstart + KH <= g.H) {
      avgpool_row_generic<T, SW>(x, g, ct, count_include_pad, oh, 0, a, yr);
      avgpool_row_interior<T, (KH > 0 ? KH : 1), (KW > 0 ? KW : 1), (SW > 0 ? SW : 1)>(
          x, g.W, hstart, g.pW, a, b, yr);
      avgpool_row_generic<T, SW>(x, g, ct, count_include_pad, oh, b, g.W_out, yr);
    } else {
      avgpool_row_generic<T, SW>(x, g, ct, count_include_pad, oh, 0, g.W_out, yr);
    }
  }
}

template <typename T, int SW>
ADLK_MULTIVERSION
void avgpool_backward_plane(const T* dy, const Pool2dGeom& g, const ColTaps& ct,
                            bool count_include_pad, T* dx, T* g_row) {
  std::fill(dx, dx + g.H * g.W, T(0));
  for (index_t oh = 0; oh < g.H_out; ++oh) {
    const index_t hstart = oh * g.sH - g.pH;
    index_t kh_lo, kh_hi;
    taps_in_range(hstart, g.kH, 1, g.H, kh_lo, kh_hi);
    for (index_t ow = 0; ow < g.W_out; ++ow) {
      const index_t div = avg_divisor(g, oh, ow, count_include_pad);
      g_row[ow] = div > 0 ? dy[oh * g.W_out + ow] / T(div) : T(0);
    }
    for (index_t kh = kh_lo; kh < kh_hi; ++kh) {
      T* dxr = dx + (hstart + kh) * g.W;
      for (index_t j = 0; j < ct.taps(); ++j)
        scatter_tap<T, SW>(g_row, ct.off[j], g.sW, ct.lo[j], ct.hi[j], dxr);
    }
  }
}

// Threads for `planes` planes of `work` each: one below the grain, where a parallel region
// costs more than it saves.
int plane_team(index_t planes, index_t work) {
  return mul_saturated(planes, work) > kParallelGrain
             ? int(std::min<index_t>(get_num_threads(), planes))
             : 1;
}

// Cells a pooling plane reads at most: in-range cells per window times windows.
index_t pool_work(const Pool2dGeom& g) {
  return mul_saturated(std::min(g.kH, g.H) * std::min(g.kW, g.W), g.H_out * g.W_out);
}

// Runs fn(plane) for every (n, c) plane, each plane on one thread.
template <typename Fn>
void for_each_plane(index_t planes, index_t work_per_plane, Fn fn) {
#pragma omp parallel for schedule(static) num_threads(plane_team(planes, work_per_plane))
  for (index_t p = 0; p < planes; ++p) fn(p);
}

// One plane of an index scatter: dst = 0, then, in order, dst[ind[i]] += src[i] (maxpool
// backward) or dst[ind[i]] = src[i] (unpooling; the last write to a position wins); -1
// entries are skipped. Each index is read once and checked where it is used, so that an
// index changed by another thread during the call (the GIL is released) can never cause
// a write out of bounds. An index outside [-1, dst_size) stops the plane: returns its
// position, with the value read in `bad_value`; -1 when all were good.
template <typename T, bool Accumulate>
ADLK_MULTIVERSION
index_t scatter_plane(const T* __restrict src, const std::int64_t* __restrict ind, index_t count,
                      index_t dst_size, T* __restrict dst, std::int64_t& bad_value) {
  // One unsigned compare covers both ends: -1 maps to 0, anything below it to 2^64 - k
  // (unsigned arithmetic: INT64_MAX + 1 must wrap, not overflow).
  const std::uint64_t limit = std::uint64_t(dst_size);
  // Zeroed with vector stores, not memset: glibc's memset takes `rep stosb` from 2 KiB on,
  // slower on a 28x28 plane (3 KiB): -4% time on 64x32x28x28 2x2 and 3x3 s2 p1. (The empty
  // asm keeps GCC from turning the loop back into a memset call.)
  index_t z = 0;
  for (; z + 8 <= dst_size; z += 8) {
#pragma omp simd
    for (int l = 0; l < 8; ++l) dst[z + l] = T(0);
    asm("" ::: "memory");
  }
  for (; z < dst_size; ++z) dst[z] = T(0);
  const auto put = [&](index_t i, std::int64_t j) {
    if (Accumulate)
      dst[j] += src[i];
    else
      dst[j] = src[i];
  };
  // Indices kBatch at a time: all inside the plane (the usual case) -> their writes in
  // order without further tests; else one by one. One branch per batch instead of two
  // per index: -24% time on 28x28 planes.
  constexpr int kBatch = 4;
  index_t i = 0;
  for (; i + kBatch <= count; i += kBatch) {
    std::int64_t j[kBatch];
    bool inside = true;
    for (int k = 0; k < kBatch; ++k) {
      j[k] = ind[i + k];
      // Makes j opaque to the compiler: the value checked is the value used (ind is not
      // read again for the write).
      asm("" : "+r"(j[k]));
      inside &= std::uint64_t(j[k]) < limit;
    }
    if (__builtin_expect(inside, 1)) {
      for (int k = 0; k < kBatch; ++k) put(i + k, j[k]);
      continue;
    }
    for (int k = 0; k < kBatch; ++k) {
      if ((std::uint64_t(j[k]) + 1) > limit) {
        bad_value = j[k];
        return i + k;
      }
      if (j[k] >= 0) put(i + k, j[k]);
    }
  }
  for (; i < count; ++i) {
    std::int64_t j = ind[i];
    asm("" : "+r"(j));
    if ((std::uint64_t(j) + 1) > limit) {
      bad_value = j;
      return i;
    }
    if (j >= 0) put(i, j);
  }
  return -1;
}

// Runs scatter_plane over all planes; returns the lowest bad position overall (its value
// in *bad_value when given), or -1.
template <typename T, bool Accumulate>
index_t scatter_planes(const T* src, const std::int64_t* indices, const IndexScatterGeom& g,
                       T* dst, std::int64_t* bad_value) {
  check(g.planes >= 0 && g.count >= 0 && g.dst_size >= 0, "pool: negative sizes");
  mul_checked(g.planes, g.count, "pool: index count");
  mul_checked(g.planes, g.dst_size, "pool: output size");
  index_t first_bad = -1;
  std::int64_t first_value = 0;
#pragma omp parallel for schedule(static) num_threads(plane_team(g.planes, g.count + g.dst_size))
  for (index_t p = 0; p < g.planes; ++p) {
    std::int64_t value = 0;
    const index_t bad = scatter_plane<T, Accumulate>(src + p * g.count, indices + p * g.count,
                                                     g.count, g.dst_size, dst + p * g.dst_size,
                                                     value);
    if (bad >= 0) {
#pragma omp critical(adlk_pool_bad_index)
      if (first_bad < 0 || p * g.count + bad < first_bad) {
        first_bad = p * g.count + bad;
        first_value = value;
      }
    }
  }
  if (bad_value && first_bad >= 0) *bad_value = first_value;
  return first_bad;
}

}  // namespace

void Pool2dGeom::finalize() {
  check(N >= 0, "pool: batch size must be >= 0");
  check(C >= 1 && H >= 1 && W >= 1, "pool: channels, height and width must be >= 1");
  check(kH >= 1 && kW >= 1 && kH < kMaxGeomArg && kW < kMaxGeomArg,
        "pool: kernel_size must be in [1, 2^31)");
  check(sH >= 1 && sW >= 1 && sH < kMaxGeomArg && sW < kMaxGeomArg,
        "pool: stride must be in [1, 2^31)");
  check(dH >= 1 && dW >= 1 && dH < kMaxGeomArg && dW < kMaxGeomArg,
        "pool: dilation must be in [1, 2^31)");
  check(pH >= 0 && pW >= 0 && pH <= kH / 2 && pW <= kW / 2,
        "pool: padding must be >= 0 and at most half the kernel size");
  H_out = pooled_output_size(H, kH, sH, pH, dH, ceil_mode);
  W_out = pooled_output_size(W, kW, sW, pW, dW, ceil_mode);
  check(H_out >= 1 && W_out >= 1, "pool: the output would be empty (kernel larger than input)");
  // Every size the kernels compute from here on is one of these or a part of one.
  const index_t planes = mul_checked(N, C, "pool: planes N*C");
  mul_checked(planes, mul_checked(H, W, "pool: input plane"), "pool: input size");
  mul_checked(planes, mul_checked(H_out, W_out, "pool: output plane"), "pool: output size");
}

template <typename T>
void maxpool2d_forward(const T* x, const Pool2dGeom& g, T* y, std::int64_t* indices) {
  const index_t in_plane = g.H * g.W, out_plane = g.H_out * g.W_out;
  if (g.N == 0) return;
  const ColTaps ct(g);
  for_each_plane(g.N * g.C, pool_work(g), [&](index_t p) {
    const T* xp = x + p * in_plane;
    T* yp = y + p * out_plane;
    std::int64_t* ip = indices + p * out_plane;
    // Fast paths: 2x2 and 3x3 windows with column stride 2, no dilation.
    const bool plain = g.dH == 1 && g.dW == 1 && g.sW == 2;
    if (plain && g.kH == 2 && g.kW == 2)
      maxpool_plane<T, 2, 2, 2>(xp, g, ct, yp, ip);
    else if (plain && g.kH == 3 && g.kW == 3)
      maxpool_plane<T, 2, 3, 3>(xp, g, ct, yp, ip);
    else if (g.sW == 1)
      maxpool_plane<T, 1, 0, 0>(xp, g, ct, yp, ip);
    else if (g.sW == 2)
      maxpool_plane<T, 2, 0, 0>(xp, g, ct, yp, ip);
    else
      maxpool_plane<T, 0, 0, 0>(xp, g, ct, yp, ip);
  });
}

template <typename T>
index_t maxpool2d_backward(const T* dy, const std::int64_t* indices, const IndexScatterGeom& g,
                           T* dx, std::int64_t* bad_value) {
  return scatter_planes<T, true>(dy, indices, g, dx, bad_value);
}

template <typename T>
index_t max_unpool2d(const T* x, const std::int64_t* indices, const IndexScatterGeom& g, T* y,
                     std::int64_t* bad_value) {
  return scatter_planes<T, false>(x, indices, g, y, bad_value);
}

template <typename T>
void avgpool2d_forward(const T* x, const Pool2dGeom& g, bool count_include_pad, T* y) {
  check(g.dH == 1 && g.dW == 1, "avgpool2d: dilation must be 1");
  const index_t in_plane = g.H * g.W, out_plane = g.H_out * g.W_out;
  if (g.N == 0) return;
  const ColTaps ct(g);
  for_each_plane(g.N * g.C, pool_work(g), [&](index_t p) {
    const T* xp = x + p * in_plane;
    T* yp = y + p * out_plane;
    const bool s2 = g.sW == 2;
    if (s2 && g.kH == 2 && g.kW == 2)
      avgpool_plane<T, 2, 2, 2>(xp, g, ct, count_include_pad, yp);
    else if (s2 && g.kH == 3 && g.kW == 3)
      avgpool_plane<T, 2, 3, 3>(xp, g, ct, count_include_pad, yp);
    else if (g.sW == 1)
      avgpool_plane<T, 1, 0, 0>(xp, g, ct, count_include_pad, yp);
    else if (s2)
      avgpool_plane<T, 2, 0, 0>(xp, g, ct, count_include_pad, yp);
    else
      avgpool_plane<T, 0, 0, 0>(xp, g, ct, count_include_pad, yp);
  });
}

template <typename T>
void avgpool2d_backward(const T* dy, const Pool2dGeom& g, bool count_include_pad, T* dx) {
  check(g.dH == 1 && g.dW == 1, "avgpool2d: dilation must be 1");
  const index_t in_plane = g.H * g.W, out_plane = g.H_out * g.W_out;
  const index_t planes = g.N * g.C;
  if (planes == 0) return;
  const ColTaps ct(g);
  RegionScratch rs;  // one row of scaled gradients per thread
#pragma omp parallel num_threads(plane_team(planes, pool_work(g)))
  {
    bool ok = true;
    T* g_row = rs.get<T>(0, g.W_out, ok);
#pragma omp for schedule(static)
    for (index_t p = 0; p < planes; ++p) {
      if (!ok) continue;
      const T* dyp = dy + p * out_plane;
      T* dxp = dx + p * in_plane;
      if (g.sW == 1)
        avgpool_backward_plane<T, 1>(dyp, g, ct, count_include_pad, dxp, g_row);
      else if (g.sW == 2)
        avgpool_backward_plane<T, 2>(dyp, g, ct, count_include_pad, dxp, g_row);
      else
        avgpool_backward_plane<T, 0>(dyp, g, ct, count_include_pad, dxp, g_row);
    }
  }
  rs.check();
}

#define ADLK_INSTANTIATE_POOL(T)           \
  ADLK_INSTANTIATE(maxpool2d_forward, T)   \
  ADLK_INSTANTIATE(maxpool2d_backward, T)  \
  ADLK_INSTANTIATE(max_unpool2d, T)        \
  ADLK_INSTANTIATE(avgpool2d_forward, T)   \
  ADLK_INSTANTIATE(avgpool2d_backward, T)
ADLK_INSTANTIATE_POOL(float)
ADLK_INSTANTIATE_POOL(double)
#undef ADLK_INSTANTIATE_POOL

}  // namespace adlk
