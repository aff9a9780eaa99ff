// Multiresolution hash encoding (Instant-NGP, Mueller et al. 2022) over the cube [-radius, radius]^3.
//
// Shapes: points [N,3]; table [L,S,F] (L levels, S entries per level, a power of two, F features per entry);
// res [L] int64 (cells per axis of each level, same device). Features out [N, L*F], level-major:
// out[n, l*F + f].
//
// Level l of point p: u = (p + radius) / (2 radius) in [0,1]^3, x = u * res[l], cell c0 = floor(x) (x = res[l]
// falls in the last cell), frac = x - c0. The 8 corners c = c0 + {0,1}^3 have trilinear weights
// w_c = prod_a (c_a > c0_a ? frac_a : 1 - frac_a) and table rows
//   dense  ((c_x * (R+1) + c_y) * (R+1) + c_z)                          when (R+1)^3 <= S (R = res[l]),
//   hashed (c_x XOR c_y * 2654435761 XOR c_z * 805459861) & (S - 1)     otherwise (Instant-NGP's primes).
// Points outside the cube (or NaN) give zero features and receive zero gradients.
//
// Every op takes an optional per-point direction h [N,3] (nullptr: none). Without it the corner coefficient is
// the weight w_c; with it the coefficient is the directional derivative sum_a h_a dw_c/dp_a (dx/dp = R / (2
// radius)), which is what the double backward needs (see headrecon/ops/hash_grid.py).
//   hash_encode_fwd:         out[n, lF+f] = sum_c coef_c table[l, row_c, f]
//   hash_encode_bwd_table:   grad_table[l, row_c, f] += coef_c g[n, lF+f]   (grad_table zeroed by the caller;
//                            CPU: serial over points within a level, levels in parallel: deterministic; CUDA:
//                            atomicAdd, so the float order of the sums may differ between runs)
//   hash_encode_bwd_points:  grad_p[n, a] = sum_l sum_f g[n, lF+f] sum_c dw_c/dp_a table[l, row_c, f]
#pragma once
#include "common/hd.h"

