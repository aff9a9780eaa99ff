// Sphere tracing from both ends of each ray segment (as in IDR), one step for a compacted set of walkers.
//
// Each ray r has two walkers: w = 2r marches forward from near, w = 2r+1 marches backward from far.
// State (flattened [2R] tensors, updated in place):
//   t [2R]       current ray parameter of each walker
//   dt [2R]      length of the walker's last step (0 before its first step)
//   cap [2R]     upper bound on the next step; set after an overshoot (bisection-like step-back), else +inf
//   status [2R]  int32 TraceStatus (common/hd.h)
//   wmin [2R], wmin_t [2R]  smallest SDF sampled by the walker so far and where (+inf / 0 initially): the
//                minimum-SDF point of rays that miss, at no extra network evaluation (sphere tracing slows
//                down where the ray passes close to the surface, so it samples the closest approach densely)
// Inputs of one step:
//   walkers [M] int64 (indices into the 2R state, all kActive), sdf [M] the SDF at the walkers' current points,
//   threshold (convergence on |sdf|), step_scale (fraction of the SDF stepped, 1 = classic sphere tracing).
// A walker converges when |sdf| < threshold; a negative SDF on the first sample marks it kInside; a negative
// SDF later means it overshot: it steps back by half its last step and caps later steps (so it brackets the
// surface like bisection). After all walkers moved, a per-ray pass stops rays whose walkers crossed (kMet),
// and stops the back walker once the front walker is done.
#pragma once
#include "common/hd.h"

namespace headrecon {

template <typename T>
HR_HD void sphere_trace_walker(int64_t w, T s, T threshold, T step_scale, T* t, T* dt, T* cap, int32_t* status,
                                T* wmin, T* wmin_t) {
  const T dir = (w & 1) ? T(-1) : T(1);
  if (s < wmin[w]) {
    wmin[w] = s;
    wmin_t[w] = t[w];
  }
  if (hr_isnan(s)) {  // never produced by the Python layer (it raises first); stop the walker defensively
    status[w] = kMet;
    return;
  }
  const T as = s < T(0) ? -s : s;
  if (as < threshold) {
    status[w] = kConverged;
    return;
  }
  if (s < T(0)) {
    if (dt[w] == T(0)) {
      status[w] = kInside;
      return;
    }
    dt[w] = dt[w] * T(0.5);
    t[w] -= dir * dt[w];
    cap[w] = dt[w];
    return;
  }
  const T step = hr_min(s * step_scale, cap[w]);
  t[w] += dir * step;
  dt[w] = step;
}

template <typename T>
HR_HD void sphere_trace_ray(int64_t r, const T* t, int32_t* status) {
  int32_t* sf = status + 2 * r;
  int32_t* sb = sf + 1;
  const T tf = t[2 * r], tb = t[2 * r + 1];
  if (*sf == kActive && tf >= tb) {
    *sf = kMet;
    if (*sb == kActive) *sb = kMet;
  }
  if (*sf != kActive && *sb == kActive) *sb = kIdle;
}

template <typename T>
void sphere_trace_step_cpu(const int64_t* walkers, const T* sdf, int64_t m, int64_t n_rays, T threshold,
                           T step_scale, T* t, T* dt, T* cap, int32_t* status, T* wmin, T* wmin_t);
template <typename T>
void sphere_trace_step_cuda(const int64_t* walkers, const T* sdf, int64_t m, int64_t n_rays, T threshold,
                            T step_scale, T* t, T* dt, T* cap, int32_t* status, T* wmin, T* wmin_t, void* stream);

}  // namespace headrecon
