// CloudVerifier: the cloud side of hlm. Holds the LLM and one KV sequence per session; appends
// each request's pending tokens and drafts in one forward, verifies the drafts against p̂ by
// speculative sampling, and rolls its cache back past rejected drafts. verify_batch() serves
// several sessions' requests in one batched forward (continuous batching). generate() streams a
// cloud-only generation as a sequence of draft-less verifications of one session.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <span>

#include "cloud/verifier.h"
#include "engine/context.h"
#include "method/distribution.h"

namespace hlm {

struct CloudOptions {
  int max_sessions = 8;
  int max_context = 2048;
};

class CloudVerifier : public Verifier {
 public:
  CloudVerifier(std::shared_ptr<const Model> llm, ThreadPool& pool, CloudOptions options = {});

  Result<SessionId> open(const SessionParams& params) override;
  Result<VerifyReply> verify(const VerifyRequest& request) override;
  Status close(SessionId session) override;
  // One session, one draft-less verify() per token; the sink runs on the caller's thread.
  Status generate(const GenerateRequest& request, const TokenSink& sink) override;

  // Opens the session a generation runs in, after checking max_tokens against the context.
  // The caller closes it.
  Result<SessionId> open_generation(const GenerateRequest& request);

  // Serves several requests (distinct sessions) in one forward. Each result stands alone: a
  // bad request gets its own error and does not disturb the others.
  std::vector<Result<VerifyReply>> verify_batch(std::span<const VerifyRequest> requests);

  // The session's context as the cloud sees it (for synchronisation checks).
  Result<std::vector<int32_t>> context(SessionId session) const;
  int n_sessions() const;
  // Positions the LLM has evaluated (prompts, pending tokens and drafts, rolled back or not).
  uint64_t n_evaluated() const;
  const Model& model() const { return context_.model(); }

 private:
  struct Session {
    int slot = 0;
    SessionParams params;
    std::vector<int32_t> tokens;  // the whole context; the cache holds all but the last
    dist::Rng rng;
    uint64_t epoch = 0;  // replies that replaced a draft (VerifyRequest::epoch)
  };
  Status check(const VerifyRequest& r, const Session& s) const;

  Context context_;
  ThreadPool& pool_;
  CloudOptions options_;
  mutable std::mutex mu_;
  std::map<SessionId, Session> sessions_;
  std::vector<bool> slot_used_;
  // Per pool worker: the distributions one request's verdict reads, reused across batches.
  struct VerdictScratch {
    std::vector<float> q, p_hat;
  };
  std::vector<VerdictScratch> scratch_;
  SessionId next_id_ = 1;
};

}  // namespace hlm
