// Helpers shared by the binding files of module adlkernels._adlk.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "adlk/common.h"
#include "adlk/conv.h"
#include "adlk/pool.h"

namespace py = pybind11;
using adlk::index_t;

namespace adlk_bind {

inline std::string shape_str(const std::vector<index_t>& s) {
  std::string out = "(";
  for (std::size_t i = 0; i < s.size(); ++i) {
    out += std::to_string(s[i]);
    if (s.size() == 1 || i + 1 < s.size()) out += s.size() == 1 ? "," : ", ";
  }
  return out + ")";
}

inline std::vector<index_t> shape_of(const py::array& a) {
  return std::vector<index_t>(a.shape(), a.shape() + a.ndim());
}

// True when a's dtype is T's. numpy may hand out equal dtypes as distinct objects (an
// unpickled array's, e.g. one that came from a multiprocessing worker): identity is only
// the fast path.
template <typename T>
bool has_dtype(const py::array& a) {
  const py::dtype d = a.dtype(), want = py::dtype::of<T>();
  return d.is(want) || py::detail::npy_api::get().PyArray_EquivTypes_(d.ptr(), want.ptr());
}

// Checks one array argument and returns its data pointer.
template <typename T>
const T* in_ptr(const py::array& a, const char* name, const std::vector<index_t>& shape) {
  if (!py::isinstance<py::array_t<T>>(a) || !has_dtype<T>(a))
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) +
                          ", got " + shape_str(shape_of(a)));
  return static_cast<const T*>(a.data());
}

// An optional array argument: None gives a null pointer.
template <typename T>
const T* opt_ptr(const py::object& o, const char* name, const std::vector<index_t>& shape) {
  return o.is_none() ? nullptr : in_ptr<T>(o.cast<py::array>(), name, shape);
}

// Byte alignment of the outputs that new_array allocates: a cache line, so that the
// kernels' 64-byte vector stores into a row start each write one line and not two (numpy
// and malloc give 16: the T=50 LSTM forward took 1.03x the time of aligned buffers).
constexpr index_t kOutputAlign = 64;

// A new C-contiguous output starting on a kOutputAlign boundary: a view of a numpy byte
// buffer kOutputAlign bytes longer (its base). Sizes whose byte count does not even fit
// in 63 bits (huge padding or dilation) raise MemoryError here, before numpy computes
// strides that would overflow.
template <typename T>
py::array_t<T> new_array(const std::vector<index_t>& shape) {
  index_t bytes = sizeof(T);
  for (index_t s : shape)
    if (s < 0 || __builtin_mul_overflow(bytes, s, &bytes)) throw std::bad_alloc();
  if (bytes > std::numeric_limits<index_t>::max() - kOutputAlign) throw std::bad_alloc();
  py::array_t<std::uint8_t> raw(static_cast<py::ssize_t>(bytes + kOutputAlign));
  std::uint8_t* base = raw.mutable_data();
  const auto misalign = static_cast<index_t>(reinterpret_cast<std::uintptr_t>(base) % kOutputAlign);
  T* data = reinterpret_cast<T*>(base + (kOutputAlign - misalign) % kOutputAlign);
  return py::array_t<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()), data, raw);
}

// ---- geometry (the structs of adlk/conv.h and adlk/pool.h, checked by finalize) -------

using Pair = std::pair<index_t, index_t>;  // (h, w) of a geometry argument

inline adlk::Conv2dGeom make_conv_geom(index_t N, index_t C, index_t H, index_t W, index_t C_out,
                                       Pair k, Pair s, Pair p, Pair d, index_t groups) {
  adlk::Conv2dGeom g;
  g.N = N, g.C = C, g.H = H, g.W = W, g.C_out = C_out, g.groups = groups;
  std::tie(g.kH, g.kW) = k;
  std::tie(g.sH, g.sW) = s;
  std::tie(g.pH, g.pW) = p;
  std::tie(g.dH, g.dW) = d;
  g.finalize();  // std::invalid_argument / std::length_error -> ValueError
  return g;
}

inline adlk::Pool2dGeom make_pool_geom(index_t N, index_t C, index_t H, index_t W, Pair k,
                                       Pair s, Pair p, Pair d, bool ceil_mode) {
  adlk::Pool2dGeom g;
  g.N = N, g.C = C, g.H = H, g.W = W, g.ceil_mode = ceil_mode;
  std::tie(g.kH, g.kW) = k;
  std::tie(g.sH, g.sW) = s;
  std::tie(g.pH, g.pW) = p;
  std::tie(g.dH, g.dW) = d;
  g.finalize();
  return g;
}

// Register the geometry structs and output-size formulas (geometry.cpp), the recurrent family (rnn.cpp), the optimizers (optim.cpp) and
// normalization/dropout/linear/activations/losses (nn.cpp).
void bind_geometry(py::module_& m);
void bind_rnn(py::module_& m);
void bind_optim(py::module_& m);
void bind_nn(py::module_& m);
void bind_embedding(py::module_& m);

}  // namespace adlk_bind
