// Bindings of the embedding lookup and its weight gradient (adlk/embedding.h) into module
// adlkernels._adlk. adlkernels.nn validates and documents the arguments; every buffer is
// re-checked here before a kernel runs. Indices are int64 or int32 (either is read as it
// is, no converted copy).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "adlk/embedding.h"
#include "common.h"
#include "op.h"

namespace adlk_bind {

namespace {

// f(pointer) with indices' data as const int64_t* or const int32_t* (TypeError otherwise).
template <typename F>
auto with_indices(const py::array& indices, const std::vector<index_t>& shape, F&& f) {
  if (py::isinstance<py::array_t<std::int64_t>>(indices) && has_dtype<std::int64_t>(indices))
    return f(in_ptr<std::int64_t>(indices, "indices", shape));
  if (py::isinstance<py::array_t<std::int32_t>>(indices) && has_dtype<std::int32_t>(indices))
    return f(in_ptr<std::int32_t>(indices, "indices", shape));
  throw py::type_error("indices: expected int64 or int32, got " + std::string(py::str(indices.dtype())));
}

template <typename T>
py::array_t<T> embedding_forward_t(const py::array& indices, const py::array& weight) {
  if (weight.ndim() != 2)
    throw py::value_error("weight: expected shape (V, D), got " + shape_str(shape_of(weight)));
  const index_t V = weight.shape(0), D = weight.shape(1), n = indices.size();
  const T* pw = in_ptr<T>(weight, "weight", {V, D});
  std::vector<index_t> out_shape = shape_of(indices);
  out_shape.push_back(D);
  adlk::mul_checked(n, D, "embedding_forward: output size");
  return with_indices(indices, shape_of(indices), [&](auto pi) {
    using I = std::remove_const_t<std::remove_pointer_t<decltype(pi)>>;
    auto y = new_array<T>(out_shape);
    T* py_ = y.mutable_data();
    {
      py::gil_scoped_release nogil;
      adlk::embedding_forward<T, I>(n, V, D, pi, pw, py_);
    }
    return y;
  });
}

template <typename T>
py::array_t<T> embedding_backward_t(const py::array& grad_y, const py::array& indices,
                                    index_t num_embeddings, std::optional<index_t> padding_idx) {
  const index_t V = num_embeddings, n = indices.size();
  if (V < 0) throw py::value_error("num_embeddings: must be >= 0, got " + std::to_string(V));
  if (padding_idx && (*padding_idx < 0 || *padding_idx >= V))
    throw py::value_error("padding_idx: must be in [0, " + std::to_string(V) + ") or None, got " +
                          std::to_string(*padding_idx));
  std::vector<index_t> gshape = shape_of(indices);
  if (grad_y.ndim() != indices.ndim() + 1)
    throw py::value_error("grad_y: expected shape indices.shape + (D,), got " +
                          shape_str(shape_of(grad_y)));
  const index_t D = grad_y.shape(grad_y.ndim() - 1);
  gshape.push_back(D);
  const T* pg = in_ptr<T>(grad_y, "grad_y", gshape);
  adlk::mul_checked(V, D, "embedding_backward: grad_weight size");
  return with_indices(indices, shape_of(indices), [&](auto pi) {
    using I = std::remove_const_t<std::remove_pointer_t<decltype(pi)>>;
    auto gw = new_array<T>({V, D});
    T* pgw = gw.mutable_data();
    {
      py::gil_scoped_release nogil;
      adlk::embedding_backward<T, I>(n, V, D, pg, pi, padding_idx.value_or(-1), pgw);
    }
    return gw;
  });
}

}  // namespace

void bind_embedding(py::module_& m) {
  def_op(m, "embedding_forward", "y (indices.shape + (D,)) = the rows weight (V, D)[indices] (int64 or int32).",
         FLOAT_IMPL(embedding_forward_t, 1), py::arg("indices"), py::arg("weight"));
  def_op(m, "embedding_backward",
         "grad_weight (V, D): grad_y's rows summed per index in position order; row padding_idx 0.",
         FLOAT_IMPL(embedding_backward_t, 0), py::arg("grad_y"), py::arg("indices"),
         py::arg("num_embeddings"), py::arg("padding_idx"));
}

}  // namespace adlk_bind
