// CUDA pool kernels and their host launchers (see adlk/cuda/pool.h).
//
// Mirrors cpp/src/pool.cpp element by element. The CPU kernels work plane by plane and
// scatter in the backward passes; here every output element (forward) or input-gradient
// element (backward) has one thread that computes it from scratch, visiting its terms
// in the order in which the CPU adds them into that element. Floating-point work is
// only additions and IEEE divisions (nvcc rounds `/` correctly unless --use_fast_math
// or -prec-div=false, and contracts only multiply-adds into FMAs, of which there are
// none here), no flush-to-zero (also a fast-math option), so results equal the CPU's
// bitwise, run after run; no kernel uses floating-point atomics.
//
// Launches: 256-thread blocks, grid-stride loops over int64 indices, at most
// 65535 * 4 blocks; nothing is launched for an empty size; every launch is checked.
#include <cmath>
#include <cstdint>

#include "adlk/cuda/common.cuh"
#include "adlk/cuda/pool.h"

namespace adlk::cuda {

namespace {

// A finalized copy: H_out/W_out computed, every field checked (std::invalid_argument).
Pool2dGeom finalized(const Pool2dGeom& g) {
  Pool2dGeom f = g;
  f.finalize();
  return f;
}

void check_scatter_geom(const IndexScatterGeom& g) {
  check(g.planes >= 0 && g.count >= 0 && g.dst_size >= 0, "pool: negative sizes");
}

__device__ __forceinline__ index_t dmin(index_t a, index_t b) { return a < b ? a : b; }

// cpp/src/pool.cpp's valid_taps: kernel offsets [lo, hi) (in steps of the dilation)
// whose cell start + k*d lies in [0, n). An empty range has lo == hi.
__device__ __forceinline__ void valid_taps(index_t start, index_t k, index_t d, index_t n,
                                           index_t& lo, index_t& hi) {
  if (start >= 0 && start + (k - 1) * d < n) {
    lo = 0, hi = k;
    return;
  }
  lo = start < 0 ? dmin(k, (-start + d - 1) / d) : 0;
  hi = start >= n ? 0 : dmin(k, (n - 1 - start) / d + 1);
  if (hi < lo) hi = lo;
}

// The windows (along one dimension) whose cells o*s - p + j*d, 0 <= j < k, can hold
// input position x: [lo, hi] with lo = max(0, ceil((x + p - (k-1)*d) / s)) and
// hi = min(out - 1, floor((x + p) / s)) (x + p >= 0). Empty when hi < lo.
__device__ __forceinline__ void covering_windows(index_t x, index_t k, index_t s, index_t p,
                                                 index_t d, index_t out, index_t& lo,
                                                 index_t& hi) {
  const index_t a = x + p - (k - 1) * d;
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  hi = dmin(out - 1, (x + p) / s);
}

// cpp/src/pool.cpp's avg_divisor (PyTorch's): the window clipped to the padded input,
// and without count_include_pad to the input itself.
__device__ __forceinline__ index_t avg_divisor(const Pool2dGeom& g, index_t oh, index_t ow,
                                               bool count_include_pad) {
  index_t hstart = oh * g.sH - g.pH, wstart = ow * g.sW - g.pW;
  index_t hend = dmin(hstart + g.kH, g.H + g.pH), wend = dmin(wstart + g.kW, g.W + g.pW);
  const index_t pool_size = (hend - hstart) * (wend - wstart);
  if (count_include_pad) return pool_size;
  hstart = hstart > 0 ? hstart : 0, wstart = wstart > 0 ? wstart : 0;
  hend = dmin(hend, g.H), wend = dmin(wend, g.W);
  return (hend - hstart) * (wend - wstart);
}

// ---- max pooling forward ------------------------------------------------------------
// One thread per output (n, c, oh, ow), scanning its window's in-range cells rows then
// columns exactly as the CPU's maxpool_window (which every CPU path equals): running
// max from -inf with the first in-range cell as the initial argmax, replaced when
// v > m or v is NaN. A pure function of x: deterministic and bitwise the CPU's.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    maxpool2d_forward_kernel(const T* __restrict__ x, Pool2dGeom g, index_t n,
                             T* __restrict__ y, std::int64_t* __restrict__ indices) {
  const index_t in_plane = g.H * g.W;
  ADLK_GRID_STRIDE(i, n) {
    const index_t ow = i % g.W_out;
    const index_t t = i / g.W_out;
    const index_t oh = t % g.H_out;
    const index_t plane = t / g.H_out;
    const T* __restrict__ xp = x + plane * in_plane;
    const index_t hstart = oh * g.sH - g.pH, wstart = ow * g.sW - g.pW;
    index_t kh_lo, kh_hi, kw_lo, kw_hi;
    valid_taps(hstart, g.kH, g.dH, g.H, kh_lo, kh_hi);
    valid_taps(wstart, g.kW, g.dW, g.W, kw_lo, kw_hi);
    T m = T(-INFINITY);
    std::int64_t best = (kh_lo < kh_hi && kw_lo < kw_hi)
                            ? (hstart + kh_lo * g.dH) * g.W + wstart + kw_lo * g.dW
                            : -1;
    for (index_t kh = kh_lo; kh < kh_hi; ++kh) {
      const index_t row = (hstart + kh * g.dH) * g.W;
      for (index_t kw = kw_lo; kw < kw_hi; ++kw) {
        const index_t pos = row + wstart + kw * g.dW;
        const T v = xp[pos];
        if (v > m || v != v) m = v, best = pos;  // NaN wins; ties keep the first
      }
    }
    y[i] = m;
    indices[i] = best;
  }
}

// ---- index checks (device reductions to the smallest bad position) -----------------
// Each thread visits its positions in ascending order, so the first bad one it meets is
// its smallest; an integer atomicMin over those gives the global smallest, whatever the
// order in which threads run: the result is deterministic.

// True when idx (the index of output i) is neither -1 nor a cell of output i's window.
__device__ __forceinline__ bool outside_window(std::int64_t idx, index_t i,
                                               const Pool2dGeom& g) {
  if (idx == -1) return false;
  if (idx < 0 || idx >= g.H * g.W) return true;
  const index_t ow = i % g.W_out;
  const index_t oh = (i / g.W_out) % g.H_out;
  const index_t h = idx / g.W, w = idx - h * g.W;
  const index_t dh = h - (oh * g.sH - g.pH), dw = w - (ow * g.sW - g.pW);
  if (dh < 0 || dw < 0) return true;
  if (dh % g.dH != 0 || dw % g.dW != 0) return true;
  return dh / g.dH >= g.kH || dw / g.dW >= g.kW;
}

__global__ void __launch_bounds__(kThreads)
    first_outside_window_kernel(const std::int64_t* __restrict__ indices, Pool2dGeom g,
                                index_t n, unsigned long long* __restrict__ first) {
  ADLK_GRID_STRIDE(i, n) {
    if (outside_window(indices[i], i, g)) {
      atomicMin(first, static_cast<unsigned long long>(i));
      return;
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    first_out_of_range_kernel(const std::int64_t* __restrict__ indices, index_t dst_size,
                              index_t n, unsigned long long* __restrict__ first) {
  // One unsigned compare covers both ends, as the CPU's scatter_plane: -1 maps to 0.
  const unsigned long long limit = static_cast<unsigned long long>(dst_size);
  ADLK_GRID_STRIDE(i, n) {
    if (static_cast<unsigned long long>(indices[i]) + 1ull > limit) {
      atomicMin(first, static_cast<unsigned long long>(i));
      return;
    }
  }
}

// A one-element device buffer, allocated and freed in stream order.
class DeviceScalar {
 public:
  explicit DeviceScalar(cudaStream_t s) : s_(s) {
    ADLK_CUDA_CHECK(cudaMallocAsync(&p_, sizeof(*p_), s_));
  }
  ~DeviceScalar() {
    // No throw from a destructor; clear the error so a later check does not report it.
    if (p_ != nullptr && cudaFreeAsync(p_, s_) != cudaSuccess) (void)cudaGetLastError();
  }
  DeviceScalar(const DeviceScalar&) = delete;
  DeviceScalar& operator=(const DeviceScalar&) = delete;
  unsigned long long* get() const { return p_; }

 private:
  cudaStream_t s_;
  unsigned long long* p_ = nullptr;
};

// Runs launch(first) over n > 0 positions with *first = UINT64_MAX, copies the result
// to the host and synchronizes the stream; -1 when nothing was found.
template <typename Launch>
index_t reduce_first(index_t n, cudaStream_t s, Launch launch) {
  if (n <= 0) return -1;
  DeviceScalar first(s);
  ADLK_CUDA_CHECK(cudaMemsetAsync(first.get(), 0xFF, sizeof(unsigned long long), s));
  launch(first.get());
  ADLK_CUDA_LAUNCH_CHECK();
  unsigned long long host = 0;
  ADLK_CUDA_CHECK(
      cudaMemcpyAsync(&host, first.get(), sizeof host, cudaMemcpyDeviceToHost, s));
  ADLK_CUDA_CHECK(cudaStreamSynchronize(s));
  return host == ~0ull ? index_t(-1) : static_cast<index_t>(host);
}

// ---- max pooling backward, gather with geometry -------------------------------------
// One thread per dx element (n, c, h, w): the sum of dy over the windows whose index is
// h*W + w. Under the precondition (every index -1 or inside its own window) only
// windows that cover (h, w) can hold its index, so visiting the covering windows in
// ascending (oh, ow) order adds exactly the terms the CPU scatter adds into this
// element, in its order (ascending flat output position), starting from +0 in T: no
// atomics, bitwise the CPU's. Windows not aligned with the dilation grid are skipped
// without loading their index.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    maxpool2d_backward_kernel(const T* __restrict__ dy,
                              const std::int64_t* __restrict__ indices, Pool2dGeom g,
                              index_t n, T* __restrict__ dx) {
  const index_t out_plane = g.H_out * g.W_out;
  ADLK_GRID_STRIDE(i, n) {
    const index_t w = i % g.W;
    const index_t t = i / g.W;
    const index_t h = t % g.H;
    const index_t plane = t / g.H;
    const index_t pos = h * g.W + w;
    index_t oh_lo, oh_hi, ow_lo, ow_hi;
    covering_windows(h, g.kH, g.sH, g.pH, g.dH, g.H_out, oh_lo, oh_hi);
    covering_windows(w, g.kW, g.sW, g.pW, g.dW, g.W_out, ow_lo, ow_hi);
    const T* __restrict__ dyp = dy + plane * out_plane;
    const std::int64_t* __restrict__ ip = indices + plane * out_plane;
    T acc = T(0);
    for (index_t oh = oh_lo; oh <= oh_hi; ++oh) {
      if (g.dH != 1 && (h + g.pH - oh * g.sH) % g.dH != 0) continue;
      for (index_t ow = ow_lo; ow <= ow_hi; ++ow) {
        if (g.dW != 1 && (w + g.pW - ow * g.sW) % g.dW != 0) continue;
        const index_t o = oh * g.W_out + ow;
        if (ip[o] == pos) acc += dyp[o];
      }
    }
    dx[i] = acc;
  }
}

// ---- index scatters by plane (geometry-free backward, unpooling) --------------------
// One thread per (n, c) plane running the CPU's loop over that plane (the destination
// was zeroed by a memset, all-zero bytes being +0): the same writes in the same order,
// so sums (Accumulate) and last-write-wins (unpooling) equal the CPU's bitwise; planes
// are disjoint, so no two threads touch the same element. Indices outside
// [0, dst_size) (-1, or anything the caller failed to validate) are skipped.
template <typename T, bool Accumulate>
__global__ void __launch_bounds__(kThreads)
    scatter_planes_kernel(const T* __restrict__ src, const std::int64_t* __restrict__ indices,
                          index_t planes, index_t count, index_t dst_size,
                          T* __restrict__ dst) {
  ADLK_GRID_STRIDE(p, planes) {
    const T* __restrict__ sp = src + p * count;
    const std::int64_t* __restrict__ ip = indices + p * count;
    T* __restrict__ dp = dst + p * dst_size;
    for (index_t i = 0; i < count; ++i) {
      const std::int64_t j = ip[i];
      if (j < 0 || j >= dst_size) continue;
      if (Accumulate)
        dp[j] += sp[i];
      else
        dp[j] = sp[i];
    }
  }
}

template <typename T, bool Accumulate>
void scatter_planes(const T* src, const std::int64_t* indices, const IndexScatterGeom& g,
                    T* dst, void* stream) {
  check_scatter_geom(g);
  const cudaStream_t s = as_stream(stream);
  const index_t dst_total = g.planes * g.dst_size;
  if (dst_total == 0) return;
  ADLK_CUDA_CHECK(cudaMemsetAsync(dst, 0, std::size_t(dst_total) * sizeof(T), s));
  if (g.count == 0) return;
  ADLK_LAUNCH(grid_for(g.planes, kPoolMaxBlocks), kThreads, 0, s, scatter_planes_kernel<T, Accumulate>)(
       src, indices, g.planes, g.count, g.dst_size, dst);
  ADLK_CUDA_LAUNCH_CHECK();
}

// ---- average pooling ------------------------------------------------------------------
// Forward: one thread per output; the sum starts at +0 and adds the window's in-range
// cells rows then columns (the CPU's order on every path: the tap loops keep each
// output's own order, and the interior fast path sums in the same (kh, kw) order),
// then divides by T(divisor) (0 for an empty divisor), as the CPU. A pure function of
// x: deterministic and bitwise the CPU's.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    avgpool2d_forward_kernel(const T* __restrict__ x, Pool2dGeom g, bool count_include_pad,
                             index_t n, T* __restrict__ y) {
  const index_t in_plane = g.H * g.W;
  ADLK_GRID_STRIDE(i, n) {
    const index_t ow = i % g.W_out;
    const index_t t = i / g.W_out;
    const index_t oh = t % g.H_out;
    const index_t plane = t / g.H_out;
    const T* __restrict__ xp = x + plane * in_plane;
    const index_t hstart = oh * g.sH - g.pH, wstart = ow * g.sW - g.pW;
    index_t kh_lo, kh_hi, kw_lo, kw_hi;
    valid_taps(hstart, g.kH, 1, g.H, kh_lo, kh_hi);
    valid_taps(wstart, g.kW, 1, g.W, kw_lo, kw_hi);
    T sum = T(0);
    for (index_t kh = kh_lo; kh < kh_hi; ++kh) {
      const index_t row = (hstart + kh) * g.W + wstart;
      for (index_t kw = kw_lo; kw < kw_hi; ++kw) sum += xp[row + kw];
    }
    const index_t div = avg_divisor(g, oh, ow, count_include_pad);
    y[i] = div > 0 ? sum / T(div) : T(0);
  }
}

// Backward: one thread per dx element (n, c, h, w), a gather over the windows that
// cover it. The CPU scatter (avgpool_backward_plane) adds g(oh, ow) = dy / T(divisor)
// into dx by output row oh ascending, then kernel row kh, then kernel column kw
// ascending, then ow ascending; for one dx element (h, w) and one oh, kw = w + pW -
// ow*sW, so its terms arrive with ow DESCENDING. The gather visits oh ascending and ow
// descending, adding the same rounded quotients from +0 in T: bitwise the CPU's, no
// atomics.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    avgpool2d_backward_kernel(const T* __restrict__ dy, Pool2dGeom g, bool count_include_pad,
                              index_t n, T* __restrict__ dx) {
  const index_t out_plane = g.H_out * g.W_out;
  ADLK_GRID_STRIDE(i, n) {
    const index_t w = i % g.W;
    const index_t t = i / g.W;
    const index_t h = t % g.H;
    const index_t plane = t / g.H;
    index_t oh_lo, oh_hi, ow_lo, ow_hi;
    covering_windows(h, g.kH, g.sH, g.pH, 1, g.H_out, oh_lo, oh_hi);
    covering_windows(w, g.kW, g.sW, g.pW, 1, g.W_out, ow_lo, ow_hi);
    const T* __restrict__ dyp = dy + plane * out_plane;
    T acc = T(0);
    for (index_t oh = oh_lo; oh <= oh_hi; ++oh)
      for (index_t ow = ow_hi; ow >= ow_lo; --ow) {
        const index_t div = avg_divisor(g, oh, ow, count_include_pad);
        acc += div > 0 ? dyp[oh * g.W_out + ow] / T(div) : T(0);
      }
    dx[i] = acc;
  }
}

}  // namespace

