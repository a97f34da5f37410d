// CUDA conv kernels and their host launchers (see adlk/cuda/conv.h).
//
// All kernels: 256-thread blocks, grid-stride loops over 64-bit indices, grids capped at
// kMaxBlocks (the loop covers the rest, so the result never depends on the grid size).
// Only additions touch floating-point data (no multiply-add that nvcc could contract
// into an FMA), so every sum is exactly the sequence of roundings written here.
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "adlk/cuda/common.cuh"
#include "adlk/cuda/conv.h"

namespace adlk::cuda {

namespace {

constexpr index_t kIndexMax = std::numeric_limits<index_t>::max();

// a * b for a, b >= 0, throwing instead of overflowing.
index_t checked_mul(index_t a, index_t b, const char* what) {
  if (a < 0 || b < 0) throw std::invalid_argument(std::string(what) + ": negative size");
  if (a != 0 && b > kIndexMax / a)
    throw std::overflow_error(std::string(what) + ": size overflows 64-bit indexing");
  return a * b;
}

index_t checked_add(index_t a, index_t b, const char* what) {
  if (a < 0 || b < 0) throw std::invalid_argument(std::string(what) + ": negative size");
  if (b > kIndexMax - a)
    throw std::overflow_error(std::string(what) + ": size overflows 64-bit indexing");
  return a + b;
}

// Checks that a grid-stride loop over [0, total) cannot overflow at its last step.
void check_loop(index_t total, const char* what) {
  checked_add(total, index_t(kThreads) * kMaxBlocks, what);
}

void need_ptr(const void* p, const char* what) {
  if (p == nullptr) throw std::invalid_argument(std::string(what) + ": null device pointer");
}

// The geometry fields the kernels read (Conv2dGeom's member functions are host-only).
struct DevGeom {
  index_t C, H, W, kH, kW, sH, sW, pH, pW, dH, dW, H_out, W_out;
};

DevGeom dev_geom(const Conv2dGeom& g) {
  return DevGeom{g.C,  g.H,  g.W,  g.kH, g.kW, g.sH,    g.sW,
                 g.pH, g.pW, g.dH, g.dW, g.H_out, g.W_out};
}

// Checks the image range and returns nb * C*kH*kW * L, the column elements (also
// checking that x's images fit 64-bit indexing).
index_t check_images(const Conv2dGeom& g, index_t n0, index_t nb, const char* what) {
  if (g.H_out < 1 || g.W_out < 1)
    throw std::invalid_argument(std::string(what) + ": geometry not finalized");
  if (n0 < 0 || nb < 0 || n0 > g.N || nb > g.N - n0)
    throw std::invalid_argument(std::string(what) + ": images [n0, n0 + nb) must lie in [0, N)");
  const index_t plane = checked_mul(checked_mul(g.C, g.H, what), g.W, what);
  checked_mul(g.N, plane, what);  // x itself is indexable
  const index_t rows = checked_mul(checked_mul(g.C, g.kH, what), g.kW, what);
  return checked_mul(checked_mul(nb, rows, what), checked_mul(g.H_out, g.W_out, what), what);
}

// ---- im2col -----------------------------------------------------------------------
// One thread per column element, i = ((j*C + c)*kH*kW + kh*kW + kw)*L + oh*W_out + ow:
// consecutive threads write consecutive l (coalesced). A pure copy (or a zero), so
// bitwise equal to the CPU im2col and trivially deterministic.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    im2col_kernel(const T* __restrict__ x, T* __restrict__ cols, DevGeom g, index_t n0,
                  index_t total) {
  const index_t L = g.H_out * g.W_out, kk = g.kH * g.kW, rows = g.C * kk;
  const index_t stride = index_t(blockDim.x) * index_t(gridDim.x);
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const index_t q = i / L, l = i - q * L;        // q = j*rows + r
    const index_t j = q / rows, r = q - j * rows;  // image j of the chunk, row r
    const index_t c = r / kk, k = r - c * kk;
    const index_t kh = k / g.kW, kw = k - kh * g.kW;
    const index_t oh = l / g.W_out, ow = l - oh * g.W_out;
    const index_t ih = oh * g.sH - g.pH + kh * g.dH, iw = ow * g.sW - g.pW + kw * g.dW;
    T v = T(0);
    if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W)
      v = x[(((n0 + j) * g.C + c) * g.H + ih) * g.W + iw];
    cols[i] = v;
  }
}

