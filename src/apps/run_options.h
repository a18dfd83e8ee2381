// Option groups of the hybrid commands (run, calibrate, serve, eval): the model pair and the
// method (policy, upload encoding, uncertainty, sampling, channel).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "device/device.h"
#include "engine/model.h"

namespace hlm::apps {

struct ModelPair {
  std::shared_ptr<const Model> slm, llm;
};

// --slm, --llm (paths or registry names), --ctx.
struct PairOptions {
  std::string slm = "slm";
  std::string llm = "llm";
  int ctx = 2048;
  void add(CLI::App* app);
  // Loads both and refuses mismatched vocabularies, naming both files.
  Result<ModelPair> load() const;
};

struct MethodOptions {
  std::string policy = "iuhlm";
  std::optional<float> u_th, lambda, u_hi, rate;
  std::optional<std::string> estimator;
  std::optional<int> sinks, lookahead, draft;
  std::string encoding{kDefaultEncoding};  // docs/encoding.md
  std::string channel = "narrowband";
  int unc_samples = 20;
  float theta_max = 2.0f;
  float temperature = 0.8f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 42;
  void add(CLI::App* app);
  Result<RunConfig> config(int max_tokens, int ctx) const;
};

}  // namespace hlm::apps
