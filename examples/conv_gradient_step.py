"""One convolution layer trained by hand: forward, loss, backward, SGD update.

Fits a 3x3 convolution to reproduce a fixed "teacher" convolution on random images,
using only adlkernels' functional API (conv2d_forward / conv2d_backward) and NumPy.

    python examples/conv_gradient_step.py
"""

import numpy as np

import adlkernels as ak

rng = np.random.default_rng(0)
x = rng.standard_normal((32, 3, 16, 16), dtype=np.float32)
teacher_w = rng.standard_normal((8, 3, 3, 3), dtype=np.float32) * 0.3
teacher_b = rng.standard_normal(8, dtype=np.float32)
target = ak.conv2d_forward(x, teacher_w, teacher_b, padding=1)

w = np.zeros_like(teacher_w)
b = np.zeros_like(teacher_b)
lr = 0.5
for step in range(201):
    y = ak.conv2d_forward(x, w, b, padding=1)
    diff = y - target
    loss = float(np.mean(diff**2))
    grad_y = (2.0 / diff.size) * diff  # d loss / d y
    _, grad_w, grad_b = ak.conv2d_backward(
        grad_y, x, w, padding=1, output_mask=(False, True, True)  # grad_x not needed
    )
    w -= lr * grad_w
    b -= lr * grad_b
    if step % 50 == 0:
        print(f"step {step:3d}  loss {loss:.3e}")

print(f"max |w - teacher_w| = {np.abs(w - teacher_w).max():.2e}")
