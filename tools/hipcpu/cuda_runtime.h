// Shim for running headrecon's pure-CUDA sources on the CPU with ROCm's HIP-CPU (tests only; see build.py).
// It stands in for <cuda_runtime.h>: includes HIP-CPU and maps the few CUDA names and intrinsics the sources use.
#pragma once
#include <hip/hip_runtime.h>

#include <cstdint>
#include <cstring>

using cudaStream_t = hipStream_t;
using cudaError_t = hipError_t;
#define cudaSuccess hipSuccess
#define cudaGetLastError hipGetLastError
#define cudaDeviceSynchronize hipDeviceSynchronize

// bit casts HIP-CPU lacks (__longlong_as_double it has)
inline float __int_as_float(int x) { float f; std::memcpy(&f, &x, sizeof f); return f; }
inline int __float_as_int(float f) { int x; std::memcpy(&x, &f, sizeof x); return x; }
inline long long __double_as_longlong(double d) { long long x; std::memcpy(&x, &d, sizeof x); return x; }

// HIP-CPU marks __device__ functions `simd`, for which GCC emits vector clones of inline helpers that clash;
// plain inline functions are what the kernels need on the host
#if defined(__GNUC__) && !defined(__clang__)
#undef __device__
#define __device__
#endif
#undef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
