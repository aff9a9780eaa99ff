// Softplus activation of the SDF / colour networks (IDR's Softplus(beta=100)), float32, with the same rule as
// torch.nn.functional.softplus: y = x where beta * x > threshold, else log(1 + exp(beta * x)) / beta.
//
// Shapes: x [N] float32 (any shape, contiguous, read as flat), y [N] float32; CPU or CUDA.
//
// torch's CPU kernel computes exp and log1p with SLEEF's 1-ULP vector functions, which cost as much as the layer's
// matrix product on a 128-wide network. Here, with z = beta * x:
//   softplus(z) = max(z, 0) + log1p(u),  u = exp(-|z|) in (0, 1]
//   exp: -|z| = n ln2 + r (n rounded to nearest, ln2 split in two for Cody-Waite reduction), exp(r) =
//        1 + r + r^2 P(r) with P of degree 4 fitted on |r| <= ln2 / 2 (relative error 1.0e-8 in exact
//        arithmetic), scaled by 2^n built in the exponent bits (u = 0 below -87);
//   log1p(u) = 2 atanh(s), s = u / (2 + u) in [0, 1/3]: atanh(s) = s (1 + t Q(t)), t = s^2, Q of degree 3 fitted
//        on t <= 1/9 (relative error 1.5e-8). The fits: least squares at 2000 Chebyshev nodes, rounded to float.
// Plain float operations in a fixed order (no contraction into fused multiply-adds: the extension compiles in ISO
// C++ mode, -ffp-contract=off), so every vector width and the scalar loop round alike; the pure-PyTorch
// reference (headrecon.ops.reference.softplus) performs the same operations and matches bit for bit. Accuracy
// against float64 on the same float32 beta * x: within 3 float32 epsilons, relative (torch's: 1.5;
// tests/test_softplus.py). The gradient is torch's softplus_backward (a function of x), so first and second
// derivatives are torch's.
#pragma once
#include <cstring>
#include "common/hd.h"

namespace headrecon {

HR_HD float hr_int_as_float(int32_t i) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(i);
#else
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
#endif
}

HR_HD float softplus_one(float x, float beta, float inv_beta, float threshold) {
  const float z = beta * x;
  const float m = -fabsf(z);
  const float a = m < -87.0f ? -87.0f : m;
  const float n = (a * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(a / ln2), |.| < 2^22
  float r = a - n * 0.693145751953125f;                // ln2, high part (exact product for |n| <= 126)
  r = r - n * 1.42860682030941723212e-6f;              // ln2, low part
  const float r2 = r * r;
  float p = 1.393364393e-3f;                           // exp(r) = 1 + r + r^2 P(r), P fitted on |r| <= ln2 / 2
  p = p * r + 8.363175206e-3f;
  p = p * r + 4.166646674e-2f;
  p = p * r + 1.666657627e-1f;
  p = p * r + 0.5f;
  p = (r2 * p + r) + 1.0f;
  float u = p * hr_int_as_float((static_cast<int32_t>(n) + 127) << 23);
  u = m < -87.0f ? 0.0f : u;
  const float s = u / (2.0f + u);
  const float t = s * s;
  float q = 1.343378723e-1f;                           // atanh(s) = s (1 + t Q(t)), Q fitted on t <= 1/9
  q = q * t + 1.411697567e-1f;
  q = q * t + 2.000383586e-1f;
  q = q * t + 3.333331943e-1f;
  const float s2 = s + s;
  const float y = ((z > 0.0f ? z : 0.0f) + (s2 + s2 * (t * q))) * inv_beta;
  return z > threshold ? x : y;
}

// CPU backend (softplus_cpu.cpp): y[i] = softplus_one(x[i]), vectorised for AVX-512 / AVX2 where the CPU has it.
void softplus_cpu(const float* x, float* y, int64_t n, float beta, float threshold);
// CUDA backend (softplus.cu): the same, one thread per element (grid-stride).
void softplus_cuda(const float* x, float* y, int64_t n, float beta, float threshold, void* stream);

}  // namespace headrecon
