// pybind11 bindings of the CUDA LSTM and GRU step kernels (part of module _adlk_cuda).
//
// Internal API for adlkernels.rnn (through _cuda.py), which checks the cupy arrays and
// runs the GEMMs with cupy.matmul: pointers are device pointers of C-contiguous arrays
// (h_next and grad_y: rows of the given stride), `dtype` picks the kernel, `stream` is a
// cudaStream_t as an int. The GIL is released around the CUDA calls.
#include <cstdint>

#include "adlk/cuda/rnn.h"
#include "cuda_common.h"
#include "op.h"

namespace adlk_bind {

namespace {

template <typename T>
void lstm_step_t(Ptr gates, Ptr rec, Ptr c_prev, Ptr c_next, Ptr h_next, index_t B, index_t H, index_t ldh,
                 const py::object&, Ptr stream) {
  py::gil_scoped_release nogil;
  ac::lstm_step<T>(B, H, dev_ptr<T>(gates), dev_ptr<const T>(rec), dev_ptr<const T>(c_prev), dev_ptr<T>(c_next),
                   dev_ptr<T>(h_next), ldh, as_stream(stream));
}

template <typename T>
void lstm_step_backward_t(Ptr gates, Ptr c_prev, Ptr c_cur, Ptr grad_y, Ptr dh, Ptr dc, Ptr dG, index_t B,
                          index_t H, index_t ldgy, const py::object&, Ptr stream) {
  py::gil_scoped_release nogil;
  ac::lstm_step_backward<T>(B, H, dev_ptr<const T>(gates), dev_ptr<const T>(c_prev), dev_ptr<const T>(c_cur),
                            dev_ptr<const T>(grad_y), ldgy, dev_ptr<const T>(dh), dev_ptr<T>(dc), dev_ptr<T>(dG),
                            as_stream(stream));
}

template <typename T>
void gru_step_t(Ptr gi, Ptr gh, Ptr h, Ptr hn, Ptr h_next, index_t B, index_t H, const py::object&, Ptr stream) {
  py::gil_scoped_release nogil;
  ac::gru_step<T>(B, H, dev_ptr<T>(gi), dev_ptr<const T>(gh), dev_ptr<const T>(h), dev_ptr<T>(hn),
                  dev_ptr<T>(h_next), as_stream(stream));
}

template <typename T>
void gru_step_backward_t(Ptr gates, Ptr hn, Ptr h, Ptr grad_h_next, Ptr dgi, Ptr dgh, Ptr grad_h, index_t B,
                         index_t H, const py::object&, Ptr stream) {
  py::gil_scoped_release nogil;
  ac::gru_step_backward<T>(B, H, dev_ptr<const T>(gates), dev_ptr<const T>(hn), dev_ptr<const T>(h),
                           dev_ptr<const T>(grad_h_next), dev_ptr<T>(dgi), dev_ptr<T>(dgh), dev_ptr<T>(grad_h),
                           as_stream(stream));
}

template <typename T>
void attention_scores_t(Ptr e, Ptr qp, Ptr v, Ptr scores, index_t B, index_t Tn, index_t A, const py::object&,
                        Ptr stream) {
  py::gil_scoped_release nogil;
  ac::attention_scores<T>(B, Tn, A, dev_ptr<T>(e), dev_ptr<const T>(qp), dev_ptr<const T>(v), dev_ptr<T>(scores),
                          as_stream(stream));
}

template <typename T>
void attention_softmax_context_t(Ptr weights, Ptr mask, Ptr keys, Ptr context, index_t B, index_t Tn, index_t Dk,
                                 const py::object&, Ptr stream) {
  py::gil_scoped_release nogil;
  ac::attention_softmax_context<T>(B, Tn, Dk, dev_ptr<T>(weights), dev_ptr<const std::uint8_t>(mask),
                                   dev_ptr<const T>(keys), dev_ptr<T>(context), as_stream(stream));
}

template <typename T>
void attention_backward_pointwise_t(Ptr grad_context, Ptr grad_weights, Ptr keys, Ptr weights, Ptr e, Ptr v,
                                    Ptr dscore, Ptr grad_keys, Ptr da, index_t B, index_t Tn, index_t Dk,
                                    index_t A, const py::object&, Ptr stream) {
  py::gil_scoped_release nogil;
  ac::attention_backward_pointwise<T>(B, Tn, Dk, A, dev_ptr<const T>(grad_context), dev_ptr<const T>(grad_weights),
                                      dev_ptr<const T>(keys), dev_ptr<const T>(weights), dev_ptr<const T>(e),
                                      dev_ptr<const T>(v), dev_ptr<T>(dscore), dev_ptr<T>(grad_keys),
                                      dev_ptr<T>(da), as_stream(stream));
}

}  // namespace

void bind_cuda_rnn(py::module_& m) {
  def_op(m, "lstm_step",
         "One LSTM step over (B, H): gates (B, 4H, with both biases) += rec (0: none), activated; c_next, h_next.",
         FLOAT_IMPL(lstm_step_t, 8), py::arg("gates"), py::arg("rec"), py::arg("c_prev"), py::arg("c_next"),
         py::arg("h_next"), py::arg("B"), py::arg("H"), py::arg("ldh"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "lstm_step_backward", "dG (B, 4H) and dc (in place) of one LSTM step from dh (+ grad_y rows).",
         FLOAT_IMPL(lstm_step_backward_t, 10), py::arg("gates"), py::arg("c_prev"), py::arg("c_cur"),
         py::arg("grad_y"), py::arg("dh"), py::arg("dc"), py::arg("dG"), py::arg("B"), py::arg("H"),
         py::arg("ldgy"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "gru_step", "One GRU step: gi (B, 3H) activated in place from gi and gh; hn, h_next (B, H).",
         FLOAT_IMPL(gru_step_t, 7), py::arg("gi"), py::arg("gh"), py::arg("h"), py::arg("hn"), py::arg("h_next"),
         py::arg("B"), py::arg("H"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "gru_step_backward", "dgi, dgh (B, 3H) and grad_h's direct part (B, H) of one GRU step.",
         FLOAT_IMPL(gru_step_backward_t, 9), py::arg("gates"), py::arg("hn"), py::arg("h"),
         py::arg("grad_h_next"), py::arg("dgi"), py::arg("dgh"), py::arg("grad_h"), py::arg("B"), py::arg("H"),
         py::arg("dtype"), py::arg("stream"));
  def_op(m, "attention_scores", "e (T*B, A) = tanh(e + qp[b]) in place; scores (B, T) = e . v.",
         FLOAT_IMPL(attention_scores_t, 7), py::arg("e"), py::arg("qp"), py::arg("v"), py::arg("scores"),
         py::arg("B"), py::arg("T"), py::arg("A"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "attention_softmax_context",
         "weights (B, T): masked softmax of the scores in place; context (B, Dk) = sum_t weights * keys.",
         FLOAT_IMPL(attention_softmax_context_t, 7), py::arg("weights"), py::arg("mask"), py::arg("keys"),
         py::arg("context"), py::arg("B"), py::arg("T"), py::arg("Dk"), py::arg("dtype"), py::arg("stream"));
  def_op(m, "attention_backward_pointwise",
         "dscore (B, T), grad_keys = weights * grad_context (T*B, Dk) and da (T*B, A) of additive attention.",
         FLOAT_IMPL(attention_backward_pointwise_t, 13), py::arg("grad_context"), py::arg("grad_weights"),
         py::arg("keys"), py::arg("weights"), py::arg("e"), py::arg("v"), py::arg("dscore"), py::arg("grad_keys"),
         py::arg("da"), py::arg("B"), py::arg("T"), py::arg("Dk"), py::arg("A"), py::arg("dtype"),
         py::arg("stream"));
}

}  // namespace adlk_bind
