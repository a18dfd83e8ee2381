// Device: the hybrid decoding loop on the device (SPEC §2). The SLM drafts every token; the
// policy decides from uncertainty and importance whether to upload it to a Verifier; the reply
// replaces rejected drafts; skipped tokens wait in `pending`. Every step is timed and priced
// by the channel model, and optionally traced token by token.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cloud/verifier.h"
#include "engine/context.h"
#include "engine/sampler.h"
#include "method/channel.h"
#include "method/cost.h"
#include "method/policy.h"
#include "method/uncertainty.h"
#include "method/upload.h"

namespace hlm {

struct RunConfig {
  PolicyConfig policy;
  EncodingConfig encoding = default_encoding();  // kDefaultEncoding
  UncertaintyConfig uncertainty;
  // The method samples from p = softmax(z/T) (SPEC §2): top-k and top-p off by default.
  SamplingParams sampling{0.8f, 0, 1.0f, 42};
  ChannelConfig channel;
  // Where t_slm, t_filter and t_llm come from: cost profiles, or this machine's clock.
  CostConfig cost;
  int max_tokens = 128;
  int n_ctx = 2048;
  bool keep_trace = true;
  // Compute u for every token even when the policy does not need it (calibration, traces).
  bool measure_uncertainty = false;
  // Compute the importance (policy.importance's estimator) of every token too, whatever the
  // policy: a trace of `hlm` (every token verified) then shows which drafts the LLM rejects
  // beside the signals a gate would have seen (the per-token analysis of the importance gate).
  // The filter's modelled time includes it.
  bool measure_importance = false;
  // When the cloud becomes unreachable the device keeps generating SLM-only and retries with
  // exponential backoff from this delay (doubling up to retry_max_s), then reopens a session
  // with its whole context.
  double retry_initial_s = 0.2;
  double retry_max_s = 5.0;
  // Pipelined drafting (per-token policies): while an upload is being verified, draft, decide
  // and upload on as if its draft were accepted, with at most pipeline_depth uploads in flight
  // and pipeline_ahead tokens drafted past the oldest of them. Off: wait for each reply before
  // drafting on (SPEC §2 as written). The output is the same either way. Each upload in flight
  // past another survives only if that one's draft is accepted, so a deep pipeline mostly
  // sends requests that are dropped when drafts are often replaced: the default depth of 3
  // took nearly all of the gain on the shipped pair (README, "Pipelined drafting").
  bool pipeline = true;
  int pipeline_depth = 3;
  int pipeline_ahead = 32;
};

inline constexpr int kMaxPipelineDepth = 64;  // the server serves at most 64 steps ahead

// One output token (SPEC issue: the trace has one line per token).
struct TokenTrace {
  int position = 0;
  int32_t token = 0;
  std::string piece;
  int32_t draft = -1;       // the SLM's draft (equals token unless resampled)
  std::string draft_piece;  // the draft's text when the cloud replaced it (else empty)
  float u = -1.0f;          // -1 when not computed
  float importance = -1.0f;
  float tau = -1.0f;
  float lambda_flip = std::numeric_limits<float>::quiet_NaN();  // Importance::lambda_flip; NaN:
                                                                // not computed
  bool uploaded = false;
  bool accepted = false;    // uploaded and the draft survived
  bool resampled = false;   // the cloud replaced the draft
  bool from_cloud = false;  // llm policy or spec correction/bonus: the cloud produced it
  bool slm_only = false;    // the cloud was unreachable: kept without verification
  uint64_t ul_bytes = 0, dl_bytes = 0;
  double t_slm = 0, t_filter = 0, t_llm = 0, t_ul = 0, t_dl = 0;
  // The token's own compute and radio energy (per-token policies: waiting is the run's, in
  // RunResult::totals, as pipelined tokens share it).
  double e_device = 0, e_cloud = 0;
};

struct RunResult {
  std::vector<int32_t> prompt;
  std::vector<int32_t> tokens;  // generated
  std::string text;
  int64_t uploads = 0;      // verification requests (per-token policies: uploaded tokens)
  int64_t drafts_sent = 0;  // drafted tokens sent for verification
  int64_t accepted = 0;     // drafts accepted
  int64_t resampled = 0;    // drafts replaced by the cloud
  int64_t llm_calls = 0;
  int64_t slm_only = 0;     // tokens kept without verification while the cloud was unreachable
  int64_t reconnects = 0;   // sessions reopened after the cloud came back
  int64_t discarded = 0;    // uploads whose replies were ignored (pipelining): sent ahead of a
                            // draft the cloud replaced, or in flight when the cloud was lost or
                            // the generation stopped
  std::string cloud_error;  // why the cloud was last unreachable ("" if it never was)
  Totals totals;            // channel/latency/energy totals (bits, seconds, joules)
  double t_slm_s = 0, t_filter_s = 0, wall_s = 0;
  std::vector<TokenTrace> trace;
  std::vector<int32_t> context() const;  // prompt + tokens
};

// Called with each token's trace as soon as it is final; returning false ends the generation
// after that token (a stop sequence matched, the client went away).
using TokenCallback = std::function<bool(const TokenTrace&)>;

class Device {
 public:
  Device(std::shared_ptr<const Model> slm, ThreadPool& pool, RunConfig config);

  // Generates from the prompt tokens. `verifier` may be null only for the slm policy.
  Result<RunResult> generate(const std::vector<int32_t>& prompt, Verifier* verifier,
                             const TokenCallback& on_token = {});

  const RunConfig& config() const { return config_; }
  // Pending tokens of the last generation that the cloud has not seen (for sync checks).
  const std::vector<int32_t>& pending() const { return pending_; }
  SessionId session() const { return session_; }

 private:
  struct Draft;
  Result<RunResult> run_per_token(const std::vector<int32_t>& prompt, Verifier* verifier,
                                  const TokenCallback& on_token);
  Result<RunResult> run_spec(const std::vector<int32_t>& prompt, Verifier& verifier,
                             const TokenCallback& on_token);
  Result<RunResult> run_llm(const std::vector<int32_t>& prompt, Verifier& verifier,
                            const TokenCallback& on_token);

  std::shared_ptr<const Model> slm_;
  ThreadPool& pool_;
  RunConfig config_;
  std::vector<int32_t> pending_;
  SessionId session_ = 0;
};

}  // namespace hlm