// ---- col2im -----------------------------------------------------------------------
// A gather: one thread per element (j, c, h, w) of the chunk's images, which sums the
// column entries (c, kh, kw, oh, ow) with oh*sH - pH + kh*dH = h and
// ow*sW - pW + kw*dW = w, starting from T(0), in ascending (kh, kw) (kh outer), in T.
// That is the CPU col2im's sequence exactly: there each (kh, kw) adds its one term (at
// most one per position) into a zeroed band in that order, and x = 0 + band (the band
// sum starts at +0, so it is never -0 and adding 0 changes nothing). Bitwise equal to
// the CPU, no atomics, deterministic. The kh (kw) loop runs only over the range whose oh
// (ow) lies in [0, H_out) and skips the kh whose offset the stride does not divide: the
// skipped ones add no term, so the order of the others is unchanged.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    col2im_kernel(const T* __restrict__ cols, T* __restrict__ x, DevGeom g, index_t n0,
                  index_t total) {
  const index_t L = g.H_out * g.W_out, kk = g.kH * g.kW;
  const index_t stride = index_t(blockDim.x) * index_t(gridDim.x);
  T* xs = x + n0 * g.C * g.H * g.W;
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    index_t t = i / g.W;
    const index_t w = i - t * g.W;
    index_t t2 = t / g.H;
    const index_t h = t - t2 * g.H;
    const index_t j = t2 / g.C, c = t2 - j * g.C;
    // kh with 0 <= hp - kh*dH <= (H_out - 1)*sH, i.e. oh in [0, H_out).
    const index_t hp = h + g.pH, wp = w + g.pW;
    const index_t kh_hi = hp / g.dH < g.kH - 1 ? hp / g.dH : g.kH - 1;
    const index_t kw_hi = wp / g.dW < g.kW - 1 ? wp / g.dW : g.kW - 1;
    const index_t th = hp - (g.H_out - 1) * g.sH, tw = wp - (g.W_out - 1) * g.sW;
    const index_t kh_lo = th > 0 ? (th + g.dH - 1) / g.dH : 0;
    const index_t kw_lo = tw > 0 ? (tw + g.dW - 1) / g.dW : 0;
    const T* src = cols + (j * g.C + c) * kk * L;
    T acc = T(0);
    for (index_t kh = kh_lo; kh <= kh_hi; ++kh) {
      const index_t rh = hp - kh * g.dH;  // in [0, (H_out - 1)*sH]
      if (rh % g.sH != 0) continue;
      const index_t oh = rh / g.sH;
      const T* srow = src + kh * g.kW * L + oh * g.W_out;
      for (index_t kw = kw_lo; kw <= kw_hi; ++kw) {
        const index_t rw = wp - kw * g.dW;  // in [0, (W_out - 1)*sW]
        if (rw % g.sW != 0) continue;
        acc += srow[kw * L + rw / g.sW];
      }
    }
    xs[i] = acc;
  }
}

// ---- channel_sums -------------------------------------------------------------------
// One block of exactly kThreads threads per channel (blocks stride over channels). The
// channel's N*L values, flattened as m = n*L + l, are dealt out: thread t sums
// m = t, t + kThreads, t + 2*kThreads, ... in ascending order in double, then a fixed
// shared-memory tree (halving strides) adds the kThreads partials. The order depends
// only on (N, L) and the constant kThreads, not on the grid or on scheduling:
// deterministic. Not the CPU's order (one sequential double sum over n, then l), so the
// result can differ from the CPU in the last bit after rounding to T.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    channel_sums_kernel(const T* __restrict__ dy, T* __restrict__ db, index_t N, index_t C,
                        index_t L) {
  __shared__ double partial[kThreads];
  const int tid = int(threadIdx.x);
  const index_t M = N * L;
  // Stepping m by kThreads moves (n, l) by (q, r), kThreads = q*L + r: no division in
  // the loop.
  const index_t q = kThreads / L, r = kThreads % L;
  for (index_t c = blockIdx.x; c < C; c += gridDim.x) {
    double acc = 0.0;
    index_t n = tid / L, l = tid % L;
    for (index_t m = tid; m < M; m += kThreads) {
      acc += double(dy[(n * C + c) * L + l]);
      n += q;
      l += r;
      if (l >= L) {
        l -= L;
        ++n;
      }
    }
    partial[tid] = acc;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (tid < s) partial[tid] += partial[tid + s];
      __syncthreads();
    }
    if (tid == 0) db[c] = T(partial[0]);
    __syncthreads();  // partial[0] is read before the next channel overwrites it
  }
}

// ---- sum_batches --------------------------------------------------------------------
// One thread per j, summing b = 0, 1, ..., nb-1 in order onto out[j] (or +0): a fixed
// sequence per element, deterministic; consecutive j read consecutive addresses.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    sum_batches_kernel(const T* __restrict__ partials, T* __restrict__ out, index_t nb,
                       index_t count, bool accumulate) {
  const index_t stride = index_t(blockDim.x) * index_t(gridDim.x);
  for (index_t j = index_t(blockIdx.x) * blockDim.x + threadIdx.x; j < count; j += stride) {
    T acc = accumulate ? out[j] : T(0);
    for (index_t b = 0; b < nb; ++b) acc += partials[b * count + j];
    out[j] = acc;
  }
}

}  // namespace

// ---- host launchers -------------------------------------------------------------------

