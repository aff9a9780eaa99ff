// Torch-facing glue of headrecon._C: argument checks, allocation, device guard / current stream, and dispatch
// to the CPU backends (*_cpu.cpp) or the pure-CUDA backends (*.cu). Shapes are documented in each op's header.
// The Python layer (headrecon/ops) validates arguments first with friendlier messages; the checks here make sure
// that a direct call of headrecon._C with bad input raises a Python exception instead of crashing.
#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>
#include <torch/extension.h>

#include "composite/composite.h"
#include "hash_grid/hash_grid.h"
#include "ray_sphere/ray_sphere.h"
#include "sdf_cache/sdf_cache.h"
#include "search/search.h"
#include "softplus/softplus.h"
#include "sphere_trace/sphere_trace.h"

#ifdef HEADRECON_WITH_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace headrecon {
namespace {

using at::Tensor;

void check_tensor(const Tensor& t, const char* name, const Tensor& ref) {
  TORCH_CHECK_VALUE(t.defined(), name, " is undefined");
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " is on ", t.device(), " but expected ", ref.device());
  TORCH_CHECK_VALUE(t.is_contiguous(), name, " must be contiguous (call .contiguous())");
}

void check_float(const Tensor& t, const char* name, const Tensor& ref) {
  check_tensor(t, name, ref);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
                   " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), name, " has dtype ", t.scalar_type(), " but expected ",
                   ref.scalar_type());
}

// Index bounds are checked on the host: free for CPU tensors, but a CUDA tensor's min/max must be copied back,
// which makes the host wait for the device at every op call. On CUDA the check runs only with
// HEADRECON_CHECK_INDICES=1 (debugging); the tracer's indices come from nonzero() and are in range by construction.
bool check_cuda_indices() {
  static const bool on = [] {
    const char* v = std::getenv("HEADRECON_CHECK_INDICES");
    return v != nullptr && std::string(v) == "1";
  }();
  return on;
}

// Smallest and largest value of a non-empty contiguous int64 tensor (a CUDA one is copied to the host first), read
// as plain numbers: the checks below throw with no tensor alive in the throwing frame. (The same check written
// with at::aminmax and its result alive at the throw crashed a GCC 13.3 build with torch 2.11 on an x86-64 GPU
// machine, while every other failed check there raised; docs/results/gpu-check.md.)
std::pair<int64_t, int64_t> int64_range(const Tensor& t) {
  const Tensor h = t.is_cuda() ? t.cpu() : t;
  const int64_t* p = h.data_ptr<int64_t>();
  int64_t lo = p[0], hi = p[0];
  for (int64_t i = 1, n = h.numel(); i < n; ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
  }
  return {lo, hi};
}

// True when every row (start, count) of a contiguous int64 [R,2] tensor lies within [0, S].
bool packed_in_range(const Tensor& packed, int64_t S) {
  const Tensor h = packed.is_cuda() ? packed.cpu() : packed;
  const int64_t* p = h.data_ptr<int64_t>();
  for (int64_t i = 0, n = h.size(0); i < n; ++i) {
    const int64_t start = p[2 * i], count = p[2 * i + 1];
    if (start < 0 || count < 0 || start > S - count) return false;
  }
  return true;
}

// The first value of w[0..m) (all in [0, n)) that occurs twice, or -1.
int64_t first_duplicate(const int64_t* w, int64_t m, int64_t n) {
  std::vector<uint8_t> seen(n, 0);
  for (int64_t i = 0; i < m; ++i) {
    if (seen[w[i]]) return w[i];
    seen[w[i]] = 1;
  }
  return -1;
}

void check_index(const Tensor& t, const char* name, const Tensor& ref, int64_t bound) {
  check_tensor(t, name, ref);
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1, name, " must be 1-D, got shape ", t.sizes());
  if (t.numel() > 0 && (!t.is_cuda() || check_cuda_indices())) {
    const std::pair<int64_t, int64_t> r = int64_range(t);
    TORCH_CHECK_VALUE(r.first >= 0 && r.second < bound, name, " has indices outside [0, ", bound, ")");
  }
}

