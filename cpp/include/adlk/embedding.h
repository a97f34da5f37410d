// Embedding lookup (forward) and its weight gradient (backward), as torch.nn.functional.embedding.
//
// indices: n positions (the flattened index array), int64 or int32 (I); weight (V, D);
// y (n, D) with y[p] = weight[indices[p]]. The backward sums grad_y's rows per index:
// grad_weight[v] = sum over p with indices[p] == v of grad_y[p], taken in position order,
// row padding_idx zero. It runs without atomics: a stable counting sort groups the
// positions by index, then threads split the rows (and column blocks) of grad_weight, so
// every element is the plain loop `for p: grad_weight[indices[p]] += grad_y[p]` on zeros,
// bit for bit, for any thread count.
//
// Both check every index before writing anything: one outside [0, V) throws
// std::invalid_argument naming `indices`, its value and its position.
#pragma once

#include <cstdint>

#include "adlk/common.h"

namespace adlk {

// Throws std::invalid_argument for the first index outside [0, V) (std::length_error
// where n * D or V * D do not fit 64-bit sizes).
template <typename I>
void embedding_check(index_t n, index_t V, index_t D, const I* indices);

template <typename T, typename I>
void embedding_forward(index_t n, index_t V, index_t D, const I* indices, const T* weight, T* y);

// padding_idx in [0, V), or negative for none. grad_weight (V, D) is written whole.
template <typename T, typename I>
void embedding_backward(index_t n, index_t V, index_t D, const T* grad_y, const I* indices,
                        index_t padding_idx, T* grad_weight);

}  // namespace adlk
