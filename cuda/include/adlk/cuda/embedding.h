// CUDA embedding lookup and weight gradient: host launchers (plain C++ header).
//
// The CUDA counterparts of adlk/embedding.h (read it), on device pointers of C-contiguous
// arrays, enqueued on `stream` (a cudaStream_t as void*). Indices are int64 or int32 (I).
// The caller checks the indices first (adlkernels._cuda: every index in [0, V)); an index
// outside breaks no bound here: its forward row is 0 and the backward reads no memory
// through it.
//
// The backward is deterministic without atomics: `order` is a stable argsort of the
// indices (positions grouped by index, ascending within a group; the Python layer takes
// cupy's argsort, which is stable); one kernel finds the offsets of each index's group
// (a binary search per index), another gives each element (v, j) of grad_weight one
// thread that adds grad_y[p, j] over the group of v in position order, starting from 0:
// the plain loop of the CPU kernel, so the result equals the CPU's bit for bit.
#pragma once

#include <cstdint>

#include "adlk/common.h"

namespace adlk::cuda {

// y (n, D) = weight (V, D) rows at indices (n,).
template <typename T, typename I>
void embedding_forward(index_t n, index_t V, index_t D, const I* indices, const T* weight, T* y,
                       void* stream);

// grad_weight (V, D) from grad_y (n, D); order (n,) a stable argsort of indices; offsets a
// workspace of V + 1 int64; padding_idx in [0, V) or negative for none.
template <typename T, typename I>
void embedding_backward(index_t n, index_t V, index_t D, const T* grad_y, const I* indices,
                        const std::int64_t* order, index_t padding_idx, std::int64_t* offsets,
                        T* grad_weight, void* stream);

}  // namespace adlk::cuda
