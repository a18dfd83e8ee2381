// q from vLLM's top log-probabilities. vLLM returns raw log-probabilities (log-softmax of the
// logits, before temperature, top-k and top-p), so hlm applies its own Sampler to them, with
// every token vLLM did not return at -inf. That equals the Sampler on the full logits (a
// log-softmax is the logits shifted by a constant) whenever the tokens the Sampler keeps are
// all among those returned and the top-p cut falls at the same place whatever the unseen mass
// is: top_suffices() proves that from bounds on the unseen tail, or the caller asks again for
// the full vocabulary.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "util/result.h"

namespace hlm::vllm {

// One position's top log-probabilities, most probable first (ties by id).
struct TopLogprobs {
  std::vector<int32_t> ids;
  std::vector<float> logprobs;
};

// The "logprobs" field to send: 1 at T = 0 (the argmax), -1 (the whole vocabulary) without
// top-k and top-p (plain softmax: nothing can be proven from a top N), else
// max(n_top, top_k + 16), which holds the top-k set and a margin for the tail bound.
int logprobs_to_request(const SamplingParams& sampling, int n_top);

// The top log-probabilities of each choice of a /v1/completions reply made with
// return_tokens_as_token_ids, ordered by choice index; `n_choices` are expected, each keeping
// at most `n_top` entries (-1: all; vLLM adds the sampled token to the top N). `url` names the
// source in errors.
Result<std::vector<TopLogprobs>> parse_completion(std::string_view body, size_t n_choices,
                                                  int n_top, int n_vocab, std::string_view url);

// Whether q computed from `top` alone equals q from the full vocabulary of n_vocab tokens under
// `sampling`. The unseen tokens each have a log-probability at most the smallest seen, m, and
// together at most R = 1 − Σ seen exp(logprob); at temperature T their tempered mass is then at
// most R·exp(m)^(1/T − 1) for T ≤ 1, and min(n·exp(m/T), n^(1−1/T)·R^(1/T)) for n unseen tokens
// when T > 1 (concavity). The top-p cut is computed at both ends of the normaliser's range and
// must agree; the top-k set must lie within `top`.
bool top_suffices(const TopLogprobs& top, const SamplingParams& sampling, int n_vocab);

// q (n_vocab entries) from `top`: hlm's Sampler on the log-probabilities as logits, the unseen
// at a logit whose probability is 0. `logits` is scratch.
void rebuild_q(const TopLogprobs& top, const SamplingParams& sampling, std::span<float> q,
               std::vector<float>& logits);

}  // namespace hlm::vllm
