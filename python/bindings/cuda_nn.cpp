// pybind11 bindings of the CUDA batch/layer norm, activation, dropout, softmax and loss
// kernels (part of module _adlk_cuda).
//
// Internal API for adlkernels.nn, which checks the cupy arrays before calling: pointers
// are device pointers of C-contiguous arrays of n elements (mask: bool), `dtype` (float32
// or float64) picks the kernel, `stream` is a cudaStream_t as an int. The GIL is released
// around the CUDA calls.
#include <cstdint>

#include <vector>

#include "adlk/cuda/embedding.h"
#include "adlk/cuda/nn.h"
#include "cuda_common.h"
#include "op.h"
#include "overlap.h"

namespace adlk_bind {

namespace {

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

adlk::BatchNormGeom bn_geom(index_t N, index_t C, index_t S) {
  adlk::BatchNormGeom g{N, C, S};
  g.check();
  return g;
}

template <typename T>
Extent extent(Ptr p, index_t n, const char* name, bool written) {
  return {p, p + Ptr(adlk::mul_checked(p ? n : 0, index_t(sizeof(T)), name)), name, -1, written};
}

template <typename T>
void batchnorm_forward_t(Ptr x, Ptr weight, Ptr bias, Ptr running_mean, Ptr running_var, Ptr y,
                         Ptr save_mean, Ptr save_invstd, Ptr workspace, index_t N, index_t C,
                         index_t S, bool training, double momentum, double eps, const py::object&,
                         Ptr stream) {
  const auto g = bn_geom(N, C, S);
  if (training)  // updated in place: the CPU module's aliasing rule
    check_no_overlap("batchnorm_forward",
                     {extent<T>(x, N * C * S, "x", false), extent<T>(weight, C, "weight", false),
                      extent<T>(bias, C, "bias", false), extent<T>(running_mean, C, "running_mean", true),
                      extent<T>(running_var, C, "running_var", true)});
  py::gil_scoped_release nogil;
  ac::batchnorm_forward<T>(g, dev_ptr<const T>(x), dev_ptr<const T>(weight), dev_ptr<const T>(bias),
                           dev_ptr<T>(running_mean), dev_ptr<T>(running_var), training, momentum, eps,
                           dev_ptr<T>(y), dev_ptr<T>(save_mean), dev_ptr<T>(save_invstd),
                           dev_ptr<double>(workspace), as_stream(stream));
}

template <typename T>
void batchnorm_backward_t(Ptr grad_y, Ptr x, Ptr weight, Ptr save_mean, Ptr save_invstd, Ptr grad_x,
                          Ptr grad_weight, Ptr grad_bias, Ptr workspace, index_t N, index_t C,
                          index_t S, bool training, const py::object&, Ptr stream) {
  const auto g = bn_geom(N, C, S);
  py::gil_scoped_release nogil;
  ac::batchnorm_backward<T>(g, dev_ptr<const T>(grad_y), dev_ptr<const T>(x), dev_ptr<const T>(weight),
                            dev_ptr<const T>(save_mean), dev_ptr<const T>(save_invstd), training,
                            dev_ptr<T>(grad_x), dev_ptr<T>(grad_weight), dev_ptr<T>(grad_bias),
                            dev_ptr<double>(workspace), as_stream(stream));
}

template <typename T>
void layernorm_forward_t(Ptr x, Ptr weight, Ptr bias, Ptr y, Ptr mean, Ptr rstd, index_t rows,
                         index_t D, double eps, const py::object&, Ptr stream) {
  check_rows(rows, D);
  py::gil_scoped_release nogil;
  ac::layernorm_forward<T>(rows, D, dev_ptr<const T>(x), dev_ptr<const T>(weight), dev_ptr<const T>(bias),
                           eps, dev_ptr<T>(y), dev_ptr<T>(mean), dev_ptr<T>(rstd), as_stream(stream));
}

template <typename T>
void layernorm_backward_t(Ptr grad_y, Ptr x, Ptr mean, Ptr rstd, Ptr weight, Ptr grad_x,
                          Ptr grad_weight, Ptr grad_bias, Ptr workspace, index_t rows, index_t D,
                          const py::object&, Ptr stream) {
  check_rows(rows, D);
  py::gil_scoped_release nogil;
  ac::layernorm_backward<T>(rows, D, dev_ptr<const T>(grad_y), dev_ptr<const T>(x), dev_ptr<const T>(mean),
                            dev_ptr<const T>(rstd), dev_ptr<const T>(weight), dev_ptr<T>(grad_x),
                            dev_ptr<T>(grad_weight), dev_ptr<T>(grad_bias), dev_ptr<double>(workspace),
                            as_stream(stream));
}

void check_embedding(index_t n, index_t V, index_t D) {
  if (n < 0 || V < 0 || D < 0) throw py::value_error("n, V, D: must be >= 0");
}

// The indices are int64, or int32 where `int32`.
template <typename T>
void embedding_forward_t(Ptr indices, Ptr weight, Ptr y, index_t n, index_t V, index_t D, bool int32,
                         const py::object&, Ptr stream) {
  check_embedding(n, V, D);
  py::gil_scoped_release nogil;
  if (int32)
    ac::embedding_forward<T>(n, V, D, dev_ptr<const std::int32_t>(indices), dev_ptr<const T>(weight),
                             dev_ptr<T>(y), as_stream(stream));
  else
    ac::embedding_forward<T>(n, V, D, dev_ptr<const std::int64_t>(indices), dev_ptr<const T>(weight),
                             dev_ptr<T>(y), as_stream(stream));
}

template <typename T>
void embedding_backward_t(Ptr grad_y, Ptr indices, Ptr order, Ptr offsets, Ptr grad_weight, index_t n,
                          index_t V, index_t D, index_t padding_idx, bool int32, const py::object&,
                          Ptr stream) {
  check_embedding(n, V, D);
  if (padding_idx >= V) throw py::value_error("padding_idx: must be < V (negative: none)");
  py::gil_scoped_release nogil;
  auto run = [&](auto pi) {
    ac::embedding_backward<T>(n, V, D, dev_ptr<const T>(grad_y), pi, dev_ptr<const std::int64_t>(order),
                              padding_idx, dev_ptr<std::int64_t>(offsets), dev_ptr<T>(grad_weight),
                              as_stream(stream));
  };
  if (int32) run(dev_ptr<const std::int32_t>(indices));
  else run(dev_ptr<const std::int64_t>(indices));
}

}  // namespace

void bind_cuda_nn(py::module_& m) {
  def_op(m, "batchnorm_workspace", "Doubles of the workspace batch norm needs for (N, C, S).",
         [](index_t N, index_t C, index_t S) { return ac::batchnorm_workspace(bn_geom(N, C, S)); },
         py::arg("N"), py::arg("C"), py::arg("S"));
  def_op(m, "batchnorm_forward",
         "y, save_mean, save_invstd of batch norm over x (N, C, S); running stats updated in training.",
         FLOAT_IMPL(batchnorm_forward_t, 15), py::arg("x"), py::arg("weight"), py::arg("bias"),
         py::arg("running_mean"), py::arg("running_var"), py::arg("y"), py::arg("save_mean"),
         py::arg("save_invstd"), py::arg("workspace"), py::arg("N"), py::arg("C"), py::arg("S"),
         py::arg("training"), py::arg("momentum"), py::arg("eps"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "batchnorm_backward", "grad_x, grad_weight, grad_bias (0: not written) of batchnorm_forward.",
         FLOAT_IMPL(batchnorm_backward_t, 13), py::arg("grad_y"), py::arg("x"), py::arg("weight"),
         py::arg("save_mean"), py::arg("save_invstd"), py::arg("grad_x"), py::arg("grad_weight"),
         py::arg("grad_bias"), py::arg("workspace"), py::arg("N"), py::arg("C"), py::arg("S"),
         py::arg("training"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "layernorm_workspace", "Doubles of the workspace layernorm_backward needs for (rows, D).",
         &ac::layernorm_workspace, py::arg("rows"), py::arg("D"));
  def_op(m, "layernorm_forward", "y, mean, rstd of layer norm over the rows of x (rows, D).",
         FLOAT_IMPL(layernorm_forward_t, 9), py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("y"),
         py::arg("mean"), py::arg("rstd"), py::arg("rows"), py::arg("D"), py::arg("eps"), py::arg("dtype"),
         py::arg("stream"));
  def_op(m, "layernorm_backward", "grad_x, grad_weight, grad_bias of layernorm_forward.",
         FLOAT_IMPL(layernorm_backward_t, 11), py::arg("grad_y"), py::arg("x"), py::arg("mean"),
         py::arg("rstd"), py::arg("weight"), py::arg("grad_x"), py::arg("grad_weight"), py::arg("grad_bias"),
         py::arg("workspace"), py::arg("rows"), py::arg("D"), py::arg("dtype"), py::arg("stream"));
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
  def_op(m, "embedding_forward", "y (n, D) = the rows of weight (V, D) at indices (n,) (checked by the caller).",
         FLOAT_IMPL(embedding_forward_t, 7), py::arg("indices"), py::arg("weight"), py::arg("y"), py::arg("n"),
         py::arg("V"), py::arg("D"), py::arg("int32"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "embedding_backward",
         "grad_weight (V, D) from grad_y (n, D), order a stable argsort of indices, offsets V + 1 int64.",
         FLOAT_IMPL(embedding_backward_t, 10), py::arg("grad_y"), py::arg("indices"), py::arg("order"),
         py::arg("offsets"), py::arg("grad_weight"), py::arg("n"), py::arg("V"), py::arg("D"),
         py::arg("padding_idx"), py::arg("int32"), py::arg("dtype"), py::arg("stream"));
}

}  // namespace adlk_bind
