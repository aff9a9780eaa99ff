// CPU backend of the coarse/fine sign-flip search and secant refinement (see search.h).
#include <ATen/Parallel.h>
#include <cmath>
#include "search/search.h"

namespace headrecon {

template <typename T>
void ray_points_cpu(const T* origins, const T* dirs, const int64_t* ray_idx, const T* t, int64_t m, int64_t k, T* out) {
  at::parallel_for(0, m * k, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t r = ray_idx[i / k];
      ray_point_one(origins + 3 * r, dirs + 3 * r, t[i], out + 3 * i);
    }
  });
}

template <typename T>
void search_samples_cpu(const T* origins, const T* dirs, const int64_t* ray_idx, const T* lo, const T* hi,
                        int64_t m, int64_t n, bool interior, T* t_out, T* p_out) {
  at::parallel_for(0, m * n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t q = i / n, j = i % n, r = ray_idx[q];
      const T ti = search_sample_t(lo[q], hi[q], j, n, interior);
      t_out[i] = ti;
      ray_point_one(origins + 3 * r, dirs + 3 * r, ti, p_out + 3 * i);
    }
  });
}

template <typename T>
void search_select_cpu(const T* t, const T* sdf, int64_t m, int64_t n, int64_t* first, T* t_lo, T* t_hi, T* s_lo,
                       T* s_hi, T* min_sdf, T* min_t) {
  at::parallel_for(0, m, 512, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q)
      search_select_one(t + q * n, sdf + q * n, n, first + q, t_lo + q, t_hi + q, s_lo + q, s_hi + q, min_sdf + q,
                        min_t + q);
  });
}

template <typename T>
void secant_step_cpu(T* t_lo, T* t_hi, T* s_lo, T* s_hi, int32_t* side, const T* t_mid, const T* s_mid, int64_t m,
                     bool update, T* t_next) {
  at::parallel_for(0, m, 4096, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q)
      t_next[q] = secant_step_one(t_lo + q, t_hi + q, s_lo + q, s_hi + q, side + q, update ? t_mid[q] : T(0),
                                  update ? s_mid[q] : T(0), update);
  });
}

#define HR_INSTANTIATE(T)                                                                                            \
  template void ray_points_cpu<T>(const T*, const T*, const int64_t*, const T*, int64_t, int64_t, T*);               \
  template void search_samples_cpu<T>(const T*, const T*, const int64_t*, const T*, const T*, int64_t, int64_t, bool, \
                                      T*, T*);                                                                       \
  template void search_select_cpu<T>(const T*, const T*, int64_t, int64_t, int64_t*, T*, T*, T*, T*, T*, T*);        \
  template void secant_step_cpu<T>(T*, T*, T*, T*, int32_t*, const T*, const T*, int64_t, bool, T*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headrecon
