// Sampler: temperature, top-k, top-p and greedy sampling from logits, seeded and reproducible.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace hlm {

struct SamplingParams {
  float temperature = 0.8f;  // 0 means greedy
  int top_k = 40;            // 0 disables
  float top_p = 0.95f;       // 1 disables
  uint64_t seed = 42;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : params_(p), rng_(p.seed) {}

  // The distribution actually sampled from (after temperature, top-k and top-p, renormalised);
  // one-hot on the argmax when temperature is 0.
  std::vector<float> distribution(std::span<const float> logits) const;
  // The same into p (logits.size() entries), without allocating it.
  void distribution(std::span<const float> logits, std::span<float> p) const;
  int32_t sample(std::span<const float> logits);
  // Draws from an explicit probability vector with this sampler's generator.
  int32_t sample_from(std::span<const float> probs);

  std::mt19937_64& rng() { return rng_; }
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// Numerically stable softmax of logits / temperature (temperature > 0).
std::vector<float> softmax(std::span<const float> logits, float temperature = 1.0f);
int32_t argmax(std::span<const float> v);

}  // namespace hlm
