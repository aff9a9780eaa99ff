// Dynamic SDF voxel cache over the bounding cube [-radius, radius]^3 (resolution D, 64 by default).
//
// grid [D,D,D] holds, per voxel, the smallest SDF value written into it by the latest update that touched
// it (NaN = empty). Voxel of point p: floor((p + radius) / (2 radius) * D) per axis, index (ix*D + iy)*D + iz.
//
// cache_query: grid, points [N,3], eps, p_force, seed, counter -> values [N], need [N] bool.
//   A point is answered from the cache when its voxel holds v >= eps and a counter-based uniform
//   u(seed, counter, i) >= p_force (forced re-evaluation with probability p_force keeps values fresh).
//   The answer is v - diag (diag = voxel diagonal): since an SDF is 1-Lipschitz it is a lower bound on the
//   SDF anywhere in the voxel, so it proves the sign and is a safe sphere-tracing step. Other points get
//   need = true and value NaN; the caller evaluates the network on them. Points outside the cube are never
//   answered.
// cache_update: grid, points [N,3], values [N]: every voxel touched by the batch is overwritten with the
//   minimum of the batch's values that fall into it (order independent, so CPU and CUDA agree). NaN values and
//   points outside the cube are skipped.
#pragma once
#include "common/hd.h"
#include "common/rng.h"

namespace headrecon {

template <typename T>
HR_HD int64_t cache_voxel(const T* p, T radius, int64_t res) {
  int64_t idx = 0;
  for (int a = 0; a < 3; ++a) {
    const T u = (p[a] + radius) / (T(2) * radius) * T(res);
    if (!(u >= T(0) && u < T(res))) return -1;  // outside the cube, or NaN
    int64_t i = int64_t(u);
    if (i >= res) i = res - 1;
    idx = idx * res + i;
  }
  return idx;
}

template <typename T>
HR_HD void cache_query_one(const T* grid, const T* p, int64_t i, T radius, int64_t res, T eps, T diag, double p_force,
                           uint64_t seed, uint64_t counter, T* value, bool* need) {
  const double u = hr_uniform(seed, counter, uint64_t(i));
  const int64_t v = cache_voxel(p, radius, res);
  const T c = v >= 0 ? grid[v] : hr_nan<T>();
  if (c >= eps && !(u < p_force)) {  // c >= eps is false for NaN (empty voxel)
    *value = c - diag;
    *need = false;
  } else {
    *value = hr_nan<T>();
    *need = true;
  }
}

template <typename T>
void cache_query_cpu(const T* grid, const T* points, int64_t n, T radius, int64_t res, T eps, T diag, double p_force,
                     uint64_t seed, uint64_t counter, T* values, bool* need);
template <typename T>
void cache_update_cpu(T* grid, const T* points, const T* values, int64_t n, T radius, int64_t res);

template <typename T>
void cache_query_cuda(const T* grid, const T* points, int64_t n, T radius, int64_t res, T eps, T diag, double p_force,
                      uint64_t seed, uint64_t counter, T* values, bool* need, void* stream);
template <typename T>
void cache_update_cuda(T* grid, const T* points, const T* values, int64_t n, T radius, int64_t res, void* stream);

}  // namespace headrecon