template <typename T>
void im2col(const T* x, T* cols, const Conv2dGeom& g, index_t n0, index_t nb, void* stream) {
  const index_t total = check_images(g, n0, nb, "im2col");
  check_loop(total, "im2col");
  if (total == 0) return;
  need_ptr(x, "im2col: x");
  need_ptr(cols, "im2col: cols");
  ADLK_LAUNCH(grid_for(total), kThreads, 0, as_stream(stream), im2col_kernel<T>)(
      x, cols, dev_geom(g), n0, total);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void col2im(const T* cols, T* x, const Conv2dGeom& g, index_t n0, index_t nb, void* stream) {
  check_images(g, n0, nb, "col2im");
  const index_t total = nb * g.C * g.H * g.W;  // <= N*C*H*W, checked above
  check_loop(total, "col2im");
  if (total == 0) return;
  need_ptr(cols, "col2im: cols");
  need_ptr(x, "col2im: x");
  ADLK_LAUNCH(grid_for(total), kThreads, 0, as_stream(stream), col2im_kernel<T>)(
      cols, x, dev_geom(g), n0, total);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void channel_sums(const T* dy, T* db, index_t N, index_t C, index_t L, void* stream) {
  const index_t M = checked_mul(N, L, "channel_sums");
  const index_t total = checked_mul(M, C, "channel_sums");
  // Keep (n*C + c)*L + l, m + kThreads and c + gridDim.x (the loops' last steps) in range.
  check_loop(total, "channel_sums");
  check_loop(C, "channel_sums");
  if (C == 0) return;
  need_ptr(db, "channel_sums: db");
  if (total > 0) need_ptr(dy, "channel_sums: dy");
  // For N*L == 0, db is the empty sum: zeros (the kernel would divide by L).
  if (M == 0) {
    const index_t bytes = checked_mul(C, index_t(sizeof(T)), "channel_sums");
    ADLK_CUDA_CHECK(cudaMemsetAsync(db, 0, std::size_t(bytes), as_stream(stream)));
    return;
  }
  const unsigned blocks = unsigned(C < kMaxBlocks ? C : kMaxBlocks);
  ADLK_LAUNCH(blocks, kThreads, 0, as_stream(stream), channel_sums_kernel<T>)(dy, db, N, C, L);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void sum_batches(const T* partials, T* out, index_t nb, index_t count, bool accumulate,
                 void* stream) {
  checked_mul(nb, count, "sum_batches");  // b*count + j < nb*count
  check_loop(count, "sum_batches");
  if (count == 0 || (nb == 0 && accumulate)) return;
  need_ptr(out, "sum_batches: out");
  if (nb > 0) need_ptr(partials, "sum_batches: partials");
  ADLK_LAUNCH(grid_for(count), kThreads, 0, as_stream(stream), sum_batches_kernel<T>)(
      partials, out, nb, count, accumulate);
  ADLK_CUDA_LAUNCH_CHECK();
}

index_t conv2d_workspace_elems(const Conv2dGeom& g, index_t nb) {
  const char* what = "conv2d_workspace_elems";
  if (nb < 0) throw std::invalid_argument("conv2d_workspace_elems: nb must be >= 0");
  if (g.H_out < 1 || g.W_out < 1 || g.groups < 1)
    throw std::invalid_argument("conv2d_workspace_elems: geometry not finalized");
  const index_t kk = checked_mul(g.kH, g.kW, what);
  const index_t cols = checked_mul(checked_mul(g.C, kk, what),
                                   checked_mul(g.H_out, g.W_out, what), what);
  const index_t partials = checked_mul(g.C_out, checked_mul(g.C / g.groups, kk, what), what);
  return checked_mul(nb, checked_add(cols, partials, what), what);
}

index_t conv2d_chunk_images(const Conv2dGeom& g, std::size_t elem_size, index_t budget_bytes) {
  if (elem_size == 0 || elem_size > 64)
    throw std::invalid_argument("conv2d_chunk_images: elem_size must be in [1, 64] bytes");
  if (budget_bytes < 0)
    throw std::invalid_argument("conv2d_chunk_images: budget_bytes must be >= 0");
  const index_t per_image =
      checked_mul(conv2d_workspace_elems(g, 1), index_t(elem_size), "conv2d_chunk_images");
  const index_t cap = g.N > 1 ? g.N : 1;
  // per_image == 0 cannot happen for a finalized geometry (C, kH, kW, L >= 1).
  index_t nb = per_image > 0 ? budget_bytes / per_image : cap;
  if (nb < 1) nb = 1;
  if (nb > cap) nb = cap;
  // nb * per_image <= budget_bytes, except nb == 1 over budget (per_image itself).
  return nb;
}

#define ADLK_CUDA_INSTANTIATE_CONV(T)  \
  ADLK_INSTANTIATE(im2col, T)          \
  ADLK_INSTANTIATE(col2im, T)          \
  ADLK_INSTANTIATE(channel_sums, T)    \
  ADLK_INSTANTIATE(sum_batches, T)
ADLK_CUDA_INSTANTIATE_CONV(float)
ADLK_CUDA_INSTANTIATE_CONV(double)
#undef ADLK_CUDA_INSTANTIATE_CONV

}  // namespace adlk::cuda
