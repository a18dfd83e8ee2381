// VllmVerifier: the cloud backend on vLLM servers. Sessions keep their whole context here; each
// verification is one /v1/completions request with token-id prompts (the context, then the
// context extended by each draft for spec(k)), max_tokens 1 and the top log-probabilities, so
// vLLM's prefix cache serves the part it has seen. q is rebuilt by hlm's Sampler from the
// returned log-probabilities (vllm/logprobs.h says when that is exact; otherwise the request is
// repeated for the whole vocabulary) and the verdict is the engine backend's own (decide()).
// Sessions are pinned to a replica, round robin at open; after a replica fails, the session's
// next request goes to the next replica, which rebuilds the context from the session's tokens.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cloud/batch_verifier.h"
#include "engine/model.h"
#include "vllm/http_client.h"
#include "vllm/logprobs.h"

namespace hlm::vllm {

struct VllmOptions {
  std::vector<std::string> urls;  // one per replica, e.g. http://127.0.0.1:8000
  int max_sessions = 16;
  int max_context = 2048;  // must not exceed the replicas' max_model_len
  int max_in_flight = 4;   // requests in flight per replica
  double connect_timeout_s = 2;
  double timeout_s = 5;  // per HTTP request; under the devices' 10 s deadline
  // connect()'s checks only: a vLLM that has just turned healthy takes seconds over its first
  // log-probability request (measured: over 2 s on CI's 2 cores), which is start-up, not a stall.
  double startup_timeout_s = 60;
  // Log-probabilities asked for (see logprobs_to_request). Measured on SmolLM2-135M chat
  // contexts at hlm's defaults, the top 64 determined q in 16 of 20, the top 512 in 19 of 20; the
  // rest cost a full-vocabulary request (about 4x a plain one). The top 512 costs vLLM 1.14x a
  // plain request (36.6 against 32.2 ms at 64 tokens), the top 64 1.03x: 512 is cheaper overall.
  int n_top = 512;
  // After a failure, a replica gets no new sessions for this long (unless all have failed).
  double retry_after_s = 2;
};

// What the verifier did, for tests and benchmarks.
struct VllmStats {
  uint64_t requests = 0;    // HTTP requests to /v1/completions
  uint64_t full_vocab = 0;  // of which asked for the whole vocabulary after a top N
  uint64_t failures = 0;    // failed requests (a replica down or stalled)
  double http_s = 0;        // time inside HTTP calls
};

class VllmVerifier : public BatchVerifier {
 public:
  // Asks every replica for its model (GET /v1/models: the same id on all, a max_model_len that
  // holds max_context) and checks vLLM's tokenizer against `vocab`'s on probe strings
  // (POST /tokenize). `vocab` is the model whose vocabulary devices are checked against.
  static Result<std::unique_ptr<VllmVerifier>> connect(std::shared_ptr<const Model> vocab,
                                                       VllmOptions options);

  Result<SessionId> open(const SessionParams& params) override;
  Status close(SessionId session) override;
  std::vector<Result<VerifyReply>> verify_batch(std::span<const VerifyRequest> requests) override;
  const Tokenizer& tokenizer() const override { return vocab_->tokenizer(); }
  int max_context() const override { return options_.max_context; }

  // q at the end of each context under `sampling`, from replica `replica`: what a verification
  // reads, without a session (for tests).
  Result<std::vector<std::vector<float>>> distributions(
      const std::vector<std::vector<int32_t>>& contexts, const SamplingParams& sampling,
      size_t replica = 0);
  // The same from the whole vocabulary's log-probabilities (logprobs: -1), as a reference.
  Result<std::vector<std::vector<float>>> distributions_full(
      const std::vector<std::vector<int32_t>>& contexts, const SamplingParams& sampling,
      size_t replica = 0);
  // vLLM's own greedy continuation (temperature 0) of `prompt`, max_tokens long, for tests.
  Result<std::vector<int32_t>> greedy(const std::vector<int32_t>& prompt, int max_tokens,
                                      size_t replica = 0);

  const std::string& model_id() const { return model_id_; }
  VllmStats stats() const;

 private:
  VllmVerifier(std::shared_ptr<const Model> vocab, VllmOptions options, std::string model_id);
  struct Session {
    CloudSession state;
    size_t replica = 0;
  };
  // The request body for q at the end of each prompt.
  std::string completion_body(const std::vector<std::vector<int32_t>>& prompts, int logprobs) const;
  // One /v1/completions request per entry of `prompts` (each a list of prompts), concurrently;
  // for each, the top log-probabilities of every prompt, asking again for the whole vocabulary
  // where the top N does not determine q.
  using Prompts = std::vector<std::vector<int32_t>>;
  std::vector<Result<std::vector<TopLogprobs>>> fetch(const std::vector<Prompts>& prompts,
                                                      const std::vector<size_t>& replicas,
                                                      const std::vector<SamplingParams>& sampling,
                                                      std::vector<double>& seconds);
  // One round of fetch() with the given "logprobs" field per request.
  std::vector<Result<std::vector<TopLogprobs>>> fetch_once(const std::vector<Prompts>& prompts,
                                                           const std::vector<size_t>& replicas,
                                                           const std::vector<int>& logprobs,
                                                           std::vector<double>& seconds);
  Result<std::vector<std::vector<float>>> to_q(Result<std::vector<TopLogprobs>> tops,
                                               const SamplingParams& sampling) const;
  size_t pick_replica();  // under mu_
  void failed(size_t replica);

  std::shared_ptr<const Model> vocab_;
  VllmOptions options_;
  std::string model_id_;
  std::string model_json_;  // model_id_ as a JSON string
  HttpClient http_;
  mutable std::mutex mu_;
  std::map<SessionId, Session> sessions_;
  SessionId next_id_ = 1;
  size_t next_replica_ = 0;
  std::vector<std::chrono::steady_clock::time_point> down_until_;
  VllmStats stats_;
};

}  // namespace hlm::vllm
