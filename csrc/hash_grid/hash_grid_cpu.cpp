// CPU backend of the multiresolution hash encoding (see hash_grid.h).
#include <ATen/Parallel.h>
#include "hash_grid/hash_grid.h"

namespace headrecon {

template <typename T>
void hash_encode_fwd_cpu(const T* table, const T* points, const T* dirs, const int64_t* res, int64_t n, int64_t L,
                         int64_t S, int64_t F, T radius, T* out) {
  at::parallel_for(0, n * L, 1024, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hash_encode_fwd_one(table, points, dirs, res, i, L, S, F, radius, out);
  });
}

// Levels in parallel, points in order within a level: every table row sums its contributions in one fixed
// order, so the result does not depend on the thread count.
template <typename T>
void hash_encode_bwd_table_cpu(const T* g, const T* points, const T* dirs, const int64_t* res, int64_t n, int64_t L,
                               int64_t S, int64_t F, T radius, T* grad_table) {
  at::parallel_for(0, L, 1, [&](int64_t b, int64_t e) {
    for (int64_t l = b; l < e; ++l) {
      T* gt = grad_table + l * S * F;
      for (int64_t k = 0; k < n; ++k) {
        int64_t rows[8];
        T coef[8];
        if (!hash_corners(points + 3 * k, dirs ? dirs + 3 * k : (const T*)nullptr, radius, res[l], S, rows, coef))
          continue;
        const T* gk = g + k * L * F + l * F;
        for (int c = 0; c < 8; ++c)
          for (int64_t f = 0; f < F; ++f) gt[rows[c] * F + f] += coef[c] * gk[f];
      }
    }
  });
}

template <typename T>
void hash_encode_bwd_points_cpu(const T* table, const T* points, const T* g, const int64_t* res, int64_t n,
                                int64_t L, int64_t S, int64_t F, T radius, T* grad_points) {
  at::parallel_for(0, n, 256, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) hash_encode_bwd_points_one(table, points, g, res, k, L, S, F, radius, grad_points);
  });
}

#define HR_INSTANTIATE(T)                                                                                           \
  template void hash_encode_fwd_cpu<T>(const T*, const T*, const T*, const int64_t*, int64_t, int64_t, int64_t,     \
                                       int64_t, T, T*);                                                             \
  template void hash_encode_bwd_table_cpu<T>(const T*, const T*, const T*, const int64_t*, int64_t, int64_t,        \
                                             int64_t, int64_t, T, T*);                                              \
  template void hash_encode_bwd_points_cpu<T>(const T*, const T*, const T*, const int64_t*, int64_t, int64_t,       \
                                              int64_t, int64_t, T, T*);
HR_INSTANTIATE(float)
HR_INSTANTIATE(double)
#undef HR_INSTANTIATE

}  // namespace headrecon
