// Shared helpers of the CUDA kernels: error checks that throw (never exit the
// process), so a CUDA failure becomes a Python RuntimeError carrying CUDA's message.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace adlk::cuda {

inline void check_cuda(cudaError_t err, const char* what, const char* file, int line) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + " (" + file + ":" +
                             std::to_string(line) + "): " + cudaGetErrorString(err));
}

}  // namespace adlk::cuda

#define ADLK_CUDA_CHECK(expr) ::adlk::cuda::check_cuda((expr), #expr, __FILE__, __LINE__)
// After every launch: configuration errors surface here, not at a later call.
#define ADLK_CUDA_LAUNCH_CHECK() ADLK_CUDA_CHECK(cudaGetLastError())
