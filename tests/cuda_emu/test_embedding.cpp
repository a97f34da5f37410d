// The CUDA embedding launchers (cuda/embedding.cu) on CPU threads, against the CPU library.
// The forward is a copy and the backward adds each group in position order in T, as the
// CPU kernel does: both must be bitwise equal to the CPU's, for int64 and int32 indices,
// with and without padding_idx, on small and edge geometries (no position, one row, many
// empty rows, rows wider than a block, every position on one row).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "adlk/cuda/embedding.h"
#include "adlk/embedding.h"
#include "check.h"
#include "test_cuda_emu.h"

namespace {

using adlk::index_t;
using cuda_emu_test::check;

template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

struct Case {
  index_t n, V, D;
  bool one_row;  // every position on index V / 2
};

template <typename T, typename I>
void test_case(const Case& c, index_t padding_idx, std::mt19937_64& rng) {
  const std::string name = "embedding n" + std::to_string(c.n) + " V" + std::to_string(c.V) + " D" +
                           std::to_string(c.D) + " pad" + std::to_string(padding_idx) +
                           (sizeof(T) == 4 ? " float" : " double") + (sizeof(I) == 4 ? " int32" : " int64");
  std::uniform_real_distribution<double> val(-2, 2);
  std::uniform_int_distribution<index_t> idx(0, std::max<index_t>(0, c.V - 1));
  std::vector<I> indices(static_cast<std::size_t>(c.n));
  for (I& i : indices) i = I(c.one_row ? c.V / 2 : idx(rng));
  std::vector<T> weight(static_cast<std::size_t>(c.V * c.D)), grad_y(static_cast<std::size_t>(c.n * c.D));
  for (T& w : weight) w = T(val(rng));
  for (T& g : grad_y) g = T(val(rng));
  if (!grad_y.empty()) grad_y[0] = T(-0.0);  // 0 + -0 is +0: the sum must start from 0 as the CPU's

  const T nan = std::numeric_limits<T>::quiet_NaN();  // sentinel: every element must be written
  std::vector<T> y_cpu(grad_y.size()), y_gpu(grad_y.size(), nan);
  adlk::embedding_forward<T, I>(c.n, c.V, c.D, indices.data(), weight.data(), y_cpu.data());
  adlk::cuda::embedding_forward<T, I>(c.n, c.V, c.D, indices.data(), weight.data(), y_gpu.data(), nullptr);
  check(same_bits(y_cpu, y_gpu), name + " forward");

  // cupy's argsort is stable: positions grouped by index, ascending within a group
  std::vector<std::int64_t> order(static_cast<std::size_t>(c.n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) { return indices[a] < indices[b]; });
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(c.V + 1), -7);
  std::vector<T> gw_cpu(weight.size()), gw_gpu(weight.size(), nan);
  adlk::embedding_backward<T, I>(c.n, c.V, c.D, grad_y.data(), indices.data(), padding_idx, gw_cpu.data());
  adlk::cuda::embedding_backward<T, I>(c.n, c.V, c.D, grad_y.data(), indices.data(), order.data(), padding_idx,
                                       offsets.data(), gw_gpu.data(), nullptr);
  check(same_bits(gw_cpu, gw_gpu), name + " backward");
  if (c.V * c.D > 0) {  // the group offsets: index v's positions are order[offsets[v] .. offsets[v + 1])
    bool ok = offsets[0] == 0 && offsets[std::size_t(c.V)] == c.n;
    for (index_t v = 0; v < c.V; ++v)
      ok = ok && offsets[v + 1] - offsets[v] == std::count(indices.begin(), indices.end(), I(v));
    check(ok, name + " offsets");
  }
}

}  // namespace

template <typename T>
void run_embedding(std::mt19937_64& rng) {
  const std::vector<Case> cases = {
      {0, 5, 3, false},   {1, 1, 1, false},   {7, 3, 5, false},    {40, 10, 17, false},
      {9, 4, 300, false}, {30, 200, 4, false}, {5, 4, 0, false},    {0, 0, 4, false},
      {25, 6, 33, true},  {3, 2, 257, true},
  };
  for (const Case& c : cases)
    for (index_t pad : {index_t(-1), index_t(0), c.V - 1}) {
      if (pad >= c.V) continue;
      test_case<T, std::int64_t>(c, pad, rng);
      test_case<T, std::int32_t>(c, pad, rng);
    }
  // A broken precondition (an index outside [0, V), the caller's check skipped) gives a
  // zero row in the forward and touches no memory outside the arrays (AddressSanitizer).
  const std::vector<std::int64_t> bad = {0, 5, -1, 2};
  std::vector<T> w(3 * 2, T(1)), y(8, T(-1));
  adlk::cuda::embedding_forward<T, std::int64_t>(4, 3, 2, bad.data(), w.data(), y.data(), nullptr);
  check(y == std::vector<T>{1, 1, 0, 0, 0, 0, 1, 1}, "embedding forward out-of-range rows are 0");
  std::vector<std::int64_t> order = {0, 3, 1, 2}, offsets(4);
  std::vector<T> gy(8, T(1)), gw(6, T(-1));
  adlk::cuda::embedding_backward<T, std::int64_t>(4, 3, 2, gy.data(), bad.data(), order.data(), -1,
                                                  offsets.data(), gw.data(), nullptr);
  check(std::all_of(gw.begin(), gw.end(), [](T v) { return std::isfinite(v); }),
        "embedding backward with out-of-range indices stays in bounds");
}

template void run_embedding<float>(std::mt19937_64&);
template void run_embedding<double>(std::mt19937_64&);
