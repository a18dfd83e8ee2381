// Parsing vLLM's log-probabilities and rebuilding q from them.
#include "vllm/logprobs.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>

namespace hlm::vllm {
namespace {

constexpr std::string_view kIdPrefix = "token_id:";

// The logit of a token vLLM did not return: finite, as the Sampler's vector exponential is only
// defined for finite inputs, and low enough that its probability is exactly 0.
constexpr float kUnseen = -1e30f;

// Slack on R for the rounding of the log-probabilities vLLM prints (float32 values).
constexpr double kTailSlack = 1e-6;

}  // namespace

int logprobs_to_request(const SamplingParams& s, int n_top) {
  if (s.temperature <= 0) return 1;
  if (s.top_k == 0 && s.top_p >= 1) return -1;
  return std::max(n_top, s.top_k + 16);
}

Result<std::vector<TopLogprobs>> parse_completion(std::string_view body, size_t n_choices,
                                                  int n_top, int n_vocab, std::string_view url) {
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error("{}: the reply is not a JSON object", url);
  }
  const auto choices = j.find("choices");
  if (choices == j.end() || !choices->is_array() || choices->size() != n_choices) {
    return make_error("{}: expected \"choices\" with {} entries (one per prompt)", url, n_choices);
  }
  std::vector<TopLogprobs> out(n_choices);
  std::vector<bool> seen(n_choices, false);
  for (const auto& c : *choices) {
    const auto index = c.value("index", -1);
    if (index < 0 || size_t(index) >= n_choices || seen[size_t(index)]) {
      return make_error("{}: choices[].index {} is out of range or repeated", url, index);
    }
    seen[size_t(index)] = true;
    const auto lp = c.find("logprobs");
    if (lp == c.end() || !lp->is_object() || !lp->contains("top_logprobs") ||
        !(*lp)["top_logprobs"].is_array() || (*lp)["top_logprobs"].empty() ||
        !(*lp)["top_logprobs"][0].is_object()) {
      return make_error(
          "{}: choices[{}].logprobs.top_logprobs[0] is missing (vLLM must be started with "
          "--max-logprobs -1 or at least the number asked for)",
          url, index);
    }
    TopLogprobs& t = out[size_t(index)];
    for (const auto& [key, value] : (*lp)["top_logprobs"][0].items()) {
      if (key.rfind(kIdPrefix, 0) != 0 || !value.is_number()) {
        return make_error(
            "{}: top_logprobs key \"{}\" is not \"token_id:N\" with a number (send "
            "return_tokens_as_token_ids)",
            url, key);
      }
      char* end = nullptr;
      const long id = std::strtol(key.c_str() + kIdPrefix.size(), &end, 10);
      if (*end != '\0' || id < 0 || id >= n_vocab) {
        return make_error("{}: top_logprobs token \"{}\" is outside the vocabulary of {}", url, key,
                          n_vocab);
      }
      t.ids.push_back(int32_t(id));
      t.logprobs.push_back(value.get<float>());
    }
    // Most probable first, ties by id; keep the N asked for (the sampled token may be extra).
    std::vector<size_t> order(t.ids.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return t.logprobs[a] > t.logprobs[b] ||
             (t.logprobs[a] == t.logprobs[b] && t.ids[a] < t.ids[b]);
    });
    if (n_top > 0 && order.size() > size_t(n_top)) order.resize(size_t(n_top));
    TopLogprobs sorted;
    for (size_t o : order) {
      sorted.ids.push_back(t.ids[o]);
      sorted.logprobs.push_back(t.logprobs[o]);
    }
    t = std::move(sorted);
  }
  return out;
}

bool top_suffices(const TopLogprobs& top, const SamplingParams& s, int n_vocab) {
  const size_t n = top.ids.size();
  if (n == 0) return false;
  if (s.temperature <= 0 || n >= size_t(n_vocab)) return true;  // the argmax, or everything
  const double a = 1.0 / s.temperature;
  const size_t k = s.top_k > 0 && s.top_k < n_vocab ? size_t(s.top_k) : size_t(n_vocab);
  if (s.top_p >= 1) return k <= n;  // the top-k set is known, top-p does not cut it
  // Tempered weights relative to the most probable token, and a bound on the unseen tail's.
  const double lp0 = top.logprobs[0], m = top.logprobs.back();
  double seen_mass = 0, z_lo = 0;
  std::vector<double> w(n);
  for (size_t i = 0; i < n; ++i) {
    seen_mass += std::exp(double(top.logprobs[i]));
    w[i] = std::exp((double(top.logprobs[i]) - lp0) * a);
    z_lo += w[i];
  }
  const double r = std::max(0.0, 1.0 - seen_mass) + kTailSlack;
  const double n_unseen = double(n_vocab) - double(n);
  const double log_tail =
      a >= 1 ? std::log(r) + m * (a - 1)
             : std::min(std::log(n_unseen) + m * a, (1 - a) * std::log(n_unseen) + a * std::log(r));
  const double z_hi = z_lo + std::exp(log_tail - lp0 * a);
  // The Sampler's cut: the first prefix whose mass reaches top_p, else all of the top-k set.
  const auto cut = [&](double z) -> std::optional<size_t> {
    double cum = 0;
    for (size_t i = 0; i < std::min(k, n); ++i) {
      cum += w[i] / z;
      if (cum >= s.top_p) return i + 1;
    }
    if (k <= n) return k;
    return std::nullopt;  // the cut lies among the unseen
  };
  const auto lo = cut(z_lo), hi = cut(z_hi);
  return lo && hi && *lo == *hi;
}

void rebuild_q(const TopLogprobs& top, const SamplingParams& s, std::span<float> q,
               std::vector<float>& logits) {
  logits.assign(q.size(), kUnseen);
  for (size_t i = 0; i < top.ids.size(); ++i) logits[size_t(top.ids[i])] = top.logprobs[i];
  Sampler(s).distribution(logits, q);
}

}  // namespace hlm::vllm
