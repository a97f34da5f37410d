// pybind11 bindings of the CUDA pool kernels (part of module _adlk_cuda).
//
// Internal API for adlkernels' Python layer, which checks the arrays (CuPy, dtype,
// shape, contiguity, device) before calling: pointers are device pointers passed as
// Python ints, `stream` is a cudaStream_t as an int (CuPy's Stream.ptr; 0: the legacy
// default stream), `is_double` picks float64 over float32, and `geom` is the tuple
// (N, C, H, W, kH, kW, sH, sW, pH, pW, dH, dW, ceil_mode) of the forward's input and
// window. A bad geometry raises ValueError (Pool2dGeom::finalize), a CUDA failure
// RuntimeError. The GIL is released around the CUDA calls.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cuda_common.h"

#include "adlk/cuda/pool.h"

namespace py = pybind11;
using adlk::index_t;

namespace {

constexpr const char* kGeomFields = "(N, C, H, W, kH, kW, sH, sW, pH, pW, dH, dW, ceil_mode)";

adlk::Pool2dGeom make_geom(const py::tuple& t) {
  if (t.size() != 13)
    throw py::value_error(std::string("geom: expected a 13-tuple ") + kGeomFields + ", got " +
                          std::to_string(t.size()) + " items");
  adlk::Pool2dGeom g;
  try {
    index_t* fields[12] = {&g.N,  &g.C,  &g.H,  &g.W,  &g.kH, &g.kW,
                           &g.sH, &g.sW, &g.pH, &g.pW, &g.dH, &g.dW};
    for (std::size_t i = 0; i < 12; ++i) *fields[i] = t[i].cast<index_t>();
    g.ceil_mode = t[12].cast<bool>();
  } catch (const py::cast_error&) {
    throw py::type_error(std::string("geom: expected ints ") + kGeomFields);
  }
  g.finalize();  // std::invalid_argument -> ValueError
  return g;
}

adlk::IndexScatterGeom scatter_geom(index_t planes, index_t count, index_t dst_size) {
  if (planes < 0 || count < 0 || dst_size < 0)
    throw py::value_error("planes, count and dst_size must be >= 0");
  adlk::IndexScatterGeom g;
  g.planes = planes, g.count = count, g.dst_size = dst_size;
  return g;
}

}  // namespace