void check_rays(const Tensor& origins, const Tensor& dirs) {
  check_float(origins, "origins", origins);
  check_float(dirs, "dirs", origins);
  TORCH_CHECK_VALUE(origins.dim() == 2 && origins.size(1) == 3, "origins must be [R,3], got ", origins.sizes());
  TORCH_CHECK_VALUE(dirs.sizes() == origins.sizes(), "dirs must match origins ", origins.sizes(), ", got ",
                    dirs.sizes());
}

void check_1d(const Tensor& t, const char* name, const Tensor& ref, int64_t n) {
  check_float(t, name, ref);
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) == n, name, " must be [", n, "], got ", t.sizes());
}

#ifdef HEADRECON_WITH_CUDA
#define HR_CUDA_CALL(ref, CALL)                                                                \
  do {                                                                                         \
    const c10::cuda::CUDAGuard guard_(ref.device());                                           \
    void* stream = static_cast<void*>(c10::cuda::getCurrentCUDAStream(ref.device().index()).stream()); \
    CALL;                                                                                      \
    C10_CUDA_KERNEL_LAUNCH_CHECK();                                                            \
  } while (0)
#else
#define HR_CUDA_CALL(ref, CALL)                                                                          \
  TORCH_CHECK(false, "headrecon._C was built without its CUDA backend, but got a tensor on ", ref.device(), \
              ". Rebuild on a machine with CUDA torch and nvcc: `pip install --no-build-isolation -e .` "  \
              "(HEADRECON_FORCE_CUDA=1 forces it), or use backend='torch'.")
#endif

#define HR_DEVICE_SWITCH(ref, CPU_CALL, CUDA_CALL)                                            \
  do {                                                                                       \
    if (ref.is_cuda()) {                                                                     \
      HR_CUDA_CALL(ref, CUDA_CALL);                                                          \
    } else {                                                                                 \
      TORCH_CHECK(ref.is_cpu(), "headrecon kernels support cpu and cuda tensors, got ", ref.device()); \
      CPU_CALL;                                                                              \
    }                                                                                        \
  } while (0)

std::tuple<Tensor, Tensor, Tensor> ray_sphere_intersect(const Tensor& origins, const Tensor& dirs, double radius) {
  check_rays(origins, dirs);
  TORCH_CHECK_VALUE(radius > 0, "radius must be positive, got ", radius);
  const int64_t n = origins.size(0);
  Tensor near = at::empty({n}, origins.options());
  Tensor far = at::empty({n}, origins.options());
  Tensor mask = at::empty({n}, origins.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "ray_sphere_intersect", [&] {
    const scalar_t* o = origins.data_ptr<scalar_t>();
    const scalar_t* d = dirs.data_ptr<scalar_t>();
    scalar_t* a = near.data_ptr<scalar_t>();
    scalar_t* b = far.data_ptr<scalar_t>();
    bool* m = mask.data_ptr<bool>();
    HR_DEVICE_SWITCH(origins, ray_sphere_cpu<scalar_t>(o, d, scalar_t(radius), n, a, b, m),
                     ray_sphere_cuda<scalar_t>(o, d, scalar_t(radius), n, a, b, m, stream));
  });
  return {near, far, mask};
}

