// Device queries of the CUDA backend (plain C++ header: no CUDA headers needed).
#pragma once

#include <string>

namespace adlk::cuda {

// Number of visible CUDA devices; 0 when there is no driver or no device (never throws).
int device_count();
// CUDA runtime version the module was built with, as "major.minor".
std::string runtime_version();
// Driver version as "major.minor", or "" when no driver is installed.
std::string driver_version();
// CMAKE_CUDA_ARCHITECTURES of the build, comma separated.
std::string architectures();

}  // namespace adlk::cuda
