// Bindings of normalization, dropout, linear, activations, softmax and losses (adlk/nn.h)
// into module adlkernels._adlk. adlkernels.norm / adlkernels.nn validate and document the
// arguments; every buffer is re-checked here before a kernel runs.
#include <cstdint>
#include <string>
#include <vector>

#include "adlk/nn.h"
#include "common.h"
#include "op.h"

namespace adlk_bind {

namespace {

// An optional in-place (C,) array.
template <typename T>
T* opt_inout(const py::object& o, const char* name, index_t n) {
  if (o.is_none()) return nullptr;
  py::array a = o.cast<py::array>();
  in_ptr<T>(a, name, {n});
  if (!a.writeable()) throw py::value_error(std::string(name) + ": must be writeable");
  return static_cast<T*>(a.mutable_data());
}

adlk::BatchNormGeom bn_geom(const py::array& x) {
  if (x.ndim() < 2 || x.ndim() > 4) throw py::value_error("x: expected (N, C), (N, C, L) or (N, C, H, W)");
  adlk::BatchNormGeom g;
  g.N = x.shape(0), g.C = x.shape(1), g.S = 1;
  for (py::ssize_t d = 2; d < x.ndim(); ++d) g.S = adlk::mul_checked(g.S, x.shape(d), "batchnorm: spatial size");
  g.check();
  return g;
}

template <typename T>
py::tuple batchnorm_forward_t(const py::array& x, const py::object& w, const py::object& b,
                              const py::object& rm, const py::object& rv, bool training,
                              double momentum, double eps) {
  const auto g = bn_geom(x);
  const T* px = in_ptr<T>(x, "x", shape_of(x));
  const T* pw = opt_ptr<T>(w, "weight", {g.C});
  const T* pb = opt_ptr<T>(b, "bias", {g.C});
  T* prm = training ? opt_inout<T>(rm, "running_mean", g.C) : const_cast<T*>(opt_ptr<T>(rm, "running_mean", {g.C}));
  T* prv = training ? opt_inout<T>(rv, "running_var", g.C) : const_cast<T*>(opt_ptr<T>(rv, "running_var", {g.C}));
  if (!training && (!prm || !prv)) throw py::value_error("running_mean: required in eval mode");
  auto y = new_array<T>(shape_of(x));
  auto sm = new_array<T>({g.C}), si = new_array<T>({g.C});
  T *py_ = y.mutable_data(), *psm = sm.mutable_data(), *psi = si.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::batchnorm_forward<T>(g, px, pw, pb, prm, prv, training, momentum, eps, py_, psm, psi);
  }
  return py::make_tuple(y, sm, si);
}

template <typename T>
py::tuple batchnorm_backward_t(const py::array& dy, const py::array& x, const py::object& w,
                               const py::array& sm, const py::array& si, bool training) {
  const auto g = bn_geom(x);
  const T* px = in_ptr<T>(x, "x", shape_of(x));
  const T* pdy = in_ptr<T>(dy, "grad_y", shape_of(x));
  const T* pw = opt_ptr<T>(w, "weight", {g.C});
  const T* psm = in_ptr<T>(sm, "save_mean", {g.C});
  const T* psi = in_ptr<T>(si, "save_invstd", {g.C});
  auto gx = new_array<T>(shape_of(x));
  auto gw = new_array<T>({g.C}), gb = new_array<T>({g.C});
  T *pgx = gx.mutable_data(), *pgw = gw.mutable_data(), *pgb = gb.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::batchnorm_backward<T>(g, pdy, px, pw, psm, psi, training, pgx, pgw, pgb);
  }
  return py::make_tuple(gx, gw, gb);
}

template <typename T>
py::tuple layernorm_forward_t(const py::array& x, const py::object& w, const py::object& b,
                              double eps) {
  if (x.ndim() != 2) throw py::value_error("x: expected (rows, D)");
  const index_t rows = x.shape(0), D = x.shape(1);
  const T* px = in_ptr<T>(x, "x", {rows, D});
  const T* pw = opt_ptr<T>(w, "weight", {D});
  const T* pb = opt_ptr<T>(b, "bias", {D});
  auto y = new_array<T>({rows, D});
  auto mean = new_array<T>({rows}), rstd = new_array<T>({rows});
  T *py_ = y.mutable_data(), *pm = mean.mutable_data(), *pr = rstd.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::layernorm_forward<T>(rows, D, px, pw, pb, eps, py_, pm, pr);
  }
  return py::make_tuple(y, mean, rstd);
}