void sphere_trace_step(Tensor t, Tensor dt, Tensor cap, Tensor status, Tensor wmin, Tensor wmin_t,
                       const Tensor& walkers, const Tensor& sdf, double threshold, double step_scale) {
  check_float(t, "t", t);
  TORCH_CHECK_VALUE(t.dim() == 1 && t.size(0) % 2 == 0, "t must be [2R], got ", t.sizes());
  const int64_t n2 = t.size(0), m = walkers.numel();
  check_1d(dt, "dt", t, n2);
  check_1d(cap, "cap", t, n2);
  check_1d(wmin, "wmin", t, n2);
  check_1d(wmin_t, "wmin_t", t, n2);
  check_tensor(status, "status", t);
  TORCH_CHECK_TYPE(status.scalar_type() == at::kInt, "status must be int32, got ", status.scalar_type());
  TORCH_CHECK_VALUE(status.dim() == 1 && status.size(0) == n2, "status must be [", n2, "], got ", status.sizes());
  check_index(walkers, "walkers", t, n2);
  if (!walkers.is_cuda() && m > 0) {  // each walker once (on CUDA: the caller's contract, unchecked: no host sync)
    const int64_t dup = first_duplicate(walkers.data_ptr<int64_t>(), m, n2);
    TORCH_CHECK_VALUE(dup < 0, "walkers has duplicate index ", dup, " (each active walker once)");
  }
  check_1d(sdf, "sdf", t, m);
  TORCH_CHECK_VALUE(threshold > 0 && step_scale > 0, "threshold and step_scale must be positive");
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "sphere_trace_step", [&] {
    const int64_t* w = walkers.data_ptr<int64_t>();
    const scalar_t* s = sdf.data_ptr<scalar_t>();
    scalar_t* tp = t.data_ptr<scalar_t>();
    scalar_t* dtp = dt.data_ptr<scalar_t>();
    scalar_t* cp = cap.data_ptr<scalar_t>();
    int32_t* st = status.data_ptr<int32_t>();
    scalar_t* mn = wmin.data_ptr<scalar_t>();
    scalar_t* mt = wmin_t.data_ptr<scalar_t>();
    const scalar_t th = scalar_t(threshold), sc = scalar_t(step_scale);
    HR_DEVICE_SWITCH(t, sphere_trace_step_cpu<scalar_t>(w, s, m, n2 / 2, th, sc, tp, dtp, cp, st, mn, mt),
                     sphere_trace_step_cuda<scalar_t>(w, s, m, n2 / 2, th, sc, tp, dtp, cp, st, mn, mt, stream));
  });
}

Tensor ray_points(const Tensor& origins, const Tensor& dirs, const Tensor& ray_idx, const Tensor& t) {
  check_rays(origins, dirs);
  check_index(ray_idx, "ray_idx", origins, origins.size(0));
  check_float(t, "t", origins);
  const int64_t m = ray_idx.size(0);
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == m, "t must be [M,K] with M = len(ray_idx) = ", m, ", got ",
                    t.sizes());
  const int64_t k = t.size(1);
  Tensor out = at::empty({m, k, 3}, origins.options());
  AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "ray_points", [&] {
    const scalar_t* o = origins.data_ptr<scalar_t>();
    const scalar_t* d = dirs.data_ptr<scalar_t>();
    const int64_t* r = ray_idx.data_ptr<int64_t>();
    const scalar_t* tp = t.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(origins, ray_points_cpu<scalar_t>(o, d, r, tp, m, k, op),
                     ray_points_cuda<scalar_t>(o, d, r, tp, m, k, op, stream));
  });
  return out;
}

std::tuple<Tensor, Tensor> search_samples(const Tensor& origins, const Tensor& dirs, const Tensor& ray_idx,
                                          const Tensor& lo, const Tensor& hi, int64_t n, bool interior) {
  check_rays(origins, dirs);
  check_index(ray_idx, "ray_idx", origins, origins.size(0));
  const int64_t m = ray_idx.size(0);
  check_1d(lo, "lo", origins, m);
  check_1d(hi, "hi", origins, m);
  TORCH_CHECK_VALUE(n >= 1, "n must be >= 1, got ", n);
  Tensor t = at::empty({m, n}, origins.options());
  Tensor pts = at::empty({m, n, 3}, origins.options());
  AT_DISPATCH_FLOATING_TYPES(origins.scalar_type(), "search_samples", [&] {
    const scalar_t* o = origins.data_ptr<scalar_t>();
    const scalar_t* d = dirs.data_ptr<scalar_t>();
    const int64_t* r = ray_idx.data_ptr<int64_t>();
    const scalar_t* l = lo.data_ptr<scalar_t>();
    const scalar_t* h = hi.data_ptr<scalar_t>();
    scalar_t* tp = t.data_ptr<scalar_t>();
    scalar_t* pp = pts.data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(origins, search_samples_cpu<scalar_t>(o, d, r, l, h, m, n, interior, tp, pp),
                     search_samples_cuda<scalar_t>(o, d, r, l, h, m, n, interior, tp, pp, stream));
  });
  return {t, pts};
}