// ---- host launchers ---------------------------------------------------------------------

template <typename T>
void maxpool2d_forward(const T* x, const Pool2dGeom& geom, T* y, std::int64_t* indices,
                       void* stream) {
  const Pool2dGeom g = finalized(geom);
  const index_t n = g.N * g.C * g.H_out * g.W_out;
  if (n == 0) return;
  ADLK_LAUNCH(grid_for(n, kPoolMaxBlocks), kThreads, 0, as_stream(stream), maxpool2d_forward_kernel<T>)(
      x, g, n, y, indices);
  ADLK_CUDA_LAUNCH_CHECK();
}

index_t maxpool2d_first_outside_window(const std::int64_t* indices, const Pool2dGeom& geom,
                                       void* stream) {
  const Pool2dGeom g = finalized(geom);
  const index_t n = g.N * g.C * g.H_out * g.W_out;
  const cudaStream_t s = as_stream(stream);
  return reduce_first(n, s, [&](unsigned long long* first) {
    ADLK_LAUNCH(grid_for(n, kPoolMaxBlocks), kThreads, 0, s, first_outside_window_kernel)(indices, g, n, first);
  });
}

index_t first_index_out_of_range(const std::int64_t* indices, index_t count,
                                 index_t dst_size, void* stream) {
  check(count >= 0 && dst_size >= 0, "pool: negative sizes");
  const cudaStream_t s = as_stream(stream);
  return reduce_first(count, s, [&](unsigned long long* first) {
    ADLK_LAUNCH(grid_for(count, kPoolMaxBlocks), kThreads, 0, s, first_out_of_range_kernel)(
        indices, dst_size, count, first);
  });
}

