// pybind11 bindings of the CUDA activation and dropout kernels (part of module _adlk_cuda).
//
// Internal API for adlkernels.nn, which checks the cupy arrays before calling: pointers
// are device pointers of C-contiguous arrays of n elements (mask: bool), `dtype` (float32
// or float64) picks the kernel, `stream` is a cudaStream_t as an int. The GIL is released
// around the CUDA calls.
#include <cstdint>

#include "adlk/cuda/nn.h"
#include "cuda_common.h"
#include "op.h"

namespace adlk_bind {

namespace {

using adlk::index_t;
using Ptr = std::uintptr_t;
namespace ac = adlk::cuda;

void check_n(index_t n) {
  if (n < 0) throw py::value_error("n: must be >= 0");
}

template <typename T>
void activation_forward_t(Ptr x, Ptr y, index_t n, adlk::Activation act, double slope,
                          const py::object&, Ptr stream) {
  check_n(n);
  py::gil_scoped_release nogil;
  ac::activation_forward<T>(n, dev_ptr<const T>(x), act, slope, dev_ptr<T>(y), as_stream(stream));
}

template <typename T>
void activation_backward_t(Ptr grad_y, Ptr saved, Ptr grad_x, index_t n, adlk::Activation act,
                           double slope, const py::object&, Ptr stream) {
  check_n(n);
  py::gil_scoped_release nogil;
  ac::activation_backward<T>(n, dev_ptr<const T>(grad_y), dev_ptr<const T>(saved), act, slope,
                             dev_ptr<T>(grad_x), as_stream(stream));
}

template <typename T>
void dropout_forward_t(Ptr x, Ptr y, Ptr mask, index_t n, double p, std::uint64_t seed,
                       const py::object&, Ptr stream) {
  check_n(n);
  if (!(p >= 0 && p <= 1)) throw py::value_error("p: must be in [0, 1]");
  py::gil_scoped_release nogil;
  ac::dropout_forward<T>(n, dev_ptr<const T>(x), p, seed, dev_ptr<T>(y), dev_ptr<bool>(mask),
                         as_stream(stream));
}

template <typename T>
void dropout_backward_t(Ptr grad_y, Ptr mask, Ptr grad_x, index_t n, double p, const py::object&,
                        Ptr stream) {
  check_n(n);
  if (!(p >= 0 && p <= 1)) throw py::value_error("p: must be in [0, 1]");
  py::gil_scoped_release nogil;
  ac::dropout_backward<T>(n, dev_ptr<const T>(grad_y), dev_ptr<const bool>(mask), p,
                          dev_ptr<T>(grad_x), as_stream(stream));
}

}  // namespace

void bind_cuda_nn(py::module_& m) {
  def_op(m, "activation_forward", "y = act(x) over n elements.", FLOAT_IMPL(activation_forward_t, 5),
         py::arg("x"), py::arg("y"), py::arg("n"), py::arg("act"), py::arg("slope"), py::arg("dtype"),
         py::arg("stream"));
  def_op(m, "activation_backward", "grad_x from grad_y and the saved x or y (act.backward_takes_output).",
         FLOAT_IMPL(activation_backward_t, 6), py::arg("grad_y"), py::arg("saved"), py::arg("grad_x"),
         py::arg("n"), py::arg("act"), py::arg("slope"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "dropout_forward", "y and the bool mask from x: the CPU's Philox stream for the seed.",
         FLOAT_IMPL(dropout_forward_t, 6), py::arg("x"), py::arg("y"), py::arg("mask"), py::arg("n"),
         py::arg("p"), py::arg("seed"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "dropout_backward", "grad_x = grad_y * mask / (1 - p) (0 where p = 1).",
         FLOAT_IMPL(dropout_backward_t, 5), py::arg("grad_y"), py::arg("mask"), py::arg("grad_x"),
         py::arg("n"), py::arg("p"), py::arg("dtype"), py::arg("stream"));
}

}  // namespace adlk_bind
