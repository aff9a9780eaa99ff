// CUDA backend of the coarse/fine sign-flip search and secant refinement (see search.h). Pure CUDA.
#include <cuda_runtime.h>
#include "common/cuda_utils.cuh"
#include "search/search.h"

namespace headrecon {

#define HR_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

template <typename T>
__global__ void ray_points_kernel(const T* origins, const T* dirs, const int64_t* ray_idx, const T* t, int64_t m,
                                  int64_t k, T* out) {
  HR_GRID_LOOP(i, m * k) {
    const int64_t r = ray_idx[i / k];
    ray_point_one(origins + 3 * r, dirs + 3 * r, t[i], out + 3 * i);
  }
}

template <typename T>
__global__ void search_samples_kernel(const T* origins, const T* dirs, const int64_t* ray_idx, const T* lo,
                                      const T* hi, int64_t m, int64_t n, bool interior, T* t_out, T* p_out) {
  HR_GRID_LOOP(i, m * n) {
    const int64_t q = i / n, j = i % n, r = ray_idx[q];
    const T ti = search_sample_t(lo[q], hi[q], j, n, interior);
    t_out[i] = ti;
    ray_point_one(origins + 3 * r, dirs + 3 * r, ti, p_out + 3 * i);
  }
}

template <typename T>
__global__ void search_select_kernel(const T* t, const T* sdf, int64_t m, int64_t n, int64_t* first, T* t_lo, T* t_hi,
                                     T* s_lo, T* s_hi, T* min_sdf, T* min_t) {
  HR_GRID_LOOP(q, m) {
    search_select_one(t + q * n, sdf + q * n, n, first + q, t_lo + q, t_hi + q, s_lo + q, s_hi + q, min_sdf + q,
                      min_t + q);
  }
}

template <typename T>
__global__ void secant_step_kernel(T* t_lo, T* t_hi, T* s_lo, T* s_hi, int32_t* side, const T* t_mid, const T* s_mid,
                                   int64_t m, bool update, T* t_next) {
  HR_GRID_LOOP(q, m) {
    t_next[q] = secant_step_one(t_lo + q, t_hi + q, s_lo + q, s_hi + q, side + q, update ? t_mid[q] : T(0),
                                update ? s_mid[q] : T(0), update);
  }
}

template <typename T>
void ray_points_cuda(const T* origins, const T* dirs, const int64_t* ray_idx, const T* t, int64_t m, int64_t k, T* out,
                     void* stream) {
  if (m * k == 0) return;
  ray_points_kernel<T><<<hr_blocks(m * k), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(origins, dirs, ray_idx,
                                                                                             t, m, k, out);
}

template <typename T>
void search_samples_cuda(const T* origins, const T* dirs, const int64_t* ray_idx, const T* lo, const T* hi,
                         int64_t m, int64_t n, bool interior, T* t_out, T* p_out, void* stream) {
  if (m * n == 0) return;
  search_samples_kernel<T><<<hr_blocks(m * n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      origins, dirs, ray_idx, lo, hi, m, n, interior, t_out, p_out);
}

template <typename T>
void search_select_cuda(const T* t, const T* sdf, int64_t m, int64_t n, int64_t* first, T* t_lo, T* t_hi, T* s_lo,
                        T* s_hi, T* min_sdf, T* min_t, void* stream) {
  if (m == 0) return;
  search_select_kernel<T><<<hr_blocks(m), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      t, sdf, m, n, first, t_lo, t_hi, s_lo, s_hi, min_sdf, min_t);
}

template <typename T>
void secant_step_cuda(T* t_lo, T* t_hi, T* s_lo, T* s_hi, int32_t* side, const T* t_mid, const T* s_mid, int64_t m,
                      bool update, T* t_next, void* stream) {
  if (m == 0) return;
  secant_step_kernel<T><<<hr_blocks(m), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      t_lo, t_hi, s_lo, s_hi, side, t_mid, s_mid, m, update, t_next);
}

#define HR_INSTANTIATE(T)                                                                                             \
  template void ray_points_cuda<T>(const T*, const T*, const int64_t*, const T*, int64_t, int64_t, T*, void*);        \
  template void search_samples_cuda<T>(const T*, const T*, const int64_t*, const T*, const T*, int64_t, int64_t, bool, \
                                       T*, T*, void*);                                                                \
  template void search_select_cuda<T>(const T*, const T*, int64_t, int64_t, int64_t*, T*, T*, T*, T*, T*, T*, void*); \
  template void secant_step_cuda<T>(T*, T*, T*, T*, int32_t*, const T*, const T*, int64_t, bool, T*, void*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headrecon
