// Shared helpers of the CUDA kernels: error checks that throw (never exit the
// process), so a CUDA failure becomes a Python RuntimeError carrying CUDA's message.
#pragma once

#ifdef ADLK_CUDA_EMULATION
#include "adlk/cuda/emulation.h"  // CUDA on CPU threads (tests/cuda_emu/)
#else
#include <cuda_runtime.h>
#endif

#include <cmath>
#include <stdexcept>
#include <string>

#include "adlk/common.h"

namespace adlk::cuda {

// Launch constants of every CUDA kernel, defined once (like adlk/tuning.h for the CPU).
// Threads per block of the 1-d launches. Part of the numerics of the block reductions
// (conv's channel_sums adds its kThreads partials in a fixed shared-memory tree, which
// needs a power of two). The emulation harness builds other values too
// (-DADLK_CUDA_THREADS=16: blocks that are not whole warps).
#ifndef ADLK_CUDA_THREADS
#define ADLK_CUDA_THREADS 256
#endif
constexpr int kThreads = ADLK_CUDA_THREADS;
static_assert(kThreads >= 1 && kThreads <= 1024 && (kThreads & (kThreads - 1)) == 0,
              "kThreads: a power of two in [1, 1024]");
// Grid cap of the grid-stride launches (no result depends on it): the conv kernels use
// kMaxBlocks, the pooling kernels kPoolMaxBlocks. To be tuned on a GPU with
// bench/gpu_conv_pool.py. The harness builds a cap of 2 (-DADLK_CUDA_MAX_BLOCKS=2): grids
// much smaller than the data, so that every grid-stride loop takes several turns.
#ifdef ADLK_CUDA_MAX_BLOCKS
constexpr index_t kMaxBlocks = ADLK_CUDA_MAX_BLOCKS;
constexpr index_t kPoolMaxBlocks = ADLK_CUDA_MAX_BLOCKS;
#else
constexpr index_t kMaxBlocks = 65535;
constexpr index_t kPoolMaxBlocks = 4 * kMaxBlocks;
#endif

// Values a block sums per batch-norm item (whole rows n of one channel, at least one row):
// fixes the summation order of the channel statistics. The harness's small configuration
// builds 64 (channels of several items in small tests).
#ifndef ADLK_CUDA_NORM_ITEM
#define ADLK_CUDA_NORM_ITEM 8192
#endif
constexpr index_t kNormItem = ADLK_CUDA_NORM_ITEM;
// Rows per partial of layer norm's weight and bias gradients (a thread sums one column of
// a chunk; the chunks are added in order).
constexpr index_t kNormRowChunk = 32;

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// Blocks of kThreads for a grid-stride loop over n > 0 items: one item per thread up to
// max_blocks blocks, the loop covers the rest (no result depends on the grid size).
inline unsigned grid_for(index_t n, index_t max_blocks = kMaxBlocks) {
  const index_t blocks = n / kThreads + (n % kThreads != 0);
  return unsigned(blocks < max_blocks ? blocks : max_blocks);
}

// A grid-stride loop over n items must not overflow index_t at its last step.
inline void check_items(index_t n, const char* what) {
  check(n >= 0, what);
  add_checked(n, index_t(kThreads) * kMaxBlocks, what);
}

// ---- fixed-order reductions (no atomics: the same bits on every run) ----------------------

struct SumOf {
  __device__ double operator()(double a, double b) const { return a + b; }
};

// The maximum, NaN winning (as torch.max).
struct MaxOf {
  __device__ double operator()(double a, double b) const {
    if (a != a) return a;
    if (b != b) return b;
    return a > b ? a : b;
  }
};

// red[0] = the combination of red[0 .. blockDim.x) in a fixed tree (blockDim.x a power of
// two, every thread's entry written before the call; all threads call it).
template <typename Combine>
__device__ __forceinline__ void block_tree(double* red, Combine combine) {
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) red[threadIdx.x] = combine(red[threadIdx.x], red[threadIdx.x + half]);
    __syncthreads();
  }
}

// Lanes per warp of the kernels that give a warp to each row; every lane returns the same
// value from warp_tree (an xor butterfly of a commutative combine).
constexpr int kWarp = kThreads < 32 ? kThreads : 32;
constexpr unsigned kWarpMask = kWarp == 32 ? 0xffffffffu : ((1u << kWarp) - 1u);

template <typename Combine>
__device__ __forceinline__ double warp_tree(double v, Combine combine) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = combine(v, __shfl_xor_sync(kWarpMask, v, offset, kWarp));
  return v;
}

// Blocks for `rows` rows, a warp each (ADLK_ROWS_PER_WARP).
inline unsigned row_blocks(index_t rows) {
  const index_t per_block = kThreads / kWarp;
  const index_t blocks = rows / per_block + (rows % per_block != 0);
  return unsigned(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// Checks a rows x K launch of `op`; true when there is a row to do.
inline bool check_rows(index_t rows, index_t K, const char* op) {
  if (rows < 0 || K < 1) fail(std::string(op) + ": need rows >= 0 and K >= 1");
  mul_checked(rows, K, op);
  check_items(rows, op);
  return rows > 0;
}

// *total = combine over values[0 .. n) (thread-strided, then the block tree), divided by
// divisor, its square root when `root`. One block of kThreads.
template <typename Combine>
__global__ void __launch_bounds__(kThreads) fixed_total_kernel(const double* values, index_t n,
                                                               Combine combine, double divisor,
                                                               bool root, double* total) {
  __shared__ double red[kThreads];
  double acc = 0;
  for (index_t i = threadIdx.x; i < n; i += blockDim.x) acc = combine(acc, values[i]);
  red[threadIdx.x] = acc;
  block_tree(red, combine);
  if (threadIdx.x == 0) {
    const double v = red[0] / divisor;
    *total = root ? std::sqrt(v) : v;
  }
}

inline void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + " (" + file + ":" +
                             std::to_string(line) + "): " + cudaGetErrorString(err));
}

}  // namespace adlk::cuda

// kernel<<<grid, block, shared_bytes, stream>>>(args...) is written
// ADLK_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...): the same launch under
// nvcc, a run on CPU threads in the emulation harness.
#ifdef ADLK_CUDA_EMULATION
#define ADLK_LAUNCH(grid, block, shared_bytes, stream, ...) \
  ::adlk::cuda::emu::launcher(grid, block, shared_bytes, stream)(__VA_ARGS__)
#else
#define ADLK_LAUNCH(grid, block, shared_bytes, stream, ...) \
  __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#endif

// for (i over [0, n)) with a stride of the whole grid, in 64-bit indices; the caller has
// checked that n + the grid's thread count does not overflow.
#define ADLK_GRID_STRIDE(i, n)                                              \
  for (index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += index_t(blockDim.x) * gridDim.x)

// for (r over [0, rows)) with a warp (kWarp lanes) per row, in 64-bit indices (row_blocks
// blocks; a lane is threadIdx.x % kWarp).
#define ADLK_ROWS_PER_WARP(r, rows)                                                           \
  for (index_t r = index_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp; r < (rows); \
       r += index_t(gridDim.x) * (blockDim.x / kWarp))

#define ADLK_CUDA_CHECK(expr) ::adlk::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
// After every launch: configuration errors surface here, not at a later call.
#define ADLK_CUDA_LAUNCH_CHECK() ADLK_CUDA_CHECK(cudaGetLastError())
