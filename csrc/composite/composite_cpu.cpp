// CPU backend of the volume-rendering compositing (see composite.h): rays in parallel.
#include <ATen/Parallel.h>
#include "composite/composite.h"

namespace headrecon {

template <typename T>
void composite_fwd_cpu(const int64_t* packed, const T* sigmas, const T* deltas, const T* values, int64_t R,
                       int64_t C, T* out, T* opacity, T* weights) {
  at::parallel_for(0, R, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) composite_fwd_one(packed, sigmas, deltas, values, r, C, out, opacity, weights);
  });
}

template <typename T>
void composite_bwd_cpu(const int64_t* packed, const T* sigmas, const T* deltas, const T* values, const T* g_out,
                       const T* g_opacity, int64_t R, int64_t C, T* grad_sigmas, T* grad_values) {
  at::parallel_for(0, R, 256, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r)
      composite_bwd_one(packed, sigmas, deltas, values, g_out, g_opacity, r, C, grad_sigmas, grad_values);
  });
}

#define HR_INSTANTIATE(T)                                                                                          \
  template void composite_fwd_cpu<T>(const int64_t*, const T*, const T*, const T*, int64_t, int64_t, T*, T*, T*);  \
  template void composite_bwd_cpu<T>(const int64_t*, const T*, const T*, const T*, const T*, const T*, int64_t,    \
                                     int64_t, T*, T*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headrecon
