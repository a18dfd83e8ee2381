// ApiService: hlm's OpenAI-compatible HTTP API on the device. Every completion request runs the
// hybrid loop (the device SLM drafts, the cloud verifies what the policy uploads) as a sequence
// of its own, concurrently with the others on one shared thread pool; answers whole or as
// server-sent events, with hlm's figures (uploads, uplink bytes, accepted, resampled, modelled
// energy) in `usage`. When the cloud cannot be reached the answer comes from the SLM alone and
// says so (X-HLM-Cloud header, "hlm.cloud" field). Also /v1/models, /health and /metrics.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "api/openai.h"
#include "cloud/verifier.h"
#include "device/device.h"
#include "http/server.h"

namespace hlm::api {

struct ApiOptions {
  std::string model_id = "hlm";  // listed by /v1/models; answers name the request's model
  int max_concurrent = 8;        // generations at once; beyond it: 429
  int default_max_tokens = 256;  // when a request names none
  int max_tokens_limit = 2048;   // a request asking for more: 400
};

struct ApiBackend {
  std::shared_ptr<const Model> slm;
  Verifier* cloud = nullptr;   // thread-safe; null: the SLM alone
  ThreadPool* pool = nullptr;  // shared by every generation
  RunConfig base;              // the server's method, sampling and channel flags
  std::string cloud_name;      // for /health: the LLM's file or the cloud's address
};

class ApiService {
 public:
  ApiService(ApiBackend backend, ApiOptions options);

  // The HTTP handler: routes, answers cheap requests at once, defers generations.
  http::Reply handle(const http::Request& request);

  int active() const { return active_.load(); }
  std::string render_metrics() const;

 private:
  struct Job;
  http::Reply completions(const http::Request& request, bool chat);
  void run(Job& job, http::Exchange& ex);

  ApiBackend backend_;
  ApiOptions options_;
  std::atomic<int> active_{0};
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int> cloud_state_{0};  // 0 unknown, 1 reachable, -1 unreachable at the last try
  // Counters for /metrics.
  std::atomic<uint64_t> requests_{0}, completed_{0}, cancelled_{0}, refused_busy_{0},
      refused_invalid_{0}, failed_{0}, prompt_tokens_{0}, completion_tokens_{0}, uploads_{0},
      uplink_bytes_{0}, slm_only_tokens_{0};
};

}  // namespace hlm::api
