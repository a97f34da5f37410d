// im2col / col2im and convolution forward/backward (see adlk/conv.h for layouts,
// workspace and determinism). Parallel regions never contain a BLAS call.
#include "adlk/conv.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "adlk/blas.h"
#include "adlk/parallel.h"

namespace adlk {

namespace {

// Below this many elements of work a parallel region costs more than it saves.
constexpr index_t kParallelGrain = 1 << 14;

constexpr index_t kMaxGeomArg = index_t(1) << 31;

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// Output columns [lo, hi) whose input column ow*sW + off lies inside [0, W).
inline void valid_range(index_t off, index_t stride, index_t W, index_t W_out, index_t& lo,
                        index_t& hi) {
  lo = off >= 0 ? 0 : ceil_div(-off, stride);
  hi = (W - 1 - off) < 0 ? 0 : std::min(W_out, (W - 1 - off) / stride + 1);
  lo = std::min(lo, W_out);
  if (hi < lo) hi = lo;
}

// One row (c, kh, kw) of one image's column matrix, L = H_out*W_out entries.
template <typename T>
void im2col_row(const T* xplane, const Conv2dGeom& g, index_t kh, index_t kw, T* row) {
  const index_t off_w = kw * g.dW - g.pW;
  index_t lo, hi;
  valid_range(off_w, g.sW, g.W, g.W_out, lo, hi);
  for (index_t oh = 0; oh < g.H_out; ++oh) {
    T* out = row + oh * g.W_out;
    const index_t ih = oh * g.sH - g.pH + kh * g.dH;
    if (ih < 0 || ih >= g.H) {
      std::fill(out, out + g.W_out, T(0));
      continue;
    }
    const T* xr = xplane + ih * g.W;
    std::fill(out, out + lo, T(0));
    if (g.sW == 1) {
      if (hi > lo) std::memcpy(out + lo, xr + lo + off_w, sizeof(T) * (hi - lo));
    } else {
      for (index_t ow = lo; ow < hi; ++ow) out[ow] = xr[ow * g.sW + off_w];
    }
    std::fill(out + hi, out + g.W_out, T(0));
  }
}

// Images [0, nb) of x into a column buffer: element (image j, row r, column l) goes to
// cols[j*image_stride + r*row_stride + l].
template <typename T>
void im2col_batch(const T* x, index_t nb, const Conv2dGeom& g, T* cols, index_t row_stride,
                  index_t image_stride) {
  const index_t rows = g.col_rows(), kk = g.kH * g.kW, plane = g.H * g.W;
  const index_t total = nb * rows;
  const int nt = get_num_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (total * g.L() > kParallelGrain)
  for (index_t t = 0; t < total; ++t) {
    const index_t j = t / rows, r = t % rows;
    const index_t c = r / kk, kh = (r % kk) / g.kW, kw = r % g.kW;
    im2col_row(x + (j * g.C + c) * plane, g, kh, kw, cols + j * image_stride + r * row_stride);
  }
}

// Inverse layout of im2col_batch, summing overlaps. Each (image, channel) plane is
// owned by one thread and each element sums its (kh, kw) terms in one fixed order,
// so the result does not depend on the thread count and needs no atomics.
template <typename T>
void col2im_batch(const T* cols, index_t nb, const Conv2dGeom& g, T* x, index_t row_stride,
                  index_t image_stride) {
  const index_t plane = g.H * g.W, total = nb * g.C;
  const int nt = get_num_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (total * g.kH * g.kW * g.L() > kParallelGrain)
  for (index_t t = 0; t < total; ++t) {
    const index_t j = t / g.C, c = t % g.C;
    T* xp = x + t * plane;
    std::fill(xp, xp + plane, T(0));
    for (index_t kh = 0; kh < g.kH; ++kh) {
      for (index_t kw = 0; kw < g.kW; ++kw) {
        const T* row = cols + j * image_stride + ((c * g.kH + kh) * g.kW + kw) * row_stride;
        const index_t off_w = kw * g.dW - g.pW;
        index_t lo, hi;
        valid_range(off_w, g.sW, g.W, g.W_out, lo, hi);
        for (index_t oh = 0; oh < g.H_out; ++oh) {
          const index_t ih = oh * g.sH - g.pH + kh * g.dH;
          if (ih < 0 || ih >= g.H) continue;
          T* xr = xp + ih * g.W;
          const T* src = row + oh * g.W_out;
          if (g.sW == 1) {
            for (index_t ow = lo; ow < hi; ++ow) xr[ow + off_w] += src[ow];
          } else {
            for (index_t ow = lo; ow < hi; ++ow) xr[ow * g.sW + off_w] += src[ow];
          }
        }
      }
    }
  }
}

// y (nb, C_out, L) from the GEMM's staging layout (C_out, nb*L), adding the bias.
template <typename T>
void unstage_output(const T* stage, const T* bias, index_t nb, index_t C_out, index_t L, T* y) {
  const int nt = get_num_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (nb * C_out * L > kParallelGrain)
  for (index_t t = 0; t < nb * C_out; ++t) {
    const index_t j = t / C_out, co = t % C_out;
    const T* src = stage + co * nb * L + j * L;
    T* dst = y + t * L;
    const T bv = bias ? bias[co] : T(0);
    for (index_t l = 0; l < L; ++l) dst[l] = src[l] + bv;
  }
}

// dy (nb, C_out, L) into the staging layout (C_out, nb*L) that the GEMMs read.
template <typename T>
void stage_grad(const T* dy, index_t nb, index_t C_out, index_t L, T* stage) {
  const int nt = get_num_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (nb * C_out * L > kParallelGrain)
  for (index_t t = 0; t < nb * C_out; ++t) {
    const index_t j = t / C_out, co = t % C_out;
    std::memcpy(stage + co * nb * L + j * L, dy + t * L, sizeof(T) * L);
  }
}

template <typename T>
void add_bias(T* y, const T* bias, index_t C_out, index_t L) {
  const int nt = get_num_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (C_out * L > kParallelGrain)
  for (index_t co = 0; co < C_out; ++co) {
    T* yr = y + co * L;
    const T bv = bias[co];
    for (index_t l = 0; l < L; ++l) yr[l] += bv;
  }
}

// A 1x1 kernel with stride 1 and no padding reads x itself as the column matrix.
bool is_pointwise(const Conv2dGeom& g) {
  return g.kH == 1 && g.kW == 1 && g.sH == 1 && g.sW == 1 && g.pH == 0 && g.pW == 0;
}

}  // namespace

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
  const index_t eff_h = dH * (kH - 1) + 1, eff_w = dW * (kW - 1) + 1;
  check(H + 2 * pH >= eff_h && W + 2 * pW >= eff_w,
        "conv: the (dilated) kernel is larger than the padded input");
  H_out = (H + 2 * pH - eff_h) / sH + 1;
  W_out = (W + 2 * pW - eff_w) / sW + 1;
}

