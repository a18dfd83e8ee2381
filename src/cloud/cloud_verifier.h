// CloudVerifier: the cloud side of hlm. Holds the LLM and one KV sequence per session; appends
// each request's pending tokens and drafts in one forward, verifies the drafts against p̂ by
// speculative sampling, and rolls its cache back past rejected drafts. verify_batch() serves
// several sessions' requests in one batched forward (continuous batching).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <span>

#include "cloud/batch_verifier.h"
#include "engine/context.h"

namespace hlm {

struct CloudOptions {
  int max_sessions = 8;
  int max_context = 2048;
};

class CloudVerifier : public BatchVerifier {
 public:
  CloudVerifier(std::shared_ptr<const Model> llm, ThreadPool& pool, CloudOptions options = {});

  Result<SessionId> open(const SessionParams& params) override;
  Status close(SessionId session) override;
  // Serves several requests (distinct sessions) in one forward.
  std::vector<Result<VerifyReply>> verify_batch(std::span<const VerifyRequest> requests) override;
  const Tokenizer& tokenizer() const override { return context_.model().tokenizer(); }
  int max_context() const override { return options_.max_context; }

  // The session's context as the cloud sees it (for synchronisation checks).
  Result<std::vector<int32_t>> context(SessionId session) const;
  int n_sessions() const;
  // Positions the LLM has evaluated (prompts, pending tokens and drafts, rolled back or not).
  uint64_t n_evaluated() const;
  const Model& model() const { return context_.model(); }

 private:
  struct Session {
    int slot = 0;
    CloudSession state;  // the cache holds all its tokens but the last
  };

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
