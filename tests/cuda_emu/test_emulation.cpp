// The emulation harness itself (adlk/cuda/emulation.h), on small kernels whose results
// are known: built-in indices, __syncthreads with threads that return early, shared
// memory, warp shuffles (down, up, xor, indexed, with widths below 32), __syncwarp,
// atomics, partial last warps (blocks of 48 and 100 threads) and launch errors.
// Run under ThreadSanitizer and ASan + UBSan like test_cuda_emu.cpp; ends with
// "N passed, N failed".
#define ADLK_CUDA_EMULATION 1
#include <cstdio>
#include <string>
#include <vector>

#include "check.h"

#include "adlk/cuda/common.cuh"

namespace {

using cuda_emu_test::check;

// Each thread writes its global index; a 2-d grid of 2-d blocks.
__global__ void indices_kernel(int* out) {
  const unsigned bx = blockIdx.y * gridDim.x + blockIdx.x;
  const unsigned tx = threadIdx.y * blockDim.x + threadIdx.x;
  const unsigned per_block = blockDim.x * blockDim.y;
  out[bx * per_block + tx] = int(bx * 1000 + tx);
}

// Block sum through shared memory; threads with tid >= active return before the first
// barrier (the others' __syncthreads must not wait for them).
__global__ void block_sum_kernel(const int* in, int* out, int active) {
  __shared__ int buf[128];
  const int tid = int(threadIdx.x);
  if (tid >= active) return;
  buf[tid] = in[blockIdx.x * blockDim.x + unsigned(tid)];
  __syncthreads();
  if (tid == 0) {
    int s = 0;
    for (int i = 0; i < active; ++i) s += buf[i];
    out[blockIdx.x] = s;
  }
  __syncthreads();  // buf is read before the next block (here: a later launch) writes it
}

// Warp sums by __shfl_down_sync within segments of `width` lanes.
__global__ void shfl_down_kernel(const int* in, int* out, int width) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  int v = in[i];
  for (int d = width / 2; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, unsigned(d), width);
  out[i] = v;  // the first lane of each segment holds the segment's sum
}

// Inclusive scan by __shfl_up_sync; butterfly sum by __shfl_xor_sync; broadcast of lane 3
// by __shfl_sync; all with width 32.
__global__ void shfl_misc_kernel(const int* in, int* scan, int* xsum, int* bcast) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  const int lane = int(threadIdx.x) % warpSize;
  int v = in[i];
  for (int d = 1; d < warpSize; d *= 2) {
    const int up = __shfl_up_sync(0xffffffffu, v, unsigned(d));
    if (lane >= d) v += up;
  }
  scan[i] = v;
  int x = in[i];
  for (int m = warpSize / 2; m > 0; m /= 2) x += __shfl_xor_sync(0xffffffffu, x, m);
  xsum[i] = x;
  bcast[i] = __shfl_sync(0xffffffffu, in[i], 3);
  __syncwarp();
}

__global__ void atomics_kernel(int* counter, unsigned long long* minimum, double* total) {
  const unsigned long long i = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(counter, 1);
  atomicMin(minimum, 1000ull - i);
  atomicAdd(total, 0.5);  // exact in double for these counts
}

void test_indices() {
  const dim3 grid(3, 2), block(4, 5);
  std::vector<int> out(6 * 20, -1);
  ADLK_LAUNCH(grid, block, 0, nullptr, indices_kernel)(out.data());
  bool ok = cudaGetLastError() == cudaSuccess;
  for (int b = 0; b < 6; ++b)
    for (int t = 0; t < 20; ++t) ok = ok && out[std::size_t(b * 20 + t)] == b * 1000 + t;
  check(ok, "blockIdx/threadIdx/blockDim/gridDim in 2-d");
}

