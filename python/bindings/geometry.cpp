// The geometry structs of adlk/conv.h and adlk/pool.h and their output-size formulas,
// bound once in adlkernels._adlk: the Python layer's validation, the torch adapter's
// fake (meta) implementations and the CUDA bindings all use these, so each formula
// has one definition (in the C++ core).
#include <string>
#include <tuple>
#include <utility>

#include <pybind11/stl.h>

#include "adlk/conv.h"
#include "adlk/pool.h"
#include "common.h"
#include "op.h"

namespace adlk_bind {

namespace {

std::string pair_str(index_t a, index_t b) {
  return "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
}

}  // namespace

void bind_geometry(py::module_& m) {
  py::class_<adlk::Conv2dGeom>(m, "Conv2dGeom",
                               "Checked geometry of a 2-d convolution (or bare im2col/col2im: C_out 0).")
      .def(py::init(&make_conv_geom),
           py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("C_out") = 0,
           py::arg("kernel_size") = Pair(1, 1), py::arg("stride") = Pair(1, 1),
           py::arg("padding") = Pair(0, 0), py::arg("dilation") = Pair(1, 1),
           py::arg("groups") = 1)
      .def_readonly("N", &adlk::Conv2dGeom::N)
      .def_readonly("C", &adlk::Conv2dGeom::C)
      .def_readonly("H", &adlk::Conv2dGeom::H)
      .def_readonly("W", &adlk::Conv2dGeom::W)
      .def_readonly("C_out", &adlk::Conv2dGeom::C_out)
      .def_readonly("groups", &adlk::Conv2dGeom::groups)
      .def_readonly("H_out", &adlk::Conv2dGeom::H_out)
      .def_readonly("W_out", &adlk::Conv2dGeom::W_out)
      .def_property_readonly("kernel_size", [](const adlk::Conv2dGeom& g) { return Pair(g.kH, g.kW); })
      .def_property_readonly("stride", [](const adlk::Conv2dGeom& g) { return Pair(g.sH, g.sW); })
      .def_property_readonly("padding", [](const adlk::Conv2dGeom& g) { return Pair(g.pH, g.pW); })
      .def_property_readonly("dilation", [](const adlk::Conv2dGeom& g) { return Pair(g.dH, g.dW); })
      .def_property_readonly("L", &adlk::Conv2dGeom::L, "Output positions H_out*W_out.")
      .def_property_readonly("col_rows", &adlk::Conv2dGeom::col_rows, "Column-matrix rows C*kH*kW.")
      .def("__repr__", [](const adlk::Conv2dGeom& g) {
        return "Conv2dGeom(N=" + std::to_string(g.N) + ", C=" + std::to_string(g.C) +
               ", H=" + std::to_string(g.H) + ", W=" + std::to_string(g.W) +
               ", C_out=" + std::to_string(g.C_out) + ", kernel_size=" + pair_str(g.kH, g.kW) +
               ", stride=" + pair_str(g.sH, g.sW) + ", padding=" + pair_str(g.pH, g.pW) +
               ", dilation=" + pair_str(g.dH, g.dW) + ", groups=" + std::to_string(g.groups) +
               ") -> (" + std::to_string(g.H_out) + ", " + std::to_string(g.W_out) + ")";
      });

  py::class_<adlk::Pool2dGeom>(m, "Pool2dGeom", "Checked geometry of a 2-d pooling window over (N, C, H, W).")
      .def(py::init(&make_pool_geom),
           py::arg("N"), py::arg("C"), py::arg("H"), py::arg("W"), py::arg("kernel_size"),
           py::arg("stride"), py::arg("padding") = Pair(0, 0), py::arg("dilation") = Pair(1, 1),
           py::arg("ceil_mode") = false)
      .def_readonly("N", &adlk::Pool2dGeom::N)
      .def_readonly("C", &adlk::Pool2dGeom::C)
      .def_readonly("H", &adlk::Pool2dGeom::H)
      .def_readonly("W", &adlk::Pool2dGeom::W)
      .def_readonly("ceil_mode", &adlk::Pool2dGeom::ceil_mode)
      .def_readonly("H_out", &adlk::Pool2dGeom::H_out)
      .def_readonly("W_out", &adlk::Pool2dGeom::W_out)
      .def_property_readonly("kernel_size", [](const adlk::Pool2dGeom& g) { return Pair(g.kH, g.kW); })
      .def_property_readonly("stride", [](const adlk::Pool2dGeom& g) { return Pair(g.sH, g.sW); })
      .def_property_readonly("padding", [](const adlk::Pool2dGeom& g) { return Pair(g.pH, g.pW); })
      .def_property_readonly("dilation", [](const adlk::Pool2dGeom& g) { return Pair(g.dH, g.dW); })
      .def("__repr__", [](const adlk::Pool2dGeom& g) {
        return "Pool2dGeom(N=" + std::to_string(g.N) + ", C=" + std::to_string(g.C) +
               ", H=" + std::to_string(g.H) + ", W=" + std::to_string(g.W) +
               ", kernel_size=" + pair_str(g.kH, g.kW) + ", stride=" + pair_str(g.sH, g.sW) +
               ", padding=" + pair_str(g.pH, g.pW) + ", dilation=" + pair_str(g.dH, g.dW) +
               ", ceil_mode=" + (g.ceil_mode ? "True" : "False") + ") -> (" +
               std::to_string(g.H_out) + ", " + std::to_string(g.W_out) + ")";
      });

  def_op(m, "conv_output_size",
         "(n + 2p - d(k-1) - 1) // s + 1; ValueError when the dilated kernel exceeds the padded input.",
         &adlk::conv_output_size, py::arg("n"), py::arg("kernel_size"), py::arg("stride"),
         py::arg("padding"), py::arg("dilation"));
  def_op(m, "pooled_output_size",
         "Pooling output size of one dimension, as PyTorch (may be < 1 when the window does not fit).",
         &adlk::pooled_output_size, py::arg("n"), py::arg("kernel_size"), py::arg("stride"),
         py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"));
}

}  // namespace adlk_bind
