// Counter-based random numbers shared by CPU and CUDA: a uniform in [0, 1) is a pure function of
// (seed, stream, index), so every backend (and the PyTorch reference in headrecon/ops/reference.py)
// draws exactly the same numbers for the same seed, whatever the thread layout.
// The mixer is SplitMix64's finaliser (Steele, Lea & Flood 2014) applied in a three-level chain.
#pragma once
#include "common/hd.h"

namespace headrecon {

HR_HD uint64_t hr_mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Uniform double in [0, 1) with 53 random bits.
HR_HD double hr_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  const uint64_t h = hr_mix64(seed ^ hr_mix64(stream ^ hr_mix64(index)));
  return double(h >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace headrecon
