#include "adlk/embedding.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "adlk/parallel.h"
#include "adlk/tuning.h"

namespace adlk {

namespace {

bool parallel(index_t work) { return work >= kElementwiseParallelGrain && get_num_threads() > 1; }

// out[0 .. w) = 0 + the rows rows[first .. last) of g (each of stride D), added in order.
template <typename T>
ADLK_MULTIVERSION void sum_rows(const T* g, index_t D, const index_t* rows, index_t first,
                                index_t last, index_t w, T* out) {
  std::fill(out, out + w, T(0));
  for (index_t k = first; k < last; ++k) {
    const T* src = g + rows[k] * D;
#pragma omp simd
    for (index_t j = 0; j < w; ++j) out[j] += src[j];
  }
}

[[noreturn]] void bad_index(index_t v, index_t p, index_t V) {
  fail("indices: value " + std::to_string(v) + " at [" + std::to_string(p) + "] is outside [0, " +
       std::to_string(V) + ")");
}

void check_sizes(index_t n, index_t V, index_t D) {
  check(n >= 0 && V >= 0 && D >= 0, "embedding: need n, V, D >= 0");
  mul_checked(n, D, "embedding: output size");
  mul_checked(V, D, "embedding: weight size");
}

}  // namespace

template <typename I>
void embedding_check(index_t n, index_t V, index_t D, const I* indices) {
  check_sizes(n, V, D);
  for (index_t p = 0; p < n; ++p) {
    const index_t v = index_t(indices[p]);
    if (v < 0 || v >= V) bad_index(v, p, V);
  }
}

template <typename T, typename I>
void embedding_forward(index_t n, index_t V, index_t D, const I* indices, const T* weight, T* y) {
  embedding_check(n, V, D, indices);
  if (D == 0) return;
  const std::size_t row_bytes = std::size_t(D) * sizeof(T);
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(n * D))
  for (index_t p = 0; p < n; ++p) {
    // read once and bounded again: indices changed by another thread since the check (the
    // GIL is released) give a zero row, never a read outside weight
    const index_t v = index_t(indices[p]);
    if (v >= 0 && v < V)
      std::memcpy(y + p * D, weight + v * D, row_bytes);
    else
      std::memset(y + p * D, 0, row_bytes);
  }
}

template <typename T, typename I>
void embedding_backward(index_t n, index_t V, index_t D, const T* grad_y, const I* indices,
                        index_t padding_idx, T* grad_weight) {
  check_sizes(n, V, D);
  check(padding_idx < V, "embedding_backward: padding_idx must be < V");
  // The indices are read once, into `key`, and checked there: the sort below indexes with
  // them twice, so they must not change in between (the GIL is released).
  std::vector<index_t> key(static_cast<std::size_t>(n));
  for (index_t p = 0; p < n; ++p) {
    key[p] = index_t(indices[p]);
    if (key[p] < 0 || key[p] >= V) bad_index(key[p], p, V);
  }
  if (V == 0 || D == 0) return;
  // Stable counting sort: order[start[v] .. start[v + 1]) are the positions of index v,
  // ascending.
  std::vector<index_t> start(static_cast<std::size_t>(V) + 1, 0);
  for (index_t p = 0; p < n; ++p) ++start[key[p] + 1];
  for (index_t v = 0; v < V; ++v) start[v + 1] += start[v];
  std::vector<index_t> order(static_cast<std::size_t>(n));
  {
    std::vector<index_t> next(start.begin(), start.end() - 1);
    for (index_t p = 0; p < n; ++p) order[next[key[p]]++] = p;
  }
  // Work items: (row, column block). A row's positions are summed by one thread in order,
  // so no result depends on how the items are shared out.
  const index_t blocks = (D + kEmbeddingColumns - 1) / kEmbeddingColumns;
  const index_t items = V * blocks;  // <= V * D, checked above
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) \
    if (parallel(add_checked(V, n, "embedding_backward: work") * D))
  for (index_t it = 0; it < items; ++it) {
    const index_t v = it / blocks, c0 = (it % blocks) * kEmbeddingColumns;
    const index_t w = std::min(kEmbeddingColumns, D - c0);
    const bool skip = v == padding_idx;
    sum_rows(grad_y + c0, D, order.data(), skip ? 0 : start[v], skip ? 0 : start[v + 1], w,
             grad_weight + v * D + c0);
  }
}

#define ADLK_INSTANTIATE_EMBEDDING(T, I)                                                      \
  template void embedding_forward<T, I>(index_t, index_t, index_t, const I*, const T*, T*); \
  template void embedding_backward<T, I>(index_t, index_t, index_t, const T*, const I*,     \
                                         index_t, T*);

template void embedding_check<std::int64_t>(index_t, index_t, index_t, const std::int64_t*);
template void embedding_check<std::int32_t>(index_t, index_t, index_t, const std::int32_t*);
ADLK_INSTANTIATE_EMBEDDING(float, std::int64_t)
ADLK_INSTANTIATE_EMBEDDING(double, std::int64_t)
ADLK_INSTANTIATE_EMBEDDING(float, std::int32_t)
ADLK_INSTANTIATE_EMBEDDING(double, std::int32_t)

}  // namespace adlk
