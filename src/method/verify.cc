// Speculative, greedy and ids verification of drafted tokens.
#include "method/verify.h"

#include <algorithm>
#include <cassert>

namespace hlm {

Verdict verify_speculative(std::span<const float> q, std::span<const float> p_hat, int32_t d,
                           dist::Rng& rng) {
  assert(q.size() == p_hat.size());
  assert(d >= 0 && static_cast<size_t>(d) < q.size());
  const double u = dist::uniform01(rng);
  // Accept with probability min(1, q(d)/p̂(d)), written without a division.
  if (u * static_cast<double>(p_hat[d]) < static_cast<double>(q[d])) return {d, true};
  thread_local std::vector<float> residual;  // vocabulary-sized, reused across verdicts
  residual.resize(q.size());
  for (size_t i = 0; i < q.size(); ++i) residual[i] = std::max(q[i] - p_hat[i], 0.0f);
  const double u2 = dist::uniform01(rng);
  int32_t token = dist::sample_weights(residual, u2);
  if (token < 0) token = dist::sample_weights(q, u2);
  return {token, false};
}

Verdict verify_greedy(std::span<const float> q, int32_t d) {
  const int32_t best = dist::argmax(q);
  return {best, best == d};
}

Verdict verify_ids(std::span<const float> q, int32_t d, dist::Rng& rng) {
  const int32_t token = dist::sample(q, rng);
  return {token, token == d};
}

Verdict verify_token(VerifyMode mode, std::span<const float> q, std::span<const float> p_hat,
                     int32_t d, dist::Rng& rng) {
  switch (mode) {
    case VerifyMode::kSpeculative:
      return verify_speculative(q, p_hat, d, rng);
    case VerifyMode::kGreedy:
      return verify_greedy(q, d);
    case VerifyMode::kIds:
      return verify_ids(q, d, rng);
  }
  return {};
}

DraftVerdict verify_drafts(VerifyMode mode, std::span<const float> q, std::span<const float> p_hat,
                           std::span<const int32_t> drafts, int n_vocab, dist::Rng& rng) {
  const size_t k = drafts.size();
  const size_t v = static_cast<size_t>(n_vocab);
  assert(q.size() == (k + 1) * v);
  assert(mode != VerifyMode::kSpeculative || p_hat.size() == k * v);
  DraftVerdict out;
  for (size_t i = 0; i < k; ++i) {
    const std::span<const float> qi = q.subspan(i * v, v);
    const std::span<const float> pi =
        mode == VerifyMode::kSpeculative ? p_hat.subspan(i * v, v) : std::span<const float>();
    const Verdict r = verify_token(mode, qi, pi, drafts[i], rng);
    out.tokens.push_back(r.token);
    if (!r.accepted) return out;
    ++out.n_accepted;
  }
  const std::span<const float> last = q.subspan(k * v, v);
  out.tokens.push_back(mode == VerifyMode::kGreedy ? dist::argmax(last) : dist::sample(last, rng));
  out.bonus = true;
  return out;
}

}  // namespace hlm