index_t conv_chunk_images(const Conv2dGeom& g, std::size_t elem_size) {
  const index_t per_image = std::max<index_t>(1, g.col_rows() * g.L() * index_t(elem_size));
  const index_t nb = std::max<index_t>(1, index_t(kConvWorkspaceBytes) / per_image);
  return std::max<index_t>(1, std::min(nb, g.N));
}

std::size_t conv_workspace_bytes(const Conv2dGeom& g, std::size_t elem_size) {
  if (g.N == 0) return 0;
  const index_t nb = conv_chunk_images(g, elem_size);
  index_t elems = nb * g.col_rows() * g.L();
  if (nb > 1) elems += nb * g.C_out * g.L();
  return std::size_t(elems) * elem_size;
}

template <typename T>
void im2col(const T* x, const Conv2dGeom& g, T* cols) {
  if (g.N == 0) return;
  im2col_batch(x, g.N, g, cols, g.L(), g.col_rows() * g.L());
}

template <typename T>
void col2im(const T* cols, const Conv2dGeom& g, T* x) {
  if (g.N == 0) return;
  col2im_batch(cols, g.N, g, x, g.L(), g.col_rows() * g.L());
}

template <typename T>
void conv2d_forward(const T* x, const T* weight, const T* bias, const Conv2dGeom& g, T* y) {
  check(g.C_out >= 1, "conv2d_forward: output channels must be >= 1");
  if (g.N == 0) return;
  const index_t L = g.L(), rows = g.col_rows(), plane = g.C * g.H * g.W;
  const index_t Kg = rows / g.groups, Cog = g.C_out / g.groups;
  const index_t nb = conv_chunk_images(g, sizeof(T));
  const bool pointwise = is_pointwise(g);
  std::vector<T> cols, stage;
  if (nb > 1 || !pointwise) cols.resize(std::size_t(nb * rows * L));
  if (nb > 1) stage.resize(std::size_t(nb * g.C_out * L));

  for (index_t n0 = 0; n0 < g.N; n0 += nb) {
    const index_t nbc = std::min(nb, g.N - n0);
    const T* xs = x + n0 * plane;
    T* ys = y + n0 * g.C_out * L;
    if (nbc == 1) {
      // One image: the GEMM writes straight into y.
      const T* colm = xs;
      if (!pointwise) {
        im2col_batch(xs, 1, g, cols.data(), L, 0);
        colm = cols.data();
      }
      for (index_t gi = 0; gi < g.groups; ++gi)
        gemm<T>(false, false, Cog, L, Kg, T(1), weight + gi * Cog * Kg, Kg, colm + gi * Kg * L, L,
                T(0), ys + gi * Cog * L, L);
      if (bias) add_bias(ys, bias, g.C_out, L);
    } else {
      // Several images side by side make one wide GEMM per group.
      const index_t ld = nbc * L;
      im2col_batch(xs, nbc, g, cols.data(), ld, L);
      for (index_t gi = 0; gi < g.groups; ++gi)
        gemm<T>(false, false, Cog, ld, Kg, T(1), weight + gi * Cog * Kg, Kg,
                cols.data() + gi * Kg * ld, ld, T(0), stage.data() + gi * Cog * ld, ld);
      unstage_output(stage.data(), bias, nbc, g.C_out, L, ys);
    }
  }
}

