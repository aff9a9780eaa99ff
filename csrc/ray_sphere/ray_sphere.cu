// CUDA backend of ray_sphere (see ray_sphere.h). Pure CUDA: raw pointers and a stream, no torch headers.
#include <cuda_runtime.h>
#include "common/cuda_utils.cuh"
#include "ray_sphere/ray_sphere.h"

namespace headrecon {

template <typename T>
__global__ void ray_sphere_kernel(const T* origins, const T* dirs, T radius, int64_t n, T* near, T* far, bool* mask) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    ray_sphere_one(origins + 3 * i, dirs + 3 * i, radius, near + i, far + i, mask + i);
}

template <typename T>
void ray_sphere_cuda(const T* origins, const T* dirs, T radius, int64_t n, T* near, T* far, bool* mask, void* stream) {
  if (n == 0) return;
  ray_sphere_kernel<T><<<hr_blocks(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(origins, dirs, radius, n,
                                                                                          near, far, mask);
}

template void ray_sphere_cuda<float>(const float*, const float*, float, int64_t, float*, float*, bool*, void*);
template void ray_sphere_cuda<double>(const double*, const double*, double, int64_t, double*, double*, bool*, void*);

}  // namespace headrecon
