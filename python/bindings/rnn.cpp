// Bindings of the recurrent family (adlk/rnn.h) into module adlkernels._adlk.
//
// The Python layer (adlkernels.rnn) validates and documents the arguments; here every
// buffer is re-checked (dtype, shape, contiguity or row strides) before a kernel runs.
#include <cstdint>
#include <string>

#include "adlk/rnn.h"
#include "common.h"
#include "op.h"

namespace adlk_bind {

namespace {

// A (T, B, n) array whose (t, b) rows are evenly spaced with unit stride inside a row:
// returns the base pointer and the row stride in elements.
template <typename T>
std::pair<T*, index_t> rows_arg(const py::array& a, const char* name, index_t T_, index_t B,
                                index_t n, bool writeable) {
  if (!has_dtype<T>(a))
    throw py::type_error(std::string(name) + ": expected dtype " +
                         std::string(py::str(py::dtype::of<T>())) + ", got " +
                         std::string(py::str(a.dtype())));
  if (shape_of(a) != std::vector<index_t>{T_, B, n})
    throw py::value_error(std::string(name) + ": expected shape " + shape_str({T_, B, n}) +
                          ", got " + shape_str(shape_of(a)));
  const index_t item = sizeof(T);
  const index_t s0 = a.strides(0), s1 = a.strides(1), s2 = a.strides(2);
  index_t ld = n;
  if (T_ * B > 0) {
    bool ok = (n <= 1 || s2 == item) && reinterpret_cast<std::uintptr_t>(a.data()) % item == 0;
    if (B > 1) {
      ok = ok && s1 % item == 0 && (T_ <= 1 || s0 == B * s1);
      ld = s1 / item;
    } else if (T_ > 1) {
      ok = ok && s0 % item == 0;
      ld = s0 / item;
    }
    if (!ok || ld < n)
      throw py::value_error(std::string(name) +
                            ": expected unit stride along the last axis and evenly spaced rows");
  }
  py::array arr = a;
  T* p = writeable ? static_cast<T*>(arr.mutable_data())
                   : const_cast<T*>(static_cast<const T*>(a.data()));
  return {p, ld};
}

template <typename T>
py::tuple lstm_forward_t(const py::array& x, const py::array& h0, const py::array& c0,
                         const py::array& w_ih, const py::array& w_hh, const py::object& b_ih,
                         const py::object& b_hh, bool reverse, const py::array& y, bool want_final) {
  if (x.ndim() != 3 || h0.ndim() != 2) throw py::value_error("x: expected (T, B, I), h0 (B, H)");
  adlk::SeqGeom g;
  g.T = x.shape(0), g.B = x.shape(1), g.I = x.shape(2), g.H = h0.shape(1);
  auto [px, ldx] = rows_arg<T>(x, "x", g.T, g.B, g.I, false);
  auto [py_, ldy] = rows_arg<T>(y, "out", g.T, g.B, g.H, true);
  g.ldx = ldx, g.ldy = ldy;
  g.check();
  const T* ph0 = in_ptr<T>(h0, "h0", {g.B, g.H});
  const T* pc0 = in_ptr<T>(c0, "c0", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {4 * g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {4 * g.H, g.H});
  const T* pbi = opt_ptr<T>(b_ih, "b_ih", {4 * g.H});
  const T* pbh = opt_ptr<T>(b_hh, "b_hh", {4 * g.H});
  auto gates = new_array<T>({g.T, g.B, 4 * g.H});
  auto cells = new_array<T>({g.T, g.B, g.H});
  py::object h_n = py::none(), c_n = py::none();
  T *phn = nullptr, *pcn = nullptr;
  if (want_final) {
    auto a = new_array<T>({g.B, g.H}), b = new_array<T>({g.B, g.H});
    phn = a.mutable_data(), pcn = b.mutable_data();
    h_n = a, c_n = b;
  }
  T *pg = gates.mutable_data(), *pcells = cells.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::lstm_forward<T>(g, px, ph0, pc0, pwi, pwh, pbi, pbh, reverse, py_, phn, pcn, pg, pcells);
  }
  return py::make_tuple(h_n, c_n, gates, cells);
}

template <typename T>
py::tuple lstm_backward_t(const py::object& grad_y, const py::object& grad_h_n,
                          const py::object& grad_c_n, const py::array& x, const py::array& h0,
                          const py::array& c0, const py::array& w_ih, const py::array& w_hh,
                          bool has_bias, const py::array& gates, const py::array& cells,
                          const py::object& y, bool reverse) {
  if (x.ndim() != 3 || h0.ndim() != 2) throw py::value_error("x: expected (T, B, I), h0 (B, H)");
  adlk::SeqGeom g;
  g.T = x.shape(0), g.B = x.shape(1), g.I = x.shape(2), g.H = h0.shape(1);
  auto [px, ldx] = rows_arg<T>(x, "x", g.T, g.B, g.I, false);
  const T* py_ = nullptr;
  index_t ldy = g.H;
  if (!y.is_none()) std::tie(py_, ldy) = rows_arg<T>(y.cast<py::array>(), "y", g.T, g.B, g.H, false);
  else if (g.T > 1) throw py::value_error("y: needed when T > 1");
  g.ldx = ldx, g.ldy = ldy;
  g.check();
  const T* pgy = nullptr;
  index_t ldgy = g.H;
  if (!grad_y.is_none())
    std::tie(pgy, ldgy) = rows_arg<T>(grad_y.cast<py::array>(), "grad_y", g.T, g.B, g.H, false);
  const T* pghn = opt_ptr<T>(grad_h_n, "grad_h_n", {g.B, g.H});
  const T* pgcn = opt_ptr<T>(grad_c_n, "grad_c_n", {g.B, g.H});
  const T* ph0 = in_ptr<T>(h0, "h0", {g.B, g.H});
  const T* pc0 = in_ptr<T>(c0, "c0", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {4 * g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {4 * g.H, g.H});
  const T* pg = in_ptr<T>(gates, "gates", {g.T, g.B, 4 * g.H});
  const T* pcells = in_ptr<T>(cells, "cells", {g.T, g.B, g.H});
  auto gx = new_array<T>({g.T, g.B, g.I});
  auto gh0 = new_array<T>({g.B, g.H}), gc0 = new_array<T>({g.B, g.H});
  auto gwi = new_array<T>({4 * g.H, g.I}), gwh = new_array<T>({4 * g.H, g.H});
  py::object gb = py::none();
  T* pgb = nullptr;
  if (has_bias) {
    auto a = new_array<T>({4 * g.H});
    pgb = a.mutable_data();
    gb = a;
  }
  T *pgx = gx.mutable_data(), *pgh0 = gh0.mutable_data(), *pgc0 = gc0.mutable_data(),
    *pgwi = gwi.mutable_data(), *pgwh = gwh.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::lstm_backward<T>(g, pgy, ldgy, pghn, pgcn, px, ph0, pc0, pwi, pwh, pg, pcells, py_,
                           reverse, pgx, pgh0, pgc0, pgwi, pgwh, pgb);
  }
  return py::make_tuple(gx, gh0, gc0, gwi, gwh, gb);
}

// x (T, B, I) and out (T, B, H) of a sequence forward, as row-strided views; h0 gives H.
template <typename T>
adlk::SeqGeom seq_geom(const py::array& x, const py::array& h0, const char* x_name) {
  if (x.ndim() != 3 || h0.ndim() != 2)
    throw py::value_error(std::string(x_name) + ": expected (T, B, I), h0 (B, H)");
  adlk::SeqGeom g;
  g.T = x.shape(0), g.B = x.shape(1), g.I = x.shape(2), g.H = h0.shape(1);
  return g;
}

template <typename T>
py::tuple gru_forward_t(const py::array& x, const py::array& h0, const py::array& w_ih,
                        const py::array& w_hh, const py::object& b_ih, const py::object& b_hh,
                        bool reverse, const py::array& y) {
  auto g = seq_geom<T>(x, h0, "x");
  auto [px, ldx] = rows_arg<T>(x, "x", g.T, g.B, g.I, false);
  auto [py_, ldy] = rows_arg<T>(y, "out", g.T, g.B, g.H, true);
  g.ldx = ldx, g.ldy = ldy;
  g.check();
  const T* ph0 = in_ptr<T>(h0, "h0", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {3 * g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {3 * g.H, g.H});
  const T* pbi = opt_ptr<T>(b_ih, "b_ih", {3 * g.H});
  const T* pbh = opt_ptr<T>(b_hh, "b_hh", {3 * g.H});
  auto gates = new_array<T>({g.T, g.B, 3 * g.H});
  auto hn = new_array<T>({g.T, g.B, g.H});
  auto h_n = new_array<T>({g.B, g.H});
  T *pg = gates.mutable_data(), *phn = hn.mutable_data(), *pout = h_n.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::gru_forward<T>(g, px, ph0, pwi, pwh, pbi, pbh, reverse, py_, pout, pg, phn);
  }
  return py::make_tuple(h_n, gates, hn);
}

// grad_y (T, B, H) row-strided or None; y (T, B, H) row-strided, or None when T <= 1.
template <typename T>
std::tuple<const T*, index_t, const T*, index_t> seq_grad_y(const adlk::SeqGeom& g,
                                                            const py::object& grad_y,
                                                            const py::object& y,
                                                            index_t y_needed_above) {
  const T *py_ = nullptr, *pgy = nullptr;
  index_t ldy = g.H, ldgy = g.H;
  if (!y.is_none()) std::tie(py_, ldy) = rows_arg<T>(y.cast<py::array>(), "y", g.T, g.B, g.H, false);
  else if (g.T > y_needed_above) throw py::value_error("y: needed for this sequence length");
  if (!grad_y.is_none())
    std::tie(pgy, ldgy) = rows_arg<T>(grad_y.cast<py::array>(), "grad_y", g.T, g.B, g.H, false);
  return {py_, ldy, pgy, ldgy};
}

template <typename T>
py::tuple gru_backward_t(const py::object& grad_y, const py::object& grad_h_n, const py::array& x,
                         const py::array& h0, const py::array& w_ih, const py::array& w_hh,
                         const py::array& gates, const py::array& hn, const py::object& y,
                         bool reverse, bool need_b_ih, bool need_b_hh) {
  auto g = seq_geom<T>(x, h0, "x");
  auto [px, ldx] = rows_arg<T>(x, "x", g.T, g.B, g.I, false);
  auto [py_, ldy, pgy, ldgy] = seq_grad_y<T>(g, grad_y, y, 1);
  g.ldx = ldx, g.ldy = ldy;
  g.check();
  const T* pghn = opt_ptr<T>(grad_h_n, "grad_h_n", {g.B, g.H});
  const T* ph0 = in_ptr<T>(h0, "h0", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {3 * g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {3 * g.H, g.H});
  const T* pg = in_ptr<T>(gates, "gates", {g.T, g.B, 3 * g.H});
  const T* phn = in_ptr<T>(hn, "hn", {g.T, g.B, g.H});
  auto gx = new_array<T>({g.T, g.B, g.I}), gh0 = new_array<T>({g.B, g.H});
  auto gwi = new_array<T>({3 * g.H, g.I}), gwh = new_array<T>({3 * g.H, g.H});
  py::object gbi = py::none(), gbh = py::none();
  T *pgbi = nullptr, *pgbh = nullptr;
  if (need_b_ih) {
    auto a = new_array<T>({3 * g.H});
    pgbi = a.mutable_data();
    gbi = a;
  }
  if (need_b_hh) {
    auto a = new_array<T>({3 * g.H});
    pgbh = a.mutable_data();
    gbh = a;
  }
  T *pgx = gx.mutable_data(), *pgh0 = gh0.mutable_data(), *pgwi = gwi.mutable_data(),
    *pgwh = gwh.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::gru_backward<T>(g, pgy, ldgy, pghn, px, ph0, pwi, pwh, pg, phn, py_, reverse, pgx, pgh0,
                          pgwi, pgwh, pgbi, pgbh);
  }
  return py::make_tuple(gx, gh0, gwi, gwh, gbi, gbh);
}

template <typename T>
py::array_t<T> rnn_forward_t(const py::array& x, const py::array& h0, const py::array& w_ih,
                             const py::array& w_hh, const py::object& b_ih, const py::object& b_hh,
                             bool relu, bool reverse, const py::array& y) {
  auto g = seq_geom<T>(x, h0, "x");
  auto [px, ldx] = rows_arg<T>(x, "x", g.T, g.B, g.I, false);
  auto [py_, ldy] = rows_arg<T>(y, "out", g.T, g.B, g.H, true);
  g.ldx = ldx, g.ldy = ldy;
  g.check();
  const T* ph0 = in_ptr<T>(h0, "h0", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {g.H, g.H});
  const T* pbi = opt_ptr<T>(b_ih, "b_ih", {g.H});
  const T* pbh = opt_ptr<T>(b_hh, "b_hh", {g.H});
  auto h_n = new_array<T>({g.B, g.H});
  T* pout = h_n.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::rnn_forward<T>(g, px, ph0, pwi, pwh, pbi, pbh, relu, reverse, py_, pout);
  }
  return h_n;
}

template <typename T>
py::tuple rnn_backward_t(const py::object& grad_y, const py::object& grad_h_n, const py::array& x,
                         const py::array& h0, const py::array& w_ih, const py::array& w_hh,
                         const py::object& y, bool relu, bool reverse, bool has_bias) {
  auto g = seq_geom<T>(x, h0, "x");
  auto [px, ldx] = rows_arg<T>(x, "x", g.T, g.B, g.I, false);
  auto [py_, ldy, pgy, ldgy] = seq_grad_y<T>(g, grad_y, y, 0);
  g.ldx = ldx, g.ldy = ldy;
  g.check();
  const T* pghn = opt_ptr<T>(grad_h_n, "grad_h_n", {g.B, g.H});
  const T* ph0 = in_ptr<T>(h0, "h0", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {g.H, g.H});
  auto gx = new_array<T>({g.T, g.B, g.I}), gh0 = new_array<T>({g.B, g.H});
  auto gwi = new_array<T>({g.H, g.I}), gwh = new_array<T>({g.H, g.H});
  py::object gb = py::none();
  T* pgb = nullptr;
  if (has_bias) {
    auto a = new_array<T>({g.H});
    pgb = a.mutable_data();
    gb = a;
  }
  T *pgx = gx.mutable_data(), *pgh0 = gh0.mutable_data(), *pgwi = gwi.mutable_data(),
    *pgwh = gwh.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::rnn_backward<T>(g, pgy, ldgy, pghn, px, ph0, pwi, pwh, py_, relu, reverse, pgx, pgh0,
                          pgwi, pgwh, pgb);
  }
  return py::make_tuple(gx, gh0, gwi, gwh, gb);
}

