// pybind11 bindings of the CUDA backend (module adlkernels._adlk_cuda), built only when
// a CUDA toolkit is found, so a CPU-only install never needs the CUDA runtime.
#include <pybind11/pybind11.h>

#include "adlk/cuda/device.h"
#include "cuda_common.h"
#include "op.h"

namespace py = pybind11;
using namespace adlk_bind;

PYBIND11_MODULE(_adlk_cuda, m) {
  m.doc() = "adlkernels CUDA kernels (internal: use the adlkernels package).";
  // The geometry classes (Conv2dGeom, Pool2dGeom) and enums (Activation) that the kernels
  // take are bound once, in the CPU module: load it first so that pybind11 knows them.
  py::module_::import("adlkernels._adlk");
  def_op(m, "device_count", "CUDA devices visible to this process (0 without a driver).",
         &adlk::cuda::device_count);
  def_op(m, "runtime_version", "The CUDA runtime version (e.g. 12040).", &adlk::cuda::runtime_version);
  def_op(m, "driver_version", "The CUDA driver version, 0 without a driver.", &adlk::cuda::driver_version);
  def_op(m, "architectures", "The GPU architectures this build has code for.", &adlk::cuda::architectures);
  bind_cuda_conv(m);
  bind_cuda_pool(m);
  bind_cuda_optim(m);
  bind_cuda_nn(m);
  bind_cuda_rnn(m);
}
