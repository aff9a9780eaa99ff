// CUDA backend of the volume-rendering compositing (see composite.h): one thread per ray. Pure CUDA.
#include <cuda_runtime.h>
#include "common/cuda_utils.cuh"
#include "composite/composite.h"

namespace headrecon {

template <typename T>
__global__ void composite_fwd_kernel(const int64_t* packed, const T* sigmas, const T* deltas, const T* values,
                                     int64_t R, int64_t C, T* out, T* opacity, T* weights) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < R; r += int64_t(blockDim.x) * gridDim.x)
    composite_fwd_one(packed, sigmas, deltas, values, r, C, out, opacity, weights);
}

template <typename T>
__global__ void composite_bwd_kernel(const int64_t* packed, const T* sigmas, const T* deltas, const T* values,
                                     const T* g_out, const T* g_opacity, int64_t R, int64_t C, T* grad_sigmas,
                                     T* grad_values) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < R; r += int64_t(blockDim.x) * gridDim.x)
    composite_bwd_one(packed, sigmas, deltas, values, g_out, g_opacity, r, C, grad_sigmas, grad_values);
}

template <typename T>
void composite_fwd_cuda(const int64_t* packed, const T* sigmas, const T* deltas, const T* values, int64_t R,
                        int64_t C, T* out, T* opacity, T* weights, void* stream) {
  if (R == 0) return;
  composite_fwd_kernel<T><<<hr_blocks(R), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      packed, sigmas, deltas, values, R, C, out, opacity, weights);
}

template <typename T>
void composite_bwd_cuda(const int64_t* packed, const T* sigmas, const T* deltas, const T* values, const T* g_out,
                        const T* g_opacity, int64_t R, int64_t C, T* grad_sigmas, T* grad_values, void* stream) {
  if (R == 0) return;
  composite_bwd_kernel<T><<<hr_blocks(R), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      packed, sigmas, deltas, values, g_out, g_opacity, R, C, grad_sigmas, grad_values);
}

#define HR_INSTANTIATE(T)                                                                                          \
  template void composite_fwd_cuda<T>(const int64_t*, const T*, const T*, const T*, int64_t, int64_t, T*, T*, T*,  \
                                      void*);                                                                      \
  template void composite_bwd_cuda<T>(const int64_t*, const T*, const T*, const T*, const T*, const T*, int64_t,   \
                                      int64_t, T*, T*, void*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headrecon
