// Device queries for build_info() and has_cuda(). The kernel families (conv, pool,
// rnn, optim, norm, nn) get one .cu file each beside this one.
#include "adlk/cuda/common.cuh"
#include "adlk/cuda/device.h"

#ifndef ADLK_CUDA_ARCHS
#define ADLK_CUDA_ARCHS "unknown"
#endif

namespace adlk::cuda {

namespace {
std::string version_string(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver/device" error
    return 0;
  }
  return n;
}

std::string runtime_version() { return version_string(CUDART_VERSION); }

std::string driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess || v == 0) return "";
  return version_string(v);
}

std::string architectures() { return ADLK_CUDA_ARCHS; }

}  // namespace adlk::cuda