template <typename T>
py::tuple layernorm_backward_t(const py::array& dy, const py::array& x, const py::array& mean,
                               const py::array& rstd, const py::object& w) {
  if (x.ndim() != 2) throw py::value_error("x: expected (rows, D)");
  const index_t rows = x.shape(0), D = x.shape(1);
  const T* px = in_ptr<T>(x, "x", {rows, D});
  const T* pdy = in_ptr<T>(dy, "grad_y", {rows, D});
  const T* pm = in_ptr<T>(mean, "mean", {rows});
  const T* pr = in_ptr<T>(rstd, "rstd", {rows});
  const T* pw = opt_ptr<T>(w, "weight", {D});
  auto gx = new_array<T>({rows, D});
  auto gw = new_array<T>({D}), gb = new_array<T>({D});
  T *pgx = gx.mutable_data(), *pgw = gw.mutable_data(), *pgb = gb.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::layernorm_backward<T>(rows, D, pdy, px, pm, pr, pw, pgx, pgw, pgb);
  }
  return py::make_tuple(gx, gw, gb);
}

template <typename T>
py::tuple dropout_forward_t(const py::array& x, double p, std::uint64_t seed) {
  const index_t n = x.size();
  const T* px = in_ptr<T>(x, "x", {n});
  auto y = new_array<T>({n});
  auto mask = new_array<bool>({n});
  T* py_ = y.mutable_data();
  bool* pm = mask.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::dropout_forward<T>(n, px, p, seed, py_, pm);
  }
  return py::make_tuple(y, mask);
}

template <typename T>
py::array_t<T> dropout_backward_t(const py::array& dy, const py::array& mask, double p) {
  const index_t n = dy.size();
  const T* pdy = in_ptr<T>(dy, "grad_y", {n});
  const bool* pm = in_ptr<bool>(mask, "mask", {n});
  auto gx = new_array<T>({n});
  T* pgx = gx.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::dropout_backward<T>(n, pdy, pm, p, pgx);
  }
  return gx;
}

template <typename T>
py::array_t<T> linear_forward_t(const py::array& x, const py::array& w, const py::object& b) {
  if (x.ndim() != 2 || w.ndim() != 2) throw py::value_error("x: expected (B, I), weight (O, I)");
  const index_t B = x.shape(0), I = x.shape(1), O = w.shape(0);
  const T* px = in_ptr<T>(x, "x", {B, I});
  const T* pw = in_ptr<T>(w, "weight", {O, I});
  const T* pb = opt_ptr<T>(b, "bias", {O});
  auto y = new_array<T>({B, O});
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::linear_forward<T>(B, I, O, px, pw, pb, py_);
  }
  return y;
}

template <typename T>
py::tuple linear_backward_t(const py::array& dy, const py::array& x, const py::array& w,
                            bool need_x, bool need_w, bool need_b) {
  if (x.ndim() != 2 || w.ndim() != 2) throw py::value_error("x: expected (B, I), weight (O, I)");
  const index_t B = x.shape(0), I = x.shape(1), O = w.shape(0);
  const T* px = in_ptr<T>(x, "x", {B, I});
  const T* pw = in_ptr<T>(w, "weight", {O, I});
  const T* pdy = in_ptr<T>(dy, "grad_y", {B, O});
  py::object gx = py::none(), gw = py::none(), gb = py::none();
  T *pgx = nullptr, *pgw = nullptr, *pgb = nullptr;
  if (need_x) { auto a = new_array<T>({B, I}); pgx = a.mutable_data(); gx = a; }
  if (need_w) { auto a = new_array<T>({O, I}); pgw = a.mutable_data(); gw = a; }
  if (need_b) { auto a = new_array<T>({O}); pgb = a.mutable_data(); gb = a; }
  {
    py::gil_scoped_release nogil;
    adlk::linear_backward<T>(B, I, O, pdy, px, pw, pgx, pgw, pgb);
  }
  return py::make_tuple(gx, gw, gb);
}

template <typename T>
py::array_t<T> activation_forward_t(const py::array& x, adlk::Activation act, double slope) {
  const T* px = in_ptr<T>(x, "x", shape_of(x));
  auto y = new_array<T>(shape_of(x));
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::activation_forward<T>(x.size(), px, act, slope, py_);
  }
  return y;
}

