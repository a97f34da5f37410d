// CUDA on the CPU: the unchanged .cu kernel sources, compiled by a C++20 compiler with
// -DADLK_CUDA_EMULATION, run here as ordinary threads, so that ThreadSanitizer and
// AddressSanitizer can check them on a machine without a GPU (tests/cuda_emu/).
//
// Model (what makes races and overruns visible, not what makes it fast):
// - a launch runs its blocks one at a time, in order; each block runs one OS thread per
//   CUDA thread, all at once, so the threads of a block really interleave (the threads
//   are a team kept between launches);
// - __syncthreads() is a barrier of the block's threads that a thread leaves when it
//   returns from the kernel (std::barrier::arrive_and_drop), as on the hardware;
// - __shared__ variables are static locals: one block at a time makes them the block's
//   shared memory (uninitialized between blocks in CUDA; here they keep old values);
// - warps are 32 consecutive threads (threadIdx.x fastest); __syncwarp() is a barrier
//   of the warp's live lanes and the __shfl_*_sync functions exchange values through
//   it, with `width` segments as in CUDA;
// - atomics are std::atomic_ref operations (sequentially consistent);
// - streams are ignored: every launch and copy is complete when it returns; device
//   memory is host memory (cudaMalloc is malloc).
// Launches go through ADLK_LAUNCH (adlk/cuda/common.cuh), which is <<<...>>> under nvcc.
// Launches are serialized (one emulated device).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---- language ---------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)
// One block at a time: a static local is the running block's shared memory.
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};
inline constexpr int warpSize = 32;

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

// ---- runtime API (the part the kernels' launchers use) ---------------------------------------
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
};
using cudaStream_t = void*;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
#define CUDART_VERSION 0

namespace adlk::cuda::emu {

inline thread_local cudaError_t t_last_error = cudaSuccess;

// The threads of the running block: its barrier and one barrier per warp.
struct Block {
  explicit Block(int threads)
      : sync(threads), warps((threads + warpSize - 1) / warpSize) {
    for (std::size_t w = 0; w < warps.size(); ++w) {
      const int lanes = std::min<int>(warpSize, threads - int(w) * warpSize);
      warps[w].sync = std::make_unique<std::barrier<>>(lanes);
    }
  }
  std::barrier<> sync;
  struct Warp {
    std::unique_ptr<std::barrier<>> sync;
    std::array<std::array<unsigned char, 16>, warpSize> slots{};  // __shfl exchange
  };
  std::vector<Warp> warps;
};

inline thread_local Block* t_block = nullptr;
inline thread_local int t_linear = 0;  // the thread's index in its block

inline Block::Warp& my_warp() { return t_block->warps[std::size_t(t_linear / warpSize)]; }

// The emulated device: a team of OS threads, kept between launches (creating 256 threads
// per launch would dominate a sanitized test run), grown to the largest block launched.
// A launch hands the team a job; workers 0..threads-1 run it, the others sit it out.
class Device {
 public:
  static Device& get() {
    static Device d;
    return d;
  }

  // Runs job(t) on workers t = 0..threads-1 and returns when all have finished.
  void run(int threads, const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> one_launch(launch_mutex_);
    std::unique_lock<std::mutex> lock(m_);
    while (int(workers_.size()) < threads) {
      const int id = int(workers_.size());
      workers_.emplace_back([this, id] { work(id); });
    }
    job_ = &job;
    job_threads_ = threads;
    remaining_ = threads;
    ++generation_;
    wake_.notify_all();
    done_.wait(lock, [this] { return remaining_ == 0; });
    job_ = nullptr;
  }

  ~Device() {
    {
      std::lock_guard<std::mutex> lock(m_);
      stop_ = true;
      ++generation_;
    }
    wake_.notify_all();
    for (std::thread& w : workers_) w.join();
  }

 private:
  void work(int id) {
    std::uint64_t seen = 0;
    {
      std::lock_guard<std::mutex> lock(m_);
      seen = generation_ - (job_ != nullptr && id < job_threads_ ? 1 : 0);
    }
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(m_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
        if (id >= job_threads_) continue;
        job = job_;
      }
      (*job)(id);
      std::lock_guard<std::mutex> lock(m_);
      if (--remaining_ == 0) done_.notify_all();
    }
  }

