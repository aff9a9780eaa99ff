// CUDA backend of the dynamic SDF voxel cache (see sdf_cache.h). Pure CUDA: raw pointers and a stream.
#include <cuda_runtime.h>
#include "common/cuda_utils.cuh"
#include "sdf_cache/sdf_cache.h"

namespace headrecon {

template <typename T>
__global__ void cache_query_kernel(const T* grid, const T* points, int64_t n, T radius, int64_t res, T eps, T diag,
                                   double p_force, uint64_t seed, uint64_t counter, T* values, bool* need) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    cache_query_one(grid, points + 3 * i, i, radius, res, eps, diag, p_force, seed, counter, values + i, need + i);
}

template <typename T>
__global__ void cache_clear_kernel(T* grid, const T* points, const T* values, int64_t n, T radius, int64_t res) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t v = cache_voxel(points + 3 * i, radius, res);
    if (v >= 0 && !hr_isnan(values[i])) grid[v] = hr_inf<T>();
  }
}

template <typename T>
__global__ void cache_min_kernel(T* grid, const T* points, const T* values, int64_t n, T radius, int64_t res) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t v = cache_voxel(points + 3 * i, radius, res);
    if (v >= 0 && !hr_isnan(values[i])) hr_atomic_min(grid + v, values[i]);
  }
}

template <typename T>
void cache_query_cuda(const T* grid, const T* points, int64_t n, T radius, int64_t res, T eps, T diag, double p_force,
                      uint64_t seed, uint64_t counter, T* values, bool* need, void* stream) {
  if (n == 0) return;
  cache_query_kernel<T><<<hr_blocks(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      grid, points, n, radius, res, eps, diag, p_force, seed, counter, values, need);
}

template <typename T>
void cache_update_cuda(T* grid, const T* points, const T* values, int64_t n, T radius, int64_t res, void* stream) {
  if (n == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cache_clear_kernel<T><<<hr_blocks(n), kThreads, 0, s>>>(grid, points, values, n, radius, res);
  cache_min_kernel<T><<<hr_blocks(n), kThreads, 0, s>>>(grid, points, values, n, radius, res);
}

template void cache_query_cuda<float>(const float*, const float*, int64_t, float, int64_t, float, float, double,
                                      uint64_t, uint64_t, float*, bool*, void*);
template void cache_query_cuda<double>(const double*, const double*, int64_t, double, int64_t, double, double, double,
                                       uint64_t, uint64_t, double*, bool*, void*);
template void cache_update_cuda<float>(float*, const float*, const float*, int64_t, float, int64_t, void*);
template void cache_update_cuda<double>(double*, const double*, const double*, int64_t, double, int64_t, void*);

}  // namespace headrecon
