// Bindings of the optimizer family (adlk/optim.h) into module adlkernels._adlk.
//
// adlkernels.optim validates and documents the arguments; here each list is re-checked
// (dtype, C-contiguity, writeability, sizes equal to the params') and checked for
// overlapping arrays (check_no_overlap) before any kernel runs.
#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "adlk/optim.h"
#include "common.h"
#include "optim_args.h"
#include "overlap.h"
#include "op.h"

namespace adlk_bind {

namespace {

template <typename T>
struct TensorList {
  std::vector<T*> ptrs;
  std::vector<index_t> sizes;
};

// A list of arrays of dtype T; writeable ones are updated in place. With `like`, every
// size must equal like's. Each array's extent is appended to `extents`.
template <typename T>
TensorList<T> tensor_list(const py::object& obj, const char* name, bool writeable,
                          const TensorList<T>* like, std::vector<Extent>& extents) {
  TensorList<T> out;
  if (obj.is_none()) return out;
  const auto items = obj.cast<py::list>();
  if (like && items.size() != like->sizes.size())
    throw py::value_error(std::string(name) + ": list length differs from params'");
  index_t i = 0;
  for (const auto& item : items) {
    const std::string where = std::string(name) + "[" + std::to_string(i) + "]";
    auto a = item.cast<py::array>();
    if (!has_dtype<T>(a))
      throw py::type_error(where + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                           ", got " + std::string(py::str(a.dtype())));
    if (!(a.flags() & py::array::c_style) ||
        reinterpret_cast<std::uintptr_t>(a.data()) % alignof(T) != 0)
      throw py::value_error(where + ": expected an aligned, C-contiguous array");
    if (writeable && !a.writeable()) throw py::value_error(where + ": must be writeable");
    const index_t n = static_cast<index_t>(a.size());
    if (like && like->sizes[i] != n)
      throw py::value_error(where + ": size " + std::to_string(n) + " differs from params'");
    out.ptrs.push_back(writeable ? static_cast<T*>(a.mutable_data())
                                 : const_cast<T*>(static_cast<const T*>(a.data())));
    out.sizes.push_back(n);
    const auto begin = reinterpret_cast<std::uintptr_t>(a.data());
    extents.push_back({begin, begin + static_cast<std::uintptr_t>(n) * sizeof(T), name, i, writeable});
    ++i;
  }
  return out;
}

// The dtype of a call: that of the first param (float64 or float32); none means no work.
template <typename T>
T* const* ptrs_or_null(const TensorList<T>& l, bool used) {
  return used ? l.ptrs.data() : nullptr;
}

template <typename T>
void sgd_t(const py::list& params, const py::list& grads, const py::object& bufs,
           const adlk::SgdHyper& h) {
  std::vector<Extent> ext;
  auto p = tensor_list<T>(params, "params", true, nullptr, ext);
  auto g = tensor_list<T>(grads, "grads", false, &p, ext);
  auto b = tensor_list<T>(h.momentum != 0 ? bufs : py::none(), "momentum_buffers", true, &p, ext);
  if (h.momentum != 0 && bufs.is_none()) throw py::value_error("momentum_buffers: required");
  check_no_overlap("sgd_step", ext);
  py::gil_scoped_release nogil;
  adlk::sgd_step<T>(static_cast<index_t>(p.sizes.size()), p.sizes.data(), p.ptrs.data(),
                    const_cast<const T* const*>(g.ptrs.data()), ptrs_or_null(b, h.momentum != 0), h);
}

template <typename T>
void adagrad_t(const py::list& params, const py::list& grads, const py::list& sums,
               const adlk::AdagradHyper& h) {
  std::vector<Extent> ext;
  auto p = tensor_list<T>(params, "params", true, nullptr, ext);
  auto g = tensor_list<T>(grads, "grads", false, &p, ext);
  auto s = tensor_list<T>(sums, "state_sums", true, &p, ext);
  check_no_overlap("adagrad_step", ext);
  py::gil_scoped_release nogil;
  adlk::adagrad_step<T>(static_cast<index_t>(p.sizes.size()), p.sizes.data(), p.ptrs.data(),
                        const_cast<const T* const*>(g.ptrs.data()), s.ptrs.data(), h);
}

template <typename T>
void rmsprop_t(const py::list& params, const py::list& grads, const py::list& sq,
               const py::object& bufs, const py::object& gavg, const adlk::RmspropHyper& h) {
  std::vector<Extent> ext;
  auto p = tensor_list<T>(params, "params", true, nullptr, ext);
  auto g = tensor_list<T>(grads, "grads", false, &p, ext);
  auto s = tensor_list<T>(sq, "square_avgs", true, &p, ext);
  const bool mom = h.momentum > 0;
  if (mom && bufs.is_none()) throw py::value_error("momentum_buffers: required");
  if (h.centered && gavg.is_none()) throw py::value_error("grad_avgs: required");
  auto b = tensor_list<T>(mom ? bufs : py::none(), "momentum_buffers", true, &p, ext);
  auto a = tensor_list<T>(h.centered ? gavg : py::none(), "grad_avgs", true, &p, ext);
  check_no_overlap("rmsprop_step", ext);
  py::gil_scoped_release nogil;
  adlk::rmsprop_step<T>(static_cast<index_t>(p.sizes.size()), p.sizes.data(), p.ptrs.data(),
                        const_cast<const T* const*>(g.ptrs.data()), s.ptrs.data(),
                        ptrs_or_null(b, mom), ptrs_or_null(a, h.centered), h);
}

template <typename T>
void adam_t(const py::list& params, const py::list& grads, const py::list& m, const py::list& v,
            const py::object& vmax, const adlk::AdamHyper& h) {
  std::vector<Extent> ext;
  auto p = tensor_list<T>(params, "params", true, nullptr, ext);
  auto g = tensor_list<T>(grads, "grads", false, &p, ext);
  auto ml = tensor_list<T>(m, "exp_avgs", true, &p, ext);
  auto vl = tensor_list<T>(v, "exp_avg_sqs", true, &p, ext);
  if (h.amsgrad && vmax.is_none()) throw py::value_error("max_exp_avg_sqs: required");
  auto xl = tensor_list<T>(h.amsgrad ? vmax : py::none(), "max_exp_avg_sqs", true, &p, ext);
  check_no_overlap("adam_step", ext);
  py::gil_scoped_release nogil;
  adlk::adam_step<T>(static_cast<index_t>(p.sizes.size()), p.sizes.data(), p.ptrs.data(),
                     const_cast<const T* const*>(g.ptrs.data()), ml.ptrs.data(), vl.ptrs.data(),
                     ptrs_or_null(xl, h.amsgrad), h);
}

template <typename T>
double norm_t(const py::list& tensors, double norm_type) {
  if (tensors.empty()) return 0.0;
  std::vector<Extent> ext;
  auto t = tensor_list<T>(tensors, "grads", false, nullptr, ext);
  for (Extent& e : ext) e.written = true;  // clip_grad_norm scales them next: check them now
  check_no_overlap("clip_grad_norm", ext);
  py::gil_scoped_release nogil;
  return adlk::total_norm<T>(static_cast<index_t>(t.sizes.size()), t.sizes.data(),
                             const_cast<const T* const*>(t.ptrs.data()), norm_type);
}

template <typename T>
void scale_t(const py::list& tensors, double factor) {
  if (tensors.empty()) return;
  std::vector<Extent> ext;
  auto t = tensor_list<T>(tensors, "grads", true, nullptr, ext);
  check_no_overlap("clip_grad_norm", ext);
  py::gil_scoped_release nogil;
  adlk::scale_tensors<T>(static_cast<index_t>(t.sizes.size()), t.sizes.data(), t.ptrs.data(),
                         factor);
}

template <typename T>
void sgd_op(const py::list& params, const py::list& grads, const py::object& bufs, index_t step,
            double lr, double momentum, double dampening, bool nesterov, double weight_decay,
            bool maximize) {
  if (params.empty()) return;  // nothing to update (no list is checked)
  sgd_t<T>(params, grads, bufs, sgd_hyper(step, lr, momentum, dampening, nesterov, weight_decay, maximize));
}

template <typename T>
void adagrad_op(const py::list& params, const py::list& grads, const py::list& sums, index_t step,
                double lr, double lr_decay, double weight_decay, double eps, bool maximize) {
  if (params.empty()) return;  // nothing to update (no list is checked)
  adagrad_t<T>(params, grads, sums, adagrad_hyper(step, lr, lr_decay, weight_decay, eps, maximize));
}

template <typename T>
void rmsprop_op(const py::list& params, const py::list& grads, const py::list& sq,
                const py::object& bufs, const py::object& gavg, index_t step, double lr,
                double alpha, double eps, double weight_decay, double momentum, bool maximize) {
  if (params.empty()) return;  // nothing to update (no list is checked)
  rmsprop_t<T>(params, grads, sq, bufs, gavg,
               rmsprop_hyper(step, lr, alpha, eps, weight_decay, momentum, !gavg.is_none(), maximize));
}

template <typename T>
void adam_op(const py::list& params, const py::list& grads, const py::list& m_, const py::list& v,
             const py::object& vmax, index_t step, double lr, double beta1, double beta2,
             double eps, double weight_decay, bool decoupled, bool maximize) {
  if (params.empty()) return;  // nothing to update (no list is checked)
  adam_t<T>(params, grads, m_, v, vmax,
            adam_hyper(step, lr, beta1, beta2, eps, weight_decay, decoupled, !vmax.is_none(), maximize));
}

}  // namespace

void bind_optim(py::module_& m) {
  def_op(m, "sgd_step", "SGD (momentum, Nesterov, weight decay) over lists of arrays, in place.",
         FLOAT_IMPL(sgd_op, 0), py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"),
         py::arg("step"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
         py::arg("nesterov"), py::arg("weight_decay"), py::arg("maximize"));
  def_op(m, "adagrad_step", "Adagrad over lists of arrays, in place.", FLOAT_IMPL(adagrad_op, 0),
         py::arg("params"), py::arg("grads"), py::arg("state_sums"), py::arg("step"), py::arg("lr"),
         py::arg("lr_decay"), py::arg("weight_decay"), py::arg("eps"), py::arg("maximize"));
  def_op(m, "rmsprop_step", "RMSprop (momentum, centered) over lists of arrays, in place.",
         FLOAT_IMPL(rmsprop_op, 0), py::arg("params"), py::arg("grads"), py::arg("square_avgs"),
         py::arg("momentum_buffers"), py::arg("grad_avgs"), py::arg("step"), py::arg("lr"),
         py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
         py::arg("maximize"));
  def_op(m, "adam_step", "Adam / AdamW (amsgrad when max_exp_avg_sqs is a list) over lists of arrays, in place.",
         FLOAT_IMPL(adam_op, 0), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"),
         py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"), py::arg("step"), py::arg("lr"),
         py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
         py::arg("decoupled_weight_decay"), py::arg("maximize"));
  def_op(m, "grad_norm", "The norm_type-norm of all arrays together, in fixed chunks (0.0 for none).",
         FLOAT_IMPL(norm_t, 0), py::arg("grads"), py::arg("norm_type"));
  def_op(m, "scale_arrays", "Multiplies every array of the list by factor, in place.",
         FLOAT_IMPL(scale_t, 0), py::arg("grads"), py::arg("factor"));
}

}  // namespace adlk_bind