std::vector<Tensor> search_select(const Tensor& t, const Tensor& sdf) {
  check_float(t, "t", t);
  check_float(sdf, "sdf", t);
  TORCH_CHECK_VALUE(t.dim() == 2, "t must be [M,n], got ", t.sizes());
  TORCH_CHECK_VALUE(sdf.sizes() == t.sizes(), "sdf must match t ", t.sizes(), ", got ", sdf.sizes());
  const int64_t m = t.size(0), n = t.size(1);
  TORCH_CHECK_VALUE(n >= 1 || m == 0, "search_select needs at least one sample per ray");
  Tensor first = at::empty({m}, t.options().dtype(at::kLong));
  std::vector<Tensor> out{first};
  for (int i = 0; i < 6; ++i) out.push_back(at::empty({m}, t.options()));
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "search_select", [&] {
    const scalar_t* tp = t.data_ptr<scalar_t>();
    const scalar_t* sp = sdf.data_ptr<scalar_t>();
    int64_t* f = first.data_ptr<int64_t>();
    scalar_t* o[6];
    for (int i = 0; i < 6; ++i) o[i] = out[i + 1].data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(t, search_select_cpu<scalar_t>(tp, sp, m, n, f, o[0], o[1], o[2], o[3], o[4], o[5]),
                     search_select_cuda<scalar_t>(tp, sp, m, n, f, o[0], o[1], o[2], o[3], o[4], o[5], stream));
  });
  return out;
}

Tensor secant_step(Tensor t_lo, Tensor t_hi, Tensor s_lo, Tensor s_hi, Tensor side, const c10::optional<Tensor>& t_mid,
                   const c10::optional<Tensor>& s_mid, bool update) {
  check_float(t_lo, "t_lo", t_lo);
  TORCH_CHECK_VALUE(t_lo.dim() == 1, "t_lo must be [M], got ", t_lo.sizes());
  const int64_t m = t_lo.size(0);
  check_1d(t_hi, "t_hi", t_lo, m);
  check_1d(s_lo, "s_lo", t_lo, m);
  check_1d(s_hi, "s_hi", t_lo, m);
  check_tensor(side, "side", t_lo);
  TORCH_CHECK_TYPE(side.scalar_type() == at::kInt, "side must be int32, got ", side.scalar_type());
  TORCH_CHECK_VALUE(side.dim() == 1 && side.size(0) == m, "side must be [", m, "]");
  if (update) {
    TORCH_CHECK_VALUE(t_mid.has_value() && s_mid.has_value(), "update=True needs t_mid and s_mid");
    check_1d(*t_mid, "t_mid", t_lo, m);
    check_1d(*s_mid, "s_mid", t_lo, m);
  }
  Tensor t_next = at::empty({m}, t_lo.options());
  AT_DISPATCH_FLOATING_TYPES(t_lo.scalar_type(), "secant_step", [&] {
    scalar_t* a = t_lo.data_ptr<scalar_t>();
    scalar_t* b = t_hi.data_ptr<scalar_t>();
    scalar_t* c = s_lo.data_ptr<scalar_t>();
    scalar_t* d = s_hi.data_ptr<scalar_t>();
    int32_t* sd = side.data_ptr<int32_t>();
    const scalar_t* tm = update ? t_mid->data_ptr<scalar_t>() : nullptr;
    const scalar_t* sm = update ? s_mid->data_ptr<scalar_t>() : nullptr;
    scalar_t* nx = t_next.data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(t_lo, secant_step_cpu<scalar_t>(a, b, c, d, sd, tm, sm, m, update, nx),
                     secant_step_cuda<scalar_t>(a, b, c, d, sd, tm, sm, m, update, nx, stream));
  });
  return t_next;
}

