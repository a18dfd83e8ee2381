// Distribution helpers shared by the method: reproducible uniform draws, tempered softmax, argmax
// and inverse-CDF sampling. Kept in hlm::dist so they never clash with the engine's sampler.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace hlm::dist {

// The generator every method routine takes; the same type as Sampler::rng().
using Rng = std::mt19937_64;

// A uniform double in [0, 1) from the top 53 bits of one draw: identical on every platform.
inline double uniform01(Rng& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

// softmax(z / temperature), computed in double and returned as float; temperature > 0.
// Entries equal to -inf get probability 0.
std::vector<float> softmax(std::span<const float> logits, float temperature = 1.0f);

// Index of the largest entry; the lowest index wins ties. -1 on an empty span.
int32_t argmax(std::span<const float> v);

// Inverse-CDF draw from non-negative weights (need not sum to 1) with one uniform u in [0, 1):
// the first i whose running sum exceeds u * total. Falls back to the last positive entry when
// rounding runs past the end; returns -1 only when every weight is zero.
int32_t sample_weights(std::span<const float> weights, double u);

inline int32_t sample(std::span<const float> probs, Rng& rng) {
  return sample_weights(probs, uniform01(rng));
}

}  // namespace hlm::dist