adlk::CellGeom cell_geom(const py::array& x, const py::array& h) {
  if (x.ndim() != 2 || h.ndim() != 2) throw py::value_error("x: expected (B, I), h (B, H)");
  adlk::CellGeom g;
  g.B = x.shape(0), g.I = x.shape(1), g.H = h.shape(1);
  g.check();
  return g;
}

template <typename T>
py::tuple gru_cell_forward_t(const py::array& x, const py::array& h, const py::array& w_ih,
                             const py::array& w_hh, const py::object& b_ih,
                             const py::object& b_hh) {
  const auto g = cell_geom(x, h);
  const T* px = in_ptr<T>(x, "x", {g.B, g.I});
  const T* ph = in_ptr<T>(h, "h", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {3 * g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {3 * g.H, g.H});
  const T* pbi = opt_ptr<T>(b_ih, "b_ih", {3 * g.H});
  const T* pbh = opt_ptr<T>(b_hh, "b_hh", {3 * g.H});
  auto h_next = new_array<T>({g.B, g.H}), gates = new_array<T>({g.B, 3 * g.H}),
       hn = new_array<T>({g.B, g.H});
  T *pout = h_next.mutable_data(), *pg = gates.mutable_data(), *phn = hn.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::gru_cell_forward<T>(g, px, ph, pwi, pwh, pbi, pbh, pout, pg, phn);
  }
  return py::make_tuple(h_next, gates, hn);
}