void check_grid(const Tensor& grid, const Tensor& points) {
  check_float(points, "points", points);
  TORCH_CHECK_VALUE(points.dim() == 2 && points.size(1) == 3, "points must be [N,3], got ", points.sizes());
  check_float(grid, "grid", points);
  TORCH_CHECK_VALUE(grid.dim() == 3 && grid.size(0) == grid.size(1) && grid.size(1) == grid.size(2) &&
                        grid.size(0) > 0,
                    "grid must be [D,D,D], got ", grid.sizes());
}

std::tuple<Tensor, Tensor> cache_query(const Tensor& grid, const Tensor& points, double radius, double eps,
                                       double p_force, int64_t seed, int64_t counter) {
  check_grid(grid, points);
  TORCH_CHECK_VALUE(radius > 0, "radius must be positive");
  TORCH_CHECK_VALUE(p_force >= 0 && p_force <= 1, "p_force must be in [0, 1], got ", p_force);
  const int64_t n = points.size(0), res = grid.size(0);
  const double diag = 2.0 * radius / double(res) * std::sqrt(3.0);
  Tensor values = at::empty({n}, points.options());
  Tensor need = at::empty({n}, points.options().dtype(at::kBool));
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "cache_query", [&] {
    const scalar_t* g = grid.data_ptr<scalar_t>();
    const scalar_t* p = points.data_ptr<scalar_t>();
    scalar_t* v = values.data_ptr<scalar_t>();
    bool* nd = need.data_ptr<bool>();
    const uint64_t s = uint64_t(seed), c = uint64_t(counter);
    HR_DEVICE_SWITCH(points,
                     cache_query_cpu<scalar_t>(g, p, n, scalar_t(radius), res, scalar_t(eps), scalar_t(diag), p_force,
                                               s, c, v, nd),
                     cache_query_cuda<scalar_t>(g, p, n, scalar_t(radius), res, scalar_t(eps), scalar_t(diag), p_force,
                                                s, c, v, nd, stream));
  });
  return {values, need};
}

void cache_update(Tensor grid, const Tensor& points, const Tensor& values, double radius) {
  check_grid(grid, points);
  check_1d(values, "values", points, points.size(0));
  TORCH_CHECK_VALUE(radius > 0, "radius must be positive");
  const int64_t n = points.size(0), res = grid.size(0);
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "cache_update", [&] {
    scalar_t* g = grid.data_ptr<scalar_t>();
    const scalar_t* p = points.data_ptr<scalar_t>();
    const scalar_t* v = values.data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(points, cache_update_cpu<scalar_t>(g, p, v, n, scalar_t(radius), res),
                     cache_update_cuda<scalar_t>(g, p, v, n, scalar_t(radius), res, stream));
  });
}

// --- multiresolution hash encoding (hash_grid/hash_grid.h) ---
void check_hash(const Tensor& points, const Tensor& table, const Tensor& res, const Tensor& dirs, double radius) {
  check_float(points, "points", points);
  TORCH_CHECK_VALUE(points.dim() == 2 && points.size(1) == 3, "points must be [N,3], got ", points.sizes());
  check_float(table, "table", points);
  TORCH_CHECK_VALUE(table.dim() == 3 && table.size(0) >= 1 && table.size(2) >= 1, "table must be [L,S,F], got ",
                    table.sizes());
  const int64_t S = table.size(1);
  TORCH_CHECK_VALUE(S >= 1 && (S & (S - 1)) == 0, "table entries per level S must be a power of two, got ", S);
  check_tensor(res, "res", points);
  TORCH_CHECK_TYPE(res.scalar_type() == at::kLong, "res must be int64, got ", res.scalar_type());
  TORCH_CHECK_VALUE(res.dim() == 1 && res.size(0) == table.size(0), "res must be [L] = [", table.size(0), "], got ",
                    res.sizes());
  if (!res.is_cuda() && res.numel()) {
    const std::pair<int64_t, int64_t> r = int64_range(res);
    TORCH_CHECK_VALUE(r.first >= 1 && r.second <= (int64_t(1) << 20), "res values must be in [1, 2^20]");
  }
  if (dirs.defined()) {
    check_float(dirs, "dirs", points);
    TORCH_CHECK_VALUE(dirs.sizes() == points.sizes(), "dirs must match points ", points.sizes(), ", got ",
                      dirs.sizes());
  }
  TORCH_CHECK_VALUE(radius > 0, "radius must be positive, got ", radius);
}

