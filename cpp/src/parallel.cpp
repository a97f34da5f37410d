#include "adlk/parallel.h"

#include <omp.h>

#include <atomic>
#include <string>

#include "adlk/blas.h"

#ifndef ADLK_CXX_COMPILER
#define ADLK_CXX_COMPILER "unknown"
#endif
#ifndef ADLK_BLAS_VERSION
#define ADLK_BLAS_VERSION "unknown"
#endif

extern "C" char* scipy_openblas_get_config(void);

namespace adlk {

namespace {
// 0 = not set yet: use OpenMP's default (all cores, or OMP_NUM_THREADS).
std::atomic<int> g_num_threads{0};
}  // namespace

void set_num_threads(int n) {
  check(n >= 1, "set_num_threads: n must be >= 1");
  g_num_threads.store(n);
  omp_set_num_threads(n);
}

int get_num_threads() {
  int n = g_num_threads.load();
  return n > 0 ? n : omp_get_max_threads();
}

const char* compiler_version() { return ADLK_CXX_COMPILER; }

const char* openmp_version() {
  static const std::string v = std::to_string(_OPENMP);
  return v.c_str();
}

const char* blas_version() { return ADLK_BLAS_VERSION; }
const char* blas_config() { return scipy_openblas_get_config(); }

bool sanitized_build() {
#ifdef ADLK_SANITIZED
  return true;
#else
  return false;
#endif
}

}  // namespace adlk

#include <cstdlib>
#include <memory>

#include "adlk/scratch.h"

namespace adlk {

namespace {
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
struct ScratchSlot {
  std::unique_ptr<void, FreeDeleter> data;
  std::size_t bytes = 0;
};
thread_local ScratchSlot t_scratch[kScratchSlots];
}  // namespace

void* thread_scratch_or_null(int slot, std::size_t bytes) noexcept {
  if (slot < 0 || slot >= kScratchSlots) return nullptr;
  ScratchSlot& s = t_scratch[slot];
  if (bytes > s.bytes) {
    const std::size_t rounded = bytes / 64 * 64 + (bytes % 64 ? 64 : 0);
    if (rounded < bytes) return nullptr;  // wrapped around: no such memory
    // The old contents are not kept: free them first, so the peak is the new size alone.
    s.data.reset();
    s.bytes = 0;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) return nullptr;
    s.data.reset(p);
    s.bytes = rounded;
  }
  return s.data.get();
}

}  // namespace adlk
