// pybind11 bindings of the C++ core (module adlkernels._adlk).
//
// The Python layer (adlkernels._validate) has already checked types, dtypes and shapes
// and made inputs C-contiguous; these bindings re-check what memory safety depends on
// (dtype, contiguity, exact shapes) so that a direct call cannot reach a kernel with
// bad buffers, then release the GIL around every kernel.
#include <algorithm>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "adlk/blas.h"
#include "adlk/conv.h"
#include "adlk/packed_gemm.h"
#include "adlk/parallel.h"
#include "adlk/pool.h"
#include "adlk/tuning.h"
#include "common.h"
#include "op.h"

using namespace adlk_bind;

namespace {

adlk::Conv2dGeom geom_from_x(const py::array& x, index_t C_out, Pair k, Pair s, Pair p, Pair d,
                             index_t groups) {
  if (x.ndim() != 4)
    throw py::value_error("x: expected shape (N, C, H, W), got " + shape_str(shape_of(x)));
  return make_conv_geom(x.shape(0), x.shape(1), x.shape(2), x.shape(3), C_out, k, s, p, d, groups);
}


// ---- convolution ------------------------------------------------------------

template <typename T>
std::size_t conv_workspace_bytes_t(const py::array& x, const py::array& w, Pair s, Pair p, Pair d,
                                   index_t groups) {
  if (w.ndim() != 4) throw py::value_error("weight: expected a 4-d array");
  auto g = geom_from_x(x, w.shape(0), Pair(w.shape(2), w.shape(3)), s, p, d, groups);
  return adlk::conv_workspace_bytes(g, sizeof(T), adlk::get_num_threads());
}

template <typename T>
py::array_t<T> im2col_t(const py::array& x, Pair k, Pair s, Pair p, Pair d) {
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
py::array_t<T> col2im_t(const py::array& cols, index_t C, index_t H, index_t W, Pair k, Pair s,
                        Pair p, Pair d) {
  if (cols.ndim() != 3) throw py::value_error("cols: expected a 3-d array");
  auto g = make_conv_geom(cols.shape(0), C, H, W, 0, k, s, p, d, 1);
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
                                Pair s, Pair p, Pair d, index_t groups) {
  if (w.ndim() != 4) throw py::value_error("weight: expected a 4-d array");
  auto g = geom_from_x(x, w.shape(0), Pair(w.shape(2), w.shape(3)), s, p, d, groups);
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
py::tuple conv2d_backward_t(const py::array& dy, const py::array& x, const py::array& w, Pair s,
                            Pair p, Pair d, index_t groups, bool need_dx, bool need_dw,
                            bool need_db) {
  if (w.ndim() != 4) throw py::value_error("weight: expected a 4-d array");
  auto g = geom_from_x(x, w.shape(0), Pair(w.shape(2), w.shape(3)), s, p, d, groups);
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

adlk::Pool2dGeom pool_geom_of(const std::vector<index_t>& in_shape, Pair k, Pair s, Pair p,
                              Pair d, bool ceil_mode) {
  if (in_shape.size() != 4)
    throw py::value_error("x: expected shape (N, C, H, W), got " + shape_str(in_shape));
  return make_pool_geom(in_shape[0], in_shape[1], in_shape[2], in_shape[3], k, s, p, d, ceil_mode);
}

template <typename T>
py::tuple maxpool2d_forward_t(const py::array& x, Pair k, Pair s, Pair p, Pair d, bool ceil_mode) {
  const auto g = pool_geom_of(shape_of(x), k, s, p, d, ceil_mode);
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
template <typename T, bool unpool>
py::array_t<T> index_scatter_t(const py::array& src, const py::array& indices, index_t H,
                               index_t W) {
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
  std::int64_t value = 0;  // NOLINT  // the bad index as the kernel read it (indices may change meanwhile)
  {
    py::gil_scoped_release nogil;
    if constexpr (unpool) bad = adlk::max_unpool2d<T>(ps, pi, g, po, &value);
    else bad = adlk::maxpool2d_backward<T>(ps, pi, g, po, &value);
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
py::array_t<T> maxpool2d_backward_t(const py::array& dy, const py::array& indices, index_t H, index_t W) {
  return index_scatter_t<T, false>(dy, indices, H, W);
}

template <typename T>
py::array_t<T> max_unpool2d_t(const py::array& x, const py::array& indices, index_t H, index_t W) {
  return index_scatter_t<T, true>(x, indices, H, W);
}

template <typename T>
py::array_t<T> avgpool2d_forward_t(const py::array& x, Pair k, Pair s, Pair p, bool ceil_mode,
                                   bool cip) {
  const auto g = pool_geom_of(shape_of(x), k, s, p, Pair(1, 1), ceil_mode);
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
py::array_t<T> avgpool2d_backward_t(const py::array& dy, const std::vector<index_t>& input_size,
                                    Pair k, Pair s, Pair p, bool ceil_mode, bool cip) {
  const auto g = pool_geom_of(input_size, k, s, p, Pair(1, 1), ceil_mode);
  const T* pdy = in_ptr<T>(dy, "grad_y", {g.N, g.C, g.H_out, g.W_out});
  auto dx = new_array<T>({g.N, g.C, g.H, g.W});
  T* pdx = dx.mutable_data();
  {
    py::gil_scoped_release nogil;
    adlk::avgpool2d_backward<T>(pdy, g, cip, pdx);
  }
  return dx;
}

// The packed-weight GEMM alone, for its tests: a (M, K) @ w (N, K)^T, plus c when given.
py::array_t<float> gemm_packed_t(const py::array& a, const py::array& w, const py::object& c,
                                 const py::object& a2, const py::object& w2) {
  if (a.ndim() != 2) throw py::value_error("a: expected a 2-D array");
  if (w.ndim() != 2) throw py::value_error("w: expected a 2-D array");
  if (a2.is_none() != w2.is_none())
    throw py::value_error("a2, w2: give both (a second product) or neither");
  const index_t M = a.shape(0), K = a.shape(1), N = w.shape(0);
  const float* pa = in_ptr<float>(a, "a", {M, K});
  const float* pw = in_ptr<float>(w, "w", {N, K});
  const float* pc = opt_ptr<float>(c, "c", {M, N});
  index_t K2 = 0;
  const float *pa2 = nullptr, *pw2 = nullptr;
  py::array a2_arr, w2_arr;  // hold any converted array while its pointer is in use
  if (!a2.is_none()) {
    a2_arr = py::cast<py::array>(a2);
    w2_arr = py::cast<py::array>(w2);
    if (a2_arr.ndim() != 2) throw py::value_error("a2: expected a 2-D array");
    K2 = a2_arr.shape(1);
    pa2 = in_ptr<float>(a2_arr, "a2", {M, K2});
    pw2 = in_ptr<float>(w2_arr, "w2", {N, K2});
  }
  auto out = new_array<float>({M, N});
  float* po = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    std::vector<float> packed(static_cast<std::size_t>(adlk::packed_weight_size(N, K)));
    std::vector<float> packed2(static_cast<std::size_t>(adlk::packed_weight_size(N, K2)));
    adlk::pack_weight(N, K, pw, K, packed.data());
    if (pw2) adlk::pack_weight(N, K2, pw2, K2, packed2.data());
    if (pc) std::copy(pc, pc + M * N, po);
    if (pa2)
      adlk::gemm_packed2(M, N, K, pa, K, packed.data(), K2, pa2, K2, packed2.data(),
                         pc != nullptr, po, N);
    else
      adlk::gemm_packed(M, N, K, pa, K, packed.data(), pc != nullptr, po, N);
  }
  return out;
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

  m.attr("MAX_GEOM_ARG") = adlk::kMaxGeomArg;
  m.attr("MAX_THREADS") = adlk::kMaxThreads;
  m.attr("SUM_CHUNK") = adlk::kSumChunk;

  def_op(m, "set_num_threads", "Threads of every kernel (OpenMP teams; BLAS runs one per thread).",
         &adlk::set_num_threads, py::arg("n"));
  def_op(m, "get_num_threads", "Threads the next kernel will use.", &adlk::get_num_threads);
  def_op(m, "single_threaded_after_fork",
         "True in a process forked after kernels may have started threads (kernels then run on one).",
         &adlk::single_threaded_after_fork);
  def_op(m, "build_info", "Compiler, OpenMP, BLAS and sanitizer settings of this build.", []() {
    py::dict d;
    d["compiler"] = adlk::compiler_version();
    d["openmp"] = adlk::openmp_version();
    d["blas"] = adlk::blas_version();
    d["blas_config"] = adlk::blas_config();
    // 1 by design: each OpenMP thread runs its own single-threaded GEMMs.
    d["blas_threads"] = adlk::blas_get_num_threads();
    d["sanitizers"] = adlk::sanitized_build();
    // The packed-weight GEMM's micro-kernel (recurrent sequences): avx512, avx2, portable.
    d["gemm_isa"] = adlk::gemm_packed_isa();
    // The committed stubs (_adlk.pyi) are this pybind11's rendering of the bindings.
    d["pybind11"] = std::to_string(PYBIND11_VERSION_MAJOR) + "." +
                    std::to_string(PYBIND11_VERSION_MINOR) + "." +
                    std::to_string(PYBIND11_VERSION_PATCH);
    return d;
  });

  bind_geometry(m);

  def_op(
      m, "_fma_peak_gflops",
      "Benchmark hook: GFLOP/s of this thread running only vector FMAs (the kernel's ISA).",
      [](double seconds) {
        if (!(seconds >= 0.0 && seconds <= 60.0))
          throw py::value_error("seconds must be in [0, 60]");
        py::gil_scoped_release nogil;
        return adlk::fma_peak_gflops(seconds);
      },
      py::arg("seconds") = 0.2);
  def_op(m, "_gemm_packed",
         "Test hook: a @ w.T (+ a2 @ w2.T) (+ c) through the packed-weight GEMM (float32).",
         &gemm_packed_t, py::arg("a"), py::arg("w"), py::arg("c") = py::none(),
         py::arg("a2") = py::none(), py::arg("w2") = py::none());

  def_op(m, "im2col", "x (N, C, H, W) -> cols (N, C*kH*kW, H_out*W_out) (unfold).",
         FLOAT_IMPL(im2col_t, 0), py::arg("x"), py::arg("kernel_size"), py::arg("stride"),
         py::arg("padding"), py::arg("dilation"));
  def_op(m, "col2im", "cols (N, C*kH*kW, L) -> x (N, C, H, W), overlapping windows summed (fold).",
         FLOAT_IMPL(col2im_t, 0), py::arg("cols"), py::arg("C"), py::arg("H"), py::arg("W"),
         py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("dilation"));
  def_op(m, "conv2d_forward", "y (N, C_out, H_out, W_out) = conv2d(x, weight) + bias.",
         FLOAT_IMPL(conv2d_forward_t, 0), py::arg("x"), py::arg("weight"), py::arg("bias"),
         py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"));
  def_op(m, "conv2d_backward", "(grad_x, grad_weight, grad_bias) of conv2d_forward; None where not needed.",
         FLOAT_IMPL(conv2d_backward_t, 1), py::arg("grad_y"), py::arg("x"), py::arg("weight"),
         py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
         py::arg("need_x"), py::arg("need_weight"), py::arg("need_bias"));
  def_op(m, "conv_workspace_bytes", "Scratch bytes of conv2d_forward or conv2d_backward, the larger, at the current thread count.",
         FLOAT_IMPL(conv_workspace_bytes_t, 0), py::arg("x"), py::arg("weight"), py::arg("stride"),
         py::arg("padding"), py::arg("dilation"), py::arg("groups"));

  def_op(m, "maxpool2d_forward", "(y, indices) of max pooling; indices h*W + w in the input plane.",
         FLOAT_IMPL(maxpool2d_forward_t, 0), py::arg("x"), py::arg("kernel_size"), py::arg("stride"),
         py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"));
  def_op(m, "maxpool2d_backward", "grad_x (N, C, H, W): grad_y routed to each argmax, summed.",
         FLOAT_IMPL(maxpool2d_backward_t, 0), py::arg("grad_y"), py::arg("indices"), py::arg("H"),
         py::arg("W"));
  def_op(m, "max_unpool2d", "y (N, C, H, W): zeros except x at its indices (the last of duplicates).",
         FLOAT_IMPL(max_unpool2d_t, 0), py::arg("x"), py::arg("indices"), py::arg("H"), py::arg("W"));
  def_op(m, "avgpool2d_forward", "y (N, C, H_out, W_out): average pooling.",
         FLOAT_IMPL(avgpool2d_forward_t, 0), py::arg("x"), py::arg("kernel_size"), py::arg("stride"),
         py::arg("padding"), py::arg("ceil_mode"), py::arg("count_include_pad"));
  def_op(m, "avgpool2d_backward", "grad_x (N, C, H, W) of avgpool2d_forward.",
         FLOAT_IMPL(avgpool2d_backward_t, 0), py::arg("grad_y"), py::arg("input_size"),
         py::arg("kernel_size"), py::arg("stride"), py::arg("padding"), py::arg("ceil_mode"),
         py::arg("count_include_pad"));

  bind_rnn(m);
  bind_optim(m);
  bind_nn(m);
  bind_embedding(m);
}
