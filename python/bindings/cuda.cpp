// pybind11 bindings of the CUDA backend (module adlkernels._adlk_cuda), built only when
// a CUDA toolkit is found, so a CPU-only install never needs the CUDA runtime.
#include <pybind11/pybind11.h>

#include "adlk/cuda/device.h"

namespace py = pybind11;

void bind_cuda_conv(py::module_& m);
void bind_cuda_pool(py::module_& m);

PYBIND11_MODULE(_adlk_cuda, m) {
  m.doc() = "adlkernels CUDA kernels (internal: use the adlkernels package).";
  m.def("device_count", &adlk::cuda::device_count);
  m.def("runtime_version", &adlk::cuda::runtime_version);
  m.def("driver_version", &adlk::cuda::driver_version);
  m.def("architectures", &adlk::cuda::architectures);
  bind_cuda_conv(m);
  bind_cuda_pool(m);
}
