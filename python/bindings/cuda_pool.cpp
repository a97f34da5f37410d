// pybind11 bindings of the CUDA pool kernels (part of module _adlk_cuda).
//
// Internal API for adlkernels' Python layer, which checks the arrays (CuPy, dtype,
// shape, contiguity, device) before calling: pointers are device pointers passed as
// Python ints, `stream` is a cudaStream_t as an int (CuPy's Stream.ptr; 0: the legacy
// default stream), `dtype` (float32 or float64) picks the kernel, and `geom` is an
// adlkernels._adlk.Pool2dGeom of the forward's input and window (checked when it was
// made). A CUDA failure raises RuntimeError. The GIL is released around the CUDA calls.
#include <cstdint>

#include "cuda_common.h"
#include "op.h"

#include "adlk/cuda/pool.h"

namespace adlk_bind {

namespace {

using I64 = std::int64_t;

adlk::IndexScatterGeom scatter_geom(index_t planes, index_t count, index_t dst_size) {
  if (planes < 0 || count < 0 || dst_size < 0)
    throw py::value_error("planes, count and dst_size must be >= 0");
  adlk::IndexScatterGeom g;
  g.planes = planes, g.count = count, g.dst_size = dst_size;
  return g;
}

template <typename T>
void maxpool2d_forward_t(Ptr x, Ptr y, Ptr indices, const adlk::Pool2dGeom& g, const py::object&,
                         Ptr stream) {
  py::gil_scoped_release release;
  ac::maxpool2d_forward<T>(dev_ptr<const T>(x), g, dev_ptr<T>(y), dev_ptr<I64>(indices),
                           as_stream(stream));
}

template <typename T>
void maxpool2d_backward_t(Ptr dy, Ptr indices, Ptr dx, const adlk::Pool2dGeom& g,
                          const py::object&, Ptr stream) {
  py::gil_scoped_release release;
  ac::maxpool2d_backward<T>(dev_ptr<const T>(dy), dev_ptr<const I64>(indices), g, dev_ptr<T>(dx),
                            as_stream(stream));
}

template <typename T>
void maxpool2d_backward_planes_t(Ptr dy, Ptr indices, Ptr dx, index_t planes, index_t count,
                                 index_t dst_size, const py::object&, Ptr stream) {
  const adlk::IndexScatterGeom g = scatter_geom(planes, count, dst_size);
  py::gil_scoped_release release;
  ac::maxpool2d_backward_planes<T>(dev_ptr<const T>(dy), dev_ptr<const I64>(indices), g,
                                   dev_ptr<T>(dx), as_stream(stream));
}

template <typename T>
void max_unpool2d_planes_t(Ptr x, Ptr indices, Ptr y, index_t planes, index_t count,
                           index_t dst_size, const py::object&, Ptr stream) {
  const adlk::IndexScatterGeom g = scatter_geom(planes, count, dst_size);
  py::gil_scoped_release release;
  ac::max_unpool2d_planes<T>(dev_ptr<const T>(x), dev_ptr<const I64>(indices), g, dev_ptr<T>(y),
                             as_stream(stream));
}

template <typename T>
void avgpool2d_forward_t(Ptr x, Ptr y, const adlk::Pool2dGeom& g, bool count_include_pad,
                         const py::object&, Ptr stream) {
  py::gil_scoped_release release;
  ac::avgpool2d_forward<T>(dev_ptr<const T>(x), g, count_include_pad, dev_ptr<T>(y),
                           as_stream(stream));
}

template <typename T>
void avgpool2d_backward_t(Ptr dy, Ptr dx, const adlk::Pool2dGeom& g, bool count_include_pad,
                          const py::object&, Ptr stream) {
  py::gil_scoped_release release;
  ac::avgpool2d_backward<T>(dev_ptr<const T>(dy), g, count_include_pad, dev_ptr<T>(dx),
                            as_stream(stream));
}

}  // namespace

void bind_cuda_pool(py::module_& m) {
  def_op(m, "maxpool2d_forward", "y, indices (N, C, H_out, W_out) from x (N, C, H, W): max pooling with argmax.",
         FLOAT_IMPL(maxpool2d_forward_t, 4), py::arg("x"), py::arg("y"), py::arg("indices"),
         py::arg("geom"), py::arg("dtype"), py::arg("stream"));
  def_op(
      m, "maxpool2d_first_outside_window",
      "Smallest flat position whose index is neither -1 nor in its own window, or -1 "
      "(synchronizes the stream).",
      [](Ptr indices, const adlk::Pool2dGeom& g, Ptr stream) {
        py::gil_scoped_release release;
        return ac::maxpool2d_first_outside_window(dev_ptr<const I64>(indices), g, as_stream(stream));
      },
      py::arg("indices"), py::arg("geom"), py::arg("stream"));
  def_op(
      m, "first_index_out_of_range",
      "Smallest i in [0, count) with indices[i] outside [-1, dst_size), or -1 (synchronizes the stream).",
      [](Ptr indices, index_t count, index_t dst_size, Ptr stream) {
        if (count < 0 || dst_size < 0) throw py::value_error("count and dst_size must be >= 0");
        py::gil_scoped_release release;
        return ac::first_index_out_of_range(dev_ptr<const I64>(indices), count, dst_size,
                                            as_stream(stream));
      },
      py::arg("indices"), py::arg("count"), py::arg("dst_size"), py::arg("stream"));
  def_op(m, "maxpool2d_backward",
         "dx (N, C, H, W) by a gather over the covering windows (indices must be -1 or in their own window).",
         FLOAT_IMPL(maxpool2d_backward_t, 4), py::arg("dy"), py::arg("indices"), py::arg("dx"),
         py::arg("geom"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "maxpool2d_backward_planes",
         "dx (planes, dst_size) = 0, then dx[indices[i]] += dy[i] per plane, in order.",
         FLOAT_IMPL(maxpool2d_backward_planes_t, 6), py::arg("dy"), py::arg("indices"), py::arg("dx"),
         py::arg("planes"), py::arg("count"), py::arg("dst_size"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "max_unpool2d_planes", "y (planes, dst_size) = 0, then y[indices[i]] = x[i] per plane, in order.",
         FLOAT_IMPL(max_unpool2d_planes_t, 6), py::arg("x"), py::arg("indices"), py::arg("y"),
         py::arg("planes"), py::arg("count"), py::arg("dst_size"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "avgpool2d_forward", "y (N, C, H_out, W_out) from x (N, C, H, W): average pooling (dilation 1).",
         FLOAT_IMPL(avgpool2d_forward_t, 4), py::arg("x"), py::arg("y"), py::arg("geom"),
         py::arg("count_include_pad"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "avgpool2d_backward", "dx (N, C, H, W) from dy (N, C, H_out, W_out): the average-pooling gradient.",
         FLOAT_IMPL(avgpool2d_backward_t, 4), py::arg("dy"), py::arg("dx"), py::arg("geom"),
         py::arg("count_include_pad"), py::arg("dtype"), py::arg("stream"));
}

}  // namespace adlk_bind
