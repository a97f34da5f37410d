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
#include <type_traits>
#include <utility>

// Portability of the few compiler extensions the kernels use.
// ADLK_MULTIVERSION: compile a function for baseline x86-64 and for AVX2 (x86-64-v3),
// picked once at load time (GCC on x86-64 with ifunc support, ADLK_TARGET_CLONES 1;
// elsewhere a plain function). Not under ThreadSanitizer, whose instrumented ifunc
// resolvers would run before its runtime is initialized. (The recurrent gate loops add an
// AVX-512 build of their own, chosen with the GEMM kernel: rnn.cpp, gate_loop.)
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(__SANITIZE_THREAD__)
#define ADLK_TARGET_CLONES 1
#define ADLK_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ADLK_TARGET_CLONES 0
#define ADLK_MULTIVERSION
#endif
// ADLK_KEEP_LOOPS: keep short copy loops as loops (GCC would turn them into memcpy calls,
// whose call overhead exceeds the work for short rows).
#if defined(__GNUC__) && !defined(__clang__)
#define ADLK_KEEP_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define ADLK_KEEP_LOOPS
#endif
// ADLK_HD: a function of the shared per-element arithmetic (adlk/vecmath.h,
// adlk/optim_update.h), compiled for the host and, under nvcc, for the device too: the CPU
// and CUDA kernels run the same expressions (the CUDA build turns off FMA contraction, as
// the CPU build does for optim.cpp), so they give the same bits.
#ifdef __CUDACC__
#define ADLK_HD __host__ __device__
#else
#define ADLK_HD
#endif
// ADLK_ALWAYS_INLINE: inlined into the vectorized (CPU) or per-thread (CUDA) loop.
#if defined(__GNUC__) || defined(__CUDACC__)
#define ADLK_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ADLK_ALWAYS_INLINE inline
#endif
// ADLK_VECTOR_EXT: GCC vector extensions with __builtin_shuffle are available.
#if defined(__GNUC__) && !defined(__clang__)
#define ADLK_VECTOR_EXT 1
#endif

// The explicit instantiation of function template fn for type T, its signature taken from
// the declaration (the header states it once; the instantiation does not repeat it).
#define ADLK_INSTANTIATE(fn, T) template decltype(fn<T>) fn<T>;

namespace adlk {

// All index arithmetic is 64-bit: sizes up to the memory of the machine work.
using index_t = std::int64_t;

[[noreturn]] inline void fail(const std::string& what) { throw std::invalid_argument(what); }

inline void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

// Size arithmetic. Sizes (element counts, byte counts) are products of array dimensions
// and geometry arguments; a product that does not fit index_t names no possible array
// and throws std::length_error (ValueError in Python), naming `what`, before anything is
// allocated. Operands must be >= 0.
[[noreturn]] inline void size_overflow(const char* what, index_t a, const char* op, index_t b) {
  throw std::length_error(std::string(what) + ": " + std::to_string(a) + op +
                          std::to_string(b) + " does not fit 64-bit sizes");
}

inline index_t mul_checked(index_t a, index_t b, const char* what) {
  index_t r;
  if (__builtin_mul_overflow(a, b, &r)) size_overflow(what, a, " * ", b);
  return r;
}

inline index_t add_checked(index_t a, index_t b, const char* what) {
  index_t r;
  if (__builtin_add_overflow(a, b, &r)) size_overflow(what, a, " + ", b);
  return r;
}

// f(std::bool_constant<b1>{}, std::bool_constant<b2>{}, ...) for runtime flags b1, b2, ...:
// one call picks the instantiation of a kernel templated on its variant flags (read
// them as decltype(flag)::value).
template <bool... Fixed, typename F>
decltype(auto) with_flags(F&& f) {
  return f(std::bool_constant<Fixed>{}...);
}
template <bool... Fixed, typename F, typename... Rest>
decltype(auto) with_flags(F&& f, bool b, Rest... rest) {
  return b ? with_flags<Fixed..., true>(std::forward<F>(f), rest...)
           : with_flags<Fixed..., false>(std::forward<F>(f), rest...);
}

// a * b, or INT64_MAX when that does not fit: for cost estimates that only compare.
inline index_t mul_saturated(index_t a, index_t b) {
  index_t r;
  return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

}  // namespace adlk
