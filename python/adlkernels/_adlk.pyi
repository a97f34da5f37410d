"""
adlkernels C++/OpenMP kernels (internal: use the adlkernels package).
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['Activation', 'Conv2dGeom', 'LossKind', 'MAX_GEOM_ARG', 'MAX_THREADS', 'Pool2dGeom', 'Reduction', 'SUM_CHUNK', 'activation_backward', 'activation_forward', 'adagrad_step', 'adam_step', 'attention_backward', 'attention_forward', 'avgpool2d_backward', 'avgpool2d_forward', 'batchnorm_backward', 'batchnorm_forward', 'build_info', 'col2im', 'conv2d_backward', 'conv2d_forward', 'conv_output_size', 'conv_workspace_bytes', 'dropout_backward', 'dropout_forward', 'elementwise_loss', 'embedding_backward', 'embedding_forward', 'get_num_threads', 'grad_norm', 'gru_backward', 'gru_cell_backward', 'gru_cell_forward', 'gru_forward', 'im2col', 'layernorm_backward', 'layernorm_forward', 'linear_backward', 'linear_forward', 'lstm_backward', 'lstm_forward', 'max_unpool2d', 'maxpool2d_backward', 'maxpool2d_forward', 'philox4x32_10', 'pooled_output_size', 'rmsprop_step', 'rnn_backward', 'rnn_cell_backward', 'rnn_cell_forward', 'rnn_forward', 'scale_arrays', 'set_num_threads', 'sgd_step', 'single_threaded_after_fork', 'softmax_backward', 'softmax_cross_entropy', 'softmax_forward']
class Conv2dGeom:
    """
    Checked geometry of a 2-d convolution (or bare im2col/col2im: C_out 0).
    """
    def __init__(self, N: typing.SupportsInt | typing.SupportsIndex, C: typing.SupportsInt | typing.SupportsIndex, H: typing.SupportsInt | typing.SupportsIndex, W: typing.SupportsInt | typing.SupportsIndex, C_out: typing.SupportsInt | typing.SupportsIndex = 0, kernel_size: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (1, 1), stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (1, 1), padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (0, 0), dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (1, 1), groups: typing.SupportsInt | typing.SupportsIndex = 1) -> None:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def C(self) -> int:
        ...
    @property
    def C_out(self) -> int:
        ...
    @property
    def H(self) -> int:
        ...
    @property
    def H_out(self) -> int:
        ...
    @property
    def L(self) -> int:
        """
        Output positions H_out*W_out.
        """
    @property
    def N(self) -> int:
        ...
    @property
    def W(self) -> int:
        ...
    @property
    def W_out(self) -> int:
        ...
    @property
    def col_rows(self) -> int:
        """
        Column-matrix rows C*kH*kW.
        """
    @property
    def dilation(self) -> tuple[int, int]:
        ...
    @property
    def groups(self) -> int:
        ...
    @property
    def kernel_size(self) -> tuple[int, int]:
        ...
    @property
    def padding(self) -> tuple[int, int]:
        ...
    @property
    def stride(self) -> tuple[int, int]:
        ...
class Pool2dGeom:
    """
    Checked geometry of a 2-d pooling window over (N, C, H, W).
    """
    def __init__(self, N: typing.SupportsInt | typing.SupportsIndex, C: typing.SupportsInt | typing.SupportsIndex, H: typing.SupportsInt | typing.SupportsIndex, W: typing.SupportsInt | typing.SupportsIndex, kernel_size: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (0, 0), dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (1, 1), ceil_mode: bool = False) -> None:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def C(self) -> int:
        ...
    @property
    def H(self) -> int:
        ...
    @property
    def H_out(self) -> int:
        ...
    @property
    def N(self) -> int:
        ...
    @property
    def W(self) -> int:
        ...
    @property
    def W_out(self) -> int:
        ...
    @property
    def ceil_mode(self) -> bool:
        ...
    @property
    def dilation(self) -> tuple[int, int]:
        ...
    @property
    def kernel_size(self) -> tuple[int, int]:
        ...
    @property
    def padding(self) -> tuple[int, int]:
        ...
    @property
    def stride(self) -> tuple[int, int]:
        ...
class Activation:
    """
    Pointwise activation of activation_forward/backward.

    Members:

      relu

      leaky_relu

      sigmoid

      tanh
    """
    __members__: typing.ClassVar[dict[str, Activation]]
    leaky_relu: typing.ClassVar[Activation]
    relu: typing.ClassVar[Activation]
    sigmoid: typing.ClassVar[Activation]
    tanh: typing.ClassVar[Activation]
    @typing.overload
    def __eq__(self, other: Activation) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: Activation) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def backward_takes_output(self) -> bool:
        """
        True when the backward reads the forward's output y, False when its input x.
        """
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class Reduction:
    """
    How a loss reduces its per-element values.

    Members:

      mean

      sum

      none
    """
    __members__: typing.ClassVar[dict[str, Reduction]]
    mean: typing.ClassVar[Reduction]
    none: typing.ClassVar[Reduction]
    sum: typing.ClassVar[Reduction]
    @typing.overload
    def __eq__(self, other: Reduction) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: Reduction) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class LossKind:
    """
    Elementwise loss of elementwise_loss.

    Members:

      mse

      l1

      huber
    """
    __members__: typing.ClassVar[dict[str, LossKind]]
    huber: typing.ClassVar[LossKind]
    l1: typing.ClassVar[LossKind]
    mse: typing.ClassVar[LossKind]
    @typing.overload
    def __eq__(self, other: LossKind) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: LossKind) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
def _fma_peak_gflops(seconds: typing.SupportsFloat | typing.SupportsIndex = 0.2) -> float:
    """
    Benchmark hook: GFLOP/s of this thread running only vector FMAs (the kernel's ISA).
    """
def _gemm_packed(a: numpy.ndarray, w: numpy.ndarray, c: typing.Any = None, a2: typing.Any = None, w2: typing.Any = None) -> numpy.typing.NDArray[numpy.float32]:
    """
    Test hook: a @ w.T (+ a2 @ w2.T) (+ c) through the packed-weight GEMM (float32).
    """
def activation_backward(grad_y: numpy.ndarray, saved: numpy.ndarray, act: Activation, slope: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    grad_x of activation_forward from grad_y and saved (y where act.backward_takes_output, else x).
    """
def activation_forward(x: numpy.ndarray, act: Activation, slope: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    y = act(x) elementwise (slope: leaky_relu's negative slope).
    """
def adagrad_step(params: list, grads: list, state_sums: list, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, lr_decay: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, maximize: bool) -> typing.Any:
    """
    Adagrad over lists of arrays, in place.
    """
def adam_step(params: list, grads: list, exp_avgs: list, exp_avg_sqs: list, max_exp_avg_sqs: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, decoupled_weight_decay: bool, maximize: bool) -> typing.Any:
    """
    Adam / AdamW (amsgrad when max_exp_avg_sqs is a list) over lists of arrays, in place.
    """
def attention_backward(grad_context: numpy.ndarray, grad_weights: typing.Any, query: numpy.ndarray, keys: numpy.ndarray, w_query: numpy.ndarray, w_key: numpy.ndarray, v: numpy.ndarray, tanh_act: numpy.ndarray, weights: numpy.ndarray) -> typing.Any:
    """
    (grad_query, grad_keys, grad_w_query, grad_w_key, grad_v) of attention_forward.
    """
def attention_forward(query: numpy.ndarray, keys: numpy.ndarray, w_query: numpy.ndarray, w_key: numpy.ndarray, v: numpy.ndarray, mask: typing.Any) -> typing.Any:
    """
    (context, weights, tanh_act) of additive (Bahdanau) attention.
    """
def avgpool2d_backward(grad_y: numpy.ndarray, input_size: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], kernel_size: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], ceil_mode: bool, count_include_pad: bool) -> typing.Any:
    """
    grad_x (N, C, H, W) of avgpool2d_forward.
    """
def avgpool2d_forward(x: numpy.ndarray, kernel_size: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], ceil_mode: bool, count_include_pad: bool) -> typing.Any:
    """
    y (N, C, H_out, W_out): average pooling.
    """
def batchnorm_backward(grad_y: numpy.ndarray, x: numpy.ndarray, weight: typing.Any, save_mean: numpy.ndarray, save_invstd: numpy.ndarray, training: bool) -> typing.Any:
    """
    (grad_x, grad_weight, grad_bias) of batchnorm_forward.
    """
def batchnorm_forward(x: numpy.ndarray, weight: typing.Any, bias: typing.Any, running_mean: typing.Any, running_var: typing.Any, training: bool, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    (y, save_mean, save_invstd) of batch norm; running stats updated in training.
    """
def build_info() -> dict:
    """
    Compiler, OpenMP, BLAS and sanitizer settings of this build.
    """
def col2im(cols: numpy.ndarray, C: typing.SupportsInt | typing.SupportsIndex, H: typing.SupportsInt | typing.SupportsIndex, W: typing.SupportsInt | typing.SupportsIndex, kernel_size: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex]) -> typing.Any:
    """
    cols (N, C*kH*kW, L) -> x (N, C, H, W), overlapping windows summed (fold).
    """
def conv2d_backward(grad_y: numpy.ndarray, x: numpy.ndarray, weight: numpy.ndarray, stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex, need_x: bool, need_weight: bool, need_bias: bool) -> typing.Any:
    """
    (grad_x, grad_weight, grad_bias) of conv2d_forward; None where not needed.
    """
def conv2d_forward(x: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any, stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y (N, C_out, H_out, W_out) = conv2d(x, weight) + bias.
    """
def conv_output_size(n: typing.SupportsInt | typing.SupportsIndex, kernel_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex, padding: typing.SupportsInt | typing.SupportsIndex, dilation: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    (n + 2p - d(k-1) - 1) // s + 1; ValueError when the dilated kernel exceeds the padded input.
    """
def conv_workspace_bytes(x: numpy.ndarray, weight: numpy.ndarray, stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], groups: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    Scratch bytes of conv2d_forward or conv2d_backward, the larger, at the current thread count.
    """
def dropout_backward(grad_y: numpy.ndarray, mask: numpy.ndarray, p: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    grad_x = grad_y * mask / (1 - p) over flat arrays.
    """
def dropout_forward(x: numpy.ndarray, p: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    (y, mask) of inverted dropout over flat x, mask by Philox from (seed, index).
    """
def elementwise_loss(pred: numpy.ndarray, target: numpy.ndarray, kind: LossKind, reduction: Reduction, delta: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    (loss, grad_pred) of an elementwise loss over flat pred and target.
    """
def embedding_backward(grad_y: numpy.ndarray, indices: numpy.ndarray, num_embeddings: typing.SupportsInt | typing.SupportsIndex, padding_idx: typing.SupportsInt | typing.SupportsIndex | None) -> typing.Any:
    """
    grad_weight (V, D): grad_y's rows summed per index in position order; row padding_idx 0.
    """
def embedding_forward(indices: numpy.ndarray, weight: numpy.ndarray) -> typing.Any:
    """
    y (indices.shape + (D,)) = the rows weight (V, D)[indices] (int64 or int32).
    """
def get_num_threads() -> int:
    """
    Threads the next kernel will use.
    """
def grad_norm(grads: list, norm_type: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    The norm_type-norm of all arrays together, in fixed chunks (0.0 for none).
    """
def gru_backward(grad_y: typing.Any, grad_h_n: typing.Any, x: numpy.ndarray, h0: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, gates: numpy.ndarray, hn: numpy.ndarray, y: typing.Any, reverse: bool, need_b_ih: bool, need_b_hh: bool) -> typing.Any:
    """
    (grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of gru_forward (BPTT).
    """
def gru_cell_backward(grad_h_next: numpy.ndarray, x: numpy.ndarray, h: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, gates: numpy.ndarray, hn: numpy.ndarray, need_b_ih: bool, need_b_hh: bool) -> typing.Any:
    """
    (grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of a GRU step.
    """
def gru_cell_forward(x: numpy.ndarray, h: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, b_ih: typing.Any, b_hh: typing.Any) -> typing.Any:
    """
    (h_next, gates, hn) of one GRU step.
    """
def gru_forward(x: numpy.ndarray, h0: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, b_ih: typing.Any, b_hh: typing.Any, reverse: bool, out: numpy.ndarray) -> typing.Any:
    """
    (h_n, gates, hn) of a GRU over x (T, B, I), writing y into out (T, B, H).
    """
def im2col(x: numpy.ndarray, kernel_size: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex]) -> typing.Any:
    """
    x (N, C, H, W) -> cols (N, C*kH*kW, H_out*W_out) (unfold).
    """
def layernorm_backward(grad_y: numpy.ndarray, x: numpy.ndarray, mean: numpy.ndarray, rstd: numpy.ndarray, weight: typing.Any) -> typing.Any:
    """
    (grad_x, grad_weight, grad_bias) of layernorm_forward.
    """
def layernorm_forward(x: numpy.ndarray, weight: typing.Any, bias: typing.Any, eps: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    (y, mean, rstd) of layer norm over the rows of x (rows, D).
    """
def linear_backward(grad_y: numpy.ndarray, x: numpy.ndarray, weight: numpy.ndarray, need_x: bool, need_weight: bool, need_bias: bool) -> typing.Any:
    """
    (grad_x, grad_weight, grad_bias) of linear_forward; None where not needed.
    """
def linear_forward(x: numpy.ndarray, weight: numpy.ndarray, bias: typing.Any) -> typing.Any:
    """
    y (B, O) = x (B, I) @ weight (O, I).T + bias.
    """
def lstm_backward(grad_y: typing.Any, grad_h_n: typing.Any, grad_c_n: typing.Any, x: numpy.ndarray, h0: numpy.ndarray, c0: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, has_bias: bool, gates: numpy.ndarray, cells: numpy.ndarray, y: typing.Any, reverse: bool) -> typing.Any:
    """
    (grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b) of lstm_forward (BPTT).
    """
def lstm_forward(x: numpy.ndarray, h0: numpy.ndarray, c0: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, b_ih: typing.Any, b_hh: typing.Any, reverse: bool, out: numpy.ndarray, want_final: bool) -> typing.Any:
    """
    (h_n, c_n, gates, cells) of an LSTM over x (T, B, I), writing y into out (T, B, H).
    """
def max_unpool2d(x: numpy.ndarray, indices: numpy.ndarray, H: typing.SupportsInt | typing.SupportsIndex, W: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y (N, C, H, W): zeros except x at its indices (the last of duplicates).
    """
def maxpool2d_backward(grad_y: numpy.ndarray, indices: numpy.ndarray, H: typing.SupportsInt | typing.SupportsIndex, W: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grad_x (N, C, H, W): grad_y routed to each argmax, summed.
    """
def maxpool2d_forward(x: numpy.ndarray, kernel_size: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], stride: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], padding: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], dilation: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex], ceil_mode: bool) -> typing.Any:
    """
    (y, indices) of max pooling; indices h*W + w in the input plane.
    """
def philox4x32_10(c0: typing.SupportsInt | typing.SupportsIndex, c1: typing.SupportsInt | typing.SupportsIndex, c2: typing.SupportsInt | typing.SupportsIndex, c3: typing.SupportsInt | typing.SupportsIndex, k0: typing.SupportsInt | typing.SupportsIndex, k1: typing.SupportsInt | typing.SupportsIndex) -> tuple[int, int, int, int]:
    """
    The four output words of Philox-4x32-10 for one counter and key.
    """
def pooled_output_size(n: typing.SupportsInt | typing.SupportsIndex, kernel_size: typing.SupportsInt | typing.SupportsIndex, stride: typing.SupportsInt | typing.SupportsIndex, padding: typing.SupportsInt | typing.SupportsIndex, dilation: typing.SupportsInt | typing.SupportsIndex, ceil_mode: bool) -> int:
    """
    Pooling output size of one dimension, as PyTorch (may be < 1 when the window does not fit).
    """
def rmsprop_step(params: list, grads: list, square_avgs: list, momentum_buffers: typing.Any, grad_avgs: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, alpha: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, maximize: bool) -> typing.Any:
    """
    RMSprop (momentum, centered) over lists of arrays, in place.
    """
def rnn_backward(grad_y: typing.Any, grad_h_n: typing.Any, x: numpy.ndarray, h0: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, y: typing.Any, relu: bool, reverse: bool, has_bias: bool) -> typing.Any:
    """
    (grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b) of rnn_forward (BPTT).
    """
def rnn_cell_backward(grad_h_next: numpy.ndarray, x: numpy.ndarray, h: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, h_next: numpy.ndarray, relu: bool, has_bias: bool) -> typing.Any:
    """
    (grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b) of an Elman step.
    """
def rnn_cell_forward(x: numpy.ndarray, h: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, b_ih: typing.Any, b_hh: typing.Any, relu: bool) -> typing.Any:
    """
    h_next of one Elman step (tanh, or relu when relu is True).
    """
def rnn_forward(x: numpy.ndarray, h0: numpy.ndarray, w_ih: numpy.ndarray, w_hh: numpy.ndarray, b_ih: typing.Any, b_hh: typing.Any, relu: bool, reverse: bool, out: numpy.ndarray) -> typing.Any:
    """
    h_n of an Elman RNN over x (T, B, I) (tanh, or relu when relu is True), writing y into out.
    """
def scale_arrays(grads: list, factor: typing.SupportsFloat | typing.SupportsIndex) -> typing.Any:
    """
    Multiplies every array of the list by factor, in place.
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Threads of every kernel (OpenMP teams; BLAS runs one per thread).
    """
def sgd_step(params: list, grads: list, momentum_buffers: typing.Any, step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, dampening: typing.SupportsFloat | typing.SupportsIndex, nesterov: bool, weight_decay: typing.SupportsFloat | typing.SupportsIndex, maximize: bool) -> typing.Any:
    """
    SGD (momentum, Nesterov, weight decay) over lists of arrays, in place.
    """
def single_threaded_after_fork() -> bool:
    """
    True in a process forked after kernels may have started threads (kernels then run on one).
    """
def softmax_backward(grad_y: numpy.ndarray, y: numpy.ndarray, log: bool) -> typing.Any:
    """
    grad_x of softmax_forward from grad_y and its output y.
    """
def softmax_cross_entropy(logits: numpy.ndarray, targets: numpy.ndarray, reduction: Reduction, ignore_index: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    (loss, grad_logits) of softmax cross-entropy against int64 targets.
    """
def softmax_forward(x: numpy.ndarray, log: bool) -> typing.Any:
    """
    Softmax (or log-softmax) over the rows of x (rows, K).
    """
MAX_GEOM_ARG: int = 2147483648
MAX_THREADS: int = 65536
SUM_CHUNK: int = 32768
__ops__: dict = {'set_num_threads': {'args': ('n'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Threads of every kernel (OpenMP teams; BLAS runs one per thread).'}, 'get_num_threads': {'args': tuple(), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Threads the next kernel will use.'}, 'single_threaded_after_fork': {'args': tuple(), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'True in a process forked after kernels may have started threads (kernels then run on one).'}, 'build_info': {'args': tuple(), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Compiler, OpenMP, BLAS and sanitizer settings of this build.'}, 'conv_output_size': {'args': ('n', 'kernel_size', 'stride', 'padding', 'dilation'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': '(n + 2p - d(k-1) - 1) // s + 1; ValueError when the dilated kernel exceeds the padded input.'}, 'pooled_output_size': {'args': ('n', 'kernel_size', 'stride', 'padding', 'dilation', 'ceil_mode'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Pooling output size of one dimension, as PyTorch (may be < 1 when the window does not fit).'}, '_fma_peak_gflops': {'args': ('seconds'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': "Benchmark hook: GFLOP/s of this thread running only vector FMAs (the kernel's ISA)."}, '_gemm_packed': {'args': ('a', 'w', 'c', 'a2', 'w2'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Test hook: a @ w.T (+ a2 @ w2.T) (+ c) through the packed-weight GEMM (float32).'}, 'im2col': {'args': ('x', 'kernel_size', 'stride', 'padding', 'dilation'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': 'x (N, C, H, W) -> cols (N, C*kH*kW, H_out*W_out) (unfold).'}, 'col2im': {'args': ('cols', 'C', 'H', 'W', 'kernel_size', 'stride', 'padding', 'dilation'), 'dtype_arg': 'cols', 'dtypes': ('float32', 'float64'), 'doc': 'cols (N, C*kH*kW, L) -> x (N, C, H, W), overlapping windows summed (fold).'}, 'conv2d_forward': {'args': ('x', 'weight', 'bias', 'stride', 'padding', 'dilation', 'groups'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': 'y (N, C_out, H_out, W_out) = conv2d(x, weight) + bias.'}, 'conv2d_backward': {'args': ('grad_y', 'x', 'weight', 'stride', 'padding', 'dilation', 'groups', 'need_x', 'need_weight', 'need_bias'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(grad_x, grad_weight, grad_bias) of conv2d_forward; None where not needed.'}, 'conv_workspace_bytes': {'args': ('x', 'weight', 'stride', 'padding', 'dilation', 'groups'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': 'Scratch bytes of conv2d_forward or conv2d_backward, the larger, at the current thread count.'}, 'maxpool2d_forward': {'args': ('x', 'kernel_size', 'stride', 'padding', 'dilation', 'ceil_mode'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(y, indices) of max pooling; indices h*W + w in the input plane.'}, 'maxpool2d_backward': {'args': ('grad_y', 'indices', 'H', 'W'), 'dtype_arg': 'grad_y', 'dtypes': ('float32', 'float64'), 'doc': 'grad_x (N, C, H, W): grad_y routed to each argmax, summed.'}, 'max_unpool2d': {'args': ('x', 'indices', 'H', 'W'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': 'y (N, C, H, W): zeros except x at its indices (the last of duplicates).'}, 'avgpool2d_forward': {'args': ('x', 'kernel_size', 'stride', 'padding', 'ceil_mode', 'count_include_pad'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': 'y (N, C, H_out, W_out): average pooling.'}, 'avgpool2d_backward': {'args': ('grad_y', 'input_size', 'kernel_size', 'stride', 'padding', 'ceil_mode', 'count_include_pad'), 'dtype_arg': 'grad_y', 'dtypes': ('float32', 'float64'), 'doc': 'grad_x (N, C, H, W) of avgpool2d_forward.'}, 'lstm_forward': {'args': ('x', 'h0', 'c0', 'w_ih', 'w_hh', 'b_ih', 'b_hh', 'reverse', 'out', 'want_final'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(h_n, c_n, gates, cells) of an LSTM over x (T, B, I), writing y into out (T, B, H).'}, 'lstm_backward': {'args': ('grad_y', 'grad_h_n', 'grad_c_n', 'x', 'h0', 'c0', 'w_ih', 'w_hh', 'has_bias', 'gates', 'cells', 'y', 'reverse'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b) of lstm_forward (BPTT).'}, 'gru_forward': {'args': ('x', 'h0', 'w_ih', 'w_hh', 'b_ih', 'b_hh', 'reverse', 'out'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(h_n, gates, hn) of a GRU over x (T, B, I), writing y into out (T, B, H).'}, 'gru_backward': {'args': ('grad_y', 'grad_h_n', 'x', 'h0', 'w_ih', 'w_hh', 'gates', 'hn', 'y', 'reverse', 'need_b_ih', 'need_b_hh'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of gru_forward (BPTT).'}, 'rnn_forward': {'args': ('x', 'h0', 'w_ih', 'w_hh', 'b_ih', 'b_hh', 'relu', 'reverse', 'out'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': 'h_n of an Elman RNN over x (T, B, I) (tanh, or relu when relu is True), writing y into out.'}, 'rnn_backward': {'args': ('grad_y', 'grad_h_n', 'x', 'h0', 'w_ih', 'w_hh', 'y', 'relu', 'reverse', 'has_bias'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b) of rnn_forward (BPTT).'}, 'gru_cell_forward': {'args': ('x', 'h', 'w_ih', 'w_hh', 'b_ih', 'b_hh'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(h_next, gates, hn) of one GRU step.'}, 'gru_cell_backward': {'args': ('grad_h_next', 'x', 'h', 'w_ih', 'w_hh', 'gates', 'hn', 'need_b_ih', 'need_b_hh'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of a GRU step.'}, 'rnn_cell_forward': {'args': ('x', 'h', 'w_ih', 'w_hh', 'b_ih', 'b_hh', 'relu'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': 'h_next of one Elman step (tanh, or relu when relu is True).'}, 'rnn_cell_backward': {'args': ('grad_h_next', 'x', 'h', 'w_ih', 'w_hh', 'h_next', 'relu', 'has_bias'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(grad_x, grad_h, grad_w_ih, grad_w_hh, grad_b) of an Elman step.'}, 'attention_forward': {'args': ('query', 'keys', 'w_query', 'w_key', 'v', 'mask'), 'dtype_arg': 'query', 'dtypes': ('float32', 'float64'), 'doc': '(context, weights, tanh_act) of additive (Bahdanau) attention.'}, 'attention_backward': {'args': ('grad_context', 'grad_weights', 'query', 'keys', 'w_query', 'w_key', 'v', 'tanh_act', 'weights'), 'dtype_arg': 'query', 'dtypes': ('float32', 'float64'), 'doc': '(grad_query, grad_keys, grad_w_query, grad_w_key, grad_v) of attention_forward.'}, 'sgd_step': {'args': ('params', 'grads', 'momentum_buffers', 'step', 'lr', 'momentum', 'dampening', 'nesterov', 'weight_decay', 'maximize'), 'dtype_arg': 'params', 'dtypes': ('float32', 'float64'), 'doc': 'SGD (momentum, Nesterov, weight decay) over lists of arrays, in place.'}, 'adagrad_step': {'args': ('params', 'grads', 'state_sums', 'step', 'lr', 'lr_decay', 'weight_decay', 'eps', 'maximize'), 'dtype_arg': 'params', 'dtypes': ('float32', 'float64'), 'doc': 'Adagrad over lists of arrays, in place.'}, 'rmsprop_step': {'args': ('params', 'grads', 'square_avgs', 'momentum_buffers', 'grad_avgs', 'step', 'lr', 'alpha', 'eps', 'weight_decay', 'momentum', 'maximize'), 'dtype_arg': 'params', 'dtypes': ('float32', 'float64'), 'doc': 'RMSprop (momentum, centered) over lists of arrays, in place.'}, 'adam_step': {'args': ('params', 'grads', 'exp_avgs', 'exp_avg_sqs', 'max_exp_avg_sqs', 'step', 'lr', 'beta1', 'beta2', 'eps', 'weight_decay', 'decoupled_weight_decay', 'maximize'), 'dtype_arg': 'params', 'dtypes': ('float32', 'float64'), 'doc': 'Adam / AdamW (amsgrad when max_exp_avg_sqs is a list) over lists of arrays, in place.'}, 'grad_norm': {'args': ('grads', 'norm_type'), 'dtype_arg': 'grads', 'dtypes': ('float32', 'float64'), 'doc': 'The norm_type-norm of all arrays together, in fixed chunks (0.0 for none).'}, 'scale_arrays': {'args': ('grads', 'factor'), 'dtype_arg': 'grads', 'dtypes': ('float32', 'float64'), 'doc': 'Multiplies every array of the list by factor, in place.'}, 'batchnorm_forward': {'args': ('x', 'weight', 'bias', 'running_mean', 'running_var', 'training', 'momentum', 'eps'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(y, save_mean, save_invstd) of batch norm; running stats updated in training.'}, 'batchnorm_backward': {'args': ('grad_y', 'x', 'weight', 'save_mean', 'save_invstd', 'training'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(grad_x, grad_weight, grad_bias) of batchnorm_forward.'}, 'layernorm_forward': {'args': ('x', 'weight', 'bias', 'eps'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(y, mean, rstd) of layer norm over the rows of x (rows, D).'}, 'layernorm_backward': {'args': ('grad_y', 'x', 'mean', 'rstd', 'weight'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(grad_x, grad_weight, grad_bias) of layernorm_forward.'}, 'dropout_forward': {'args': ('x', 'p', 'seed'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(y, mask) of inverted dropout over flat x, mask by Philox from (seed, index).'}, 'dropout_backward': {'args': ('grad_y', 'mask', 'p'), 'dtype_arg': 'grad_y', 'dtypes': ('float32', 'float64'), 'doc': 'grad_x = grad_y * mask / (1 - p) over flat arrays.'}, 'philox4x32_10': {'args': ('c0', 'c1', 'c2', 'c3', 'k0', 'k1'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'The four output words of Philox-4x32-10 for one counter and key.'}, 'linear_forward': {'args': ('x', 'weight', 'bias'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': 'y (B, O) = x (B, I) @ weight (O, I).T + bias.'}, 'linear_backward': {'args': ('grad_y', 'x', 'weight', 'need_x', 'need_weight', 'need_bias'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': '(grad_x, grad_weight, grad_bias) of linear_forward; None where not needed.'}, 'activation_forward': {'args': ('x', 'act', 'slope'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': "y = act(x) elementwise (slope: leaky_relu's negative slope)."}, 'activation_backward': {'args': ('grad_y', 'saved', 'act', 'slope'), 'dtype_arg': 'grad_y', 'dtypes': ('float32', 'float64'), 'doc': 'grad_x of activation_forward from grad_y and saved (y where act.backward_takes_output, else x).'}, 'softmax_forward': {'args': ('x', 'log'), 'dtype_arg': 'x', 'dtypes': ('float32', 'float64'), 'doc': 'Softmax (or log-softmax) over the rows of x (rows, K).'}, 'softmax_backward': {'args': ('grad_y', 'y', 'log'), 'dtype_arg': 'y', 'dtypes': ('float32', 'float64'), 'doc': 'grad_x of softmax_forward from grad_y and its output y.'}, 'softmax_cross_entropy': {'args': ('logits', 'targets', 'reduction', 'ignore_index'), 'dtype_arg': 'logits', 'dtypes': ('float32', 'float64'), 'doc': '(loss, grad_logits) of softmax cross-entropy against int64 targets.'}, 'elementwise_loss': {'args': ('pred', 'target', 'kind', 'reduction', 'delta'), 'dtype_arg': 'pred', 'dtypes': ('float32', 'float64'), 'doc': '(loss, grad_pred) of an elementwise loss over flat pred and target.'}, 'embedding_forward': {'args': ('indices', 'weight'), 'dtype_arg': 'weight', 'dtypes': ('float32', 'float64'), 'doc': 'y (indices.shape + (D,)) = the rows weight (V, D)[indices] (int64 or int32).'}, 'embedding_backward': {'args': ('grad_y', 'indices', 'num_embeddings', 'padding_idx'), 'dtype_arg': 'grad_y', 'dtypes': ('float32', 'float64'), 'doc': "grad_weight (V, D): grad_y's rows summed per index in position order; row padding_idx 0."}}
__version__: str = '0.1.0'
