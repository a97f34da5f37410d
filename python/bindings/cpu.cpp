// pybind11 bindings of the C++ core (module adlkernels._adlk).
//
// The Python layer (adlkernels._validate) has already checked types, dtypes and shapes
// and made inputs C-contiguous; these bindings re-check what memory safety depends on
// (dtype, contiguity, exact shapes) so that a direct call cannot reach a kernel with
// bad buffers, then release the GIL around every kernel.
#include <string>
#include <vector>

#include "adlk/blas.h"
#include "adlk/conv.h"
#include "adlk/parallel.h"
#include "adlk/pool.h"
#include "common.h"

using namespace adlk_bind;

namespace {

adlk::Conv2dGeom make_geom(index_t N, index_t C, index_t H, index_t W, index_t C_out,
                           py::tuple k, py::tuple s, py::tuple p, py::tuple d, index_t groups) {
  adlk::Conv2dGeom g;
  g.N = N, g.C = C, g.H = H, g.W = W, g.C_out = C_out;
  g.kH = k[0].cast<index_t>(), g.kW = k[1].cast<index_t>();
  g.sH = s[0].cast<index_t>(), g.sW = s[1].cast<index_t>();
  g.pH = p[0].cast<index_t>(), g.pW = p[1].cast<index_t>();
  g.dH = d[0].cast<index_t>(), g.dW = d[1].cast<index_t>();
  g.groups = groups;
  g.finalize();
  return g;
}

adlk::Conv2dGeom geom_from_x(const py::array& x, index_t C_out, py::tuple k, py::tuple s,
                             py::tuple p, py::tuple d, index_t groups) {
  if (x.ndim() != 4)
    throw py::value_error("x: expected shape (N, C, H, W), got " + shape_str(shape_of(x)));
  return make_geom(x.shape(0), x.shape(1), x.shape(2), x.shape(3), C_out, k, s, p, d, groups);
}


// ---- convolution ------------------------------------------------------------

template <typename T>
py::array_t<T> im2col_t(const py::array& x, py::tuple k, py::tuple s, py::tuple p, py::tuple d) {
  auto g = geom_from_x(x, 0, k, s, p, d, 1);
  const T* px = in_ptr<T>(x, "x", {g.N, g.C, g.H, g.W});
  auto cols = new_array<T>({g.N, g.col_rows(), g.L()});
  T* pc = cols.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::im2col<T>(px, g, pc);
  }
  return cols;
}

template <typename T>
py::array_t<T> col2im_t(const py::array& cols, index_t C, index_t H, index_t W, py::tuple k,
                        py::tuple s, py::tuple p, py::tuple d) {
  if (cols.ndim() != 3) throw py::value_error("cols: expected a 3-d array");
  auto g = make_geom(cols.shape(0), C, H, W, 0, k, s, p, d, 1);
  const T* pc = in_ptr<T>(cols, "cols", {g.N, g.col_rows(), g.L()});
  auto x = new_array<T>({g.N, g.C, g.H, g.W});
  T* px = x.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::col2im<T>(pc, g, px);
  }
  return x;
}

template <typename T>
py::array_t<T> conv2d_forward_t(const py::array& x, const py::array& w, const py::object& b,
                                py::tuple s, py::tuple p, py::tuple d, index_t groups) {
  if (w.ndim() != 4) throw py::value_error("weight: expected a 4-d array");
  auto g = geom_from_x(x, w.shape(0), py::make_tuple(w.shape(2), w.shape(3)), s, p, d, groups);
  const T* px = in_ptr<T>(x, "x", {g.N, g.C, g.H, g.W});
  const T* pw = in_ptr<T>(w, "weight", {g.C_out, g.C / g.groups, g.kH, g.kW});
  const T* pb = b.is_none() ? nullptr : in_ptr<T>(b.cast<py::array>(), "bias", {g.C_out});
  auto y = new_array<T>({g.N, g.C_out, g.H_out, g.W_out});
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::conv2d_forward<T>(px, pw, pb, g, py_);
  }
  return y;
}

