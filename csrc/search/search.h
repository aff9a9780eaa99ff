// Coarse/fine sign-flip search along rays, and points along rays.
//
// ray_points: origins [R,3], dirs [R,3], ray_idx [M] int64, t [M,K] -> points [M,K,3] = o[ray] + t * d[ray].
//
// search_samples: origins [R,3], dirs [R,3], ray_idx [M], lo [M], hi [M], n, interior
//   -> t [M,n], points [M,n,3].  interior = false: n samples from lo to hi inclusive (coarse stage);
//   interior = true: n samples strictly inside (lo, hi), at lo + (j+1)/(n+1) (hi - lo) (fine stage).
//
// search_select: t [M,n], sdf [M,n] -> first [M] int64, t_lo, t_hi, s_lo, s_hi, min_sdf, min_t (all [M]).
//   first = index of the first sample with sdf < 0 (-1 if none). For first >= 1 the bracket is
//   (t[first-1], t[first]); for first == 0 (the ray starts inside) both ends are sample 0; for first == -1 the
//   bracket ends are copies of the minimum sample. min_sdf/min_t: the sample with the smallest SDF (first one
//   on ties; NaN samples are skipped, and a ray whose samples are all NaN reports its sample 0), which the
//   silhouette loss needs for rays that never change sign.
//
// secant_step (regula falsi with the Illinois modification, so each step keeps a bracket and converges
//   superlinearly): t_lo, t_hi, s_lo (>= 0), s_hi (< 0), side (int32: 0 none, 1 lo moved last, 2 hi moved
//   last) [M], in place; t_mid [M] and s_mid [M] the last proposal and its SDF.  With update = false only the
//   proposal is computed (the first step); returns the next proposal t_next [M].
#pragma once
#include "common/hd.h"

namespace headrecon {

template <typename T>
HR_HD void ray_point_one(const T* o, const T* d, T t, T* p) {
  p[0] = o[0] + t * d[0];
  p[1] = o[1] + t * d[1];
  p[2] = o[2] + t * d[2];
}

template <typename T>
HR_HD T search_sample_t(T lo, T hi, int64_t j, int64_t n, bool interior) {
  if (interior) return lo + (hi - lo) * (T(j + 1) / T(n + 1));
  if (n <= 1) return lo;
  // written so that j = n-1 gives exactly hi
  const T f = T(j) / T(n - 1);
  return lo * (T(1) - f) + hi * f;
}

template <typename T>
HR_HD void search_select_one(const T* t, const T* sdf, int64_t n, int64_t* first, T* t_lo, T* t_hi, T* s_lo,
                             T* s_hi, T* min_sdf, T* min_t) {
  int64_t k = -1;
  int64_t kmin = 0;
  for (int64_t j = 0; j < n; ++j) {
    if (k < 0 && sdf[j] < T(0)) k = j;
    // NaN never wins: a sample replaces the minimum when it is a number and the minimum is NaN or larger
    if (sdf[j] == sdf[j] && (!(sdf[kmin] == sdf[kmin]) || sdf[j] < sdf[kmin])) kmin = j;
  }
  *first = k;
  *min_sdf = n > 0 ? sdf[kmin] : hr_nan<T>();
  *min_t = n > 0 ? t[kmin] : hr_nan<T>();
  const int64_t a = k > 0 ? k - 1 : (k == 0 ? 0 : kmin);
  const int64_t b = k >= 0 ? k : kmin;
  *t_lo = n > 0 ? t[a] : hr_nan<T>();
  *s_lo = n > 0 ? sdf[a] : hr_nan<T>();
  *t_hi = n > 0 ? t[b] : hr_nan<T>();
  *s_hi = n > 0 ? sdf[b] : hr_nan<T>();
}

template <typename T>
HR_HD T secant_propose(T t_lo, T t_hi, T s_lo, T s_hi) {
  const T den = s_hi - s_lo;
  T tm = den != T(0) ? t_lo - s_lo * (t_hi - t_lo) / den : T(0.5) * (t_lo + t_hi);
  if (!(tm >= hr_min(t_lo, t_hi) && tm <= hr_max(t_lo, t_hi))) tm = T(0.5) * (t_lo + t_hi);
  return tm;
}

template <typename T>
HR_HD T secant_step_one(T* t_lo, T* t_hi, T* s_lo, T* s_hi, int32_t* side, T t_mid, T s_mid, bool update) {
  if (update) {
    if (s_mid >= T(0)) {
      *t_lo = t_mid;
      *s_lo = s_mid;
      if (*side == 1) *s_hi = *s_hi * T(0.5);  // lo moved twice in a row: Illinois halves the kept end
      *side = 1;
    } else {
      *t_hi = t_mid;
      *s_hi = s_mid;
      if (*side == 2) *s_lo = *s_lo * T(0.5);
      *side = 2;
    }
  }
  return secant_propose(*t_lo, *t_hi, *s_lo, *s_hi);
}

template <typename T>
void ray_points_cpu(const T* origins, const T* dirs, const int64_t* ray_idx, const T* t, int64_t m, int64_t k, T* out);
template <typename T>
void search_samples_cpu(const T* origins, const T* dirs, const int64_t* ray_idx, const T* lo, const T* hi,
                        int64_t m, int64_t n, bool interior, T* t_out, T* p_out);
template <typename T>
void search_select_cpu(const T* t, const T* sdf, int64_t m, int64_t n, int64_t* first, T* t_lo, T* t_hi, T* s_lo,
                       T* s_hi, T* min_sdf, T* min_t);
template <typename T>
void secant_step_cpu(T* t_lo, T* t_hi, T* s_lo, T* s_hi, int32_t* side, const T* t_mid, const T* s_mid, int64_t m,
                     bool update, T* t_next);

template <typename T>
void ray_points_cuda(const T* origins, const T* dirs, const int64_t* ray_idx, const T* t, int64_t m, int64_t k, T* out,
                     void* stream);
template <typename T>
void search_samples_cuda(const T* origins, const T* dirs, const int64_t* ray_idx, const T* lo, const T* hi,
                         int64_t m, int64_t n, bool interior, T* t_out, T* p_out, void* stream);
template <typename T>
void search_select_cuda(const T* t, const T* sdf, int64_t m, int64_t n, int64_t* first, T* t_lo, T* t_hi, T* s_lo,
                        T* s_hi, T* min_sdf, T* min_t, void* stream);
template <typename T>
void secant_step_cuda(T* t_lo, T* t_hi, T* s_lo, T* s_hi, int32_t* side, const T* t_mid, const T* s_mid, int64_t m,
                      bool update, T* t_next, void* stream);

}  // namespace headrecon
