// pybind11 bindings of the CUDA conv kernels (part of module _adlk_cuda).
//
// Internal API for the Python layer: device pointers and the stream come as Python ints
// (cupy's .data.ptr and Stream.ptr), `is_double` picks float64 over float32, and the
// geometry is the tuple (N, C, H, W, C_out, kH, kW, sH, sW, pH, pW, dH, dW, groups).
// The caller guarantees that each pointer holds the elements the geometry implies on
// the current device; the launchers check sizes and ranges (ValueError / OverflowError)
// and turn CUDA errors into RuntimeError. Launches are asynchronous on `stream` and run
// with the GIL released.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cuda_common.h"

#include "adlk/conv.h"
#include "adlk/cuda/conv.h"

namespace py = pybind11;
using adlk::index_t;

namespace {

adlk::Conv2dGeom geom_from_tuple(const py::tuple& t) {
  if (t.size() != 14)
    throw py::value_error(
        "geom: expected (N, C, H, W, C_out, kH, kW, sH, sW, pH, pW, dH, dW, groups), got " +
        std::to_string(t.size()) + " values");
  index_t v[14];
  for (std::size_t i = 0; i < 14; ++i) v[i] = t[i].cast<index_t>();
  adlk::Conv2dGeom g;
  g.N = v[0];
  g.C = v[1];
  g.H = v[2];
  g.W = v[3];
  g.C_out = v[4];
  g.kH = v[5];
  g.kW = v[6];
  g.sH = v[7];
  g.sW = v[8];
  g.pH = v[9];
  g.pW = v[10];
  g.dH = v[11];
  g.dW = v[12];
  g.groups = v[13];
  g.finalize();  // std::invalid_argument -> ValueError
  return g;
}

}  // namespace

void bind_cuda_conv(py::module_& m) {
  m.def(
      "im2col",
      [](std::uintptr_t x, std::uintptr_t cols, const py::tuple& geom, index_t n0, index_t nb,
         bool is_double, std::uintptr_t stream) {
        const adlk::Conv2dGeom g = geom_from_tuple(geom);
        py::gil_scoped_release nogil;
        if (is_double)
          adlk::cuda::im2col<double>(adlk_bind::dev_ptr<const double>(x), adlk_bind::dev_ptr<double>(cols), g, n0, nb,
                                     adlk_bind::as_stream(stream));
        else
          adlk::cuda::im2col<float>(adlk_bind::dev_ptr<const float>(x), adlk_bind::dev_ptr<float>(cols), g, n0, nb,
                                    adlk_bind::as_stream(stream));
      },
      py::arg("x"), py::arg("cols"), py::arg("geom"), py::arg("n0"), py::arg("nb"),
      py::arg("is_double"), py::arg("stream"),
      "Images [n0, n0+nb) of x (N, C, H, W) -> cols (nb, C*kH*kW, H_out*W_out) (unfold).");

  m.def(
      "col2im",
      [](std::uintptr_t cols, std::uintptr_t x, const py::tuple& geom, index_t n0, index_t nb,
         bool is_double, std::uintptr_t stream) {
        const adlk::Conv2dGeom g = geom_from_tuple(geom);
        py::gil_scoped_release nogil;
        if (is_double)
          adlk::cuda::col2im<double>(adlk_bind::dev_ptr<const double>(cols), adlk_bind::dev_ptr<double>(x), g, n0, nb,
                                     adlk_bind::as_stream(stream));
        else
          adlk::cuda::col2im<float>(adlk_bind::dev_ptr<const float>(cols), adlk_bind::dev_ptr<float>(x), g, n0, nb,
                                    adlk_bind::as_stream(stream));
      },
      py::arg("cols"), py::arg("x"), py::arg("geom"), py::arg("n0"), py::arg("nb"),
      py::arg("is_double"), py::arg("stream"),
      "cols (nb, C*kH*kW, L) -> images [n0, n0+nb) of x (N, C, H, W), overwritten, "
      "overlaps summed (fold; bitwise equal to the CPU col2im).");

  m.def(
      "bias_fill",
      [](std::uintptr_t y, std::uintptr_t bias, index_t N, index_t C_out, index_t L,
         bool is_double, std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        if (is_double)
          adlk::cuda::bias_fill<double>(adlk_bind::dev_ptr<double>(y), adlk_bind::dev_ptr<const double>(bias), N, C_out, L,
                                        adlk_bind::as_stream(stream));
        else
          adlk::cuda::bias_fill<float>(adlk_bind::dev_ptr<float>(y), adlk_bind::dev_ptr<const float>(bias), N, C_out, L,
                                       adlk_bind::as_stream(stream));
      },
      py::arg("y"), py::arg("bias"), py::arg("N"), py::arg("C_out"), py::arg("L"),
      py::arg("is_double"), py::arg("stream"), "y (N, C_out, L)[n, c, l] = bias[c].");

  m.def(
      "channel_sums",
      [](std::uintptr_t dy, std::uintptr_t db, index_t N, index_t C, index_t L, bool is_double,
         std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        if (is_double)
          adlk::cuda::channel_sums<double>(adlk_bind::dev_ptr<const double>(dy), adlk_bind::dev_ptr<double>(db), N, C, L,
                                           adlk_bind::as_stream(stream));
        else
          adlk::cuda::channel_sums<float>(adlk_bind::dev_ptr<const float>(dy), adlk_bind::dev_ptr<float>(db), N, C, L,
                                          adlk_bind::as_stream(stream));
      },
      py::arg("dy"), py::arg("db"), py::arg("N"), py::arg("C"), py::arg("L"),
      py::arg("is_double"), py::arg("stream"),
      "db[c] = sum over n, l of dy (N, C, L)[n, c, l], in double, deterministic.");

  m.def(
      "sum_batches",
      [](std::uintptr_t partials, std::uintptr_t out, index_t nb, index_t count,
         bool accumulate, bool is_double, std::uintptr_t stream) {
        py::gil_scoped_release nogil;
        if (is_double)
          adlk::cuda::sum_batches<double>(adlk_bind::dev_ptr<const double>(partials), adlk_bind::dev_ptr<double>(out), nb,
                                          count, accumulate, adlk_bind::as_stream(stream));
        else
          adlk::cuda::sum_batches<float>(adlk_bind::dev_ptr<const float>(partials), adlk_bind::dev_ptr<float>(out), nb,
                                         count, accumulate, adlk_bind::as_stream(stream));
      },
      py::arg("partials"), py::arg("out"), py::arg("nb"), py::arg("count"),
      py::arg("accumulate"), py::arg("is_double"), py::arg("stream"),
      "out[j] = (out[j] if accumulate else 0) + partials[0, j] + ... + partials[nb-1, j], "
      "added left to right; partials (nb, count).");

  m.def(
      "conv2d_chunk_images",
      [](const py::tuple& geom, std::size_t elem_size, index_t budget_bytes) {
        return adlk::cuda::conv2d_chunk_images(geom_from_tuple(geom), elem_size, budget_bytes);
      },
      py::arg("geom"), py::arg("elem_size"), py::arg("budget_bytes"),
      "Images per workspace chunk whose columns plus grad_weight partials fit in "
      "budget_bytes, in [1, max(N, 1)].");

  m.def(
      "conv2d_workspace_elems",
      [](const py::tuple& geom, index_t nb) {
        return adlk::cuda::conv2d_workspace_elems(geom_from_tuple(geom), nb);
      },
      py::arg("geom"), py::arg("nb"),
      "Elements of the workspace of nb images: nb*(C*kH*kW*L + C_out*(C/groups)*kH*kW).");
}
