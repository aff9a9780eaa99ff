// CUDA backend of one sphere-tracing step (see sphere_trace.h). Pure CUDA: raw pointers and a stream.
#include <cuda_runtime.h>
#include "common/cuda_utils.cuh"
#include "sphere_trace/sphere_trace.h"

namespace headrecon {

template <typename T>
__global__ void sphere_trace_walker_kernel(const int64_t* walkers, const T* sdf, int64_t m, T threshold, T step_scale,
                                           T* t, T* dt, T* cap, int32_t* status, T* wmin, T* wmin_t) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < m; i += int64_t(blockDim.x) * gridDim.x)
    sphere_trace_walker(walkers[i], sdf[i], threshold, step_scale, t, dt, cap, status, wmin, wmin_t);
}

template <typename T>
__global__ void sphere_trace_ray_kernel(int64_t n_rays, const T* t, int32_t* status) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < n_rays; r += int64_t(blockDim.x) * gridDim.x)
    sphere_trace_ray(r, t, status);
}

template <typename T>
void sphere_trace_step_cuda(const int64_t* walkers, const T* sdf, int64_t m, int64_t n_rays, T threshold,
                            T step_scale, T* t, T* dt, T* cap, int32_t* status, T* wmin, T* wmin_t, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (m > 0)
    sphere_trace_walker_kernel<T><<<hr_blocks(m), kThreads, 0, s>>>(walkers, sdf, m, threshold, step_scale, t, dt,
                                                                    cap, status, wmin, wmin_t);
  if (n_rays > 0) sphere_trace_ray_kernel<T><<<hr_blocks(n_rays), kThreads, 0, s>>>(n_rays, t, status);
}

template void sphere_trace_step_cuda<float>(const int64_t*, const float*, int64_t, int64_t, float, float, float*,
                                            float*, float*, int32_t*, float*, float*, void*);
template void sphere_trace_step_cuda<double>(const int64_t*, const double*, int64_t, int64_t, double, double, double*,
                                             double*, double*, int32_t*, double*, double*, void*);

}  // namespace headrecon