  std::mutex launch_mutex_, m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  int job_threads_ = 0, remaining_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

// kernel<<<grid, block, shared_bytes, stream>>>(args...), run to completion: the blocks
// one after the other, each by `block` threads of the device team at once.
template <typename... P, typename... A>
void launch(dim3 grid, dim3 block, std::size_t shared_bytes, cudaStream_t, void (*kernel)(P...),
            A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.y > 65535 || grid.z > 65535 || shared_bytes > 48 * 1024) {
    t_last_error = cudaErrorInvalidConfiguration;
    return;
  }
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  const int n = int(threads);
  const unsigned long long blocks = 1ull * grid.x * grid.y * grid.z;
  // Between blocks every thread waits at `phase`; its completion step (run once, after
  // all have arrived) sets up the next block's barriers.
  std::unique_ptr<Block> current;
  unsigned long long next = 0;
  uint3 current_idx{0, 0, 0};
  auto next_block = [&]() noexcept {
    current.reset();
    if (next < blocks) {
      current = std::make_unique<Block>(n);
      current_idx = uint3{unsigned(next % grid.x), unsigned(next / grid.x % grid.y),
                          unsigned(next / (1ull * grid.x * grid.y))};
    }
    ++next;
  };
  std::barrier<decltype(next_block)> phase(n, next_block);
  Device::get().run(n, [&](int t) {
    threadIdx = uint3{unsigned(t) % block.x, unsigned(t) / block.x % block.y,
                      unsigned(t) / (block.x * block.y)};
    blockDim = block;
    gridDim = grid;
    t_linear = t;
    for (;;) {
      phase.arrive_and_wait();
      if (!current) break;
      blockIdx = current_idx;
      t_block = current.get();
      std::apply(kernel, params);  // by value: each thread gets its own parameters
      // Returning leaves the block's barriers, so __syncthreads() of the others goes on.
      my_warp().sync->arrive_and_drop();
      t_block->sync.arrive_and_drop();
      t_block = nullptr;
    }
  });
}

template <typename G, typename B>
auto launcher(G grid, B block, std::size_t shared_bytes, cudaStream_t stream) {
  return [=](auto kernel) {
    return [=](auto&&... args) {
      launch(dim3(grid), dim3(block), shared_bytes, stream, kernel,
             std::forward<decltype(args)>(args)...);
    };
  };
}

template <typename T>
T shuffle(unsigned, T v, int src_lane_in_segment, int width, int lane) {
  static_assert(sizeof(T) <= 16 && std::is_trivially_copyable_v<T>, "__shfl of an unsupported type");
  Block::Warp& w = my_warp();
  std::memcpy(w.slots[std::size_t(lane)].data(), &v, sizeof(T));
  w.sync->arrive_and_wait();
  const int base = lane / width * width;
  T out;
  std::memcpy(&out, w.slots[std::size_t(base + src_lane_in_segment)].data(), sizeof(T));
  w.sync->arrive_and_wait();  // every lane has read before the next exchange writes
  return out;
}

}  // namespace adlk::cuda::emu

#define ADLK_EMU_LANE (::adlk::cuda::emu::t_linear % warpSize)

inline void __syncthreads() { ::adlk::cuda::emu::t_block->sync.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::adlk::cuda::emu::my_warp().sync->arrive_and_wait(); }

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = warpSize) {
  return ::adlk::cuda::emu::shuffle(mask, v, ((src % width) + width) % width, width, ADLK_EMU_LANE);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  const int in_seg = ADLK_EMU_LANE % width;
  const int src = in_seg + int(delta) < width ? in_seg + int(delta) : in_seg;
  return ::adlk::cuda::emu::shuffle(mask, v, src, width, ADLK_EMU_LANE);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  const int in_seg = ADLK_EMU_LANE % width;
  const int src = in_seg - int(delta) >= 0 ? in_seg - int(delta) : in_seg;
  return ::adlk::cuda::emu::shuffle(mask, v, src, width, ADLK_EMU_LANE);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  const int in_seg = ADLK_EMU_LANE % width;
  const int src = (in_seg ^ lane_mask) < width ? (in_seg ^ lane_mask) : in_seg;
  return ::adlk::cuda::emu::shuffle(mask, v, src, width, ADLK_EMU_LANE);
}

template <typename T>
T atomicAdd(T* p, T v) {
  return std::atomic_ref<T>(*p).fetch_add(v);
}
template <typename T>
T atomicExch(T* p, T v) {
  return std::atomic_ref<T>(*p).exchange(v);
}
template <typename T>
T atomicCAS(T* p, T expected, T desired) {
  std::atomic_ref<T>(*p).compare_exchange_strong(expected, desired);
  return expected;
}
template <typename T>
T atomicMin(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
template <typename T>
T atomicMax(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}

inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  }
  return "unknown error";
}
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = ::adlk::cuda::emu::t_last_error;
  ::adlk::cuda::emu::t_last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return ::adlk::cuda::emu::t_last_error; }
inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <typename T>
cudaError_t cudaMalloc(T** p, std::size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
template <typename T>
cudaError_t cudaMallocAsync(T** p, std::size_t bytes, cudaStream_t) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
inline cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
inline cudaError_t cudaMemset(void* p, int v, std::size_t bytes) {
  std::memset(p, v, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int v, std::size_t bytes, cudaStream_t = nullptr) {
  return cudaMemset(p, v, bytes);
}
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes,
                                   cudaMemcpyKind kind, cudaStream_t = nullptr) {
  return cudaMemcpy(dst, src, bytes, kind);
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaDriverGetVersion(int* v) {
  *v = 0;
  return cudaSuccess;
}