template <typename T>
py::tuple gru_cell_backward_t(const py::array& grad, const py::array& x, const py::array& h,
                              const py::array& w_ih, const py::array& w_hh,
                              const py::array& gates, const py::array& hn, bool need_b_ih,
                              bool need_b_hh) {
  const auto g = cell_geom(x, h);
  const T* pgrad = in_ptr<T>(grad, "grad_h_next", {g.B, g.H});
  const T* px = in_ptr<T>(x, "x", {g.B, g.I});
  const T* ph = in_ptr<T>(h, "h", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {3 * g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {3 * g.H, g.H});
  const T* pg = in_ptr<T>(gates, "gates", {g.B, 3 * g.H});
  const T* phn = in_ptr<T>(hn, "hn", {g.B, g.H});
  auto gx = new_array<T>({g.B, g.I}), gh = new_array<T>({g.B, g.H});
  auto gwi = new_array<T>({3 * g.H, g.I}), gwh = new_array<T>({3 * g.H, g.H});
  py::object gbi = py::none(), gbh = py::none();
  T *pgbi = nullptr, *pgbh = nullptr;
  if (need_b_ih) {
    auto a = new_array<T>({3 * g.H});
    pgbi = a.mutable_data();
    gbi = a;
  }
  if (need_b_hh) {
    auto a = new_array<T>({3 * g.H});
    pgbh = a.mutable_data();
    gbh = a;
  }
  T *pgx = gx.mutable_data(), *pgh = gh.mutable_data(), *pgwi = gwi.mutable_data(),
    *pgwh = gwh.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::gru_cell_backward<T>(g, pgrad, px, ph, pwi, pwh, pg, phn, pgx, pgh, pgwi, pgwh, pgbi,
                               pgbh);
  }
  return py::make_tuple(gx, gh, gwi, gwh, gbi, gbh);
}

