// Convolution by im2col + GEMM, forward and backward, float and double.
//
// Layouts are NCHW, C-contiguous. For image n, the column matrix is (C*kH*kW, L) with
// L = H_out*W_out; row r = (c*kH + kh)*kW + kw, column l = oh*W_out + ow, holding
// x[n, c, oh*sH - pH + kh*dH, ow*sW - pW + kw*dW] (zero where that falls in the
// padding). This is torch.nn.functional.unfold's layout.
//
// Workspace: the batch is never turned into one big column matrix. Work is cut into
// units of (image, block of output rows), or of several whole small images, whose
// column matrix and output rows hold at most kConvBlockBytes (one output row at
// least); each OpenMP thread builds its unit's
// columns in a per-thread scratch buffer (adlk/scratch.h, kept between calls) and runs
// a single-threaded GEMM on them while they are in its cache. Per thread, forward uses
// one block, backward two blocks plus a grad_weight partial (C_out*C/groups*kH*kW),
// and both a band of zero-padded input rows of one channel, where that band is no
// larger than the block's columns (else the columns are gathered from x directly, so
// that no cost grows with the stride, padding or dilation themselves);
// conv_workspace_bytes() gives the total. A 1x1, stride-1, unpadded kernel reads x
// directly and needs no column buffer.
//
// The float32 forward on a CPU with the AVX2 or AVX-512 packed-GEMM kernel
// (adlk/packed_gemm.h) takes another path for stride-1, non-pointwise kernels of depth
// C/groups*kH*kW >= kConvPanelMinDepth (tuning.h; ADLK_CONV_PANELS=always takes it for
// every geometry it can run, =never for none) whose image's shifted input bands (kW
// copies of its padded rows per vertical phase) are no larger than its column matrix and
// within kConvBandBytes: the batch's output positions are cut into 32-column panels
// (running on from one image into the next) and multiplied by the weight with the bias
// fused in. A panel inside one image is read from the bands in place (its rows are runs
// of 32 band elements; gemm_rows_row_bias); one that spans two images is copied into the
// kernel's packed layout first and its outputs staged. Per thread it keeps one image's
// bands, one panel and its staged outputs.
//
// The other float32 forwards of depth >= kConvPackedColumnsMinDepth with a kernel larger
// than 1x1 on such a CPU keep the im2col units but run each unit's GEMM on the same
// kernel, the unit's column matrix read in place 32 positions at a time (a partial last
// panel copied, a panel spanning two images staged), the bias fused. Both paths compute each output as one chain over
// (c, kh, kw) in order from its bias: the same bits, for any thread count.
//
// A depthwise convolution (one input channel per group, at most kConvDepthwiseMaxOutputs
// outputs per group; the backward up to kConvDepthwiseGradMaxOutputs; tuning.h), float32
// or float64, takes a direct kernel instead, on every CPU: each (image, channel) plane
// is copied once into its zero-padded band (the im2col layout, every output row) and
// the outputs are summed from it in register tiles of 4 rows by 8 columns, each its bias
// plus the terms in (kh, kw) order. grad_x of stride 1 with one output per group is the
// same kernel over grad_y with the kernel flipped (padding d*(k-1) - p), otherwise the
// terms are summed into the band; grad_weight sums each element in 32 fixed partial sums
// over the images and positions, each output channel by one thread. No column matrix, no
// GEMM, x and grad_y read once: the same bits for any thread count.
//
// The float32 grad_weight on such a CPU runs on the same kernel where a group has
// C/groups*kH*kW >= kConvWeightGradMinRows rows (ADLK_CONV_PANELS overrides it alike):
// for each group, grad_w^T = columns @ grad_y^T over every position of every image, the
// column matrix read in place and grad_y packed as the kernel's panels, a block of
// images at a time (about kConvBlockBytes, at least one image, in the calling thread's
// scratch; an image whose packed grad_y passes kConvGradPackMaxBytes takes the BLAS
// path). Each thread owns fixed rows (c, kh, kw) and builds only those rows of the
// columns, a block of output rows at a time.
//
// The float32 grad_x of a stride-1 convolution with at least 8 input channels per group
// (and padding at most the dilated kernel's reach) runs, where the panels can run that
// geometry, as the forward convolution of grad_y with the weight transposed per group
// and flipped in kh and kw, padding d*(k-1) - p, on the panel path: no column gradient
// and no col2im (0.8-0.96x the time of GEMM + col2im, measured on 3x3 kernels).
//
// Sizes: finalize() checks that every size the kernels compute fits 64 bits
// (std::length_error otherwise); the GEMM dimensions are checked against the 32-bit BLAS
// interface before any work starts.
//
// Determinism: im2col and col2im are pure copies / fixed-order sums, bitwise identical
// for any thread count. col2im accumulates each input element over (kh, kw) in one
// fixed order by a single thread (each thread owns whole channel planes): no atomics.
// conv2d results are bitwise repeatable for a given thread count; across thread counts
// they may differ in the last bits (the batch is split differently among GEMMs), except
// the forwards on the packed kernel (panels or columns), grad_x as a transposed forward
// and the packed grad_weight, whose outputs are each one fused
// multiply-add chain in a fixed order (grad_weight: over images, then positions): the
// same bits for any thread count and for the AVX2 and AVX-512 kernels.
#pragma once

