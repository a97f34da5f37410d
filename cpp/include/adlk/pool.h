// 2-d pooling: max pooling with argmax indices, its backward, max-unpooling, and
// average pooling forward/backward; float and double, NCHW, C-contiguous.
//
// Semantics are PyTorch's. Output size per dimension:
//   out = floor((in + 2p - d(k-1) - 1 + (ceil_mode ? s-1 : 0)) / s) + 1, and with
//   ceil_mode a last window that would start inside the right/bottom padding is dropped.
// Max: padded cells never win; scan order is rows then columns; the running max starts
// at -inf on the window's first in-range cell and a cell replaces it when it is greater
// or NaN (ties: first max; several NaNs: the last). indices hold h*W + w in the plane.
// Average: the divisor counts the padding (count_include_pad) but never the part of a
// ceil_mode window beyond it.
//
// Parallel over (n, c) planes, each plane by one thread in a fixed order, so every
// result is bitwise identical for any thread count, and the scatters of the backward
// and of unpooling need no atomics (overlapping windows sum; duplicate unpool indices:
// the last in scan order wins).
#pragma once

#include <cstdint>

#include "adlk/common.h"

namespace adlk {

// Output size of one dimension (the formula above); may be < 1 when the window does not
// fit. Arguments as Pool2dGeom checks them (the one definition of the formula: the
// Python layer and the CUDA kernels use it too).
index_t pooled_output_size(index_t in, index_t k, index_t s, index_t p, index_t d, bool ceil_mode);

struct Pool2dGeom {
  index_t N = 0, C = 0, H = 0, W = 0;  // input (of the forward)
  index_t kH = 1, kW = 1, sH = 1, sW = 1, pH = 0, pW = 0, dH = 1, dW = 1;
  bool ceil_mode = false;
  index_t H_out = 0, W_out = 0;  // filled by finalize()
  // Checks every field (std::invalid_argument; padding <= kernel/2 as PyTorch;
  // std::length_error for sizes beyond 64 bits) and computes H_out, W_out (>= 1).
  void finalize();
};

// y, indices (N, C, H_out, W_out) from x (N, C, H, W).
template <typename T>
void maxpool2d_forward(const T* x, const Pool2dGeom& g, T* y, std::int64_t* indices);

// Index scatters: `planes` (n, c) planes, each with `count` sources and a destination
// plane of `dst_size` elements. Every index is read once and checked where it is used,
// so indices that another thread changes meanwhile cannot cause a write out of bounds;
// an index outside [0, dst_size) other than -1 ("no input position", skipped) stops its
// plane. Returns -1, or the flat position (in indices) of the first bad index, with the
// value the kernel read there in *bad_value (when not null); the destination then holds
// no out-of-bounds write but is otherwise undefined.
struct IndexScatterGeom {
  index_t planes = 0, count = 0, dst_size = 0;
};

// dx (planes, dst_size) = 0, then dx[indices[i]] += dy[i] per plane.
template <typename T>
index_t maxpool2d_backward(const T* dy, const std::int64_t* indices, const IndexScatterGeom& g,
                           T* dx, std::int64_t* bad_value = nullptr);

// y (planes, dst_size) = 0, then y[indices[i]] = x[i] per plane, in order.
template <typename T>
index_t max_unpool2d(const T* x, const std::int64_t* indices, const IndexScatterGeom& g, T* y,
                     std::int64_t* bad_value = nullptr);

template <typename T>
void avgpool2d_forward(const T* x, const Pool2dGeom& g, bool count_include_pad, T* y);

// dx (N, C, H, W) from dy (N, C, H_out, W_out).
template <typename T>
void avgpool2d_backward(const T* dy, const Pool2dGeom& g, bool count_include_pad, T* dx);

}  // namespace adlk