Tensor hash_encode_fwd(const Tensor& points, const Tensor& table, const Tensor& res, const c10::optional<Tensor>& dirs,
                       double radius) {
  const Tensor d = dirs.has_value() ? *dirs : Tensor();
  check_hash(points, table, res, d, radius);
  const int64_t n = points.size(0), L = table.size(0), S = table.size(1), F = table.size(2);
  Tensor out = at::empty({n, L * F}, points.options());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "hash_encode_fwd", [&] {
    const scalar_t* tb = table.data_ptr<scalar_t>();
    const scalar_t* p = points.data_ptr<scalar_t>();
    const scalar_t* dp = d.defined() ? d.data_ptr<scalar_t>() : nullptr;
    const int64_t* r = res.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(points, hash_encode_fwd_cpu<scalar_t>(tb, p, dp, r, n, L, S, F, scalar_t(radius), o),
                     hash_encode_fwd_cuda<scalar_t>(tb, p, dp, r, n, L, S, F, scalar_t(radius), o, stream));
  });
  return out;
}

Tensor hash_encode_bwd_table(const Tensor& grad, const Tensor& points, const Tensor& res,
                             const c10::optional<Tensor>& dirs, int64_t S, int64_t F, double radius) {
  const Tensor d = dirs.has_value() ? *dirs : Tensor();
  const int64_t L = res.size(0), n = points.size(0);
  TORCH_CHECK_VALUE(F >= 1, "F must be >= 1");
  Tensor grad_table = at::zeros({L, S, F}, points.options());
  check_hash(points, grad_table, res, d, radius);
  check_float(grad, "grad", points);
  TORCH_CHECK_VALUE(grad.dim() == 2 && grad.size(0) == n && grad.size(1) == L * F, "grad must be [", n, ",", L * F,
                    "], got ", grad.sizes());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "hash_encode_bwd_table", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* p = points.data_ptr<scalar_t>();
    const scalar_t* dp = d.defined() ? d.data_ptr<scalar_t>() : nullptr;
    const int64_t* r = res.data_ptr<int64_t>();
    scalar_t* gt = grad_table.data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(points, hash_encode_bwd_table_cpu<scalar_t>(g, p, dp, r, n, L, S, F, scalar_t(radius), gt),
                     hash_encode_bwd_table_cuda<scalar_t>(g, p, dp, r, n, L, S, F, scalar_t(radius), gt, stream));
  });
  return grad_table;
}

Tensor hash_encode_bwd_points(const Tensor& grad, const Tensor& points, const Tensor& table, const Tensor& res,
                              double radius) {
  check_hash(points, table, res, Tensor(), radius);
  const int64_t n = points.size(0), L = table.size(0), S = table.size(1), F = table.size(2);
  check_float(grad, "grad", points);
  TORCH_CHECK_VALUE(grad.dim() == 2 && grad.size(0) == n && grad.size(1) == L * F, "grad must be [", n, ",", L * F,
                    "], got ", grad.sizes());
  Tensor gp = at::empty({n, 3}, points.options());
  AT_DISPATCH_FLOATING_TYPES(points.scalar_type(), "hash_encode_bwd_points", [&] {
    const scalar_t* g = grad.data_ptr<scalar_t>();
    const scalar_t* p = points.data_ptr<scalar_t>();
    const scalar_t* tb = table.data_ptr<scalar_t>();
    const int64_t* r = res.data_ptr<int64_t>();
    scalar_t* o = gp.data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(points, hash_encode_bwd_points_cpu<scalar_t>(tb, p, g, r, n, L, S, F, scalar_t(radius), o),
                     hash_encode_bwd_points_cuda<scalar_t>(tb, p, g, r, n, L, S, F, scalar_t(radius), o, stream));
  });
  return gp;
}