template <typename T>
void conv2d_backward(const T* dy, const T* x, const T* weight, const Conv2dGeom& g, T* dx,
                     T* dweight, T* dbias) {
  check(g.C_out >= 1, "conv2d_backward: output channels must be >= 1");
  const index_t L = g.L(), rows = g.col_rows(), plane = g.C * g.H * g.W;
  const index_t Kg = rows / g.groups, Cog = g.C_out / g.groups;

  if (dbias) {
    // Fixed order per channel (images, then positions), accumulated in double.
    const int nt = get_num_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (g.N * g.C_out * L > kParallelGrain)
    for (index_t co = 0; co < g.C_out; ++co) {
      double acc = 0.0;
      for (index_t n = 0; n < g.N; ++n) {
        const T* src = dy + (n * g.C_out + co) * L;
        for (index_t l = 0; l < L; ++l) acc += double(src[l]);
      }
      dbias[co] = T(acc);
    }
  }
  if (!dx && !dweight) return;
  if (g.N == 0) {
    if (dweight) std::fill(dweight, dweight + g.C_out * Kg, T(0));
    return;
  }

  const index_t nb = conv_chunk_images(g, sizeof(T));
  const bool pointwise = is_pointwise(g);
  std::vector<T> cols, stage;
  if (nb > 1 || !pointwise) cols.resize(std::size_t(nb * rows * L));
  if (nb > 1) stage.resize(std::size_t(nb * g.C_out * L));

  for (index_t n0 = 0; n0 < g.N; n0 += nb) {
    const index_t nbc = std::min(nb, g.N - n0);
    const index_t ld = nbc * L;
    const T* xs = x + n0 * plane;
    const T* dys = dy + n0 * g.C_out * L;
    const T* dyc = dys;  // dy of this chunk as (C_out, nbc*L)
    if (nbc > 1) {
      stage_grad(dys, nbc, g.C_out, L, stage.data());
      dyc = stage.data();
    }
    const bool direct = pointwise && nbc == 1;
    if (dweight) {
      const T* colm = xs;
      if (!direct) {
        im2col_batch(xs, nbc, g, cols.data(), ld, L);
        colm = cols.data();
      }
      const T beta = n0 == 0 ? T(0) : T(1);
      for (index_t gi = 0; gi < g.groups; ++gi)
        gemm<T>(false, true, Cog, Kg, ld, T(1), dyc + gi * Cog * ld, ld, colm + gi * Kg * ld, ld,
                beta, dweight + gi * Cog * Kg, Kg);
    }
    if (dx) {
      T* dxs = dx + n0 * plane;
      T* dcols = direct ? dxs : cols.data();
      for (index_t gi = 0; gi < g.groups; ++gi)
        gemm<T>(true, false, Kg, ld, Cog, T(1), weight + gi * Cog * Kg, Kg, dyc + gi * Cog * ld,
                ld, T(0), dcols + gi * Kg * ld, ld);
      if (!direct) col2im_batch(dcols, nbc, g, dxs, ld, L);
    }
  }
}

#define ADLK_INSTANTIATE_CONV(T)                                                            \
  template void im2col<T>(const T*, const Conv2dGeom&, T*);                                 \
  template void col2im<T>(const T*, const Conv2dGeom&, T*);                                 \
  template void conv2d_forward<T>(const T*, const T*, const T*, const Conv2dGeom&, T*);     \
  template void conv2d_backward<T>(const T*, const T*, const T*, const Conv2dGeom&, T*, T*, \
                                   T*);
ADLK_INSTANTIATE_CONV(float)
ADLK_INSTANTIATE_CONV(double)
#undef ADLK_INSTANTIATE_CONV

}  // namespace adlk
