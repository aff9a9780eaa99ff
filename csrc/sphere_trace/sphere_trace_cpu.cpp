// CPU backend of one sphere-tracing step (see sphere_trace.h).
#include <ATen/Parallel.h>
#include <cmath>
#include "sphere_trace/sphere_trace.h"

namespace headrecon {

template <typename T>
void sphere_trace_step_cpu(const int64_t* walkers, const T* sdf, int64_t m, int64_t n_rays, T threshold,
                           T step_scale, T* t, T* dt, T* cap, int32_t* status, T* wmin, T* wmin_t) {
  at::parallel_for(0, m, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sphere_trace_walker(walkers[i], sdf[i], threshold, step_scale, t, dt, cap, status, wmin, wmin_t);
  });
  at::parallel_for(0, n_rays, 8192, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) sphere_trace_ray(r, t, status);
  });
}

template void sphere_trace_step_cpu<float>(const int64_t*, const float*, int64_t, int64_t, float, float, float*,
                                           float*, float*, int32_t*, float*, float*);
template void sphere_trace_step_cpu<double>(const int64_t*, const double*, int64_t, int64_t, double, double, double*,
                                            double*, double*, int32_t*, double*, double*);

}  // namespace headrecon
