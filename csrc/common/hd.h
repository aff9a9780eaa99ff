// Host+device helpers shared by the CPU (*_cpu.cpp) and CUDA (*.cu) backends of every headrecon kernel.
// Everything here compiles with a plain C++17 compiler and with nvcc; no torch, no CUDA runtime headers.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define HR_HD __host__ __device__ __forceinline__
#else
#define HR_HD inline
#endif

namespace headrecon {

HR_HD float hr_sqrt(float x) { return sqrtf(x); }
HR_HD double hr_sqrt(double x) { return sqrt(x); }
template <typename T> HR_HD T hr_min(T a, T b) { return a < b ? a : b; }
template <typename T> HR_HD T hr_max(T a, T b) { return a > b ? a : b; }
template <typename T> HR_HD bool hr_isnan(T x) { return x != x; }
template <typename T> HR_HD T hr_inf() { return T(1e300) * T(1e300); }  // +inf without <limits> on device
template <typename T> HR_HD T hr_nan() { return hr_inf<T>() - hr_inf<T>(); }

// Walker / ray status codes of the sphere tracer (int32 tensors).
enum TraceStatus : int32_t {
  kIdle = 0,       // not traced (ray misses the bounding sphere, or a back walker no longer needed)
  kActive = 1,     // still marching
  kConverged = 2,  // |sdf| < threshold: on the surface
  kMet = 3,        // front and back walkers crossed without converging: no surface found
  kInside = 4,     // the very first sample was already inside (sdf < 0)
};

}  // namespace headrecon
