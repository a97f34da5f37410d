"""The demo's LeNet-style CNN, written with the functional API alone.

conv-relu-pool twice, linear-relu-dropout, linear, softmax cross-entropy and Adam on
scikit-learn's 8x8 digits: every forward returns what its backward needs (the caches),
and the backward pass walks the layers in reverse by hand. `python -m adlkernels demo`
trains the same network with ak.layers, early stopping and a learning-rate schedule.

    pip install "adlkernels[demo]"
    python examples/cnn_digits_functional.py
"""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import adlkernels as ak

digits = load_digits()
x = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
y = digits.target.astype(np.int64)
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)

rng = np.random.default_rng(0)
shapes = {  # name: (shape, fan_in)
    "w1": ((32, 1, 3, 3), 9), "b1": ((32,), 9),
    "w2": ((64, 32, 3, 3), 32 * 9), "b2": ((64,), 32 * 9),
    "w3": ((128, 256), 256), "b3": ((128,), 256),
    "w4": ((10, 128), 128), "b4": ((10,), 128),
}
# PyTorch's default initialization: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
params = {k: rng.uniform(-1, 1, shape).astype(np.float32) / np.float32(np.sqrt(fan))
          for k, (shape, fan) in shapes.items()}
names = list(params)
exp_avgs = [np.zeros_like(params[k]) for k in names]
exp_avg_sqs = [np.zeros_like(params[k]) for k in names]
P_DROP = 0.25


def forward(xb, training, seed=0):
    """Logits and the caches of every layer."""
    p = params
    c1 = ak.conv2d_forward(xb, p["w1"], p["b1"], padding=1)  # (B, 32, 8, 8)
    r1 = ak.relu_forward(c1)
    m1, i1 = ak.maxpool2d_forward(r1, 2)  # (B, 32, 4, 4) and argmax indices
    c2 = ak.conv2d_forward(m1, p["w2"], p["b2"], padding=1)  # (B, 64, 4, 4)
    r2 = ak.relu_forward(c2)
    m2, i2 = ak.maxpool2d_forward(r2, 2)  # (B, 64, 2, 2)
    f = m2.reshape(len(xb), -1)  # (B, 256)
    h = ak.linear_forward(f, p["w3"], p["b3"])
    a = ak.relu_forward(h)
    d, mask = ak.dropout_forward(a, P_DROP, seed=seed, training=training)
    logits = ak.linear_forward(d, p["w4"], p["b4"])
    return logits, (xb, c1, r1, i1, m1, c2, r2, i2, f, h, d, mask)


def backward(grad_logits, cache):
    """Gradients of every parameter, in the order of `names`."""
    xb, c1, r1, i1, m1, c2, r2, i2, f, h, d, mask = cache
    p = params
    gd, gw4, gb4 = ak.linear_backward(grad_logits, d, p["w4"])
    ga = ak.dropout_backward(gd, mask, P_DROP)
    gh = ak.relu_backward(ga, h)
    gf, gw3, gb3 = ak.linear_backward(gh, f, p["w3"])
    gm2 = gf.reshape(len(xb), 64, 2, 2)  # undo the flatten
    gr2 = ak.maxpool2d_backward(gm2, i2, r2.shape)
    gc2 = ak.relu_backward(gr2, c2)
    gm1, gw2, gb2 = ak.conv2d_backward(gc2, m1, p["w2"], padding=1)
    gr1 = ak.maxpool2d_backward(gm1, i1, r1.shape)
    gc1 = ak.relu_backward(gr1, c1)
    _, gw1, gb1 = ak.conv2d_backward(gc1, xb, p["w1"], padding=1, output_mask=(False, True, True))
    return [gw1, gb1, gw2, gb2, gw3, gb3, gw4, gb4]


step, lr = 0, 3e-3
for epoch in range(1, 16):
    order = rng.permutation(len(x_train))
    total = 0.0
    for i in range(0, len(order), 32):
        idx = order[i:i + 32]
        step += 1
        logits, cache = forward(x_train[idx], training=True, seed=step)
        loss, grad_logits = ak.softmax_cross_entropy(logits, y_train[idx])
        grads = backward(grad_logits, cache)
        ak.adam_step([params[k] for k in names], grads, exp_avgs, exp_avg_sqs, step=step, lr=lr)
        total += float(loss) * len(idx)
    lr *= 0.9  # exponential learning-rate decay, once per epoch
    if epoch % 5 == 0:
        print(f"epoch {epoch:2d}  train loss {total / len(x_train):.4f}")

logits, _ = forward(x_test, training=False)
print(f"test accuracy {np.mean(np.argmax(logits, axis=1) == y_test):.2%}")
