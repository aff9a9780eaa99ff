// Ray / bounding-sphere intersection.
//
//   origins [R,3], dirs [R,3] (any non-zero length), radius r (sphere centred at the origin)
//   -> near [R], far [R] (ray parameters: point = o + t d), mask [R] bool.
// A ray that starts inside the sphere gets near = 0. mask is false when the ray misses the sphere,
// when the sphere lies entirely behind the origin, or when the inputs are not finite; then near = far = 0.
//
// The per-element code below runs unchanged in ray_sphere_cpu.cpp and ray_sphere.cu.
#pragma once
#include "common/hd.h"

namespace headrecon {

template <typename T>
HR_HD void ray_sphere_one(const T* o, const T* d, T radius, T* near, T* far, bool* mask) {
  const T a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
  const T b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2];
  const T c = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - radius * radius;
  const T disc = b * b - a * c;
  *near = T(0);
  *far = T(0);
  *mask = false;
  if (a > T(0) && disc > T(0)) {  // false for NaN inputs as well
    const T s = hr_sqrt(disc);
    const T t0 = (-b - s) / a;
    const T t1 = (-b + s) / a;
    if (t1 > T(0)) {
      *near = hr_max(t0, T(0));
      *far = t1;
      *mask = true;
    }
  }
}

template <typename T>
void ray_sphere_cpu(const T* origins, const T* dirs, T radius, int64_t n, T* near, T* far, bool* mask);
template <typename T>
void ray_sphere_cuda(const T* origins, const T* dirs, T radius, int64_t n, T* near, T* far, bool* mask, void* stream);

}  // namespace headrecon