template <typename T>
py::array_t<T> rnn_cell_forward_t(const py::array& x, const py::array& h, const py::array& w_ih,
                                  const py::array& w_hh, const py::object& b_ih,
                                  const py::object& b_hh, bool relu) {
  const auto g = cell_geom(x, h);
  const T* px = in_ptr<T>(x, "x", {g.B, g.I});
  const T* ph = in_ptr<T>(h, "h", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {g.H, g.H});
  const T* pbi = opt_ptr<T>(b_ih, "b_ih", {g.H});
  const T* pbh = opt_ptr<T>(b_hh, "b_hh", {g.H});
  auto h_next = new_array<T>({g.B, g.H});
  T* pout = h_next.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::rnn_cell_forward<T>(g, px, ph, pwi, pwh, pbi, pbh, relu, pout);
  }
  return h_next;
}

template <typename T>
py::tuple rnn_cell_backward_t(const py::array& grad, const py::array& x, const py::array& h,
                              const py::array& w_ih, const py::array& w_hh,
                              const py::array& h_next, bool relu, bool has_bias) {
  const auto g = cell_geom(x, h);
  const T* pgrad = in_ptr<T>(grad, "grad_h_next", {g.B, g.H});
  const T* px = in_ptr<T>(x, "x", {g.B, g.I});
  const T* ph = in_ptr<T>(h, "h", {g.B, g.H});
  const T* pwi = in_ptr<T>(w_ih, "w_ih", {g.H, g.I});
  const T* pwh = in_ptr<T>(w_hh, "w_hh", {g.H, g.H});
  const T* pout = in_ptr<T>(h_next, "h_next", {g.B, g.H});
  auto gx = new_array<T>({g.B, g.I}), gh = new_array<T>({g.B, g.H});
  auto gwi = new_array<T>({g.H, g.I}), gwh = new_array<T>({g.H, g.H});
  py::object gb = py::none();
  T* pgb = nullptr;
  if (has_bias) {
    auto a = new_array<T>({g.H});
    pgb = a.mutable_data();
    gb = a;
  }
  T *pgx = gx.mutable_data(), *pgh = gh.mutable_data(), *pgwi = gwi.mutable_data(),
    *pgwh = gwh.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::rnn_cell_backward<T>(g, pgrad, px, ph, pwi, pwh, pout, relu, pgx, pgh, pgwi, pgwh, pgb);
  }
  return py::make_tuple(gx, gh, gwi, gwh, gb);
}