template <typename T>
py::tuple conv2d_backward_t(const py::array& dy, const py::array& x, const py::array& w,
                            py::tuple s, py::tuple p, py::tuple d, index_t groups, bool need_dx,
                            bool need_dw, bool need_db) {
  if (w.ndim() != 4) throw py::value_error("weight: expected a 4-d array");
  auto g = geom_from_x(x, w.shape(0), py::make_tuple(w.shape(2), w.shape(3)), s, p, d, groups);
  const T* px = in_ptr<T>(x, "x", {g.N, g.C, g.H, g.W});
  const T* pw = in_ptr<T>(w, "weight", {g.C_out, g.C / g.groups, g.kH, g.kW});
  const T* pdy = in_ptr<T>(dy, "grad_y", {g.N, g.C_out, g.H_out, g.W_out});
  py::object dx = py::none(), dw = py::none(), db = py::none();
  T *pdx = nullptr, *pdw = nullptr, *pdb = nullptr;
  if (need_dx) {
    auto a = new_array<T>({g.N, g.C, g.H, g.W});
    pdx = a.mutable_data();
    dx = a;
  }
  if (need_dw) {
    auto a = new_array<T>({g.C_out, g.C / g.groups, g.kH, g.kW});
    pdw = a.mutable_data();
    dw = a;
  }
  if (need_db) {
    auto a = new_array<T>({g.C_out});
    pdb = a.mutable_data();
    db = a;
  }
  {
    py::gil_scoped_release nogil;
    adlk::conv2d_backward<T>(pdy, px, pw, g, pdx, pdw, pdb);
  }
  return py::make_tuple(dx, dw, db);
}


// ---- pooling ------------------------------------------------------------------

adlk::Pool2dGeom make_pool_geom(const std::vector<index_t>& in_shape, py::tuple k, py::tuple s,
                                py::tuple p, py::tuple d, bool ceil_mode) {
  if (in_shape.size() != 4)
    throw py::value_error("x: expected shape (N, C, H, W), got " + shape_str(in_shape));
  adlk::Pool2dGeom g;
  g.N = in_shape[0], g.C = in_shape[1], g.H = in_shape[2], g.W = in_shape[3];
  g.kH = k[0].cast<index_t>(), g.kW = k[1].cast<index_t>();
  g.sH = s[0].cast<index_t>(), g.sW = s[1].cast<index_t>();
  g.pH = p[0].cast<index_t>(), g.pW = p[1].cast<index_t>();
  g.dH = d[0].cast<index_t>(), g.dW = d[1].cast<index_t>();
  g.ceil_mode = ceil_mode;
  g.finalize();
  return g;
}

template <typename T>
py::tuple maxpool2d_forward_t(const py::array& x, const adlk::Pool2dGeom& g) {
  const T* px = in_ptr<T>(x, "x", {g.N, g.C, g.H, g.W});
  auto y = new_array<T>({g.N, g.C, g.H_out, g.W_out});
  auto ind = new_array<std::int64_t>({g.N, g.C, g.H_out, g.W_out});
  T* py_ = y.mutable_data();
  std::int64_t* pi = ind.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::maxpool2d_forward<T>(px, g, py_, pi);
  }
  return py::make_tuple(y, ind);
}

