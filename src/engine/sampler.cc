// Sampler implementation: the filtered distribution is computed explicitly so that the device
// can upload exactly the distribution it drew from.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ops/ops.h"

namespace hlm {

namespace {

// Candidates ordered first when top-p filters without top-k (widened fourfold while short).
constexpr size_t kFirstTopPCandidates = 256;

// Higher probability first, ties by lower id.
struct ByProbability {
  const float* p;
  bool operator()(int32_t a, int32_t b) const { return p[a] > p[b] || (p[a] == p[b] && a < b); }
};

// With idx[0, k) the top k in order, puts the next tokens in order at [k, end), in linear time;
// returns end. Kept out of line: inlined, it slows the partial sort of the top-k path by a third.
[[gnu::noinline]] size_t order_next(std::vector<int32_t>& idx, size_t k, size_t end,
                                    const ByProbability& cmp) {
  const auto at = [&](size_t i) { return idx.begin() + ptrdiff_t(i); };
  std::nth_element(at(k), at(end), idx.end(), cmp);
  std::sort(at(k), at(end), cmp);
  return end;
}

}  // namespace

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

std::vector<float> softmax(std::span<const float> logits, float temperature) {
  std::vector<float> p(logits.size());
  ops::softmax_f32(logits.data(), int64_t(logits.size()), 1.0f / temperature, p.data());
  return p;
}

std::vector<float> Sampler::distribution(std::span<const float> logits) const {
  std::vector<float> p(logits.size());
  distribution(logits, p);
  return p;
}

void Sampler::distribution(std::span<const float> logits, std::span<float> p) const {
  const size_t n = logits.size();
  if (params_.temperature <= 0.0f) {
    std::fill(p.begin(), p.end(), 0.0f);
    p[argmax(logits)] = 1.0f;
    return;
  }
  ops::softmax_f32(logits.data(), int64_t(n), 1.0f / params_.temperature, p.data());
  const bool use_k = params_.top_k > 0 && size_t(params_.top_k) < n;
  const bool use_p = params_.top_p < 1.0f;
  if (!use_k && !use_p) return;
  // Order candidates by probability (ties by id, for reproducibility). Top-p alone usually keeps a
  // few hundred of tens of thousands of tokens, so only a prefix is ordered: the top k by a partial
  // sort (about one comparison per token while k is small), widened while it holds less than the
  // top-p mass. Kept set and order are a full sort's.
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  const ByProbability cmp{p.data()};
  size_t k = use_k ? size_t(params_.top_k) : std::min(n, kFirstTopPCandidates);
  std::partial_sort(idx.begin(), idx.begin() + ptrdiff_t(k), idx.end(), cmp);
  size_t keep = k;
  if (use_p) {
    double cum = 0;
    for (size_t i = 0;; ++i) {
      if (i == k) {
        if (use_k || k == n) break;  // top-k's cut, or rounding short of top_p
        keep = k = order_next(idx, k, std::min(n, k * 4), cmp);
      }
      cum += p[idx[i]];
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += p[idx[i]];
  std::vector<float> kept(keep);
  for (size_t i = 0; i < keep; ++i) kept[i] = static_cast<float>(p[idx[i]] / sum);
  std::fill(p.begin(), p.end(), 0.0f);
  for (size_t i = 0; i < keep; ++i) p[idx[i]] = kept[i];
}

int32_t Sampler::sample_from(std::span<const float> probs) {
  double total = 0;
  for (float x : probs) total += x;
  std::uniform_real_distribution<double> U(0.0, total);
  const double r = U(rng_);
  double cum = 0;
  int32_t last_nonzero = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0) continue;
    cum += probs[i];
    last_nonzero = static_cast<int32_t>(i);
    if (r < cum) return last_nonzero;
  }
  return last_nonzero;  // rounding at the top end
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (params_.temperature <= 0.0f) return argmax(logits);
  return sample_from(distribution(logits));
}

}  // namespace hlm