adlk::AttentionGeom attention_geom(const py::array& query, const py::array& keys,
                                   const py::array& w_query) {
  if (query.ndim() != 2 || keys.ndim() != 3 || w_query.ndim() != 2)
    throw py::value_error("query: expected (B, Dq), keys (T, B, Dk), w_query (A, Dq)");
  adlk::AttentionGeom g;
  g.B = query.shape(0), g.Dq = query.shape(1), g.T = keys.shape(0), g.Dk = keys.shape(2),
  g.A = w_query.shape(0);
  g.check();
  return g;
}

template <typename T>
py::tuple attention_forward_t(const py::array& query, const py::array& keys,
                              const py::array& w_query, const py::array& w_key,
                              const py::array& v, const py::object& mask) {
  const auto g = attention_geom(query, keys, w_query);
  const T* pq = in_ptr<T>(query, "query", {g.B, g.Dq});
  const T* pk = in_ptr<T>(keys, "keys", {g.T, g.B, g.Dk});
  const T* pwq = in_ptr<T>(w_query, "w_query", {g.A, g.Dq});
  const T* pwk = in_ptr<T>(w_key, "w_key", {g.A, g.Dk});
  const T* pv = in_ptr<T>(v, "v", {g.A});
  const bool* pm = opt_ptr<bool>(mask, "mask", {g.B, g.T});
  auto context = new_array<T>({g.B, g.Dk}), weights = new_array<T>({g.B, g.T});
  auto tanh_act = new_array<T>({g.T, g.B, g.A});
  T *pc = context.mutable_data(), *pw = weights.mutable_data(), *pe = tanh_act.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::additive_attention_forward<T>(g, pq, pk, pwq, pwk, pv,
                                        reinterpret_cast<const std::uint8_t*>(pm), pc, pw, pe);
  }
  return py::make_tuple(context, weights, tanh_act);
}

