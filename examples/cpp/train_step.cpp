// The pieces of a training step through the adlkernels C++ API: a conv2d forward, one
// LSTM step and one Adam update, each checked against a plain loop in double.
//
// Arrays are raw pointers to C-contiguous float data; a geometry struct describes the
// shapes (the kernels check it and throw std::invalid_argument on bad values).
// Exit status 0 when every result matches its reference, 1 otherwise.
#include <adlk/conv.h>
#include <adlk/optim.h>
#include <adlk/parallel.h>
#include <adlk/rnn.h>

#include <cmath>
#include <cstdio>
#include <exception>
#include <random>
#include <vector>

using adlk::index_t;

namespace {

std::vector<float> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& e : v) e = dist(gen);
  return v;
}

// Prints the largest difference and whether it is within tol.
bool report(const char* what, const std::vector<float>& got, const std::vector<double>& want,
            double tol) {
  double err = 0;
  for (std::size_t i = 0; i < got.size(); ++i) err = std::fmax(err, std::fabs(got[i] - want[i]));
  const bool ok = got.size() == want.size() && err <= tol;
  std::printf("%-44s max |error| %.2e (tol %.0e)  %s\n", what, err, tol, ok ? "ok" : "MISMATCH");
  return ok;
}

double sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

// ---- conv2d: x (N, C, H, W) * weight (C_out, C, 3, 3) + bias, padding 1 ----------------
bool conv2d_example() {
  adlk::Conv2dGeom g;
  g.N = 2, g.C = 3, g.H = 8, g.W = 8, g.C_out = 4;
  g.kH = g.kW = 3;
  g.pH = g.pW = 1;
  g.finalize();  // computes H_out, W_out (8 x 8 here)

  const auto x = random_vector(g.N * g.C * g.H * g.W, 1);
  const auto w = random_vector(g.C_out * g.C * g.kH * g.kW, 2);
  const auto b = random_vector(g.C_out, 3);
  std::vector<float> y(g.N * g.C_out * g.H_out * g.W_out);
  adlk::conv2d_forward(x.data(), w.data(), b.data(), g, y.data());

  std::vector<double> ref(y.size());
  for (index_t n = 0; n < g.N; ++n)
    for (index_t co = 0; co < g.C_out; ++co)
      for (index_t oh = 0; oh < g.H_out; ++oh)
        for (index_t ow = 0; ow < g.W_out; ++ow) {
          double s = b[co];
          for (index_t c = 0; c < g.C; ++c)
            for (index_t kh = 0; kh < g.kH; ++kh)
              for (index_t kw = 0; kw < g.kW; ++kw) {
                const index_t ih = oh - g.pH + kh, iw = ow - g.pW + kw;
                if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                s += double(x[((n * g.C + c) * g.H + ih) * g.W + iw]) *
                     w[((co * g.C + c) * g.kH + kh) * g.kW + kw];
              }
          ref[((n * g.C_out + co) * g.H_out + oh) * g.W_out + ow] = s;
        }
  return report("conv2d_forward 2x3x8x8 -> 2x4x8x8", y, ref, 1e-4);
}