template <typename T>
py::array_t<T> activation_backward_t(const py::array& dy, const py::array& s,
                                     adlk::Activation act, double slope) {
  const T* pdy = in_ptr<T>(dy, "grad_y", shape_of(dy));
  const T* ps = in_ptr<T>(s, adlk::backward_takes_output(act) ? "y" : "x", shape_of(dy));
  auto gx = new_array<T>(shape_of(dy));
  T* pgx = gx.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::activation_backward<T>(dy.size(), pdy, ps, act, slope, pgx);
  }
  return gx;
}

template <typename T>
py::array_t<T> softmax_forward_t(const py::array& x, bool log) {
  if (x.ndim() != 2) throw py::value_error("x: expected (rows, K)");
  const index_t rows = x.shape(0), K = x.shape(1);
  const T* px = in_ptr<T>(x, "x", {rows, K});
  auto y = new_array<T>({rows, K});
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::softmax_forward<T>(rows, K, px, log, py_);
  }
  return y;
}

template <typename T>
py::array_t<T> softmax_backward_t(const py::array& dy, const py::array& y, bool log) {
  if (y.ndim() != 2) throw py::value_error("y: expected (rows, K)");
  const index_t rows = y.shape(0), K = y.shape(1);
  const T* py_ = in_ptr<T>(y, "y", {rows, K});
  const T* pdy = in_ptr<T>(dy, "grad_y", {rows, K});
  auto gx = new_array<T>({rows, K});
  T* pgx = gx.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::softmax_backward<T>(rows, K, pdy, py_, log, pgx);
  }
  return gx;
}

template <typename T>
py::tuple cross_entropy_t(const py::array& logits, const py::array& targets, adlk::Reduction red,
                          std::int64_t ignore_index) {
  if (logits.ndim() != 2) throw py::value_error("logits: expected (B, K)");
  const index_t B = logits.shape(0), K = logits.shape(1);
  const T* px = in_ptr<T>(logits, "logits", {B, K});
  const std::int64_t* pt = in_ptr<std::int64_t>(targets, "targets", {B});
  auto grad = new_array<T>({B, K});
  T* pg = grad.mutable_data();
  py::object rows = py::none();
  T* pr = nullptr;
  if (red == adlk::Reduction::kNone) { auto a = new_array<T>({B}); pr = a.mutable_data(); rows = a; }
  double loss;
  {
    py::gil_scoped_release nogil;
    loss = adlk::softmax_cross_entropy<T>(B, K, px, pt, red, ignore_index, pg, pr);
  }
  return py::make_tuple(red == adlk::Reduction::kNone ? rows : py::object(py::float_(loss)), grad);
}

template <typename T>
py::tuple loss_t(const py::array& p, const py::array& t, adlk::LossKind kind,
                 adlk::Reduction red, double delta) {
  const index_t n = p.size();
  const T* pp = in_ptr<T>(p, "pred", {n});
  const T* pt = in_ptr<T>(t, "target", {n});
  auto grad = new_array<T>({n});
  T* pg = grad.mutable_data();
  py::object elems = py::none();
  T* pe = nullptr;
  if (red == adlk::Reduction::kNone) { auto a = new_array<T>({n}); pe = a.mutable_data(); elems = a; }
  double loss;
  {
    py::gil_scoped_release nogil;
    loss = adlk::elementwise_loss<T>(n, pp, pt, kind, red, delta, pg, pe);
  }
  return py::make_tuple(red == adlk::Reduction::kNone ? elems : py::object(py::float_(loss)), grad);
}

}  // namespace

