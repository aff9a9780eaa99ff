// CPU backend of ray_sphere (see ray_sphere.h): parallel loop over rays calling ray_sphere_one.
#include <ATen/Parallel.h>
#include <cmath>
#include "ray_sphere/ray_sphere.h"

namespace headrecon {

template <typename T>
void ray_sphere_cpu(const T* origins, const T* dirs, T radius, int64_t n, T* near, T* far, bool* mask) {
  at::parallel_for(0, n, 2048, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) ray_sphere_one(origins + 3 * i, dirs + 3 * i, radius, near + i, far + i, mask + i);
  });
}

template void ray_sphere_cpu<float>(const float*, const float*, float, int64_t, float*, float*, bool*);
template void ray_sphere_cpu<double>(const double*, const double*, double, int64_t, double*, double*, bool*);

}  // namespace headrecon
