// CPU backend of the softplus activation (see softplus.h): one loop over the elements, in parallel chunks.
// GCC builds the loop three times (x86-64-v4: AVX-512, x86-64-v3: AVX2, and the baseline) and picks one per CPU
// when the library loads; the per-element operations are the same in each, so the results are too.
#include <ATen/Parallel.h>
#include "softplus/softplus.h"

namespace headrecon {
namespace {

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
void softplus_loop(const float* __restrict x, float* __restrict y, int64_t n, float beta, float inv_beta,
                   float threshold) {
  for (int64_t i = 0; i < n; ++i) y[i] = softplus_one(x[i], beta, inv_beta, threshold);
}

}  // namespace

void softplus_cpu(const float* x, float* y, int64_t n, float beta, float threshold) {
  const float inv_beta = 1.0f / beta;
  at::parallel_for(0, n, 1 << 15, [&](int64_t b, int64_t e) {
    softplus_loop(x + b, y + b, e - b, beta, inv_beta, threshold);
  });
}

}  // namespace headrecon
