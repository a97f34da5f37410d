// One declaration per compiled op.
//
// Every function of the compiled modules is declared by one def_op call: its name, its
// one-line doc, its typed implementation and the py::arg name of every argument. For a
// float32/float64 op, FLOAT_IMPL(fn) names both instantiations of the template fn<T> and
// def_op picks one by the dtype of the argument at index `key` (the dtype dispatch of
// every op: no hand-written branches). Each declaration is also recorded in the module's
// `__ops__` dict (name -> {"args", "dtype_arg", "dtypes", "doc"}), from which the
// Python layer learns which backend has which op and the generic contract tests
// (tests/test_op_contract.py) check every op.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>

namespace adlk_bind {

namespace py = pybind11;

// The two instantiations of a float template, for def_op.
template <typename F32, typename F64>
struct FloatImpl {
  F32 f32;
  F64 f64;
  std::size_t key;  // index of the argument whose dtype selects the instantiation
};

#define FLOAT_IMPL(fn, key) ::adlk_bind::FloatImpl<decltype(&fn<float>), decltype(&fn<double>)>{&fn<float>, &fn<double>, key}

// True for float64, false for float32, from the dtype of `a`: an array, a list of arrays
// (its first; an empty list is float32, a no-op for every list op), or a dtype (the
// CUDA ops take the dtype, their arrays being device pointers). TypeError naming `name`
// for anything else.
inline bool is_double_arg(const py::handle& a, const char* name) {
  py::dtype dt;
  if (py::isinstance<py::array>(a)) {
    dt = py::reinterpret_borrow<py::array>(a).dtype();
  } else if (py::isinstance<py::list>(a)) {
    const auto l = py::reinterpret_borrow<py::list>(a);
    return l.empty() ? false : is_double_arg(l[0], (std::string(name) + "[0]").c_str());
  } else if (py::isinstance<py::dtype>(a)) {
    dt = py::reinterpret_borrow<py::dtype>(a);
  } else {
    throw py::type_error(std::string(name) + ": expected an array, got " +
                         std::string(py::str(py::type::handle_of(a).attr("__name__"))));
  }
  // Equivalence, not identity: an unpickled array's dtype is an equal but distinct object.
  auto& api = py::detail::npy_api::get();
  if (api.PyArray_EquivTypes_(dt.ptr(), py::dtype::of<double>().ptr())) return true;
  if (api.PyArray_EquivTypes_(dt.ptr(), py::dtype::of<float>().ptr())) return false;
  throw py::type_error(std::string(name) + ": expected float32 or float64, got " +
                       std::string(py::str(dt)));
}

namespace detail {

inline py::dict op_registry(py::module_& m) {
  if (!py::hasattr(m, "__ops__")) m.attr("__ops__") = py::dict();
  return m.attr("__ops__").cast<py::dict>();
}

template <typename... Extra>
py::tuple arg_names(const Extra&... extra) {
  py::list names;
  auto add = [&](const auto& e) {
    using E = std::decay_t<decltype(e)>;
    if constexpr (std::is_base_of_v<py::arg, E>) names.append(e.name);
  };
  (add(extra), ...);
  return py::tuple(names);
}

inline void record(py::module_& m, const char* name, const char* doc, py::tuple args,
                   py::object dtype_arg, py::tuple dtypes) {
  py::dict d;
  d["args"] = args;
  d["dtype_arg"] = dtype_arg;
  d["dtypes"] = dtypes;
  d["doc"] = doc;
  op_registry(m)[name] = d;
}

// f(args...) as a Python object (None for void).
template <typename R, typename... A, typename... Args>
py::object call(R (*f)(A...), Args&&... args) {
  if constexpr (std::is_void_v<R>) {
    f(std::forward<Args>(args)...);
    return py::none();
  } else {
    if constexpr (std::is_base_of_v<py::handle, R>)
      return py::object(f(std::forward<Args>(args)...));
    else
      return py::cast(f(std::forward<Args>(args)...));
  }
}

}  // namespace detail

// An op without dtype dispatch (scalars, int64 or bool arrays, several dtypes inside).
template <typename F, typename... Extra>
void def_op(py::module_& m, const char* name, const char* doc, F&& f, const Extra&... extra) {
  m.def(name, std::forward<F>(f), extra..., doc);
  detail::record(m, name, doc, detail::arg_names(extra...), py::none(), py::tuple());
}

// A float32/float64 op: the argument at impl.key selects fn<float> or fn<double>.
template <typename R32, typename R64, typename... A, typename... Extra>
void def_op(py::module_& m, const char* name, const char* doc,
            FloatImpl<R32 (*)(A...), R64 (*)(A...)> impl, const Extra&... extra) {
  static_assert(sizeof...(A) == (0 + ... + std::is_base_of_v<py::arg, Extra>),
                "def_op: one py::arg per argument");
  const py::tuple names = detail::arg_names(extra...);
  if (impl.key >= names.size()) throw std::logic_error(std::string(name) + ": bad dtype key");
  const std::string key_name = py::str(names[impl.key]);
  m.def(
      name,
      [impl, key_name](A... args) -> py::object {
        py::handle key;
        std::size_t i = 0;
        auto pick = [&](const auto& v) {
          if constexpr (std::is_base_of_v<py::handle, std::decay_t<decltype(v)>>)
            if (i == impl.key) key = v;
          ++i;
        };
        (pick(args), ...);
        if (is_double_arg(key, key_name.c_str())) return detail::call(impl.f64, args...);
        return detail::call(impl.f32, args...);
      },
      extra..., doc);
  detail::record(m, name, doc, names, py::str(key_name), py::make_tuple("float32", "float64"));
}

}  // namespace adlk_bind
