// Launch helpers and float atomics for the pure-CUDA backends (*.cu). No torch headers.
#pragma once
#include <cuda_runtime.h>
#include <cstdint>

namespace headrecon {

constexpr int kThreads = 256;

// Most blocks a launch uses; the grid-stride loops of every kernel cover the rest. Tests build with a small cap
// (-DHR_MAX_BLOCKS=3) so that several grid-stride rounds run.
#ifndef HR_MAX_BLOCKS
#define HR_MAX_BLOCKS (65535 * 32)
#endif

inline unsigned int hr_blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  const int64_t cap = HR_MAX_BLOCKS;
  return static_cast<unsigned int>(b < cap ? (b > 0 ? b : 1) : cap);
}

__device__ __forceinline__ void hr_atomic_min(float* addr, float v) {
  int* a = reinterpret_cast<int*>(addr);
  int old = *a, assumed;
  do {
    assumed = old;
    if (__int_as_float(assumed) <= v) return;
    old = atomicCAS(a, assumed, __float_as_int(v));
  } while (old != assumed);
}

__device__ __forceinline__ void hr_atomic_min(double* addr, double v) {
  unsigned long long* a = reinterpret_cast<unsigned long long*>(addr);
  unsigned long long old = *a, assumed;
  do {
    assumed = old;
    if (__longlong_as_double(static_cast<long long>(assumed)) <= v) return;
    old = atomicCAS(a, assumed, static_cast<unsigned long long>(__double_as_longlong(v)));
  } while (old != assumed);
}

}  // namespace headrecon