#include <cstddef>

#include "adlk/common.h"
#include "adlk/tuning.h"

namespace adlk {

// Output size of one dimension, (n + 2p - d(k-1) - 1) / s + 1, for n >= 1, k, s, d >= 1,
// p >= 0, all < 2^31 except n; std::invalid_argument when the dilated kernel is larger
// than the padded input. The one definition of the formula (Python and CUDA use it).
index_t conv_output_size(index_t n, index_t k, index_t s, index_t p, index_t d);

struct Conv2dGeom {
  index_t N = 0, C = 0, H = 0, W = 0;  // input
  index_t C_out = 0;                   // output channels (0 for bare im2col/col2im)
  index_t kH = 1, kW = 1, sH = 1, sW = 1, pH = 0, pW = 0, dH = 1, dW = 1;
  index_t groups = 1;
  index_t H_out = 0, W_out = 0;  // filled by finalize()

  index_t L() const { return H_out * W_out; }
  index_t col_rows() const { return C * kH * kW; }
  // Checks every field (throws std::invalid_argument, or std::length_error for sizes
  // beyond 64 bits) and computes H_out, W_out.
  void finalize();
};


// Scratch bytes that conv2d_forward and conv2d_backward (the larger of the two) use with
// `threads` threads.
std::size_t conv_workspace_bytes(const Conv2dGeom& g, std::size_t elem_size, int threads);

// x (N, C, H, W) -> cols (N, C*kH*kW, L).
template <typename T>
void im2col(const T* x, const Conv2dGeom& g, T* cols);

// cols (N, C*kH*kW, L) -> x (N, C, H, W), overlapping windows summed. Overwrites x.
template <typename T>
void col2im(const T* cols, const Conv2dGeom& g, T* x);

// y (N, C_out, H_out, W_out) = conv(x, weight) + bias; weight (C_out, C/groups, kH, kW);
// bias (C_out,) or nullptr.
template <typename T>
void conv2d_forward(const T* x, const T* weight, const T* bias, const Conv2dGeom& g, T* y);

// Gradients of conv2d_forward. Each output pointer may be nullptr (not computed):
// dx (N, C, H, W), dweight (C_out, C/groups, kH, kW), dbias (C_out,). All overwritten.
template <typename T>
void conv2d_backward(const T* dy, const T* x, const T* weight, const Conv2dGeom& g, T* dx,
                     T* dweight, T* dbias);

}  // namespace adlk
