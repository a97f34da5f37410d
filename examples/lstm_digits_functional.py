"""An LSTM reads each 8x8 digit row by row, written with the functional API alone.

Each image is a sequence of 8 steps of 8 pixels; a linear layer classifies the LSTM's
final hidden state h_n. lstm_forward returns a cache, and lstm_backward backpropagates
through time from the gradient of h_n alone (grad_y and grad_c_n are None).
`python -m adlkernels demo --model lstm` trains the same network with ak.layers.

    pip install "adlkernels[demo]"
    python examples/lstm_digits_functional.py
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import adlkernels as ak

digits = load_digits()
x = (digits.images / 16.0).astype(np.float32)  # (1797, 8, 8): 8 rows of 8 pixels
y = digits.target.astype(np.int64)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)

H = 64
rng = np.random.default_rng(0)
shapes = {  # PyTorch's layouts (gates i, f, g, o) and initialization U(-1/sqrt(H), 1/sqrt(H))
    "w_ih": (4 * H, 8), "w_hh": (4 * H, H), "b_ih": (4 * H,), "b_hh": (4 * H,),
    "w_out": (10, H), "b_out": (10,),
}
params = {k: rng.uniform(-1, 1, s).astype(np.float32) / np.float32(np.sqrt(H)) for k, s in shapes.items()}
names = list(params)
exp_avgs = [np.zeros_like(params[k]) for k in names]
exp_avg_sqs = [np.zeros_like(params[k]) for k in names]


def forward(xb):
    """Logits and the caches; xb (B, 8, 8) becomes the sequence (T=8, B, 8)."""
    p = params
    seq = np.ascontiguousarray(xb.transpose(1, 0, 2))
    zeros = np.zeros((len(xb), H), np.float32)
    _, h_n, _, lstm_cache = ak.lstm_forward(seq, zeros, zeros, p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    logits = ak.linear_forward(h_n, p["w_out"], p["b_out"])
    return logits, (h_n, lstm_cache)


def backward(grad_logits, cache):
    """Gradients of every parameter, in the order of `names`."""
    h_n, lstm_cache = cache
    grad_h_n, gw_out, gb_out = ak.linear_backward(grad_logits, h_n, params["w_out"])
    g = ak.lstm_backward(None, grad_h_n, None, lstm_cache)  # backpropagation through time
    return [g.w_ih, g.w_hh, g.b_ih, g.b_hh, gw_out, gb_out]


step, lr = 0, 1e-2
for epoch in range(1, 21):
    order = rng.permutation(len(x_train))
    total = 0.0
    for i in range(0, len(order), 32):
        idx = order[i:i + 32]
        step += 1
        logits, cache = forward(x_train[idx])
        loss, grad_logits = ak.softmax_cross_entropy(logits, y_train[idx])
        grads = backward(grad_logits, cache)
        ak.adam_step([params[k] for k in names], grads, exp_avgs, exp_avg_sqs, step=step, lr=lr)
        total += float(loss) * len(idx)
    lr *= 0.9  # exponential learning-rate decay, once per epoch
    if epoch % 5 == 0:
        print(f"epoch {epoch:2d}  train loss {total / len(x_train):.4f}")

logits, _ = forward(x_test)
print(f"test accuracy {np.mean(np.argmax(logits, axis=1) == y_test):.2%}")
