// Distribution helpers: tempered softmax, argmax and inverse-CDF sampling.
#include "method/distribution.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

namespace hlm::dist {

std::vector<float> softmax(std::span<const float> logits, float temperature) {
  assert(temperature > 0.0f);
  std::vector<float> out(logits.size(), 0.0f);
  if (logits.empty()) return out;
  float m = -std::numeric_limits<float>::infinity();
  for (float z : logits) m = z > m ? z : m;
  if (m == -std::numeric_limits<float>::infinity()) return out;
  const double inv_t = 1.0 / temperature;
  double total = 0.0;
  std::vector<double> e(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    e[i] = std::exp((static_cast<double>(logits[i]) - m) * inv_t);
    total += e[i];
  }
  for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<float>(e[i] / total);
  return out;
}

int32_t argmax(std::span<const float> v) {
  if (v.empty()) return -1;
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] > v[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

int32_t sample_weights(std::span<const float> weights, double u) {
  // Two levels over vocabulary-sized rows: block sums (kLanes independent partial sums, where
  // one running sum would wait on every add), the block the target falls in, then a scan of
  // that block alone.
  constexpr size_t kBlock = 256, kLanes = 8;
  const size_t n = weights.size(), n_blocks = (n + kBlock - 1) / kBlock;
  thread_local std::vector<double> block_sum;
  block_sum.assign(n_blocks, 0.0);
  double total = 0.0;
  size_t last_block = 0;  // the last block with positive weight
  for (size_t b = 0; b < n_blocks; ++b) {
    const size_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    double part[kLanes] = {};
    size_t i = lo;
    for (; i + kLanes <= hi; i += kLanes) {
      for (size_t l = 0; l < kLanes; ++l) part[l] += std::max(weights[i + l], 0.0f);
    }
    double sum = 0.0;
    for (double p : part) sum += p;
    for (; i < hi; ++i) sum += std::max(weights[i], 0.0f);
    block_sum[b] = sum;
    total += sum;
    if (sum > 0.0) last_block = b;
  }
  if (!(total > 0.0)) return -1;
  const double target = u * total;
  double run = 0.0;
  int32_t last_positive = -1;
  for (size_t b = 0; b < n_blocks; ++b) {
    if (block_sum[b] <= 0.0) continue;
    // Skip whole blocks that end at or below the target; the last positive block is always
    // scanned, so rounding between the two summation orders cannot lose the draw.
    if (run + block_sum[b] <= target && b != last_block) {
      run += block_sum[b];
      continue;
    }
    for (size_t i = b * kBlock, hi = std::min(n, i + kBlock); i < hi; ++i) {
      if (weights[i] <= 0.0f) continue;
      run += weights[i];
      last_positive = static_cast<int32_t>(i);
      if (run > target) return last_positive;
    }
  }
  return last_positive;
}

}  // namespace hlm::dist