// --- volume-rendering compositing (composite/composite.h) ---
void check_packed(const Tensor& packed, const Tensor& sigmas, const Tensor& deltas, const Tensor& values) {
  check_float(sigmas, "sigmas", sigmas);
  TORCH_CHECK_VALUE(sigmas.dim() == 1, "sigmas must be [S], got ", sigmas.sizes());
  const int64_t S = sigmas.size(0);
  check_1d(deltas, "deltas", sigmas, S);
  check_float(values, "values", sigmas);
  TORCH_CHECK_VALUE(values.dim() == 2 && values.size(0) == S, "values must be [S,C] with S = ", S, ", got ",
                    values.sizes());
  check_tensor(packed, "packed", sigmas);
  TORCH_CHECK_TYPE(packed.scalar_type() == at::kLong, "packed must be int64, got ", packed.scalar_type());
  TORCH_CHECK_VALUE(packed.dim() == 2 && packed.size(1) == 2, "packed must be [R,2], got ", packed.sizes());
  if (packed.numel() && (!packed.is_cuda() || check_cuda_indices())) {
    TORCH_CHECK_VALUE(packed_in_range(packed, S), "packed has rays outside the ", S,
                      " samples (need 0 <= start, 0 <= count, start + count <= S)");
  }
}

std::tuple<Tensor, Tensor, Tensor> composite_fwd(const Tensor& packed, const Tensor& sigmas, const Tensor& deltas,
                                                 const Tensor& values) {
  check_packed(packed, sigmas, deltas, values);
  const int64_t R = packed.size(0), C = values.size(1);
  Tensor out = at::empty({R, C}, values.options());
  Tensor opacity = at::empty({R}, values.options());
  Tensor weights = at::zeros({sigmas.size(0)}, values.options());
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_fwd", [&] {
    const int64_t* pk = packed.data_ptr<int64_t>();
    const scalar_t* sg = sigmas.data_ptr<scalar_t>();
    const scalar_t* dl = deltas.data_ptr<scalar_t>();
    const scalar_t* v = values.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    scalar_t* op = opacity.data_ptr<scalar_t>();
    scalar_t* w = weights.data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(sigmas, composite_fwd_cpu<scalar_t>(pk, sg, dl, v, R, C, o, op, w),
                     composite_fwd_cuda<scalar_t>(pk, sg, dl, v, R, C, o, op, w, stream));
  });
  return {out, opacity, weights};
}

std::tuple<Tensor, Tensor> composite_bwd(const Tensor& packed, const Tensor& sigmas, const Tensor& deltas,
                                         const Tensor& values, const Tensor& g_out, const Tensor& g_opacity) {
  check_packed(packed, sigmas, deltas, values);
  const int64_t R = packed.size(0), C = values.size(1);
  check_float(g_out, "g_out", sigmas);
  TORCH_CHECK_VALUE(g_out.dim() == 2 && g_out.size(0) == R && g_out.size(1) == C, "g_out must be [", R, ",", C,
                    "], got ", g_out.sizes());
  check_1d(g_opacity, "g_opacity", sigmas, R);
  Tensor gs = at::zeros_like(sigmas);
  Tensor gv = at::zeros_like(values);
  AT_DISPATCH_FLOATING_TYPES(sigmas.scalar_type(), "composite_bwd", [&] {
    const int64_t* pk = packed.data_ptr<int64_t>();
    const scalar_t* sg = sigmas.data_ptr<scalar_t>();
    const scalar_t* dl = deltas.data_ptr<scalar_t>();
    const scalar_t* v = values.data_ptr<scalar_t>();
    const scalar_t* go = g_out.data_ptr<scalar_t>();
    const scalar_t* gop = g_opacity.data_ptr<scalar_t>();
    scalar_t* a = gs.data_ptr<scalar_t>();
    scalar_t* b = gv.data_ptr<scalar_t>();
    HR_DEVICE_SWITCH(sigmas, composite_bwd_cpu<scalar_t>(pk, sg, dl, v, go, gop, R, C, a, b),
                     composite_bwd_cuda<scalar_t>(pk, sg, dl, v, go, gop, R, C, a, b, stream));
  });
  return {gs, gv};
}

