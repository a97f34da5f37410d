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

// Portability of the few compiler extensions the kernels use.
// ADLK_MULTIVERSION: compile a function for baseline x86-64 and for AVX2 (x86-64-v3),
// picked once at load time (GCC on x86-64 with ifunc support; elsewhere a plain function).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ADLK_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ADLK_MULTIVERSION
#endif
// ADLK_KEEP_LOOPS: keep short copy loops as loops (GCC would turn them into memcpy calls,
// whose call overhead exceeds the work for short rows).
#if defined(__GNUC__) && !defined(__clang__)
#define ADLK_KEEP_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define ADLK_KEEP_LOOPS
#endif
// ADLK_VECTOR_EXT: GCC vector extensions with __builtin_shuffle are available.
#if defined(__GNUC__) && !defined(__clang__)
#define ADLK_VECTOR_EXT 1
#endif

namespace adlk {

// All index arithmetic is 64-bit: sizes up to the memory of the machine work.
using index_t = std::int64_t;

[[noreturn]] inline void fail(const std::string& what) { throw std::invalid_argument(what); }

inline void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

// a * b for sizes (both >= 0); a product that does not fit in 64 bits throws
// std::length_error naming `what` (a ValueError in Python) instead of wrapping around.
inline index_t checked_mul(index_t a, index_t b, const char* what) {
  index_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw std::length_error(std::string(what) + " overflows");
  return r;
}

}  // namespace adlk
