// Distribution helpers: tempered softmax, argmax and inverse-CDF sampling.
#include "method/distribution.h"

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
  double total = 0.0;
  for (float w : weights) total += w;
  if (!(total > 0.0)) return -1;
  const double target = u * total;
  double run = 0.0;
  int32_t last_positive = -1;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] <= 0.0f) continue;
    run += weights[i];
    last_positive = static_cast<int32_t>(i);
    if (run > target) return last_positive;
  }
  return last_positive;
}

}  // namespace hlm::dist
