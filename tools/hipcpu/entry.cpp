// C entry points over headrecon's CUDA launchers, for the HIP-CPU emulation test (tests/test_cuda_emulated.py).
// build.py compiles this file together with the rewritten .cu sources; every entry point launches the kernels
// exactly as the torch glue does (default stream) and waits for them.
#include <hip/hip_runtime.h>

#include <cstdint>

#include "common/cuda_utils.cuh"
#include "composite/composite.h"
#include "hash_grid/hash_grid.h"
#include "ray_sphere/ray_sphere.h"
#include "sdf_cache/sdf_cache.h"
#include "search/search.h"
#include "softplus/softplus.h"
#include "sphere_trace/sphere_trace.h"

using namespace headrecon;

static int hr_sync() { return hipDeviceSynchronize() == hipSuccess ? 0 : 1; }

#define HR_ENTRY(T, S)                                                                                             \
  extern "C" int hr_ray_sphere_##S(const T* o, const T* d, T radius, int64_t n, T* near, T* far, bool* mask) {     \
    ray_sphere_cuda<T>(o, d, radius, n, near, far, mask, nullptr);                                                 \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_sphere_trace_step_##S(const int64_t* w, const T* sdf, int64_t m, int64_t n_rays, T th, T sc,   \
                                          T* t, T* dt, T* cap, int32_t* st, T* wmin, T* wmin_t) {                  \
    sphere_trace_step_cuda<T>(w, sdf, m, n_rays, th, sc, t, dt, cap, st, wmin, wmin_t, nullptr);                   \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_ray_points_##S(const T* o, const T* d, const int64_t* r, const T* t, int64_t m, int64_t k,     \
                                   T* out) {                                                                       \
    ray_points_cuda<T>(o, d, r, t, m, k, out, nullptr);                                                            \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_search_samples_##S(const T* o, const T* d, const int64_t* r, const T* lo, const T* hi,         \
                                       int64_t m, int64_t n, bool interior, T* t_out, T* p_out) {                  \
    search_samples_cuda<T>(o, d, r, lo, hi, m, n, interior, t_out, p_out, nullptr);                                \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_search_select_##S(const T* t, const T* sdf, int64_t m, int64_t n, int64_t* first, T* t_lo,     \
                                      T* t_hi, T* s_lo, T* s_hi, T* min_sdf, T* min_t) {                           \
    search_select_cuda<T>(t, sdf, m, n, first, t_lo, t_hi, s_lo, s_hi, min_sdf, min_t, nullptr);                   \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_secant_step_##S(T* t_lo, T* t_hi, T* s_lo, T* s_hi, int32_t* side, const T* t_mid,             \
                                    const T* s_mid, int64_t m, bool update, T* t_next) {                           \
    secant_step_cuda<T>(t_lo, t_hi, s_lo, s_hi, side, t_mid, s_mid, m, update, t_next, nullptr);                   \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_cache_query_##S(const T* grid, const T* p, int64_t n, T radius, int64_t res, T eps, T diag,    \
                                    double p_force, uint64_t seed, uint64_t counter, T* values, bool* need) {      \
    cache_query_cuda<T>(grid, p, n, radius, res, eps, diag, p_force, seed, counter, values, need, nullptr);        \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_cache_update_##S(T* grid, const T* p, const T* v, int64_t n, T radius, int64_t res) {          \
    cache_update_cuda<T>(grid, p, v, n, radius, res, nullptr);                                                     \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_composite_fwd_##S(const int64_t* packed, const T* sg, const T* dl, const T* v, int64_t R,       \
                                      int64_t C, T* out, T* opacity, T* weights) {                                 \
    composite_fwd_cuda<T>(packed, sg, dl, v, R, C, out, opacity, weights, nullptr);                                \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_composite_bwd_##S(const int64_t* packed, const T* sg, const T* dl, const T* v, const T* go,    \
                                      const T* gop, int64_t R, int64_t C, T* gs, T* gv) {                          \
    composite_bwd_cuda<T>(packed, sg, dl, v, go, gop, R, C, gs, gv, nullptr);                                      \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_hash_fwd_##S(const T* table, const T* p, const T* dirs, const int64_t* res, int64_t n,         \
                                 int64_t L, int64_t Sz, int64_t F, T radius, T* out) {                             \
    hash_encode_fwd_cuda<T>(table, p, dirs, res, n, L, Sz, F, radius, out, nullptr);                               \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_hash_bwd_table_##S(const T* g, const T* p, const T* dirs, const int64_t* res, int64_t n,       \
                                       int64_t L, int64_t Sz, int64_t F, T radius, T* grad_table) {                \
    hash_encode_bwd_table_cuda<T>(g, p, dirs, res, n, L, Sz, F, radius, grad_table, nullptr);                      \
    return hr_sync();                                                                                              \
  }                                                                                                                \
  extern "C" int hr_hash_bwd_points_##S(const T* table, const T* p, const T* g, const int64_t* res, int64_t n,     \
                                        int64_t L, int64_t Sz, int64_t F, T radius, T* grad_points) {              \
    hash_encode_bwd_points_cuda<T>(table, p, g, res, n, L, Sz, F, radius, grad_points, nullptr);                   \
    return hr_sync();                                                                                              \
  }

HR_ENTRY(float, f32)
HR_ENTRY(double, f64)

extern "C" int hr_softplus_f32(const float* x, float* y, int64_t n, float beta, float threshold) {  // float32 only
  softplus_cuda(x, y, n, beta, threshold, nullptr);
  return hr_sync();
}

extern "C" int hr_max_blocks() { return static_cast<int>(hr_blocks(int64_t(1) << 40)); }
