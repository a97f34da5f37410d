// pybind11 bindings of the CUDA optimizer kernels (part of module _adlk_cuda).
//
// Internal API for adlkernels.optim, which checks the cupy arrays (dtype, shapes equal to
// the params', C-contiguity, device) before calling. A list argument is a list of device
// pointers (ints), `sizes` the element counts of the params, `dtype` (float32 or float64)
// picks the kernels, `stream` is a cudaStream_t as an int. Here every pointer is checked
// for alignment and, by the aliasing rule of the CPU module (overlap.h), for overlap
// before anything is launched. The GIL is released around the CUDA calls.
#include <cstdint>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "adlk/cuda/optim.h"
#include "cuda_common.h"
#include "op.h"
#include "optim_args.h"
#include "overlap.h"

namespace adlk_bind {

namespace {

// The device pointers of one list argument (empty for None), recorded in `ext`.
template <typename T>
std::vector<T*> device_list(const py::object& obj, const char* name, bool written,
                            const std::vector<index_t>& sizes, std::vector<Extent>& ext) {
  std::vector<T*> out;
  if (obj.is_none()) return out;
  const auto ptrs = obj.cast<std::vector<Ptr>>();
  if (ptrs.size() != sizes.size())
    throw py::value_error(std::string(name) + ": has " + std::to_string(ptrs.size()) +
                          " arrays, params has " + std::to_string(sizes.size()));
  for (std::size_t i = 0; i < ptrs.size(); ++i) {
    const std::string where = std::string(name) + "[" + std::to_string(i) + "]";
    if (sizes[i] < 0) throw py::value_error("sizes[" + std::to_string(i) + "]: must be >= 0");
    if (sizes[i] > 0 && (ptrs[i] == 0 || ptrs[i] % alignof(T) != 0))
      throw py::value_error(where + ": expected an aligned device pointer");
    const index_t bytes = adlk::mul_checked(sizes[i], index_t(sizeof(T)), "optimizer: tensor bytes");
    ext.push_back({ptrs[i], ptrs[i] + Ptr(bytes), name, index_t(i), written});
    out.push_back(reinterpret_cast<T*>(ptrs[i]));
  }
  return out;
}

template <typename T>
T* const* data_or_null(const std::vector<T*>& v, bool used) {
  return used ? v.data() : nullptr;
}

template <typename T>
const T* const* as_read(const std::vector<T*>& v) {
  return const_cast<const T* const*>(v.data());
}

template <typename T>
void sgd_t(const py::list& params, const py::list& grads, const py::object& bufs,
           const std::vector<index_t>& sizes, index_t step, double lr, double momentum,
           double dampening, bool nesterov, double weight_decay, bool maximize,
           const py::object&, Ptr stream) {
  const auto h = sgd_hyper(step, lr, momentum, dampening, nesterov, weight_decay, maximize);
  const bool mom = momentum != 0;
  if (mom && bufs.is_none()) throw py::value_error("momentum_buffers: required when momentum != 0");
  std::vector<Extent> ext;
  auto p = device_list<T>(params, "params", true, sizes, ext);
  auto g = device_list<T>(grads, "grads", false, sizes, ext);
  auto b = device_list<T>(mom ? bufs : py::none(), "momentum_buffers", true, sizes, ext);
  check_no_overlap("sgd_step", ext);
  py::gil_scoped_release nogil;
  ac::sgd_step<T>(index_t(sizes.size()), sizes.data(), p.data(), as_read(g), data_or_null(b, mom), h,
                  as_stream(stream));
}

template <typename T>
void adagrad_t(const py::list& params, const py::list& grads, const py::list& sums,
               const std::vector<index_t>& sizes, index_t step, double lr, double lr_decay,
               double weight_decay, double eps, bool maximize, const py::object&, Ptr stream) {
  const auto h = adagrad_hyper(step, lr, lr_decay, weight_decay, eps, maximize);
  std::vector<Extent> ext;
  auto p = device_list<T>(params, "params", true, sizes, ext);
  auto g = device_list<T>(grads, "grads", false, sizes, ext);
  auto s = device_list<T>(sums, "state_sums", true, sizes, ext);
  check_no_overlap("adagrad_step", ext);
  py::gil_scoped_release nogil;
  ac::adagrad_step<T>(index_t(sizes.size()), sizes.data(), p.data(), as_read(g), s.data(), h,
                      as_stream(stream));
}

template <typename T>
void rmsprop_t(const py::list& params, const py::list& grads, const py::list& sq,
               const py::object& bufs, const py::object& gavg, const std::vector<index_t>& sizes,
               index_t step, double lr, double alpha, double eps, double weight_decay,
               double momentum, bool maximize, const py::object&, Ptr stream) {
  const bool mom = momentum > 0, centered = !gavg.is_none();
  const auto h = rmsprop_hyper(step, lr, alpha, eps, weight_decay, momentum, centered, maximize);
  if (mom && bufs.is_none()) throw py::value_error("momentum_buffers: required when momentum > 0");
  std::vector<Extent> ext;
  auto p = device_list<T>(params, "params", true, sizes, ext);
  auto g = device_list<T>(grads, "grads", false, sizes, ext);
  auto s = device_list<T>(sq, "square_avgs", true, sizes, ext);
  auto b = device_list<T>(mom ? bufs : py::none(), "momentum_buffers", true, sizes, ext);
  auto a = device_list<T>(gavg, "grad_avgs", true, sizes, ext);
  check_no_overlap("rmsprop_step", ext);
  py::gil_scoped_release nogil;
  ac::rmsprop_step<T>(index_t(sizes.size()), sizes.data(), p.data(), as_read(g), s.data(),
                      data_or_null(b, mom), data_or_null(a, centered), h, as_stream(stream));
}

template <typename T>
void adam_t(const py::list& params, const py::list& grads, const py::list& m, const py::list& v,
            const py::object& vmax, const std::vector<index_t>& sizes, index_t step, double lr,
            double beta1, double beta2, double eps, double weight_decay, bool decoupled,
            bool maximize, const py::object&, Ptr stream) {
  const bool amsgrad = !vmax.is_none();
  const auto h = adam_hyper(step, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad, maximize);
  std::vector<Extent> ext;
  auto p = device_list<T>(params, "params", true, sizes, ext);
  auto g = device_list<T>(grads, "grads", false, sizes, ext);
  auto ml = device_list<T>(m, "exp_avgs", true, sizes, ext);
  auto vl = device_list<T>(v, "exp_avg_sqs", true, sizes, ext);
  auto xl = device_list<T>(vmax, "max_exp_avg_sqs", true, sizes, ext);
  check_no_overlap("adam_step", ext);
  py::gil_scoped_release nogil;
  ac::adam_step<T>(index_t(sizes.size()), sizes.data(), p.data(), as_read(g), ml.data(), vl.data(),
                   data_or_null(xl, amsgrad), h, as_stream(stream));
}

// clip_grad_norm checks its grads as written (it scales them next).
template <typename T>
std::vector<T*> grads_list(const py::list& grads, const std::vector<index_t>& sizes) {
  std::vector<Extent> ext;
  auto t = device_list<T>(grads, "grads", true, sizes, ext);
  check_no_overlap("clip_grad_norm", ext);
  return t;
}

template <typename T>
void total_norm_t(const py::list& grads, const std::vector<index_t>& sizes, double norm_type,
                  Ptr partials, Ptr total, const py::object&, Ptr stream) {
  auto t = grads_list<T>(grads, sizes);
  py::gil_scoped_release nogil;
  ac::total_norm<T>(index_t(sizes.size()), sizes.data(), as_read(t), norm_type,
                    dev_ptr<double>(partials), dev_ptr<double>(total), as_stream(stream));
}

template <typename T>
void clip_scale_t(const py::list& grads, const std::vector<index_t>& sizes, Ptr total,
                  double max_norm, const py::object&, Ptr stream) {
  auto t = grads_list<T>(grads, sizes);
  py::gil_scoped_release nogil;
  ac::clip_scale<T>(index_t(sizes.size()), sizes.data(), t.data(), dev_ptr<const double>(total),
                    max_norm, as_stream(stream));
}

}  // namespace

void bind_cuda_optim(py::module_& m) {
  def_op(m, "sgd_step", "SGD over lists of device arrays, in place (one launch per list chunk).",
         FLOAT_IMPL(sgd_t, 11), py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"),
         py::arg("sizes"), py::arg("step"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
         py::arg("nesterov"), py::arg("weight_decay"), py::arg("maximize"), py::arg("dtype"),
         py::arg("stream"));
  def_op(m, "adagrad_step", "Adagrad over lists of device arrays, in place.", FLOAT_IMPL(adagrad_t, 10),
         py::arg("params"), py::arg("grads"), py::arg("state_sums"), py::arg("sizes"), py::arg("step"),
         py::arg("lr"), py::arg("lr_decay"), py::arg("weight_decay"), py::arg("eps"),
         py::arg("maximize"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "rmsprop_step", "RMSprop over lists of device arrays, in place.", FLOAT_IMPL(rmsprop_t, 13),
         py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("momentum_buffers"),
         py::arg("grad_avgs"), py::arg("sizes"), py::arg("step"), py::arg("lr"), py::arg("alpha"),
         py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"), py::arg("maximize"),
         py::arg("dtype"), py::arg("stream"));
  def_op(m, "adam_step", "Adam / AdamW over lists of device arrays, in place.", FLOAT_IMPL(adam_t, 14),
         py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
         py::arg("max_exp_avg_sqs"), py::arg("sizes"), py::arg("step"), py::arg("lr"),
         py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
         py::arg("decoupled_weight_decay"), py::arg("maximize"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "total_norm_partials", "Doubles of the partials workspace total_norm needs.",
         [](const std::vector<index_t>& sizes) {
           return ac::total_norm_partials(index_t(sizes.size()), sizes.data());
         },
         py::arg("sizes"));
  def_op(m, "total_norm", "*total (a device double) = the norm_type-norm of all grads together.",
         FLOAT_IMPL(total_norm_t, 5), py::arg("grads"), py::arg("sizes"), py::arg("norm_type"),
         py::arg("partials"), py::arg("total"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "clip_scale", "grads *= max_norm / (*total + 1e-6) where that is < 1 (on the device).",
         FLOAT_IMPL(clip_scale_t, 4), py::arg("grads"), py::arg("sizes"), py::arg("total"),
         py::arg("max_norm"), py::arg("dtype"), py::arg("stream"));
}

}  // namespace adlk_bind
