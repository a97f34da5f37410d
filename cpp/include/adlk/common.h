// Shared types and argument checks of the adlkernels C++ core.
//
// The core is plain C++17 + OpenMP: no Python headers, so any C++ program can link
// it. Kernels take raw pointers to C-contiguous arrays plus a geometry struct; they
// check the geometry themselves (std::invalid_argument) but trust the caller that each
// pointer holds the number of elements the geometry implies.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace adlk {

// All index arithmetic is 64-bit: sizes up to the memory of the machine work.
using index_t = std::int64_t;

[[noreturn]] inline void fail(const std::string& what) { throw std::invalid_argument(what); }

inline void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

}  // namespace adlk
