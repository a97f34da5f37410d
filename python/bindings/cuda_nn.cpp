// pybind11 bindings of the CUDA activation, dropout, softmax and loss kernels (part of module
// _adlk_cuda).
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

void check_rows(index_t rows, index_t K) {
  if (rows < 0 || K < 1) throw py::value_error("rows, K: need rows >= 0 and K >= 1");
}

template <typename T>
void softmax_forward_t(Ptr x, Ptr y, index_t rows, index_t K, bool log, const py::object&,
                       Ptr stream) {
  check_rows(rows, K);
  py::gil_scoped_release nogil;
  ac::softmax_forward<T>(rows, K, dev_ptr<const T>(x), log, dev_ptr<T>(y), as_stream(stream));
}

template <typename T>
void softmax_backward_t(Ptr grad_y, Ptr y, Ptr grad_x, index_t rows, index_t K, bool log,
                        const py::object&, Ptr stream) {
  check_rows(rows, K);
  py::gil_scoped_release nogil;
  ac::softmax_backward<T>(rows, K, dev_ptr<const T>(grad_y), dev_ptr<const T>(y), log,
                          dev_ptr<T>(grad_x), as_stream(stream));
}

template <typename T>
void cross_entropy_t(Ptr logits, Ptr targets, Ptr grad, Ptr row_loss, index_t B, index_t K,
                     std::int64_t ignore_index, double grad_scale, const py::object&, Ptr stream) {
  check_rows(B, K);
  py::gil_scoped_release nogil;
  ac::softmax_cross_entropy<T>(B, K, dev_ptr<const T>(logits), dev_ptr<const std::int64_t>(targets),
                               ignore_index, grad_scale, dev_ptr<T>(grad), dev_ptr<double>(row_loss),
                               as_stream(stream));
}

template <typename T>
void elementwise_loss_t(Ptr pred, Ptr target, Ptr grad, Ptr loss_elems, Ptr partials, Ptr total,
                        index_t n, adlk::LossKind kind, adlk::Reduction red, double delta,
                        const py::object&, Ptr stream) {
  check_n(n);
  py::gil_scoped_release nogil;
  ac::elementwise_loss<T>(n, dev_ptr<const T>(pred), dev_ptr<const T>(target), kind, red, delta,
                          dev_ptr<T>(grad), dev_ptr<T>(loss_elems), dev_ptr<double>(partials),
                          dev_ptr<double>(total), as_stream(stream));
}

}  // namespace

void bind_cuda_nn(py::module_& m) {
  def_op(m, "softmax_forward", "y (rows, K) = softmax or log-softmax of each row of x.",
         FLOAT_IMPL(softmax_forward_t, 5), py::arg("x"), py::arg("y"), py::arg("rows"), py::arg("K"),
         py::arg("log"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "softmax_backward", "grad_x (rows, K) from grad_y and the forward's output y.",
         FLOAT_IMPL(softmax_backward_t, 6), py::arg("grad_y"), py::arg("y"), py::arg("grad_x"),
         py::arg("rows"), py::arg("K"), py::arg("log"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "softmax_cross_entropy",
         "grad (B, K) and row_loss (B doubles) of softmax cross-entropy (targets checked by the caller).",
         FLOAT_IMPL(cross_entropy_t, 8), py::arg("logits"), py::arg("targets"), py::arg("grad"),
         py::arg("row_loss"), py::arg("B"), py::arg("K"), py::arg("ignore_index"), py::arg("grad_scale"),
         py::arg("dtype"), py::arg("stream"));
  def_op(
      m, "sum_doubles", "*total = (the sum of n device doubles in a fixed order) / divisor.",
      [](Ptr values, index_t n, double divisor, Ptr total, Ptr stream) {
        check_n(n);
        py::gil_scoped_release nogil;
        ac::sum_doubles(n, dev_ptr<const double>(values), divisor, dev_ptr<double>(total), as_stream(stream));
      },
      py::arg("values"), py::arg("n"), py::arg("divisor"), py::arg("total"), py::arg("stream"));
  def_op(m, "loss_partials", "Doubles of the partials workspace elementwise_loss needs for n elements.",
         &ac::loss_partials, py::arg("n"));
  def_op(m, "elementwise_loss",
         "grad, loss_elems (0: not written) and *total (a device double) of an MSE, L1 or Huber loss.",
         FLOAT_IMPL(elementwise_loss_t, 10), py::arg("pred"), py::arg("target"), py::arg("grad"),
         py::arg("loss_elems"), py::arg("partials"), py::arg("total"), py::arg("n"), py::arg("kind"),
         py::arg("reduction"), py::arg("delta"), py::arg("dtype"), py::arg("stream"));
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