template <typename T>
py::tuple attention_backward_t(const py::array& grad_context, const py::object& grad_weights,
                               const py::array& query, const py::array& keys,
                               const py::array& w_query, const py::array& w_key,
                               const py::array& v, const py::array& tanh_act,
                               const py::array& weights) {
  const auto g = attention_geom(query, keys, w_query);
  const T* pgc = in_ptr<T>(grad_context, "grad_context", {g.B, g.Dk});
  const T* pgw = opt_ptr<T>(grad_weights, "grad_weights", {g.B, g.T});
  const T* pq = in_ptr<T>(query, "query", {g.B, g.Dq});
  const T* pk = in_ptr<T>(keys, "keys", {g.T, g.B, g.Dk});
  const T* pwq = in_ptr<T>(w_query, "w_query", {g.A, g.Dq});
  const T* pwk = in_ptr<T>(w_key, "w_key", {g.A, g.Dk});
  const T* pv = in_ptr<T>(v, "v", {g.A});
  const T* pe = in_ptr<T>(tanh_act, "tanh_act", {g.T, g.B, g.A});
  const T* pw = in_ptr<T>(weights, "weights", {g.B, g.T});
  auto gq = new_array<T>({g.B, g.Dq}), gk = new_array<T>({g.T, g.B, g.Dk});
  auto gwq = new_array<T>({g.A, g.Dq}), gwk = new_array<T>({g.A, g.Dk}), gv = new_array<T>({g.A});
  T *pgq = gq.mutable_data(), *pgk = gk.mutable_data(), *pgwq = gwq.mutable_data(),
    *pgwk = gwk.mutable_data(), *pgv = gv.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::additive_attention_backward<T>(g, pgc, pgw, pq, pk, pwq, pwk, pv, pe, pw, pgq, pgk,
                                         pgwq, pgwk, pgv);
  }
  return py::make_tuple(gq, gk, gwq, gwk, gv);
}

}  // namespace