// grad_y/x (N, C, h, w) + indices (same shape) -> (N, C, H, W); unpool or max backward.
template <typename T>
py::array_t<T> index_scatter_t(const py::array& src, const py::array& indices, index_t H,
                               index_t W, bool unpool) {
  if (src.ndim() != 4) throw py::value_error("expected a 4-d array");
  const std::vector<index_t> shape = shape_of(src);
  const char* name = unpool ? "x" : "grad_y";
  const T* ps = in_ptr<T>(src, name, shape);
  const std::int64_t* pi = in_ptr<std::int64_t>(indices, "indices", shape);
  if (H < 1 || W < 1) throw py::value_error("output size must be positive");
  adlk::IndexScatterGeom g;
  g.planes = shape[0] * shape[1];
  g.count = shape[2] * shape[3];
  g.dst_size = adlk::mul_checked(H, W, "output size H*W");
  adlk::mul_checked(g.planes, g.dst_size, "output size N*C*H*W");  // before allocating it
  auto out = new_array<T>({shape[0], shape[1], H, W});
  T* po = out.mutable_data();
  index_t bad;
  std::int64_t value = 0;  // the bad index as the kernel read it (indices may change meanwhile)
  {
    py::gil_scoped_release nogil;
    bad = unpool ? adlk::max_unpool2d<T>(ps, pi, g, po, &value)
                 : adlk::maxpool2d_backward<T>(ps, pi, g, po, &value);
  }
  if (bad >= 0) {
    const index_t plane = bad / std::max<index_t>(1, g.count), i = bad % std::max<index_t>(1, g.count);
    throw py::value_error(
        "indices: value " + std::to_string(value) + " at [" + std::to_string(plane / shape[1]) +
        ", " + std::to_string(plane % shape[1]) + ", " + std::to_string(i / shape[3]) + ", " +
        std::to_string(i % shape[3]) + "] is outside [0, " + std::to_string(g.dst_size) +
        ") = [0, H*W) of the target plane");
  }
  return out;
}

template <typename T>
py::array_t<T> avgpool2d_forward_t(const py::array& x, const adlk::Pool2dGeom& g, bool cip) {
  const T* px = in_ptr<T>(x, "x", {g.N, g.C, g.H, g.W});
  auto y = new_array<T>({g.N, g.C, g.H_out, g.W_out});
  T* py_ = y.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::avgpool2d_forward<T>(px, g, cip, py_);
  }
  return y;
}

template <typename T>
py::array_t<T> avgpool2d_backward_t(const py::array& dy, const adlk::Pool2dGeom& g, bool cip) {
  const T* pdy = in_ptr<T>(dy, "grad_y", {g.N, g.C, g.H_out, g.W_out});
  auto dx = new_array<T>({g.N, g.C, g.H, g.W});
  T* pdx = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::avgpool2d_backward<T>(pdy, g, cip, pdx);
  }
  return dx;
}

}  // namespace

