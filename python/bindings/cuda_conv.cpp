// pybind11 bindings of the CUDA conv kernels (part of module _adlk_cuda).
//
// Internal API for the Python layer: device pointers and the stream come as Python ints
// (cupy's .data.ptr and Stream.ptr), `dtype` (float32 or float64) picks the kernel, and
// the geometry is an adlkernels._adlk.Conv2dGeom (checked when it was made). The caller
// guarantees that each pointer holds the elements the geometry implies on the current
// device; the launchers check sizes and ranges (ValueError / OverflowError) and turn
// CUDA errors into RuntimeError. Launches are asynchronous on `stream` and run with the
// GIL released.
#include <cstdint>

#include "cuda_common.h"
#include "op.h"

#include "adlk/conv.h"
#include "adlk/cuda/conv.h"

namespace adlk_bind {

namespace {

template <typename T>
void im2col_t(Ptr x, Ptr cols, const adlk::Conv2dGeom& g, index_t n0, index_t nb,
              const py::object&, Ptr stream) {
  py::gil_scoped_release nogil;
  adlk::cuda::im2col<T>(dev_ptr<const T>(x), dev_ptr<T>(cols), g, n0, nb, as_stream(stream));
}

template <typename T>
void col2im_t(Ptr cols, Ptr x, const adlk::Conv2dGeom& g, index_t n0, index_t nb,
              const py::object&, Ptr stream) {
  py::gil_scoped_release nogil;
  adlk::cuda::col2im<T>(dev_ptr<const T>(cols), dev_ptr<T>(x), g, n0, nb, as_stream(stream));
}

template <typename T>
void channel_sums_t(Ptr dy, Ptr db, index_t N, index_t C, index_t L, const py::object&,
                    Ptr stream) {
  py::gil_scoped_release nogil;
  adlk::cuda::channel_sums<T>(dev_ptr<const T>(dy), dev_ptr<T>(db), N, C, L, as_stream(stream));
}

template <typename T>
void sum_batches_t(Ptr partials, Ptr out, index_t nb, index_t count, bool accumulate,
                   const py::object&, Ptr stream) {
  py::gil_scoped_release nogil;
  adlk::cuda::sum_batches<T>(dev_ptr<const T>(partials), dev_ptr<T>(out), nb, count, accumulate,
                             as_stream(stream));
}

}  // namespace

void bind_cuda_conv(py::module_& m) {
  def_op(m, "im2col", "Images [n0, n0+nb) of x (N, C, H, W) -> cols (nb, C*kH*kW, H_out*W_out) (unfold).",
         FLOAT_IMPL(im2col_t, 5), py::arg("x"), py::arg("cols"), py::arg("geom"), py::arg("n0"),
         py::arg("nb"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "col2im",
         "cols (nb, C*kH*kW, L) -> images [n0, n0+nb) of x (N, C, H, W), overwritten, overlaps "
         "summed (fold; bitwise equal to the CPU col2im).",
         FLOAT_IMPL(col2im_t, 5), py::arg("cols"), py::arg("x"), py::arg("geom"), py::arg("n0"),
         py::arg("nb"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "channel_sums", "db[c] = sum over n, l of dy (N, C, L)[n, c, l], in double, deterministic.",
         FLOAT_IMPL(channel_sums_t, 5), py::arg("dy"), py::arg("db"), py::arg("N"), py::arg("C"),
         py::arg("L"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "sum_batches",
         "out[j] = (out[j] if accumulate else 0) + partials[0, j] + ... + partials[nb-1, j], "
         "added left to right; partials (nb, count).",
         FLOAT_IMPL(sum_batches_t, 5), py::arg("partials"), py::arg("out"), py::arg("nb"),
         py::arg("count"), py::arg("accumulate"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "conv2d_chunk_images",
         "Images per workspace chunk whose columns plus grad_weight partials fit in budget_bytes, "
         "in [1, max(N, 1)].",
         &adlk::cuda::conv2d_chunk_images, py::arg("geom"), py::arg("elem_size"),
         py::arg("budget_bytes"));
  def_op(m, "conv2d_workspace_elems",
         "Elements of the workspace of nb images: nb*(C*kH*kW*L + C_out*(C/groups)*kH*kW).",
         &adlk::cuda::conv2d_workspace_elems, py::arg("geom"), py::arg("nb"));
}

}  // namespace adlk_bind
