// Volume-rendering compositing along rays with a variable number of samples per ray (packed samples), forward
// and backward: the alpha compositing of VolSDF / NeRF.
//
// Shapes: packed [R,2] int64 (first sample, sample count of each ray; a ray's samples are consecutive and in
// front-to-back order; count 0 = an empty ray); sigmas [S], deltas [S] (densities and segment lengths, the
// optical thickness of sample i is tau_i = sigmas_i * deltas_i); values [S,C] (what is composited: colours,
// normals, depths, ... stacked by the caller).
//
//   T_i = exp(-sum_{j<i} tau_j)   (transmittance before sample i, within its ray)
//   alpha_i = 1 - exp(-tau_i)      w_i = T_i alpha_i
//   composite_fwd:  out[r] = sum_i w_i values_i [R,C], opacity[r] = sum_i w_i [R], weights [S]
//   composite_bwd:  given g_out [R,C] and g_opacity [R]:
//     grad_values_i = w_i g_out[r]
//     with u_i = g_out[r] . values_i + g_opacity[r] (what w_i contributes to the loss per unit weight):
//     dL/dtau_k = T_{k+1} u_k - sum_{i>k} w_i u_i, so grad_sigmas_k = deltas_k dL/dtau_k (and the same times
//     sigmas_k for deltas, not returned: sample positions are not learned here).
// One thread per ray: a ray's samples are visited in order (the backward in two passes: the total sum_i w_i u_i,
// then the running prefix), so CPU and CUDA give the same results.
#pragma once
#include "common/hd.h"

namespace headrecon {

HR_HD float hr_exp(float x) { return expf(x); }
HR_HD double hr_exp(double x) { return exp(x); }

// Weight w_i of sample i given the optical thickness before it (tau_sum, advanced past sample i).
template <typename T>
HR_HD T composite_weight(const T* sigmas, const T* deltas, int64_t i, T& tau_sum) {
  const T tau = sigmas[i] * deltas[i];
  const T w = hr_exp(-tau_sum) * (T(1) - hr_exp(-tau));
  tau_sum += tau;
  return w;
}

// u_i = g . values_i + g_opacity: what sample i's weight contributes to the loss per unit weight.
template <typename T>
HR_HD T composite_u(const T* values, const T* g, T go, int64_t i, int64_t C) {
  T u = go;
  for (int64_t c = 0; c < C; ++c) u += g[c] * values[i * C + c];
  return u;
}

template <typename T>
HR_HD void composite_fwd_one(const int64_t* packed, const T* sigmas, const T* deltas, const T* values, int64_t r,
                             int64_t C, T* out, T* opacity, T* weights) {
  const int64_t s0 = packed[2 * r], n = packed[2 * r + 1];
  T* o = out + r * C;
  for (int64_t c = 0; c < C; ++c) o[c] = T(0);
  T acc = T(0), tau_sum = T(0);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = s0 + k;
    const T w = composite_weight(sigmas, deltas, i, tau_sum);
    weights[i] = w;
    acc += w;
    for (int64_t c = 0; c < C; ++c) o[c] += w * values[i * C + c];
  }
  opacity[r] = acc;
}

template <typename T>
HR_HD void composite_bwd_one(const int64_t* packed, const T* sigmas, const T* deltas, const T* values,
                             const T* g_out, const T* g_opacity, int64_t r, int64_t C, T* grad_sigmas,
                             T* grad_values) {
  const int64_t s0 = packed[2 * r], n = packed[2 * r + 1];
  const T* g = g_out + r * C;
  const T go = g_opacity[r];
  // pass 1: total = sum_i w_i u_i
  T total = T(0), tau_sum = T(0);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = s0 + k;
    const T w = composite_weight(sigmas, deltas, i, tau_sum);
    total += w * composite_u(values, g, go, i, C);
  }
  // pass 2: running prefix; sum_{i>k} w_i u_i = total - prefix_k
  T prefix = T(0);
  tau_sum = T(0);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t i = s0 + k;
    const T w = composite_weight(sigmas, deltas, i, tau_sum);
    const T u = composite_u(values, g, go, i, C);
    for (int64_t c = 0; c < C; ++c) grad_values[i * C + c] = w * g[c];
    prefix += w * u;
    const T T_next = hr_exp(-tau_sum);
    grad_sigmas[i] = deltas[i] * (T_next * u - (total - prefix));
  }
}

template <typename T>
void composite_fwd_cpu(const int64_t* packed, const T* sigmas, const T* deltas, const T* values, int64_t R,
                       int64_t C, T* out, T* opacity, T* weights);
template <typename T>
void composite_bwd_cpu(const int64_t* packed, const T* sigmas, const T* deltas, const T* values, const T* g_out,
                       const T* g_opacity, int64_t R, int64_t C, T* grad_sigmas, T* grad_values);
template <typename T>
void composite_fwd_cuda(const int64_t* packed, const T* sigmas, const T* deltas, const T* values, int64_t R,
                        int64_t C, T* out, T* opacity, T* weights, void* stream);
template <typename T>
void composite_bwd_cuda(const int64_t* packed, const T* sigmas, const T* deltas, const T* values, const T* g_out,
                        const T* g_opacity, int64_t R, int64_t C, T* grad_sigmas, T* grad_values, void* stream);

}  // namespace headrecon
