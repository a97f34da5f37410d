#include "adlk/parallel.h"
#include "adlk/tuning.h"

#include <omp.h>
#include <pthread.h>

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
// Set once a kernel may have started OpenMP worker threads (asked for a team of more
// than one). A child forked after that cannot run a team: GNU OpenMP's pool threads
// did not survive the fork, and the first parallel region would wait for them forever.
std::atomic<bool> g_team_started{false};
// In such a child every kernel runs on the calling thread alone (teams of one never
// touch the pool). PyTorch does the same for its intra-op pool.
std::atomic<bool> g_single_after_fork{false};

void on_fork_child() {
  if (g_team_started.load(std::memory_order_relaxed))
    g_single_after_fork.store(true, std::memory_order_relaxed);
}

// Registered when the library is loaded, before any kernel can start a team.
const int g_atfork_registered = pthread_atfork(nullptr, nullptr, on_fork_child);
}  // namespace

void set_num_threads(int n) {
  check(n >= 1 && n <= kMaxThreads, "set_num_threads: n must be in [1, kMaxThreads]");
  g_num_threads.store(n);
  if (!g_single_after_fork.load(std::memory_order_relaxed)) omp_set_num_threads(n);
}

int get_num_threads() {
  if (g_single_after_fork.load(std::memory_order_relaxed)) return 1;
  const int set = g_num_threads.load();
  const int n = set > 0 ? set : omp_get_max_threads();
  // Callers ask just before starting a team; remember that one may exist from now on.
  if (n > 1 && !g_team_started.load(std::memory_order_relaxed))
    g_team_started.store(true, std::memory_order_relaxed);
  return n;
}

bool single_threaded_after_fork() {
  (void)g_atfork_registered;
  return g_single_after_fork.load(std::memory_order_relaxed);
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