void bind_nn(py::module_& m) {
  // The enums of adlk/nn.h, with the properties the Python layer needs.
  py::enum_<adlk::Activation>(m, "Activation", "Pointwise activation of activation_forward/backward.")
      .value("relu", adlk::Activation::kRelu)
      .value("leaky_relu", adlk::Activation::kLeakyRelu)
      .value("sigmoid", adlk::Activation::kSigmoid)
      .value("tanh", adlk::Activation::kTanh)
      .def_property_readonly(
          "backward_takes_output", [](adlk::Activation a) { return adlk::backward_takes_output(a); },
          "True when the backward reads the forward's output y, False when its input x.");
  py::enum_<adlk::Reduction>(m, "Reduction", "How a loss reduces its per-element values.")
      .value("mean", adlk::Reduction::kMean)
      .value("sum", adlk::Reduction::kSum)
      .value("none", adlk::Reduction::kNone);
  py::enum_<adlk::LossKind>(m, "LossKind", "Elementwise loss of elementwise_loss.")
      .value("mse", adlk::LossKind::kMse)
      .value("l1", adlk::LossKind::kL1)
      .value("huber", adlk::LossKind::kHuber);

  def_op(m, "batchnorm_forward", "(y, save_mean, save_invstd) of batch norm; running stats updated in training.",
         FLOAT_IMPL(batchnorm_forward_t, 0), py::arg("x"), py::arg("weight"), py::arg("bias"),
         py::arg("running_mean"), py::arg("running_var"), py::arg("training"), py::arg("momentum"),
         py::arg("eps"));
  def_op(m, "batchnorm_backward", "(grad_x, grad_weight, grad_bias) of batchnorm_forward.",
         FLOAT_IMPL(batchnorm_backward_t, 1), py::arg("grad_y"), py::arg("x"), py::arg("weight"),
         py::arg("save_mean"), py::arg("save_invstd"), py::arg("training"));
  def_op(m, "layernorm_forward", "(y, mean, rstd) of layer norm over the rows of x (rows, D).",
         FLOAT_IMPL(layernorm_forward_t, 0), py::arg("x"), py::arg("weight"), py::arg("bias"),
         py::arg("eps"));
  def_op(m, "layernorm_backward", "(grad_x, grad_weight, grad_bias) of layernorm_forward.",
         FLOAT_IMPL(layernorm_backward_t, 1), py::arg("grad_y"), py::arg("x"), py::arg("mean"),
         py::arg("rstd"), py::arg("weight"));
  def_op(m, "dropout_forward", "(y, mask) of inverted dropout over flat x, mask by Philox from (seed, index).",
         FLOAT_IMPL(dropout_forward_t, 0), py::arg("x"), py::arg("p"), py::arg("seed"));
  def_op(m, "dropout_backward", "grad_x = grad_y * mask / (1 - p) over flat arrays.",
         FLOAT_IMPL(dropout_backward_t, 0), py::arg("grad_y"), py::arg("mask"), py::arg("p"));
  def_op(
      m, "philox4x32_10", "The four output words of Philox-4x32-10 for one counter and key.",
      [](std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3, std::uint32_t k0,
         std::uint32_t k1) {
        const std::uint32_t ctr[4] = {c0, c1, c2, c3}, key[2] = {k0, k1};
        std::uint32_t out[4];
        adlk::philox4x32_10(ctr, key, out);
        return py::make_tuple(out[0], out[1], out[2], out[3]);
      },
      py::arg("c0"), py::arg("c1"), py::arg("c2"), py::arg("c3"), py::arg("k0"), py::arg("k1"));
  def_op(m, "linear_forward", "y (B, O) = x (B, I) @ weight (O, I).T + bias.",
         FLOAT_IMPL(linear_forward_t, 0), py::arg("x"), py::arg("weight"), py::arg("bias"));
  def_op(m, "linear_backward", "(grad_x, grad_weight, grad_bias) of linear_forward; None where not needed.",
         FLOAT_IMPL(linear_backward_t, 1), py::arg("grad_y"), py::arg("x"), py::arg("weight"),
         py::arg("need_x"), py::arg("need_weight"), py::arg("need_bias"));
  def_op(m, "activation_forward", "y = act(x) elementwise (slope: leaky_relu's negative slope).",
         FLOAT_IMPL(activation_forward_t, 0), py::arg("x"), py::arg("act"), py::arg("slope"));
  def_op(m, "activation_backward",
         "grad_x of activation_forward from grad_y and saved (y where act.backward_takes_output, else x).",
         FLOAT_IMPL(activation_backward_t, 0), py::arg("grad_y"), py::arg("saved"), py::arg("act"),
         py::arg("slope"));
  def_op(m, "softmax_forward", "Softmax (or log-softmax) over the rows of x (rows, K).",
         FLOAT_IMPL(softmax_forward_t, 0), py::arg("x"), py::arg("log"));
  def_op(m, "softmax_backward", "grad_x of softmax_forward from grad_y and its output y.",
         FLOAT_IMPL(softmax_backward_t, 1), py::arg("grad_y"), py::arg("y"), py::arg("log"));
  def_op(m, "softmax_cross_entropy", "(loss, grad_logits) of softmax cross-entropy against int64 targets.",
         FLOAT_IMPL(cross_entropy_t, 0), py::arg("logits"), py::arg("targets"), py::arg("reduction"),
         py::arg("ignore_index"));
  def_op(m, "elementwise_loss", "(loss, grad_pred) of an elementwise loss over flat pred and target.",
         FLOAT_IMPL(loss_t, 0), py::arg("pred"), py::arg("target"), py::arg("kind"),
         py::arg("reduction"), py::arg("delta"));
}

}  // namespace adlk_bind
