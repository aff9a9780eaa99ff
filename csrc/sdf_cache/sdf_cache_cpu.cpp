// CPU backend of the dynamic SDF voxel cache (see sdf_cache.h).
#include <ATen/Parallel.h>
#include <cmath>
#include "sdf_cache/sdf_cache.h"

namespace headrecon {

template <typename T>
void cache_query_cpu(const T* grid, const T* points, int64_t n, T radius, int64_t res, T eps, T diag, double p_force,
                     uint64_t seed, uint64_t counter, T* values, bool* need) {
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      cache_query_one(grid, points + 3 * i, i, radius, res, eps, diag, p_force, seed, counter, values + i, need + i);
  });
}

// Serial: two passes (clear touched voxels, then min-reduce); a few ns per point, and race free.
template <typename T>
void cache_update_cpu(T* grid, const T* points, const T* values, int64_t n, T radius, int64_t res) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = cache_voxel(points + 3 * i, radius, res);
    if (v >= 0 && !hr_isnan(values[i])) grid[v] = hr_inf<T>();
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = cache_voxel(points + 3 * i, radius, res);
    if (v >= 0 && !hr_isnan(values[i]) && values[i] < grid[v]) grid[v] = values[i];
  }
}

template void cache_query_cpu<float>(const float*, const float*, int64_t, float, int64_t, float, float, double,
                                     uint64_t, uint64_t, float*, bool*);
template void cache_query_cpu<double>(const double*, const double*, int64_t, double, int64_t, double, double, double,
                                      uint64_t, uint64_t, double*, bool*);
template void cache_update_cpu<float>(float*, const float*, const float*, int64_t, float, int64_t);
template void cache_update_cpu<double>(double*, const double*, const double*, int64_t, double, int64_t);

}  // namespace headrecon
