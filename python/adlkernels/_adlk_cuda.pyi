"""
adlkernels CUDA kernels (internal: use the adlkernels package).
"""
from __future__ import annotations
import adlkernels._adlk
import collections.abc
import typing
__all__: list[str] = ['activation_backward', 'activation_forward', 'adagrad_step', 'adam_step', 'architectures', 'attention_backward_pointwise', 'attention_scores', 'attention_softmax_context', 'avgpool2d_backward', 'avgpool2d_forward', 'batchnorm_backward', 'batchnorm_forward', 'batchnorm_workspace', 'channel_sums', 'clip_scale', 'col2im', 'conv2d_chunk_images', 'conv2d_workspace_elems', 'device_count', 'driver_version', 'dropout_backward', 'dropout_forward', 'elementwise_loss', 'embedding_backward', 'embedding_forward', 'first_index_out_of_range', 'gru_step', 'gru_step_backward', 'im2col', 'layernorm_backward', 'layernorm_forward', 'layernorm_workspace', 'loss_partials', 'lstm_step', 'lstm_step_backward', 'max_unpool2d_planes', 'maxpool2d_backward', 'maxpool2d_backward_planes', 'maxpool2d_first_outside_window', 'maxpool2d_forward', 'rmsprop_step', 'runtime_version', 'sgd_step', 'softmax_backward', 'softmax_cross_entropy', 'softmax_forward', 'sum_batches', 'sum_doubles', 'total_norm', 'total_norm_partials']
def activation_backward(grad_y: typing.SupportsInt | typing.SupportsIndex, saved: typing.SupportsInt | typing.SupportsIndex, grad_x: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, act: adlkernels._adlk.Activation, slope: typing.SupportsFloat | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grad_x from grad_y and the saved x or y (act.backward_takes_output).
    """
def activation_forward(x: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, act: adlkernels._adlk.Activation, slope: typing.SupportsFloat | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y = act(x) over n elements.
    """
def adagrad_step(params: list, grads: list, state_sums: list, sizes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, lr_decay: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, maximize: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    Adagrad over lists of device arrays, in place.
    """
def adam_step(params: list, grads: list, exp_avgs: list, exp_avg_sqs: list, max_exp_avg_sqs: typing.Any, sizes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, beta1: typing.SupportsFloat | typing.SupportsIndex, beta2: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, decoupled_weight_decay: bool, maximize: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    Adam / AdamW over lists of device arrays, in place.
    """
def architectures() -> str:
    """
    The GPU architectures this build has code for.
    """
def attention_backward_pointwise(grad_context: typing.SupportsInt | typing.SupportsIndex, grad_weights: typing.SupportsInt | typing.SupportsIndex, keys: typing.SupportsInt | typing.SupportsIndex, weights: typing.SupportsInt | typing.SupportsIndex, e: typing.SupportsInt | typing.SupportsIndex, v: typing.SupportsInt | typing.SupportsIndex, dscore: typing.SupportsInt | typing.SupportsIndex, grad_keys: typing.SupportsInt | typing.SupportsIndex, da: typing.SupportsInt | typing.SupportsIndex, B: typing.SupportsInt | typing.SupportsIndex, T: typing.SupportsInt | typing.SupportsIndex, Dk: typing.SupportsInt | typing.SupportsIndex, A: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    dscore (B, T), grad_keys = weights * grad_context (T*B, Dk) and da (T*B, A) of additive attention.
    """
def attention_scores(e: typing.SupportsInt | typing.SupportsIndex, qp: typing.SupportsInt | typing.SupportsIndex, v: typing.SupportsInt | typing.SupportsIndex, scores: typing.SupportsInt | typing.SupportsIndex, B: typing.SupportsInt | typing.SupportsIndex, T: typing.SupportsInt | typing.SupportsIndex, A: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    e (T*B, A) = tanh(e + qp[b]) in place; scores (B, T) = e . v.
    """
def attention_softmax_context(weights: typing.SupportsInt | typing.SupportsIndex, mask: typing.SupportsInt | typing.SupportsIndex, keys: typing.SupportsInt | typing.SupportsIndex, context: typing.SupportsInt | typing.SupportsIndex, B: typing.SupportsInt | typing.SupportsIndex, T: typing.SupportsInt | typing.SupportsIndex, Dk: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    weights (B, T): masked softmax of the scores in place; context (B, Dk) = sum_t weights * keys.
    """
def avgpool2d_backward(dy: typing.SupportsInt | typing.SupportsIndex, dx: typing.SupportsInt | typing.SupportsIndex, geom: adlkernels._adlk.Pool2dGeom, count_include_pad: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    dx (N, C, H, W) from dy (N, C, H_out, W_out): the average-pooling gradient.
    """
def avgpool2d_forward(x: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, geom: adlkernels._adlk.Pool2dGeom, count_include_pad: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y (N, C, H_out, W_out) from x (N, C, H, W): average pooling (dilation 1).
    """
def batchnorm_backward(grad_y: typing.SupportsInt | typing.SupportsIndex, x: typing.SupportsInt | typing.SupportsIndex, weight: typing.SupportsInt | typing.SupportsIndex, save_mean: typing.SupportsInt | typing.SupportsIndex, save_invstd: typing.SupportsInt | typing.SupportsIndex, grad_x: typing.SupportsInt | typing.SupportsIndex, grad_weight: typing.SupportsInt | typing.SupportsIndex, grad_bias: typing.SupportsInt | typing.SupportsIndex, workspace: typing.SupportsInt | typing.SupportsIndex, N: typing.SupportsInt | typing.SupportsIndex, C: typing.SupportsInt | typing.SupportsIndex, S: typing.SupportsInt | typing.SupportsIndex, training: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grad_x, grad_weight, grad_bias (0: not written) of batchnorm_forward.
    """
def batchnorm_forward(x: typing.SupportsInt | typing.SupportsIndex, weight: typing.SupportsInt | typing.SupportsIndex, bias: typing.SupportsInt | typing.SupportsIndex, running_mean: typing.SupportsInt | typing.SupportsIndex, running_var: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, save_mean: typing.SupportsInt | typing.SupportsIndex, save_invstd: typing.SupportsInt | typing.SupportsIndex, workspace: typing.SupportsInt | typing.SupportsIndex, N: typing.SupportsInt | typing.SupportsIndex, C: typing.SupportsInt | typing.SupportsIndex, S: typing.SupportsInt | typing.SupportsIndex, training: bool, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y, save_mean, save_invstd of batch norm over x (N, C, S); running stats updated in training.
    """
def batchnorm_workspace(N: typing.SupportsInt | typing.SupportsIndex, C: typing.SupportsInt | typing.SupportsIndex, S: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Doubles of the workspace batch norm needs for (N, C, S).
    """
def channel_sums(dy: typing.SupportsInt | typing.SupportsIndex, db: typing.SupportsInt | typing.SupportsIndex, N: typing.SupportsInt | typing.SupportsIndex, C: typing.SupportsInt | typing.SupportsIndex, L: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    db[c] = sum over n, l of dy (N, C, L)[n, c, l], in double, deterministic.
    """
def clip_scale(grads: list, sizes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], total: typing.SupportsInt | typing.SupportsIndex, max_norm: typing.SupportsFloat | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grads *= max_norm / (*total + 1e-6) where that is < 1 (on the device).
    """
def col2im(cols: typing.SupportsInt | typing.SupportsIndex, x: typing.SupportsInt | typing.SupportsIndex, geom: adlkernels._adlk.Conv2dGeom, n0: typing.SupportsInt | typing.SupportsIndex, nb: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    cols (nb, C*kH*kW, L) -> images [n0, n0+nb) of x (N, C, H, W), overwritten, overlaps summed (fold; bitwise equal to the CPU col2im).
    """
def conv2d_chunk_images(geom: adlkernels._adlk.Conv2dGeom, elem_size: typing.SupportsInt | typing.SupportsIndex, budget_bytes: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Images per workspace chunk whose columns plus grad_weight partials fit in budget_bytes, in [1, max(N, 1)].
    """
def conv2d_workspace_elems(geom: adlkernels._adlk.Conv2dGeom, nb: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Elements of the workspace of nb images: nb*(C*kH*kW*L + C_out*(C/groups)*kH*kW).
    """
def device_count() -> int:
    """
    CUDA devices visible to this process (0 without a driver).
    """
def driver_version() -> str:
    """
    The CUDA driver version, 0 without a driver.
    """
def dropout_backward(grad_y: typing.SupportsInt | typing.SupportsIndex, mask: typing.SupportsInt | typing.SupportsIndex, grad_x: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, p: typing.SupportsFloat | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grad_x = grad_y * mask / (1 - p) (0 where p = 1).
    """
def dropout_forward(x: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, mask: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, p: typing.SupportsFloat | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y and the bool mask from x: the CPU's Philox stream for the seed.
    """
def elementwise_loss(pred: typing.SupportsInt | typing.SupportsIndex, target: typing.SupportsInt | typing.SupportsIndex, grad: typing.SupportsInt | typing.SupportsIndex, loss_elems: typing.SupportsInt | typing.SupportsIndex, partials: typing.SupportsInt | typing.SupportsIndex, total: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, kind: adlkernels._adlk.LossKind, reduction: adlkernels._adlk.Reduction, delta: typing.SupportsFloat | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grad, loss_elems (0: not written) and *total (a device double) of an MSE, L1 or Huber loss.
    """
def embedding_backward(grad_y: typing.SupportsInt | typing.SupportsIndex, indices: typing.SupportsInt | typing.SupportsIndex, order: typing.SupportsInt | typing.SupportsIndex, offsets: typing.SupportsInt | typing.SupportsIndex, grad_weight: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, V: typing.SupportsInt | typing.SupportsIndex, D: typing.SupportsInt | typing.SupportsIndex, padding_idx: typing.SupportsInt | typing.SupportsIndex, int32: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grad_weight (V, D) from grad_y (n, D), order a stable argsort of indices, offsets V + 1 int64.
    """
def embedding_forward(indices: typing.SupportsInt | typing.SupportsIndex, weight: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, V: typing.SupportsInt | typing.SupportsIndex, D: typing.SupportsInt | typing.SupportsIndex, int32: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y (n, D) = the rows of weight (V, D) at indices (n,) (checked by the caller).
    """
def first_index_out_of_range(indices: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, dst_size: typing.SupportsInt | typing.SupportsIndex, stream: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Smallest i in [0, count) with indices[i] outside [-1, dst_size), or -1 (synchronizes the stream).
    """
def gru_step(gi: typing.SupportsInt | typing.SupportsIndex, gh: typing.SupportsInt | typing.SupportsIndex, h: typing.SupportsInt | typing.SupportsIndex, hn: typing.SupportsInt | typing.SupportsIndex, h_next: typing.SupportsInt | typing.SupportsIndex, B: typing.SupportsInt | typing.SupportsIndex, H: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    One GRU step: gi (B, 3H) activated in place from gi and gh; hn, h_next (B, H).
    """
def gru_step_backward(gates: typing.SupportsInt | typing.SupportsIndex, hn: typing.SupportsInt | typing.SupportsIndex, h: typing.SupportsInt | typing.SupportsIndex, grad_h_next: typing.SupportsInt | typing.SupportsIndex, dgi: typing.SupportsInt | typing.SupportsIndex, dgh: typing.SupportsInt | typing.SupportsIndex, grad_h: typing.SupportsInt | typing.SupportsIndex, B: typing.SupportsInt | typing.SupportsIndex, H: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    dgi, dgh (B, 3H) and grad_h's direct part (B, H) of one GRU step.
    """
def im2col(x: typing.SupportsInt | typing.SupportsIndex, cols: typing.SupportsInt | typing.SupportsIndex, geom: adlkernels._adlk.Conv2dGeom, n0: typing.SupportsInt | typing.SupportsIndex, nb: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    Images [n0, n0+nb) of x (N, C, H, W) -> cols (nb, C*kH*kW, H_out*W_out) (unfold).
    """
def layernorm_backward(grad_y: typing.SupportsInt | typing.SupportsIndex, x: typing.SupportsInt | typing.SupportsIndex, mean: typing.SupportsInt | typing.SupportsIndex, rstd: typing.SupportsInt | typing.SupportsIndex, weight: typing.SupportsInt | typing.SupportsIndex, grad_x: typing.SupportsInt | typing.SupportsIndex, grad_weight: typing.SupportsInt | typing.SupportsIndex, grad_bias: typing.SupportsInt | typing.SupportsIndex, workspace: typing.SupportsInt | typing.SupportsIndex, rows: typing.SupportsInt | typing.SupportsIndex, D: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grad_x, grad_weight, grad_bias of layernorm_forward.
    """
def layernorm_forward(x: typing.SupportsInt | typing.SupportsIndex, weight: typing.SupportsInt | typing.SupportsIndex, bias: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, mean: typing.SupportsInt | typing.SupportsIndex, rstd: typing.SupportsInt | typing.SupportsIndex, rows: typing.SupportsInt | typing.SupportsIndex, D: typing.SupportsInt | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y, mean, rstd of layer norm over the rows of x (rows, D).
    """
def layernorm_workspace(rows: typing.SupportsInt | typing.SupportsIndex, D: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Doubles of the workspace layernorm_backward needs for (rows, D).
    """
def loss_partials(n: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Doubles of the partials workspace elementwise_loss needs for n elements.
    """
def lstm_step(gates: typing.SupportsInt | typing.SupportsIndex, rec: typing.SupportsInt | typing.SupportsIndex, c_prev: typing.SupportsInt | typing.SupportsIndex, c_next: typing.SupportsInt | typing.SupportsIndex, h_next: typing.SupportsInt | typing.SupportsIndex, B: typing.SupportsInt | typing.SupportsIndex, H: typing.SupportsInt | typing.SupportsIndex, ldh: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    One LSTM step over (B, H): gates (B, 4H, with both biases) += rec (0: none), activated; c_next, h_next.
    """
def lstm_step_backward(gates: typing.SupportsInt | typing.SupportsIndex, c_prev: typing.SupportsInt | typing.SupportsIndex, c_cur: typing.SupportsInt | typing.SupportsIndex, grad_y: typing.SupportsInt | typing.SupportsIndex, dh: typing.SupportsInt | typing.SupportsIndex, dc: typing.SupportsInt | typing.SupportsIndex, dG: typing.SupportsInt | typing.SupportsIndex, B: typing.SupportsInt | typing.SupportsIndex, H: typing.SupportsInt | typing.SupportsIndex, ldgy: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    dG (B, 4H) and dc (in place) of one LSTM step from dh (+ grad_y rows).
    """
def max_unpool2d_planes(x: typing.SupportsInt | typing.SupportsIndex, indices: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, planes: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, dst_size: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y (planes, dst_size) = 0, then y[indices[i]] = x[i] per plane, in order.
    """
def maxpool2d_backward(dy: typing.SupportsInt | typing.SupportsIndex, indices: typing.SupportsInt | typing.SupportsIndex, dx: typing.SupportsInt | typing.SupportsIndex, geom: adlkernels._adlk.Pool2dGeom, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    dx (N, C, H, W) by a gather over the covering windows (indices must be -1 or in their own window).
    """
def maxpool2d_backward_planes(dy: typing.SupportsInt | typing.SupportsIndex, indices: typing.SupportsInt | typing.SupportsIndex, dx: typing.SupportsInt | typing.SupportsIndex, planes: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, dst_size: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    dx (planes, dst_size) = 0, then dx[indices[i]] += dy[i] per plane, in order.
    """
def maxpool2d_first_outside_window(indices: typing.SupportsInt | typing.SupportsIndex, geom: adlkernels._adlk.Pool2dGeom, stream: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Smallest flat position whose index is neither -1 nor in its own window, or -1 (synchronizes the stream).
    """
def maxpool2d_forward(x: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, indices: typing.SupportsInt | typing.SupportsIndex, geom: adlkernels._adlk.Pool2dGeom, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y, indices (N, C, H_out, W_out) from x (N, C, H, W): max pooling with argmax.
    """
def rmsprop_step(params: list, grads: list, square_avgs: list, momentum_buffers: typing.Any, grad_avgs: typing.Any, sizes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, alpha: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, maximize: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    RMSprop over lists of device arrays, in place.
    """
def runtime_version() -> str:
    """
    The CUDA runtime version (e.g. 12040).
    """
def sgd_step(params: list, grads: list, momentum_buffers: typing.Any, sizes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], step: typing.SupportsInt | typing.SupportsIndex, lr: typing.SupportsFloat | typing.SupportsIndex, momentum: typing.SupportsFloat | typing.SupportsIndex, dampening: typing.SupportsFloat | typing.SupportsIndex, nesterov: bool, weight_decay: typing.SupportsFloat | typing.SupportsIndex, maximize: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    SGD over lists of device arrays, in place (one launch per list chunk).
    """
def softmax_backward(grad_y: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, grad_x: typing.SupportsInt | typing.SupportsIndex, rows: typing.SupportsInt | typing.SupportsIndex, K: typing.SupportsInt | typing.SupportsIndex, log: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grad_x (rows, K) from grad_y and the forward's output y.
    """
def softmax_cross_entropy(logits: typing.SupportsInt | typing.SupportsIndex, targets: typing.SupportsInt | typing.SupportsIndex, grad: typing.SupportsInt | typing.SupportsIndex, row_loss: typing.SupportsInt | typing.SupportsIndex, B: typing.SupportsInt | typing.SupportsIndex, K: typing.SupportsInt | typing.SupportsIndex, ignore_index: typing.SupportsInt | typing.SupportsIndex, grad_scale: typing.SupportsFloat | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    grad (B, K) and row_loss (B doubles) of softmax cross-entropy (targets checked by the caller).
    """
def softmax_forward(x: typing.SupportsInt | typing.SupportsIndex, y: typing.SupportsInt | typing.SupportsIndex, rows: typing.SupportsInt | typing.SupportsIndex, K: typing.SupportsInt | typing.SupportsIndex, log: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    y (rows, K) = softmax or log-softmax of each row of x.
    """
def sum_batches(partials: typing.SupportsInt | typing.SupportsIndex, out: typing.SupportsInt | typing.SupportsIndex, nb: typing.SupportsInt | typing.SupportsIndex, count: typing.SupportsInt | typing.SupportsIndex, accumulate: bool, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    out[j] = (out[j] if accumulate else 0) + partials[0, j] + ... + partials[nb-1, j], added left to right; partials (nb, count).
    """
def sum_doubles(values: typing.SupportsInt | typing.SupportsIndex, n: typing.SupportsInt | typing.SupportsIndex, divisor: typing.SupportsFloat | typing.SupportsIndex, total: typing.SupportsInt | typing.SupportsIndex, stream: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    *total = (the sum of n device doubles in a fixed order) / divisor.
    """
def total_norm(grads: list, sizes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], norm_type: typing.SupportsFloat | typing.SupportsIndex, partials: typing.SupportsInt | typing.SupportsIndex, total: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any, stream: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
    """
    *total (a device double) = the norm_type-norm of all grads together.
    """
def total_norm_partials(sizes: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> int:
    """
    Doubles of the partials workspace total_norm needs.
    """
__ops__: dict = {'device_count': {'args': tuple(), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'CUDA devices visible to this process (0 without a driver).'}, 'runtime_version': {'args': tuple(), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'The CUDA runtime version (e.g. 12040).'}, 'driver_version': {'args': tuple(), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'The CUDA driver version, 0 without a driver.'}, 'architectures': {'args': tuple(), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'The GPU architectures this build has code for.'}, 'im2col': {'args': ('x', 'cols', 'geom', 'n0', 'nb', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'Images [n0, n0+nb) of x (N, C, H, W) -> cols (nb, C*kH*kW, H_out*W_out) (unfold).'}, 'col2im': {'args': ('cols', 'x', 'geom', 'n0', 'nb', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'cols (nb, C*kH*kW, L) -> images [n0, n0+nb) of x (N, C, H, W), overwritten, overlaps summed (fold; bitwise equal to the CPU col2im).'}, 'channel_sums': {'args': ('dy', 'db', 'N', 'C', 'L', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'db[c] = sum over n, l of dy (N, C, L)[n, c, l], in double, deterministic.'}, 'sum_batches': {'args': ('partials', 'out', 'nb', 'count', 'accumulate', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'out[j] = (out[j] if accumulate else 0) + partials[0, j] + ... + partials[nb-1, j], added left to right; partials (nb, count).'}, 'conv2d_chunk_images': {'args': ('geom', 'elem_size', 'budget_bytes'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Images per workspace chunk whose columns plus grad_weight partials fit in budget_bytes, in [1, max(N, 1)].'}, 'conv2d_workspace_elems': {'args': ('geom', 'nb'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Elements of the workspace of nb images: nb*(C*kH*kW*L + C_out*(C/groups)*kH*kW).'}, 'maxpool2d_forward': {'args': ('x', 'y', 'indices', 'geom', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'y, indices (N, C, H_out, W_out) from x (N, C, H, W): max pooling with argmax.'}, 'maxpool2d_first_outside_window': {'args': ('indices', 'geom', 'stream'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Smallest flat position whose index is neither -1 nor in its own window, or -1 (synchronizes the stream).'}, 'first_index_out_of_range': {'args': ('indices', 'count', 'dst_size', 'stream'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Smallest i in [0, count) with indices[i] outside [-1, dst_size), or -1 (synchronizes the stream).'}, 'maxpool2d_backward': {'args': ('dy', 'indices', 'dx', 'geom', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'dx (N, C, H, W) by a gather over the covering windows (indices must be -1 or in their own window).'}, 'maxpool2d_backward_planes': {'args': ('dy', 'indices', 'dx', 'planes', 'count', 'dst_size', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'dx (planes, dst_size) = 0, then dx[indices[i]] += dy[i] per plane, in order.'}, 'max_unpool2d_planes': {'args': ('x', 'indices', 'y', 'planes', 'count', 'dst_size', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'y (planes, dst_size) = 0, then y[indices[i]] = x[i] per plane, in order.'}, 'avgpool2d_forward': {'args': ('x', 'y', 'geom', 'count_include_pad', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'y (N, C, H_out, W_out) from x (N, C, H, W): average pooling (dilation 1).'}, 'avgpool2d_backward': {'args': ('dy', 'dx', 'geom', 'count_include_pad', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'dx (N, C, H, W) from dy (N, C, H_out, W_out): the average-pooling gradient.'}, 'sgd_step': {'args': ('params', 'grads', 'momentum_buffers', 'sizes', 'step', 'lr', 'momentum', 'dampening', 'nesterov', 'weight_decay', 'maximize', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'SGD over lists of device arrays, in place (one launch per list chunk).'}, 'adagrad_step': {'args': ('params', 'grads', 'state_sums', 'sizes', 'step', 'lr', 'lr_decay', 'weight_decay', 'eps', 'maximize', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'Adagrad over lists of device arrays, in place.'}, 'rmsprop_step': {'args': ('params', 'grads', 'square_avgs', 'momentum_buffers', 'grad_avgs', 'sizes', 'step', 'lr', 'alpha', 'eps', 'weight_decay', 'momentum', 'maximize', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'RMSprop over lists of device arrays, in place.'}, 'adam_step': {'args': ('params', 'grads', 'exp_avgs', 'exp_avg_sqs', 'max_exp_avg_sqs', 'sizes', 'step', 'lr', 'beta1', 'beta2', 'eps', 'weight_decay', 'decoupled_weight_decay', 'maximize', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'Adam / AdamW over lists of device arrays, in place.'}, 'total_norm_partials': {'args': ('sizes'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Doubles of the partials workspace total_norm needs.'}, 'total_norm': {'args': ('grads', 'sizes', 'norm_type', 'partials', 'total', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': '*total (a device double) = the norm_type-norm of all grads together.'}, 'clip_scale': {'args': ('grads', 'sizes', 'total', 'max_norm', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'grads *= max_norm / (*total + 1e-6) where that is < 1 (on the device).'}, 'batchnorm_workspace': {'args': ('N', 'C', 'S'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Doubles of the workspace batch norm needs for (N, C, S).'}, 'batchnorm_forward': {'args': ('x', 'weight', 'bias', 'running_mean', 'running_var', 'y', 'save_mean', 'save_invstd', 'workspace', 'N', 'C', 'S', 'training', 'momentum', 'eps', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'y, save_mean, save_invstd of batch norm over x (N, C, S); running stats updated in training.'}, 'batchnorm_backward': {'args': ('grad_y', 'x', 'weight', 'save_mean', 'save_invstd', 'grad_x', 'grad_weight', 'grad_bias', 'workspace', 'N', 'C', 'S', 'training', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'grad_x, grad_weight, grad_bias (0: not written) of batchnorm_forward.'}, 'layernorm_workspace': {'args': ('rows', 'D'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Doubles of the workspace layernorm_backward needs for (rows, D).'}, 'layernorm_forward': {'args': ('x', 'weight', 'bias', 'y', 'mean', 'rstd', 'rows', 'D', 'eps', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'y, mean, rstd of layer norm over the rows of x (rows, D).'}, 'layernorm_backward': {'args': ('grad_y', 'x', 'mean', 'rstd', 'weight', 'grad_x', 'grad_weight', 'grad_bias', 'workspace', 'rows', 'D', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'grad_x, grad_weight, grad_bias of layernorm_forward.'}, 'softmax_forward': {'args': ('x', 'y', 'rows', 'K', 'log', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'y (rows, K) = softmax or log-softmax of each row of x.'}, 'softmax_backward': {'args': ('grad_y', 'y', 'grad_x', 'rows', 'K', 'log', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': "grad_x (rows, K) from grad_y and the forward's output y."}, 'softmax_cross_entropy': {'args': ('logits', 'targets', 'grad', 'row_loss', 'B', 'K', 'ignore_index', 'grad_scale', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'grad (B, K) and row_loss (B doubles) of softmax cross-entropy (targets checked by the caller).'}, 'sum_doubles': {'args': ('values', 'n', 'divisor', 'total', 'stream'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': '*total = (the sum of n device doubles in a fixed order) / divisor.'}, 'loss_partials': {'args': ('n'), 'dtype_arg': None, 'dtypes': tuple(), 'doc': 'Doubles of the partials workspace elementwise_loss needs for n elements.'}, 'elementwise_loss': {'args': ('pred', 'target', 'grad', 'loss_elems', 'partials', 'total', 'n', 'kind', 'reduction', 'delta', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'grad, loss_elems (0: not written) and *total (a device double) of an MSE, L1 or Huber loss.'}, 'activation_forward': {'args': ('x', 'y', 'n', 'act', 'slope', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'y = act(x) over n elements.'}, 'activation_backward': {'args': ('grad_y', 'saved', 'grad_x', 'n', 'act', 'slope', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'grad_x from grad_y and the saved x or y (act.backward_takes_output).'}, 'dropout_forward': {'args': ('x', 'y', 'mask', 'n', 'p', 'seed', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': "y and the bool mask from x: the CPU's Philox stream for the seed."}, 'dropout_backward': {'args': ('grad_y', 'mask', 'grad_x', 'n', 'p', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'grad_x = grad_y * mask / (1 - p) (0 where p = 1).'}, 'embedding_forward': {'args': ('indices', 'weight', 'y', 'n', 'V', 'D', 'int32', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'y (n, D) = the rows of weight (V, D) at indices (n,) (checked by the caller).'}, 'embedding_backward': {'args': ('grad_y', 'indices', 'order', 'offsets', 'grad_weight', 'n', 'V', 'D', 'padding_idx', 'int32', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'grad_weight (V, D) from grad_y (n, D), order a stable argsort of indices, offsets V + 1 int64.'}, 'lstm_step': {'args': ('gates', 'rec', 'c_prev', 'c_next', 'h_next', 'B', 'H', 'ldh', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'One LSTM step over (B, H): gates (B, 4H, with both biases) += rec (0: none), activated; c_next, h_next.'}, 'lstm_step_backward': {'args': ('gates', 'c_prev', 'c_cur', 'grad_y', 'dh', 'dc', 'dG', 'B', 'H', 'ldgy', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'dG (B, 4H) and dc (in place) of one LSTM step from dh (+ grad_y rows).'}, 'gru_step': {'args': ('gi', 'gh', 'h', 'hn', 'h_next', 'B', 'H', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'One GRU step: gi (B, 3H) activated in place from gi and gh; hn, h_next (B, H).'}, 'gru_step_backward': {'args': ('gates', 'hn', 'h', 'grad_h_next', 'dgi', 'dgh', 'grad_h', 'B', 'H', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': "dgi, dgh (B, 3H) and grad_h's direct part (B, H) of one GRU step."}, 'attention_scores': {'args': ('e', 'qp', 'v', 'scores', 'B', 'T', 'A', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'e (T*B, A) = tanh(e + qp[b]) in place; scores (B, T) = e . v.'}, 'attention_softmax_context': {'args': ('weights', 'mask', 'keys', 'context', 'B', 'T', 'Dk', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'weights (B, T): masked softmax of the scores in place; context (B, Dk) = sum_t weights * keys.'}, 'attention_backward_pointwise': {'args': ('grad_context', 'grad_weights', 'keys', 'weights', 'e', 'v', 'dscore', 'grad_keys', 'da', 'B', 'T', 'Dk', 'A', 'dtype', 'stream'), 'dtype_arg': 'dtype', 'dtypes': ('float32', 'float64'), 'doc': 'dscore (B, T), grad_keys = weights * grad_context (T*B, Dk) and da (T*B, A) of additive attention.'}}