template <typename T>
void maxpool2d_backward(const T* dy, const std::int64_t* indices, const Pool2dGeom& geom,
                        T* dx, void* stream) {
  const Pool2dGeom g = finalized(geom);
  const index_t n = g.N * g.C * g.H * g.W;
  if (n == 0) return;
  ADLK_LAUNCH(grid_for(n, kPoolMaxBlocks), kThreads, 0, as_stream(stream), maxpool2d_backward_kernel<T>)(
       dy, indices, g, n, dx);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void maxpool2d_backward_planes(const T* dy, const std::int64_t* indices,
                               const IndexScatterGeom& g, T* dx, void* stream) {
  scatter_planes<T, true>(dy, indices, g, dx, stream);
}

template <typename T>
void max_unpool2d_planes(const T* x, const std::int64_t* indices, const IndexScatterGeom& g,
                         T* y, void* stream) {
  scatter_planes<T, false>(x, indices, g, y, stream);
}

template <typename T>
void avgpool2d_forward(const T* x, const Pool2dGeom& geom, bool count_include_pad, T* y,
                       void* stream) {
  const Pool2dGeom g = finalized(geom);
  check(g.dH == 1 && g.dW == 1, "avgpool2d: dilation must be 1");
  const index_t n = g.N * g.C * g.H_out * g.W_out;
  if (n == 0) return;
  ADLK_LAUNCH(grid_for(n, kPoolMaxBlocks), kThreads, 0, as_stream(stream), avgpool2d_forward_kernel<T>)(
       x, g, count_include_pad, n, y);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void avgpool2d_backward(const T* dy, const Pool2dGeom& geom, bool count_include_pad, T* dx,
                        void* stream) {
  const Pool2dGeom g = finalized(geom);
  check(g.dH == 1 && g.dW == 1, "avgpool2d: dilation must be 1");
  const index_t n = g.N * g.C * g.H * g.W;
  if (n == 0) return;
  ADLK_LAUNCH(grid_for(n, kPoolMaxBlocks), kThreads, 0, as_stream(stream), avgpool2d_backward_kernel<T>)(
       dy, g, count_include_pad, n, dx);
  ADLK_CUDA_LAUNCH_CHECK();
}

#define ADLK_CUDA_INSTANTIATE_POOL(T)             \
  ADLK_INSTANTIATE(maxpool2d_forward, T)          \
  ADLK_INSTANTIATE(maxpool2d_backward, T)         \
  ADLK_INSTANTIATE(maxpool2d_backward_planes, T)  \
  ADLK_INSTANTIATE(max_unpool2d_planes, T)        \
  ADLK_INSTANTIATE(avgpool2d_forward, T)          \
  ADLK_INSTANTIATE(avgpool2d_backward, T)
ADLK_CUDA_INSTANTIATE_POOL(float)
ADLK_CUDA_INSTANTIATE_POOL(double)
#undef ADLK_CUDA_INSTANTIATE_POOL

}  // namespace adlk::cuda
