// Verify: the cloud's check of drafted tokens (SPEC §2 step 6, §6): speculative acceptance
// against p̂ (exact: the output is distributed as q), greedy at T = 0, the ids check, and the
// k-token version for spec(k).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "method/distribution.h"

namespace hlm {

enum class VerifyMode {
  kSpeculative,  // accept d with probability min(1, q(d)/p̂(d)), else draw norm(max(q − p̂, 0))
  kGreedy,       // T = 0: accept iff argmax q == d, else return argmax q
  kIds,          // no p̂: the cloud draws its own token from q; accept iff it equals d
};

struct Verdict {
  int32_t token = -1;  // d if accepted, else the replacement
  bool accepted = false;
};

// q: the LLM's distribution at the draft position after the shared temperature (and the same
// top-k/top-p as the device); p_hat: the distribution d was drawn from (same size). One uniform
// for the acceptance test and, on rejection, one for the residual draw. If rounding leaves a
// zero residual after a rejection, the replacement is drawn from q. A d with p̂(d) = 0 (it
// cannot have been drawn from p̂) is accepted iff q(d) > 0.
Verdict verify_speculative(std::span<const float> q, std::span<const float> p_hat, int32_t d,
                           dist::Rng& rng);
// Ties in q: the lowest index (as dist::argmax).
Verdict verify_greedy(std::span<const float> q, int32_t d);
// One uniform: the cloud's sample from q.
Verdict verify_ids(std::span<const float> q, int32_t d, dist::Rng& rng);

// Dispatches on the mode (p_hat is ignored by kGreedy and kIds).
Verdict verify_token(VerifyMode mode, std::span<const float> q, std::span<const float> p_hat,
                     int32_t d, dist::Rng& rng);

struct DraftVerdict {
  int n_accepted = 0;           // the accepted prefix of the drafts
  std::vector<int32_t> tokens;  // drafts[0..n_accepted) then one more: the correction after a
                                // rejection, or a bonus token from q_k when all were accepted
  bool bonus = false;           // every draft was accepted and the last token is the bonus
};

// spec(k): drafts d_0..d_{k−1}; q holds k + 1 rows of n_vocab (q_i at draft i's position, q_k
// after the last draft, for the bonus); p_hat holds k rows (ignored by kGreedy and kIds).
// Drafts are checked in order; the first rejection ends the round. The bonus is argmax q_k in
// greedy mode and a draw from q_k otherwise.
DraftVerdict verify_drafts(VerifyMode mode, std::span<const float> q, std::span<const float> p_hat,
                           std::span<const int32_t> drafts, int n_vocab, dist::Rng& rng);

}  // namespace hlm
