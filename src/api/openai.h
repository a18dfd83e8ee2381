// OpenAI: the request and response shapes of OpenAI's chat and text completion APIs as hlm
// serves them. Requests are parsed strictly (a field of the wrong type, or a feature hlm does
// not implement set to anything but its neutral value, is refused naming the field), sampling
// fields and hlm's own per-request settings ("hlm": {"policy", "u_th", ...}) are applied to the
// server's run configuration, and stop sequences are matched on the streamed text.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "device/device.h"
#include "tokenizer/tokenizer.h"
#include "util/result.h"

namespace hlm::api {

struct CompletionRequest {
  bool chat = false;
  std::vector<ChatMessage> messages;  // chat
  std::string prompt;                 // completions
  std::string model;
  std::optional<int> max_tokens;
  std::optional<float> temperature, top_p;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false;
  nlohmann::json hlm = nlohmann::json::object();  // hlm's own settings
};

// Parses a /v1/chat/completions (chat) or /v1/completions body. The error names the field and
// what was expected; the caller answers 400.
Result<CompletionRequest> parse_completion_request(std::string_view body, bool chat);

// The run configuration for a request: `base` (the server's flags) with the request's
// max_tokens (default `default_max_tokens`, at most `max_tokens_limit`), temperature, top_p,
// seed (absent: `fallback_seed`) and "hlm" settings: policy, u_th, lambda, u_hi, estimator,
// rate, draft, encoding, channel. The error names the field.
Result<RunConfig> run_config_for(const CompletionRequest& request, RunConfig base,
                                 int default_max_tokens, int max_tokens_limit,
                                 uint64_t fallback_seed);

// Finds the earliest stop sequence in streamed text. push() returns the text that can be sent
// now: everything up to a matched stop (after which stopped() is true and nothing more is
// returned), minus a tail that might still grow into a stop sequence, held back until the next
// push() or flush().
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  std::string push(std::string_view text);
  std::string flush();  // the held-back tail once generation has ended
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace hlm::api
