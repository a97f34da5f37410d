// CUDA pool: host launchers (plain C++ header).
//
// The CUDA counterparts of adlk/pool.h, with the same semantics (read it): every
// launcher runs on the current device and enqueues its kernels on `stream` (a
// cudaStream_t passed as void*; nullptr is the legacy default stream). Pointers are
// device pointers to C-contiguous NCHW arrays. Nothing is launched for empty sizes.
// A CUDA failure throws std::runtime_error carrying CUDA's message; a bad geometry
// throws std::invalid_argument (the launchers re-run Pool2dGeom::finalize() on a copy,
// so H_out/W_out need not be filled in by the caller).
//
// Determinism: no kernel uses floating-point atomics. Every output element is written
// by one thread that adds its terms in a fixed order, the order in which the CPU
// kernels (cpp/src/pool.cpp) add them, so results are bitwise identical run to run
// and, for the same inputs, bitwise equal to the CPU's (see pool.cu for the details).
#pragma once

#include <cstdint>

#include "adlk/common.h"
#include "adlk/pool.h"

namespace adlk::cuda {

// y, indices (N, C, H_out, W_out) from x (N, C, H, W); indices hold h*W + w per plane
// (-1 for a window without an in-range cell, whose y is -inf).
template <typename T>
void maxpool2d_forward(const T* x, const Pool2dGeom& g, T* y, std::int64_t* indices,
                       void* stream);

// The smallest flat position i in indices (N, C, H_out, W_out) whose value is neither
// -1 nor a cell of output i's own window (inside the input); -1 when every entry is
// fine. Synchronizes the stream (the result is copied to the host).
index_t maxpool2d_first_outside_window(const std::int64_t* indices, const Pool2dGeom& g,
                                       void* stream);

// The smallest i in [0, count) with indices[i] outside [-1, dst_size), or -1.
// Synchronizes the stream.
index_t first_index_out_of_range(const std::int64_t* indices, index_t count,
                                 index_t dst_size, void* stream);

// dx (N, C, H, W) from dy and indices (N, C, H_out, W_out) by a gather over the windows
// that can hold each input cell. Precondition (maxpool2d_first_outside_window() == -1):
// every index is -1 or inside its own window; an index that is not is ignored.
template <typename T>
void maxpool2d_backward(const T* dy, const std::int64_t* indices, const Pool2dGeom& g, T* dx,
                        void* stream);

// Geometry-free backward: dx (planes, dst_size) = 0, then dx[indices[i]] += dy[i] per
// plane in order of i (one thread per plane). Precondition
// (first_index_out_of_range() == -1): indices in [-1, dst_size); -1 is skipped, and so
// is any other out-of-range index (never written).
template <typename T>
void maxpool2d_backward_planes(const T* dy, const std::int64_t* indices,
                               const IndexScatterGeom& g, T* dx, void* stream);

// y (planes, dst_size) = 0, then y[indices[i]] = x[i] per plane in order of i (the last
// write wins); -1 (and any out-of-range index) skipped.
template <typename T>
void max_unpool2d_planes(const T* x, const std::int64_t* indices, const IndexScatterGeom& g,
                         T* y, void* stream);

// y (N, C, H_out, W_out) from x (N, C, H, W); dilation must be 1.
template <typename T>
void avgpool2d_forward(const T* x, const Pool2dGeom& g, bool count_include_pad, T* y,
                       void* stream);

// dx (N, C, H, W) from dy (N, C, H_out, W_out); dilation must be 1.
template <typename T>
void avgpool2d_backward(const T* dy, const Pool2dGeom& g, bool count_include_pad, T* dx,
                        void* stream);

}  // namespace adlk::cuda