void bind_cuda_pool(py::module_& m) {
  using I64 = std::int64_t;
  namespace ac = adlk::cuda;

  m.def(
      "maxpool2d_forward",
      [](std::uintptr_t x, std::uintptr_t y, std::uintptr_t indices, const py::tuple& geom,
         bool is_double, std::uintptr_t stream) {
        const adlk::Pool2dGeom g = make_geom(geom);
        py::gil_scoped_release release;
        if (is_double)
          ac::maxpool2d_forward<double>(adlk_bind::dev_ptr<const double>(x), g, adlk_bind::dev_ptr<double>(y),
                                        adlk_bind::dev_ptr<I64>(indices), adlk_bind::as_stream(stream));
        else
          ac::maxpool2d_forward<float>(adlk_bind::dev_ptr<const float>(x), g, adlk_bind::dev_ptr<float>(y),
                                       adlk_bind::dev_ptr<I64>(indices), adlk_bind::as_stream(stream));
      },
      py::arg("x"), py::arg("y"), py::arg("indices"), py::arg("geom"), py::arg("is_double"),
      py::arg("stream"),
      "y, indices (N, C, H_out, W_out) from x (N, C, H, W): max pooling with argmax.");

  m.def(
      "maxpool2d_first_outside_window",
      [](std::uintptr_t indices, const py::tuple& geom, std::uintptr_t stream) {
        const adlk::Pool2dGeom g = make_geom(geom);
        py::gil_scoped_release release;
        return ac::maxpool2d_first_outside_window(adlk_bind::dev_ptr<const I64>(indices), g,
                                                  adlk_bind::as_stream(stream));
      },
      py::arg("indices"), py::arg("geom"), py::arg("stream"),
      "Smallest flat position whose index is neither -1 nor in its own window, or -1 "
      "(synchronizes the stream).");

  m.def(
      "first_index_out_of_range",
      [](std::uintptr_t indices, index_t count, index_t dst_size, std::uintptr_t stream) {
        if (count < 0 || dst_size < 0)
          throw py::value_error("count and dst_size must be >= 0");
        py::gil_scoped_release release;
        return ac::first_index_out_of_range(adlk_bind::dev_ptr<const I64>(indices), count, dst_size,
                                            adlk_bind::as_stream(stream));
      },
      py::arg("indices"), py::arg("count"), py::arg("dst_size"), py::arg("stream"),
      "Smallest i in [0, count) with indices[i] outside [-1, dst_size), or -1 "
      "(synchronizes the stream).");

  m.def(
      "maxpool2d_backward",
      [](std::uintptr_t dy, std::uintptr_t indices, std::uintptr_t dx, const py::tuple& geom,
         bool is_double, std::uintptr_t stream) {
        const adlk::Pool2dGeom g = make_geom(geom);
        py::gil_scoped_release release;
        if (is_double)
          ac::maxpool2d_backward<double>(adlk_bind::dev_ptr<const double>(dy), adlk_bind::dev_ptr<const I64>(indices),
                                         g, adlk_bind::dev_ptr<double>(dx), adlk_bind::as_stream(stream));
        else
          ac::maxpool2d_backward<float>(adlk_bind::dev_ptr<const float>(dy), adlk_bind::dev_ptr<const I64>(indices),
                                        g, adlk_bind::dev_ptr<float>(dx), adlk_bind::as_stream(stream));
      },
      py::arg("dy"), py::arg("indices"), py::arg("dx"), py::arg("geom"), py::arg("is_double"),
      py::arg("stream"),
      "dx (N, C, H, W) by a gather over the covering windows (indices must be -1 or in "
      "their own window).");

  m.def(
      "maxpool2d_backward_planes",
      [](std::uintptr_t dy, std::uintptr_t indices, std::uintptr_t dx, index_t planes,
         index_t count, index_t dst_size, bool is_double, std::uintptr_t stream) {
        const adlk::IndexScatterGeom g = scatter_geom(planes, count, dst_size);
        py::gil_scoped_release release;
        if (is_double)
          ac::maxpool2d_backward_planes<double>(adlk_bind::dev_ptr<const double>(dy),
                                                adlk_bind::dev_ptr<const I64>(indices), g,
                                                adlk_bind::dev_ptr<double>(dx), adlk_bind::as_stream(stream));
        else
          ac::maxpool2d_backward_planes<float>(adlk_bind::dev_ptr<const float>(dy),
                                               adlk_bind::dev_ptr<const I64>(indices), g,
                                               adlk_bind::dev_ptr<float>(dx), adlk_bind::as_stream(stream));
      },
      py::arg("dy"), py::arg("indices"), py::arg("dx"), py::arg("planes"), py::arg("count"),
      py::arg("dst_size"), py::arg("is_double"), py::arg("stream"),
      "dx (planes, dst_size) = 0, then dx[indices[i]] += dy[i] per plane, in order.");

  m.def(
      "max_unpool2d_planes",
      [](std::uintptr_t x, std::uintptr_t indices, std::uintptr_t y, index_t planes,
         index_t count, index_t dst_size, bool is_double, std::uintptr_t stream) {
        const adlk::IndexScatterGeom g = scatter_geom(planes, count, dst_size);
        py::gil_scoped_release release;
        if (is_double)
          ac::max_unpool2d_planes<double>(adlk_bind::dev_ptr<const double>(x), adlk_bind::dev_ptr<const I64>(indices),
                                          g, adlk_bind::dev_ptr<double>(y), adlk_bind::as_stream(stream));
        else
          ac::max_unpool2d_planes<float>(adlk_bind::dev_ptr<const float>(x), adlk_bind::dev_ptr<const I64>(indices),
                                         g, adlk_bind::dev_ptr<float>(y), adlk_bind::as_stream(stream));
      },
      py::arg("x"), py::arg("indices"), py::arg("y"), py::arg("planes"), py::arg("count"),
      py::arg("dst_size"), py::arg("is_double"), py::arg("stream"),
      "y (planes, dst_size) = 0, then y[indices[i]] = x[i] per plane, in order.");

  m.def(
      "avgpool2d_forward",
      [](std::uintptr_t x, std::uintptr_t y, const py::tuple& geom, bool count_include_pad,
         bool is_double, std::uintptr_t stream) {
        const adlk::Pool2dGeom g = make_geom(geom);
        py::gil_scoped_release release;
        if (is_double)
          ac::avgpool2d_forward<double>(adlk_bind::dev_ptr<const double>(x), g, count_include_pad,
                                        adlk_bind::dev_ptr<double>(y), adlk_bind::as_stream(stream));
        else
          ac::avgpool2d_forward<float>(adlk_bind::dev_ptr<const float>(x), g, count_include_pad,
                                       adlk_bind::dev_ptr<float>(y), adlk_bind::as_stream(stream));
      },
      py::arg("x"), py::arg("y"), py::arg("geom"), py::arg("count_include_pad"),
      py::arg("is_double"), py::arg("stream"),
      "y (N, C, H_out, W_out) from x (N, C, H, W): average pooling (dilation 1).");

  m.def(
      "avgpool2d_backward",
      [](std::uintptr_t dy, std::uintptr_t dx, const py::tuple& geom, bool count_include_pad,
         bool is_double, std::uintptr_t stream) {
        const adlk::Pool2dGeom g = make_geom(geom);
        py::gil_scoped_release release;
        if (is_double)
          ac::avgpool2d_backward<double>(adlk_bind::dev_ptr<const double>(dy), g, count_include_pad,
                                         adlk_bind::dev_ptr<double>(dx), adlk_bind::as_stream(stream));
        else
          ac::avgpool2d_backward<float>(adlk_bind::dev_ptr<const float>(dy), g, count_include_pad,
                                        adlk_bind::dev_ptr<float>(dx), adlk_bind::as_stream(stream));
      },
      py::arg("dy"), py::arg("dx"), py::arg("geom"), py::arg("count_include_pad"),
      py::arg("is_double"), py::arg("stream"),
      "dx (N, C, H, W) from dy (N, C, H_out, W_out): the average-pooling gradient.");
}
