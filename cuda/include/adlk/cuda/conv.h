// CUDA conv: host launchers (plain C++ header: no CUDA headers, streams as void*).
//
// The GPU convolution is im2col + GEMM like the CPU one (adlk/conv.h); the GEMMs are
// run by the Python layer through cuBLAS, these are the kernels around them. Layouts
// are those of adlk/conv.h: NCHW C-contiguous; the column matrix of one image is
// (C*kH*kW, L), L = H_out*W_out, row (c*kH + kh)*kW + kw, column oh*W_out + ow.
//
// Every launcher takes a finalized Conv2dGeom (or plain sizes), device pointers and a
// cudaStream_t passed as void* (nullptr: the legacy default stream); it launches on
// that stream and returns without synchronizing. Argument errors throw
// std::invalid_argument (before anything is launched), size overflow
// std::overflow_error, CUDA errors std::runtime_error. Empty work launches nothing.
//
// Determinism: no kernel uses atomics or a launch-dependent order; each output element
// is computed by one thread (or, for channel_sums, one block of a fixed size) in a
// fixed order, so results are bitwise repeatable run to run and across GPUs of the
// same arithmetic. im2col and col2im are bitwise equal to the CPU adlk::im2col /
// adlk::col2im.
#pragma once

#include <cstddef>

#include "adlk/common.h"
#include "adlk/conv.h"

namespace adlk::cuda {

// Images [n0, n0 + nb) of x (N, C, H, W) -> cols (nb, C*kH*kW, L): zero outside the
// input (torch.nn.functional.unfold).
template <typename T>
void im2col(const T* x, T* cols, const Conv2dGeom& g, index_t n0, index_t nb, void* stream);

// cols (nb, C*kH*kW, L) -> images [n0, n0 + nb) of x (N, C, H, W), overwritten, the
// overlapping windows summed (torch.nn.functional.fold). Other images are untouched.
template <typename T>
void col2im(const T* cols, T* x, const Conv2dGeom& g, index_t n0, index_t nb, void* stream);

// db[c] = sum over n, l of dy[n, c, l], dy (N, C, L); accumulated in double.
template <typename T>
void channel_sums(const T* dy, T* db, index_t N, index_t C, index_t L, void* stream);

// out[j] = ((init + partials[0*count + j]) + partials[1*count + j]) + ..., b ascending,
// init = out[j] if accumulate else 0, accumulated in T; partials (nb, count).
template <typename T>
void sum_batches(const T* partials, T* out, index_t nb, index_t count, bool accumulate,
                 void* stream);

// Elements a workspace chunk of nb images needs: the column matrix (nb, C*kH*kW, L) plus
// the per-image grad_weight partials (nb, C_out, C/groups*kH*kW). Throws
// std::overflow_error when that does not fit in 63 bits.
index_t conv2d_workspace_elems(const Conv2dGeom& g, index_t nb);

// Images per workspace chunk: the largest nb whose workspace (elements * elem_size bytes)
// fits in budget_bytes, clamped to [1, max(N, 1)] (one image even over budget).
index_t conv2d_chunk_images(const Conv2dGeom& g, std::size_t elem_size, index_t budget_bytes);

}  // namespace adlk::cuda
