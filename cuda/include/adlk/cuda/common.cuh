// Shared helpers of the CUDA kernels: error checks that throw (never exit the
// process), so a CUDA failure becomes a Python RuntimeError carrying CUDA's message.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "adlk/common.h"

namespace adlk::cuda {

// Launch constants of every CUDA kernel, defined once (like adlk/tuning.h for the CPU).
// Threads per block of the 1-d launches. Part of the numerics of the block reductions
// (conv's channel_sums adds its kThreads partials in a fixed shared-memory tree).
constexpr int kThreads = 256;
// Grid cap of the grid-stride launches (no result depends on it): the conv kernels use
// kMaxBlocks, the pooling kernels kPoolMaxBlocks. To be tuned on a GPU with
// bench/gpu_conv_pool.py.
constexpr index_t kMaxBlocks = 65535;
constexpr index_t kPoolMaxBlocks = 4 * kMaxBlocks;

inline void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + " (" + file + ":" +
                             std::to_string(line) + "): " + cudaGetErrorString(err));
}

}  // namespace adlk::cuda

#define ADLK_CUDA_CHECK(expr) ::adlk::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
// After every launch: configuration errors surface here, not at a later call.
#define ADLK_CUDA_LAUNCH_CHECK() ADLK_CUDA_CHECK(cudaGetLastError())
