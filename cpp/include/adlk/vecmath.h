// Branch-free exp, sigmoid and tanh for pointwise kernels, shared by the CPU kernels
// (cpp/src/nn.cpp, rnn.cpp) and the CUDA ones (cuda/nn.cu): built from +, -, *, / and
// bit operations only. The CUDA build (--fmad=false) and the CPU's baseline x86-64 code
// round every step alike and give the same bits; the CPU's AVX2 code may contract the
// polynomials' multiply-adds into FMAs (nn.cpp and rnn.cpp keep GCC's default: forbidding
// it costs 40-50% on sigmoid/tanh and 7% on an LSTM sequence), which moves results by a
// few ulp (more where 1 - y^2 cancels).
//
// Written so that GCC vectorizes them inside `#pragma omp simd` loops (glibc's scalar
// expf/tanhf calls would not vectorize without -ffast-math): selects instead of branches,
// bit casts through memcpy, and the exponent built with integer arithmetic.
//
// Accuracy (tests/test_rnn_pointwise.py sweeps both through the cell kernels):
// exp_clamped is within ~2 ulp of exp on its clamped range; sigmoid and tanh are within a
// few ulp everywhere (relative error, also near 0 where tanh uses a polynomial).
// NaN in gives NaN out; +-inf give the limits 0/1 and +-1.
#pragma once

#include <cstdint>
#include <cstring>

#include "adlk/common.h"


namespace adlk::vm {

template <typename T>
struct FloatTraits;

template <>
struct FloatTraits<float> {
  using Bits = std::uint32_t;
  static constexpr int kMantissa = 23;
  static constexpr Bits kBias = 127, kInfBits = 0x7f800000u;
  // exp(x) for x in [kLow, kHigh] keeps 2^n a normal number and p * 2^n finite.
  static constexpr float kLow = -87.0f, kHigh = 88.0f;
  // ln 2 split so that n * kLn2Hi is exact for the n that occur.
  static constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
};

template <>
struct FloatTraits<double> {
  using Bits = std::uint64_t;
  static constexpr int kMantissa = 52;
  static constexpr Bits kBias = 1023, kInfBits = 0x7ff0000000000000ull;
  static constexpr double kLow = -708.0, kHigh = 708.0;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
};

// e^r for |r| <= ln(2)/2: Taylor series, truncated where the next term is below half an
// ulp (degree 7 for float, 13 for double).
ADLK_HD ADLK_ALWAYS_INLINE float exp_reduced(float r) {
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

ADLK_HD ADLK_ALWAYS_INLINE double exp_reduced(double r) {
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  return p * r + 1.0;
}

// exp(x) for sigmoid and tanh: x = n ln2 + r, e^x = 2^n e^r. Above kHigh the result is
// +inf; below kLow it is e^kLow, a normal number (the true value would be subnormal),
// which leaves sigmoid and tanh exact to within the smallest normal number.
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE T exp_clamped(T x) {
  using Tr = FloatTraits<T>;
  using Bits = typename Tr::Bits;
  const bool overflow = x > Tr::kHigh;
  x = x < Tr::kLow ? Tr::kLow : x;  // NaN passes both selects
  x = x > Tr::kHigh ? Tr::kHigh : x;
  // Adding 1.5 * 2^mantissa rounds x/ln2 to an integer n held in the low mantissa bits.
  const T shifter = T(1.5) * T(Bits(1) << Tr::kMantissa);
  const T t = x * T(1.44269504088896340736) + shifter;
  const T n = t - shifter;
  T r = x - n * Tr::kLn2Hi;
  r = r - n * Tr::kLn2Lo;
  Bits t_bits, shifter_bits;
  std::memcpy(&t_bits, &t, sizeof(T));
  std::memcpy(&shifter_bits, &shifter, sizeof(T));
  // (n + bias) << mantissa is 2^n; unsigned arithmetic, so garbage bits from NaN are defined.
  const Bits scale_bits = (t_bits - shifter_bits + Tr::kBias) << Tr::kMantissa;
  T scale;
  std::memcpy(&scale, &scale_bits, sizeof(T));
  const T result = exp_reduced(r) * scale;
  const Bits inf_bits = Tr::kInfBits;  // +inf from its bits: no host-only builtin
  T inf;
  std::memcpy(&inf, &inf_bits, sizeof(T));
  return overflow ? inf : result;
}

// exp(x) for softmax: like exp_clamped, but 0 below kLow (the true value there is at most
// a subnormal number), so that far-off logits get exactly zero probability.
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE T exp_flush(T x) {
  const T e = exp_clamped(x);
  return x < FloatTraits<T>::kLow ? T(0) : e;
}

template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE T sigmoid(T x) {
  return T(1) / (T(1) + exp_clamped(-x));
}

// tanh(x) = x + x z P(z), z = x^2, for |x| < 0.625: minimax-style fits of
// (tanh(x)/x - 1)/z in relative error (computed with mpmath); max error 4e-9 (float,
// degree 4) and 1e-17 (double, degree 10).
ADLK_HD ADLK_ALWAYS_INLINE float tanh_small(float x) {
  const float z = x * x;
  float p = -0.0057170282895429171826f;
  p = p * z + 0.020650570903000155425f;
  p = p * z - 0.05374349249535742483f;
  p = p * z + 0.13331491210540072869f;
  p = p * z - 0.33333283921903198128f;
  return x + x * z * p;
}

ADLK_HD ADLK_ALWAYS_INLINE double tanh_small(double x) {
  const double z = x * x;
  double p = -0.000016107516871580199583;
  p = p * z + 0.000077219114263427067388;
  p = p * z - 0.00022863317826230031574;
  p = p * z + 0.00058635244953550970324;
  p = p * z - 0.0014549704642516311331;
  p = p * z + 0.0035919915681317542618;
  p = p * z - 0.0088632213189069101549;
  p = p * z + 0.021869487601934351663;
  p = p * z - 0.053968253932480773371;
  p = p * z + 0.13333333333264911573;
  p = p * z - 0.33333333333332877976;
  return x + x * z * p;
}

// Both branches are computed and one is selected, so the loop stays vectorized.
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE T tanh(T x) {
  const T ax = x < T(0) ? -x : x;
  const T small = tanh_small(x);
  const T large = T(1) - T(2) / (exp_clamped(T(2) * ax) + T(1));
  const T signed_large = x < T(0) ? -large : large;
  return ax < T(0.625) ? small : signed_large;
}

}  // namespace adlk::vm
