// Bindings of normalization, dropout, linear, activations, softmax and losses (adlk/nn.h)
// into module adlkernels._adlk. adlkernels.norm / adlkernels.nn validate and document the
// arguments; every buffer is re-checked here before a kernel runs.
#include <cstdint>
#include <string>
#include <vector>

#include "adlk/nn.h"
#include "common.h"

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
py::array_t<T> activation_forward_t(const py::array& x, int act, double slope) {
  const T* px = in_ptr<T>(x, "x", shape_of(x));
  auto y = new_array<T>(shape_of(x));
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::activation_forward<T>(x.size(), px, adlk::Activation(act), slope, py_);
  }
  return y;
}

template <typename T>
py::array_t<T> activation_backward_t(const py::array& dy, const py::array& s, int act,
                                     double slope) {
  const T* pdy = in_ptr<T>(dy, "grad_y", shape_of(dy));
  const T* ps = in_ptr<T>(s, act >= 2 ? "y" : "x", shape_of(dy));
  auto gx = new_array<T>(shape_of(dy));
  T* pgx = gx.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::activation_backward<T>(dy.size(), pdy, ps, adlk::Activation(act), slope, pgx);
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
py::tuple cross_entropy_t(const py::array& logits, const py::array& targets, int red,
                          std::int64_t ignore_index) {
  if (logits.ndim() != 2) throw py::value_error("logits: expected (B, K)");
  const index_t B = logits.shape(0), K = logits.shape(1);
  const T* px = in_ptr<T>(logits, "logits", {B, K});
  const std::int64_t* pt = in_ptr<std::int64_t>(targets, "targets", {B});
  auto grad = new_array<T>({B, K});
  T* pg = grad.mutable_data();
  py::object rows = py::none();
  T* pr = nullptr;
  if (red == 2) { auto a = new_array<T>({B}); pr = a.mutable_data(); rows = a; }
  double loss;
  {
    py::gil_scoped_release nogil;
    loss = adlk::softmax_cross_entropy<T>(B, K, px, pt, adlk::Reduction(red), ignore_index, pg, pr);
  }
  return py::make_tuple(red == 2 ? rows : py::object(py::float_(loss)), grad);
}

template <typename T>
py::tuple loss_t(const py::array& p, const py::array& t, int kind, int red, double delta) {
  const index_t n = p.size();
  const T* pp = in_ptr<T>(p, "pred", {n});
  const T* pt = in_ptr<T>(t, "target", {n});
  auto grad = new_array<T>({n});
  T* pg = grad.mutable_data();
  py::object elems = py::none();
  T* pe = nullptr;
  if (red == 2) { auto a = new_array<T>({n}); pe = a.mutable_data(); elems = a; }
  double loss;
  {
    py::gil_scoped_release nogil;
    loss = adlk::elementwise_loss<T>(n, pp, pt, adlk::LossKind(kind), adlk::Reduction(red), delta, pg, pe);
  }
  return py::make_tuple(red == 2 ? elems : py::object(py::float_(loss)), grad);
}

}  // namespace

void bind_nn(py::module_& m) {
#define ADLK_DISPATCH(arr, call) (is_double(arr) ? py::object(call<double>) : py::object(call<float>))
  m.def("batchnorm_forward", [](const py::array& x, const py::object& w, const py::object& b,
                                const py::object& rm, const py::object& rv, bool training,
                                double momentum, double eps) {
    return is_double(x) ? batchnorm_forward_t<double>(x, w, b, rm, rv, training, momentum, eps)
                        : batchnorm_forward_t<float>(x, w, b, rm, rv, training, momentum, eps);
  });
  m.def("batchnorm_backward", [](const py::array& dy, const py::array& x, const py::object& w,
                                 const py::array& sm, const py::array& si, bool training) {
    return is_double(x) ? batchnorm_backward_t<double>(dy, x, w, sm, si, training)
                        : batchnorm_backward_t<float>(dy, x, w, sm, si, training);
  });
  m.def("layernorm_forward", [](const py::array& x, const py::object& w, const py::object& b, double eps) {
    return is_double(x) ? layernorm_forward_t<double>(x, w, b, eps) : layernorm_forward_t<float>(x, w, b, eps);
  });
  m.def("layernorm_backward", [](const py::array& dy, const py::array& x, const py::array& mean,
                                 const py::array& rstd, const py::object& w) {
    return is_double(x) ? layernorm_backward_t<double>(dy, x, mean, rstd, w)
                        : layernorm_backward_t<float>(dy, x, mean, rstd, w);
  });
  m.def("dropout_forward", [](const py::array& x, double p, std::uint64_t seed) {
    return is_double(x) ? dropout_forward_t<double>(x, p, seed) : dropout_forward_t<float>(x, p, seed);
  });
  m.def("dropout_backward", [](const py::array& dy, const py::array& mask, double p) {
    return is_double(dy) ? py::object(dropout_backward_t<double>(dy, mask, p))
                         : py::object(dropout_backward_t<float>(dy, mask, p));
  });
  m.def("philox4x32_10", [](std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3,
                            std::uint32_t k0, std::uint32_t k1) {
    const std::uint32_t ctr[4] = {c0, c1, c2, c3}, key[2] = {k0, k1};
    std::uint32_t out[4];
    adlk::philox4x32_10(ctr, key, out);
    return py::make_tuple(out[0], out[1], out[2], out[3]);
  });
  m.def("linear_forward", [](const py::array& x, const py::array& w, const py::object& b) {
    return is_double(x) ? py::object(linear_forward_t<double>(x, w, b)) : py::object(linear_forward_t<float>(x, w, b));
  });
  m.def("linear_backward", [](const py::array& dy, const py::array& x, const py::array& w,
                              bool nx, bool nw, bool nb) {
    return is_double(x) ? linear_backward_t<double>(dy, x, w, nx, nw, nb)
                        : linear_backward_t<float>(dy, x, w, nx, nw, nb);
  });
  m.def("activation_forward", [](const py::array& x, int act, double slope) {
    return is_double(x) ? py::object(activation_forward_t<double>(x, act, slope))
                        : py::object(activation_forward_t<float>(x, act, slope));
  });
  m.def("activation_backward", [](const py::array& dy, const py::array& s, int act, double slope) {
    return is_double(dy) ? py::object(activation_backward_t<double>(dy, s, act, slope))
                         : py::object(activation_backward_t<float>(dy, s, act, slope));
  });
  m.def("softmax_forward", [](const py::array& x, bool log) {
    return is_double(x) ? py::object(softmax_forward_t<double>(x, log)) : py::object(softmax_forward_t<float>(x, log));
  });
  m.def("softmax_backward", [](const py::array& dy, const py::array& y, bool log) {
    return is_double(y) ? py::object(softmax_backward_t<double>(dy, y, log))
                        : py::object(softmax_backward_t<float>(dy, y, log));
  });
  m.def("softmax_cross_entropy", [](const py::array& logits, const py::array& targets, int red,
                                    std::int64_t ignore_index) {
    return is_double(logits) ? cross_entropy_t<double>(logits, targets, red, ignore_index)
                             : cross_entropy_t<float>(logits, targets, red, ignore_index);
  });
  m.def("elementwise_loss", [](const py::array& p, const py::array& t, int kind, int red, double delta) {
    return is_double(p) ? loss_t<double>(p, t, kind, red, delta) : loss_t<float>(p, t, kind, red, delta);
  });
#undef ADLK_DISPATCH
}

}  // namespace adlk_bind
