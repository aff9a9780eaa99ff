// CUDA backend of the multiresolution hash encoding (see hash_grid.h). Pure CUDA: raw pointers and a stream.
// The table gradient accumulates with atomicAdd (float64 atomics need compute capability 6.0).
#include <cuda_runtime.h>
#include "common/cuda_utils.cuh"
#include "hash_grid/hash_grid.h"

namespace headrecon {

template <typename T>
__global__ void hash_fwd_kernel(const T* table, const T* points, const T* dirs, const int64_t* res, int64_t m,
                                int64_t L, int64_t S, int64_t F, T radius, T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < m; i += int64_t(blockDim.x) * gridDim.x)
    hash_encode_fwd_one(table, points, dirs, res, i, L, S, F, radius, out);
}

template <typename T>
__global__ void hash_bwd_table_kernel(const T* g, const T* points, const T* dirs, const int64_t* res, int64_t m,
                                      int64_t L, int64_t S, int64_t F, T radius, T* grad_table) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < m; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t k = i / L, l = i % L;
    int64_t rows[8];
    T coef[8];
    if (!hash_corners(points + 3 * k, dirs ? dirs + 3 * k : (const T*)nullptr, radius, res[l], S, rows, coef))
      continue;
    const T* gk = g + k * L * F + l * F;
    T* gt = grad_table + l * S * F;
    for (int c = 0; c < 8; ++c)
      for (int64_t f = 0; f < F; ++f) atomicAdd(gt + rows[c] * F + f, coef[c] * gk[f]);
  }
}

template <typename T>
__global__ void hash_bwd_points_kernel(const T* table, const T* points, const T* g, const int64_t* res, int64_t n,
                                       int64_t L, int64_t S, int64_t F, T radius, T* grad_points) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(blockDim.x) * gridDim.x)
    hash_encode_bwd_points_one(table, points, g, res, k, L, S, F, radius, grad_points);
}

template <typename T>
void hash_encode_fwd_cuda(const T* table, const T* points, const T* dirs, const int64_t* res, int64_t n, int64_t L,
                          int64_t S, int64_t F, T radius, T* out, void* stream) {
  const int64_t m = n * L;
  if (m == 0) return;
  hash_fwd_kernel<T><<<hr_blocks(m), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      table, points, dirs, res, m, L, S, F, radius, out);
}

template <typename T>
void hash_encode_bwd_table_cuda(const T* g, const T* points, const T* dirs, const int64_t* res, int64_t n,
                                int64_t L, int64_t S, int64_t F, T radius, T* grad_table, void* stream) {
  const int64_t m = n * L;
  if (m == 0) return;
  hash_bwd_table_kernel<T><<<hr_blocks(m), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      g, points, dirs, res, m, L, S, F, radius, grad_table);
}

template <typename T>
void hash_encode_bwd_points_cuda(const T* table, const T* points, const T* g, const int64_t* res, int64_t n,
                                 int64_t L, int64_t S, int64_t F, T radius, T* grad_points, void* stream) {
  if (n == 0) return;
  hash_bwd_points_kernel<T><<<hr_blocks(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      table, points, g, res, n, L, S, F, radius, grad_points);
}

#define HR_INSTANTIATE(T)                                                                                           \
  template void hash_encode_fwd_cuda<T>(const T*, const T*, const T*, const int64_t*, int64_t, int64_t, int64_t,    \
                                        int64_t, T, T*, void*);                                                     \
  template void hash_encode_bwd_table_cuda<T>(const T*, const T*, const T*, const int64_t*, int64_t, int64_t,       \
                                              int64_t, int64_t, T, T*, void*);                                      \
  template void hash_encode_bwd_points_cuda<T>(const T*, const T*, const T*, const int64_t*, int64_t, int64_t,      \
                                               int64_t, int64_t, T, T*, void*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headrecon