// ---- one LSTM step: lstm_forward with T = 1 (PyTorch layout, gates i, f, g, o) ---------
bool lstm_example() {
  adlk::LstmGeom g;
  g.T = 1, g.B = 2, g.I = 5, g.H = 4;
  g.ldx = g.I, g.ldy = g.H;  // rows of x and y are contiguous
  const index_t B = g.B, I = g.I, H = g.H;

  const auto x = random_vector(B * I, 4), h0 = random_vector(B * H, 5),
             c0 = random_vector(B * H, 6);
  const auto w_ih = random_vector(4 * H * I, 7), w_hh = random_vector(4 * H * H, 8),
             b_ih = random_vector(4 * H, 9), b_hh = random_vector(4 * H, 10);
  std::vector<float> y(B * H), h1(B * H), c1(B * H);
  std::vector<float> gates(B * 4 * H), cells(B * H);  // saved for lstm_backward
  adlk::lstm_forward(g, x.data(), h0.data(), c0.data(), w_ih.data(), w_hh.data(), b_ih.data(),
                     b_hh.data(), /*reverse=*/false, y.data(), h1.data(), c1.data(),
                     gates.data(), cells.data());

  std::vector<double> h_ref(B * H), c_ref(B * H);
  for (index_t b = 0; b < B; ++b)
    for (index_t j = 0; j < H; ++j) {
      double pre[4];  // pre-activations of gates i, f, g, o for hidden unit j
      for (int k = 0; k < 4; ++k) {
        const index_t row = k * H + j;
        double s = double(b_ih[row]) + b_hh[row];
        for (index_t i = 0; i < I; ++i) s += double(x[b * I + i]) * w_ih[row * I + i];
        for (index_t i = 0; i < H; ++i) s += double(h0[b * H + i]) * w_hh[row * H + i];
        pre[k] = s;
      }
      const double c = sigmoid(pre[1]) * c0[b * H + j] + sigmoid(pre[0]) * std::tanh(pre[2]);
      c_ref[b * H + j] = c;
      h_ref[b * H + j] = sigmoid(pre[3]) * std::tanh(c);
    }
  const bool ok_h = report("lstm_forward T=1, B=2, I=5, H=4: h_1", h1, h_ref, 1e-5);
  const bool ok_c = report("lstm_forward T=1, B=2, I=5, H=4: c_1", c1, c_ref, 1e-5);
  return ok_h && ok_c;
}

// ---- one Adam step on two tensors (torch.optim.Adam's update) --------------------------
bool adam_example() {
  std::vector<float> w = random_vector(12, 11), bias = random_vector(3, 12);
  const auto gw = random_vector(w.size(), 13), gb = random_vector(bias.size(), 14);
  std::vector<float> m_w(w.size()), v_w(w.size()), m_b(bias.size()), v_b(bias.size());  // zero
  const std::vector<float> w0 = w, b0 = bias;

  // The optimizer updates a list of tensors in one call: sizes and pointers per tensor.
  const index_t sizes[] = {index_t(w.size()), index_t(bias.size())};
  float* params[] = {w.data(), bias.data()};
  const float* grads[] = {gw.data(), gb.data()};
  float* exp_avgs[] = {m_w.data(), m_b.data()};
  float* exp_avg_sqs[] = {v_w.data(), v_b.data()};
  adlk::AdamHyper h;
  h.step = 1, h.lr = 1e-2;  // beta1 0.9, beta2 0.999, eps 1e-8 by default
  adlk::adam_step<float>(2, sizes, params, grads, exp_avgs, exp_avg_sqs,
                         /*max_exp_avg_sqs=*/nullptr, h);

  auto reference = [&](const std::vector<float>& p, const std::vector<float>& grad) {
    std::vector<double> out(p.size());
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double m = (1 - h.beta1) * grad[i], v = (1 - h.beta2) * double(grad[i]) * grad[i];
      const double m_hat = m / (1 - std::pow(h.beta1, h.step));
      const double v_hat = v / (1 - std::pow(h.beta2, h.step));
      out[i] = p[i] - h.lr * m_hat / (std::sqrt(v_hat) + h.eps);
    }
    return out;
  };
  const bool ok_w = report("adam_step (lr 1e-2, step 1): weight (12)", w, reference(w0, gw), 1e-6);
  const bool ok_b = report("adam_step (lr 1e-2, step 1): bias (3)", bias, reference(b0, gb), 1e-6);
  return ok_w && ok_b;
}

}  // namespace

int main() {
  try {
    adlk::set_num_threads(2);  // one number for every kernel: OpenMP and BLAS alike
    std::printf("adlkernels C++ core (%s, OpenMP %s, %s), %d threads\n", adlk::compiler_version(),
                adlk::openmp_version(), adlk::blas_version(), adlk::get_num_threads());
    bool ok = conv2d_example();
    ok = lstm_example() && ok;
    ok = adam_example() && ok;
    std::printf(ok ? "all results match their references\n" : "FAILED\n");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {  // bad geometry: std::invalid_argument
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