PYBIND11_MODULE(_adlk, m) {
  m.doc() = R"pbdoc(adlkernels C++/OpenMP kernels (internal: use the adlkernels package).)pbdoc";
#ifdef ADLK_VERSION
  m.attr("__version__") = ADLK_VERSION;
#endif
  py::register_exception_translator([](std::exception_ptr e) {
    try {
      if (e) std::rethrow_exception(e);
    } catch (const std::length_error& err) {
      PyErr_SetString(PyExc_ValueError, err.what());
    }
  });

  m.def("set_num_threads", &adlk::set_num_threads, py::arg("n"));
  m.def("get_num_threads", &adlk::get_num_threads);
  m.def("single_threaded_after_fork", &adlk::single_threaded_after_fork);
  m.def("build_info", []() {
    py::dict d;
    d["compiler"] = adlk::compiler_version();
    d["openmp"] = adlk::openmp_version();
    d["blas"] = adlk::blas_version();
    d["blas_config"] = adlk::blas_config();
    // 1 by design: each OpenMP thread runs its own single-threaded GEMMs.
    d["blas_threads"] = adlk::blas_get_num_threads();
    d["sanitizers"] = adlk::sanitized_build();
    return d;
  });

  m.def("im2col", [](const py::array& x, py::tuple k, py::tuple s, py::tuple p, py::tuple d) {
    return is_double(x) ? py::object(im2col_t<double>(x, k, s, p, d))
                        : py::object(im2col_t<float>(x, k, s, p, d));
  });
  m.def("col2im", [](const py::array& cols, index_t C, index_t H, index_t W, py::tuple k,
                     py::tuple s, py::tuple p, py::tuple d) {
    return is_double(cols) ? py::object(col2im_t<double>(cols, C, H, W, k, s, p, d))
                           : py::object(col2im_t<float>(cols, C, H, W, k, s, p, d));
  });
  m.def("conv2d_forward", [](const py::array& x, const py::array& w, const py::object& b,
                             py::tuple s, py::tuple p, py::tuple d, index_t groups) {
    return is_double(x) ? py::object(conv2d_forward_t<double>(x, w, b, s, p, d, groups))
                        : py::object(conv2d_forward_t<float>(x, w, b, s, p, d, groups));
  });
  m.def("conv2d_backward",
        [](const py::array& dy, const py::array& x, const py::array& w, py::tuple s, py::tuple p,
           py::tuple d, index_t groups, bool need_dx, bool need_dw, bool need_db) {
          return is_double(x)
                     ? conv2d_backward_t<double>(dy, x, w, s, p, d, groups, need_dx, need_dw, need_db)
                     : conv2d_backward_t<float>(dy, x, w, s, p, d, groups, need_dx, need_dw, need_db);
        });
  m.def("conv_workspace_bytes",
        [](const py::array& x, const py::array& w, py::tuple s, py::tuple p, py::tuple d,
           index_t groups) {
          if (w.ndim() != 4) throw py::value_error("weight: expected a 4-d array");
          auto g = geom_from_x(x, w.shape(0), py::make_tuple(w.shape(2), w.shape(3)), s, p, d,
                               groups);
          return adlk::conv_workspace_bytes(g, is_double(x) ? sizeof(double) : sizeof(float),
                                            adlk::get_num_threads());
        });

  m.def("maxpool2d_forward", [](const py::array& x, py::tuple k, py::tuple s, py::tuple p,
                                py::tuple d, bool ceil_mode) {
    auto g = make_pool_geom(shape_of(x), k, s, p, d, ceil_mode);
    return is_double(x) ? maxpool2d_forward_t<double>(x, g) : maxpool2d_forward_t<float>(x, g);
  });
  m.def("maxpool2d_backward", [](const py::array& dy, const py::array& ind, index_t H, index_t W) {
    return is_double(dy) ? py::object(index_scatter_t<double>(dy, ind, H, W, false))
                         : py::object(index_scatter_t<float>(dy, ind, H, W, false));
  });
  m.def("max_unpool2d", [](const py::array& x, const py::array& ind, index_t H, index_t W) {
    return is_double(x) ? py::object(index_scatter_t<double>(x, ind, H, W, true))
                        : py::object(index_scatter_t<float>(x, ind, H, W, true));
  });
  m.def("avgpool2d_forward", [](const py::array& x, py::tuple k, py::tuple s, py::tuple p,
                                bool ceil_mode, bool cip) {
    auto g = make_pool_geom(shape_of(x), k, s, p, py::make_tuple(1, 1), ceil_mode);
    return is_double(x) ? py::object(avgpool2d_forward_t<double>(x, g, cip))
                        : py::object(avgpool2d_forward_t<float>(x, g, cip));
  });
  m.def("avgpool2d_backward", [](const py::array& dy, py::tuple input_size, py::tuple k,
                                 py::tuple s, py::tuple p, bool ceil_mode, bool cip) {
    std::vector<index_t> in_shape;
    for (auto v : input_size) in_shape.push_back(v.cast<index_t>());
    auto g = make_pool_geom(in_shape, k, s, p, py::make_tuple(1, 1), ceil_mode);
    return is_double(dy) ? py::object(avgpool2d_backward_t<double>(dy, g, cip))
                         : py::object(avgpool2d_backward_t<float>(dy, g, cip));
  });

  bind_rnn(m);
  bind_optim(m);
  bind_nn(m);
}