void bind_rnn(py::module_& m) {
  def_op(m, "lstm_forward",
         "(h_n, c_n, gates, cells) of an LSTM over x (T, B, I), writing y into out (T, B, H).",
         FLOAT_IMPL(lstm_forward_t, 0), py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"),
         py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("reverse"), py::arg("out"),
         py::arg("want_final"));
  def_op(m, "lstm_backward", "(grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b) of lstm_forward (BPTT).",
         FLOAT_IMPL(lstm_backward_t, 3), py::arg("grad_y"), py::arg("grad_h_n"), py::arg("grad_c_n"),
         py::arg("x"), py::arg("h0"), py::arg("c0"), py::arg("w_ih"), py::arg("w_hh"),
         py::arg("has_bias"), py::arg("gates"), py::arg("cells"), py::arg("y"), py::arg("reverse"));
  def_op(m, "gru_forward",
         "(h_n, gates, hn) of a GRU over x (T, B, I), writing y into out (T, B, H).",
         FLOAT_IMPL(gru_forward_t, 0), py::arg("x"), py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"),
         py::arg("b_ih"), py::arg("b_hh"), py::arg("reverse"), py::arg("out"));
  def_op(m, "gru_backward",
         "(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of gru_forward (BPTT).",
         FLOAT_IMPL(gru_backward_t, 2), py::arg("grad_y"), py::arg("grad_h_n"), py::arg("x"),
         py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("gates"), py::arg("hn"), py::arg("y"),
         py::arg("reverse"), py::arg("need_b_ih"), py::arg("need_b_hh"));
  def_op(m, "rnn_forward",
         "h_n of an Elman RNN over x (T, B, I) (tanh, or relu when relu is True), writing y into out.",
         FLOAT_IMPL(rnn_forward_t, 0), py::arg("x"), py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"),
         py::arg("b_ih"), py::arg("b_hh"), py::arg("relu"), py::arg("reverse"), py::arg("out"));
  def_op(m, "rnn_backward", "(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b) of rnn_forward (BPTT).",
         FLOAT_IMPL(rnn_backward_t, 2), py::arg("grad_y"), py::arg("grad_h_n"), py::arg("x"),
         py::arg("h0"), py::arg("w_ih"), py::arg("w_hh"), py::arg("y"), py::arg("relu"),
         py::arg("reverse"), py::arg("has_bias"));
  def_op(m, "gru_cell_forward", "(h_next, gates, hn) of one GRU step.", FLOAT_IMPL(gru_cell_forward_t, 0),
         py::arg("x"), py::arg("h"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"));
  def_op(m, "gru_cell_backward", "(grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of a GRU step.",
         FLOAT_IMPL(gru_cell_backward_t, 1), py::arg("grad_h_next"), py::arg("x"), py::arg("h"),
         py::arg("w_ih"), py::arg("w_hh"), py::arg("gates"), py::arg("hn"), py::arg("need_b_ih"),
         py::arg("need_b_hh"));
  def_op(m, "rnn_cell_forward", "h_next of one Elman step (tanh, or relu when relu is True).",
         FLOAT_IMPL(rnn_cell_forward_t, 0), py::arg("x"), py::arg("h"), py::arg("w_ih"),
         py::arg("w_hh"), py::arg("b_ih"), py::arg("b_hh"), py::arg("relu"));
  def_op(m, "rnn_cell_backward", "(grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b) of an Elman step.",
         FLOAT_IMPL(rnn_cell_backward_t, 1), py::arg("grad_h_next"), py::arg("x"), py::arg("h"),
         py::arg("w_ih"), py::arg("w_hh"), py::arg("h_next"), py::arg("relu"), py::arg("has_bias"));
  def_op(m, "attention_forward", "(context, weights, tanh_act) of additive (Bahdanau) attention.",
         FLOAT_IMPL(attention_forward_t, 0), py::arg("query"), py::arg("keys"), py::arg("w_query"),
         py::arg("w_key"), py::arg("v"), py::arg("mask"));
  def_op(m, "attention_backward", "(grad_query, grad_keys, grad_w_query, grad_w_key, grad_v) of attention_forward.",
         FLOAT_IMPL(attention_backward_t, 2), py::arg("grad_context"), py::arg("grad_weights"),
         py::arg("query"), py::arg("keys"), py::arg("w_query"), py::arg("w_key"), py::arg("v"),
         py::arg("tanh_act"), py::arg("weights"));
}

}  // namespace adlk_bind