// --- softplus activation (softplus/softplus.h): float32 ---
Tensor softplus_forward(const Tensor& x, double beta, double threshold) {
  TORCH_CHECK_VALUE(x.defined(), "x is undefined");
  TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "softplus_forward: x must be float32, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.is_contiguous(), "x must be contiguous (call .contiguous())");
  TORCH_CHECK_VALUE(beta > 0, "softplus_forward: beta must be positive, got ", beta);
  Tensor y = at::empty_like(x);
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t n = x.numel();
  const float b = static_cast<float>(beta), th = static_cast<float>(threshold);
  HR_DEVICE_SWITCH(x, softplus_cpu(xp, yp, n, b, th), softplus_cuda(xp, yp, n, b, th, stream));
  return y;
}

bool with_cuda() {
#ifdef HEADRECON_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace
}  // namespace headrecon

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace headrecon;
  m.doc() = "headrecon ray-marching kernels (see csrc/*/*.h for shapes; use them through headrecon.ops)";
  m.def("with_cuda", &with_cuda, "True when the CUDA backend was compiled in");
  m.def("torch_version", [] { return std::string(TORCH_VERSION); }, "torch version the extension was built with");
  m.def("ray_sphere_intersect", &ray_sphere_intersect, py::arg("origins"), py::arg("dirs"), py::arg("radius"));
  m.def("sphere_trace_step", &sphere_trace_step, py::arg("t"), py::arg("dt"), py::arg("cap"), py::arg("status"),
        py::arg("wmin"), py::arg("wmin_t"), py::arg("walkers"), py::arg("sdf"), py::arg("threshold"), py::arg("step_scale"));
  m.def("ray_points", &ray_points, py::arg("origins"), py::arg("dirs"), py::arg("ray_idx"), py::arg("t"));
  m.def("search_samples", &search_samples, py::arg("origins"), py::arg("dirs"), py::arg("ray_idx"), py::arg("lo"),
        py::arg("hi"), py::arg("n"), py::arg("interior"));
  m.def("search_select", &search_select, py::arg("t"), py::arg("sdf"));
  m.def("secant_step", &secant_step, py::arg("t_lo"), py::arg("t_hi"), py::arg("s_lo"), py::arg("s_hi"),
        py::arg("side"), py::arg("t_mid"), py::arg("s_mid"), py::arg("update"));
  m.def("cache_query", &cache_query, py::arg("grid"), py::arg("points"), py::arg("radius"), py::arg("eps"),
        py::arg("p_force"), py::arg("seed"), py::arg("counter"));
  m.def("cache_update", &cache_update, py::arg("grid"), py::arg("points"), py::arg("values"), py::arg("radius"));
  m.def("softplus_forward", &softplus_forward, py::arg("x"), py::arg("beta"), py::arg("threshold"));
  m.def("composite_fwd", &composite_fwd, py::arg("packed"), py::arg("sigmas"), py::arg("deltas"), py::arg("values"));
  m.def("composite_bwd", &composite_bwd, py::arg("packed"), py::arg("sigmas"), py::arg("deltas"), py::arg("values"),
        py::arg("g_out"), py::arg("g_opacity"));
  m.def("hash_encode_fwd", &hash_encode_fwd, py::arg("points"), py::arg("table"), py::arg("res"), py::arg("dirs"),
        py::arg("radius"));
  m.def("hash_encode_bwd_table", &hash_encode_bwd_table, py::arg("grad"), py::arg("points"), py::arg("res"),
        py::arg("dirs"), py::arg("S"), py::arg("F"), py::arg("radius"));
  m.def("hash_encode_bwd_points", &hash_encode_bwd_points, py::arg("grad"), py::arg("points"), py::arg("table"),
        py::arg("res"), py::arg("radius"));
}