void test_block_sum(int threads, int active) {
  const int blocks = 3;
  std::vector<int> in(static_cast<std::size_t>(blocks * threads)), out(blocks, -1);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = int(i % 7) - 3;
  ADLK_LAUNCH(blocks, threads, 0, nullptr, block_sum_kernel)(in.data(), out.data(), active);
  bool ok = true;
  for (int b = 0; b < blocks; ++b) {
    int s = 0;
    for (int t = 0; t < active; ++t) s += in[std::size_t(b * threads + t)];
    ok = ok && out[std::size_t(b)] == s;
  }
  check(ok, "__syncthreads with early returns, " + std::to_string(threads) + " threads, " +
                std::to_string(active) + " active");
}

void test_shuffles(int threads) {
  const int blocks = 2, n = blocks * threads;
  std::vector<int> in(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) in[std::size_t(i)] = (i * 37) % 11 - 5;
  for (int width : {32, 8, 4}) {
    std::vector<int> out(static_cast<std::size_t>(n), -1);
    ADLK_LAUNCH(blocks, threads, 0, nullptr, shfl_down_kernel)(in.data(), out.data(), width);
    bool ok = true;
    for (int b = 0; b < blocks; ++b)
      for (int seg = 0; seg * width < threads; ++seg) {
        const int first = seg * width;
        // Lanes of a partial last warp read themselves past the block's end (CUDA leaves
        // inactive lanes undefined): check only whole segments.
        if (first + width > threads) continue;
        int s = 0;
        for (int l = 0; l < width; ++l) s += in[std::size_t(b * threads + first + l)];
        ok = ok && out[std::size_t(b * threads + first)] == s;
      }
    check(ok, "__shfl_down_sync width " + std::to_string(width) + ", " + std::to_string(threads) +
                  " threads");
  }
  const auto un = static_cast<std::size_t>(n);
  std::vector<int> scan(un), xsum(un), bcast(un);
  ADLK_LAUNCH(blocks, threads, 0, nullptr, shfl_misc_kernel)(in.data(), scan.data(), xsum.data(),
                                                              bcast.data());
  bool ok_scan = true, ok_x = true, ok_b = true;
  for (int b = 0; b < blocks; ++b)
    for (int w = 0; (w + 1) * 32 <= threads; ++w) {  // whole warps
      const int base = b * threads + w * 32;
      int run = 0, total = 0;
      for (int l = 0; l < 32; ++l) total += in[std::size_t(base + l)];
      for (int l = 0; l < 32; ++l) {
        run += in[std::size_t(base + l)];
        ok_scan = ok_scan && scan[std::size_t(base + l)] == run;
        ok_x = ok_x && xsum[std::size_t(base + l)] == total;
        ok_b = ok_b && bcast[std::size_t(base + l)] == in[std::size_t(base + 3)];
      }
    }
  check(ok_scan, "__shfl_up_sync scan, " + std::to_string(threads) + " threads");
  check(ok_x, "__shfl_xor_sync butterfly, " + std::to_string(threads) + " threads");
  check(ok_b, "__shfl_sync broadcast, " + std::to_string(threads) + " threads");
}

void test_atomics() {
  int counter = 0;
  unsigned long long minimum = ~0ull;
  double total = 0;
  ADLK_LAUNCH(4, 100, 0, nullptr, atomics_kernel)(&counter, &minimum, &total);
  check(counter == 400 && minimum == 1000ull - 399 && total == 200.0, "atomicAdd, atomicMin");
}

void test_launch_errors() {
  int out = 0;
  ADLK_LAUNCH(1, 2048, 0, nullptr, indices_kernel)(&out);
  check(cudaGetLastError() == cudaErrorInvalidConfiguration && cudaGetLastError() == cudaSuccess,
        "a block of 2048 threads is an invalid configuration, reported once");
}

}  // namespace

int main() {
  test_indices();
  for (int threads : {32, 48, 100, 128}) test_block_sum(threads, threads);
  test_block_sum(100, 37);
  test_block_sum(48, 1);
  for (int threads : {32, 48, 64, 100}) test_shuffles(threads);
  test_atomics();
  test_launch_errors();
  return cuda_emu_test::report();
}