namespace headrecon {

// Cell of point p at a level of resolution R: lower corner c0 [3] and fractions fr [3]. Returns false
// outside the cube (or for NaN).
template <typename T>
HR_HD bool hash_cell(const T* p, T radius, int64_t R, int64_t* c0, T* fr) {
  for (int a = 0; a < 3; ++a) {
    const T u = (p[a] + radius) / (T(2) * radius);
    if (!(u >= T(0) && u <= T(1))) return false;  // outside, or NaN
    const T x = u * T(R);
    int64_t i = int64_t(x);  // x >= 0: truncation is floor
    if (i >= R) i = R - 1;
    c0[a] = i;
    fr[a] = x - T(i);
  }
  return true;
}

// Table row of corner (cx, cy, cz) at resolution R with S rows: dense or hashed (see the header comment).
HR_HD int64_t hash_row(int64_t cx, int64_t cy, int64_t cz, int64_t R, int64_t S) {
  const int64_t n1 = R + 1;
  if (n1 * n1 * n1 <= S) return (cx * n1 + cy) * n1 + cz;
  return int64_t((uint64_t(cx) ^ (uint64_t(cy) * 2654435761ull) ^ (uint64_t(cz) * 805459861ull)) & uint64_t(S - 1));
}

// The 8 corners of point p at a level of resolution R: rows [8] and coefficients [8] (weights, or the
// directional derivatives along h when h != nullptr). Returns false (nothing written) outside the cube.
template <typename T>
HR_HD bool hash_corners(const T* p, const T* h, T radius, int64_t R, int64_t S, int64_t* rows, T* coef) {
  int64_t c0[3];
  T fr[3];
  if (!hash_cell(p, radius, R, c0, fr)) return false;
  const T scale = T(R) / (T(2) * radius);
  for (int c = 0; c < 8; ++c) {
    const int b[3] = {(c >> 2) & 1, (c >> 1) & 1, c & 1};
    rows[c] = hash_row(c0[0] + b[0], c0[1] + b[1], c0[2] + b[2], R, S);
    T f[3];
    for (int a = 0; a < 3; ++a) f[a] = b[a] ? fr[a] : T(1) - fr[a];
    if (h == nullptr) {
      coef[c] = f[0] * f[1] * f[2];
    } else {
      // d f_a / d p_a = (b_a ? 1 : -1) * scale
      const T d0 = (b[0] ? T(1) : T(-1)) * f[1] * f[2];
      const T d1 = (b[1] ? T(1) : T(-1)) * f[0] * f[2];
      const T d2 = (b[2] ? T(1) : T(-1)) * f[0] * f[1];
      coef[c] = (h[0] * d0 + h[1] * d1 + h[2] * d2) * scale;
    }
  }
  return true;
}

// Element i = n * L + l of the forward: F features of point n at level l.
template <typename T>
HR_HD void hash_encode_fwd_one(const T* table, const T* points, const T* dirs, const int64_t* res, int64_t i,
                               int64_t L, int64_t S, int64_t F, T radius, T* out) {
  const int64_t n = i / L, l = i % L;
  T* o = out + n * L * F + l * F;
  int64_t rows[8];
  T coef[8];
  if (!hash_corners(points + 3 * n, dirs ? dirs + 3 * n : (const T*)nullptr, radius, res[l], S, rows, coef)) {
    for (int64_t f = 0; f < F; ++f) o[f] = T(0);
    return;
  }
  const T* tl = table + l * S * F;
  for (int64_t f = 0; f < F; ++f) {
    T acc = T(0);
    for (int c = 0; c < 8; ++c) acc += coef[c] * tl[rows[c] * F + f];
    o[f] = acc;
  }
}

// Point n's gradient [3] from the features' gradient g [N, L*F]: one pass over the 8 corners per level.
template <typename T>
HR_HD void hash_encode_bwd_points_one(const T* table, const T* points, const T* g, const int64_t* res, int64_t n,
                                      int64_t L, int64_t S, int64_t F, T radius, T* gp) {
  T acc[3] = {T(0), T(0), T(0)};
  const T* p = points + 3 * n;
  const T* gn = g + n * L * F;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t R = res[l];
    int64_t c0[3];
    T fr[3];
    if (!hash_cell(p, radius, R, c0, fr)) break;  // outside the cube: at every level
    const T scale = T(R) / (T(2) * radius);
    const T* tl = table + l * S * F;
    for (int c = 0; c < 8; ++c) {
      const int b[3] = {(c >> 2) & 1, (c >> 1) & 1, c & 1};
      const int64_t row = hash_row(c0[0] + b[0], c0[1] + b[1], c0[2] + b[2], R, S);
      T dot = T(0);
      for (int64_t f = 0; f < F; ++f) dot += gn[l * F + f] * tl[row * F + f];
      T w[3];
      for (int a = 0; a < 3; ++a) w[a] = b[a] ? fr[a] : T(1) - fr[a];
      acc[0] += ((b[0] ? T(1) : T(-1)) * w[1] * w[2] * scale) * dot;
      acc[1] += ((b[1] ? T(1) : T(-1)) * w[0] * w[2] * scale) * dot;
      acc[2] += ((b[2] ? T(1) : T(-1)) * w[0] * w[1] * scale) * dot;
    }
  }
  for (int a = 0; a < 3; ++a) gp[3 * n + a] = acc[a];
}

template <typename T>
void hash_encode_fwd_cpu(const T* table, const T* points, const T* dirs, const int64_t* res, int64_t n, int64_t L,
                         int64_t S, int64_t F, T radius, T* out);
template <typename T>
void hash_encode_bwd_table_cpu(const T* g, const T* points, const T* dirs, const int64_t* res, int64_t n, int64_t L,
                               int64_t S, int64_t F, T radius, T* grad_table);
template <typename T>
void hash_encode_bwd_points_cpu(const T* table, const T* points, const T* g, const int64_t* res, int64_t n,
                                int64_t L, int64_t S, int64_t F, T radius, T* grad_points);

template <typename T>
void hash_encode_fwd_cuda(const T* table, const T* points, const T* dirs, const int64_t* res, int64_t n, int64_t L,
                          int64_t S, int64_t F, T radius, T* out, void* stream);
template <typename T>
void hash_encode_bwd_table_cuda(const T* g, const T* points, const T* dirs, const int64_t* res, int64_t n,
                                int64_t L, int64_t S, int64_t F, T radius, T* grad_table, void* stream);
template <typename T>
void hash_encode_bwd_points_cuda(const T* table, const T* points, const T* g, const int64_t* res, int64_t n,
                                 int64_t L, int64_t S, int64_t F, T radius, T* grad_points, void* stream);

}  // namespace headrecon
