// FNV-1a, 64-bit: a small, stable hash for fingerprints and seeds that must come out the same
// on every platform and every run (std::hash promises neither).
#pragma once

#include <cstddef>
#include <cstdint>

namespace hlm {

inline constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull;

// Continues hash `h` over n bytes (start from kFnvBasis).
inline uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace hlm
