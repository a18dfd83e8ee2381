// BatchVerifier: what `hlm serve` needs from a cloud backend — the in-process engine
// (CloudVerifier) or a vLLM server (VllmVerifier). Both keep the same sessions (CloudSession)
// and decide every verdict with the same code (decide()), so the exactness contract of SPEC §2
// is one implementation whichever backend computes q.
#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "cloud/verifier.h"
#include "method/distribution.h"
#include "tokenizer/tokenizer.h"

namespace hlm {

class BatchVerifier : public Verifier {
 public:
  // Serves several requests (distinct sessions) together. Each result stands alone: a bad
  // request gets its own error and does not disturb the others.
  virtual std::vector<Result<VerifyReply>> verify_batch(
      std::span<const VerifyRequest> requests) = 0;
  // The vocabulary q is over (end-of-generation tokens end streams).
  virtual const Tokenizer& tokenizer() const = 0;
  virtual int max_context() const = 0;

  Result<VerifyReply> verify(const VerifyRequest& request) override;
  // One session, one draft-less verify() per token; the sink runs on the caller's thread.
  Status generate(const GenerateRequest& request, const TokenSink& sink) override;
  // Opens the session a generation runs in, after checking max_tokens against the context.
  // The caller closes it.
  Result<SessionId> open_generation(const GenerateRequest& request);
};

// One session as the cloud sees it, whatever computes q.
struct CloudSession {
  explicit CloudSession(SessionParams p);
  SessionParams params;
  std::vector<int32_t> tokens;  // the whole context
  dist::Rng rng;
  uint64_t epoch = 0;  // replies that replaced a draft (VerifyRequest::epoch)
};

// The checks at open: the device's vocabulary against the cloud model's (the error names both),
// the prompt and the sampling settings.
Status check_open(const SessionParams& params, int n_vocab, uint64_t fingerprint,
                  std::string_view model, int max_context);
// Whether a batch serves `request`, whose session is `session` (null: unknown). nullopt: serve
// it; else its answer without a forward: `stale` when its epoch is behind the session's, or an
// error (an unknown session, an epoch ahead, a second request of the session in this batch,
// tokens out of range, p̂ payloads that do not match the session's encoding, a context over
// max_context). `batch` collects the sessions served so far.
std::optional<Result<VerifyReply>> admit(const VerifyRequest& request, const CloudSession* session,
                                         std::vector<SessionId>& batch, int n_vocab,
                                         int max_context);

// How many distributions q a request needs: one per draft, plus one after the last draft for a
// bonus or when there are no drafts (a generated token).
int n_queries(const VerifyRequest& request);

// The verdict (SPEC §2): drafts checked against q by speculative sampling (greedy at T = 0, the
// ids check without p̂), the first rejection replaced from the residual, a bonus or a generated
// token drawn from q; then the session takes the kept tokens and moves its epoch. q holds
// n_queries(request) rows of n_vocab; p_hat_scratch is reused for decoded payloads.
VerifyReply decide(const VerifyRequest& request, CloudSession& session, std::span<const float> q,
                   int n_vocab, std::vector<float>& p_hat_scratch);

}  // namespace hlm
