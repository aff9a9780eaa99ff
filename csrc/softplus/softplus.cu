// CUDA backend of the softplus activation (see softplus.h): one thread per element. Pure CUDA.
#include <cuda_runtime.h>
#include "common/cuda_utils.cuh"
#include "softplus/softplus.h"

namespace headrecon {

__global__ void softplus_kernel(const float* x, float* y, int64_t n, float beta, float inv_beta, float threshold) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x)
    y[i] = softplus_one(x[i], beta, inv_beta, threshold);
}

void softplus_cuda(const float* x, float* y, int64_t n, float beta, float threshold, void* stream) {
  if (n == 0) return;
  const float inv_beta = 1.0f / beta;  // on the host, as the CPU backend computes it
  softplus_kernel<<<hr_blocks(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, y, n, beta, inv_beta,
                                                                                    threshold);
}

}  // namespace headrecon
