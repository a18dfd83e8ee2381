// Option groups of the hybrid commands (run, calibrate, serve, eval): the model pair and the
// method (policy, upload encoding, uncertainty, sampling, channel).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "device/device.h"
#include "engine/model.h"
#include "eval/cost_profile.h"
#include "eval/profile.h"
#include "protocol/remote_verifier.h"

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
  bool no_pipeline = false;
  int pipeline_depth = RunConfig{}.pipeline_depth;
  int pipeline_ahead = RunConfig{}.pipeline_ahead;
  void add(CLI::App* app);
  // `base` holds the defaults the flags override: the built-in ones, or a pair profile's.
  // `cost` is the run's (CostOptions::resolve); its profiles' powers replace the channel
  // preset's, and --channel's explicit p_comp, p_idle or p_cloud replace those.
  Result<RunConfig> config(int max_tokens, int ctx, const PolicyConfig& base = {},
                           const CostConfig& cost = {}) const;
};

// --profile: the pair profile whose u_th, importance estimator and λ the method options start
// from (eval/profile.h, docs/profiles.md).
struct ProfileOptions {
  std::string profile;  // a file, "none" (U-HLM's values), or empty: search for the pair's
  void add(CLI::App* app);
  // The profile of the loaded pair; with --cloud (no LLM loaded) matched on the device model
  // alone. Prints the fallback note on stderr when none matches.
  Result<ProfileChoice> resolve(const ModelPair& pair) const;
};

// What --json outputs record about the profile in use: its file and values, or the fallback.
nlohmann::json profile_json(const ProfileChoice& choice);

// --device-cost, --cloud-cost: where the modelled compute times come from (docs/energy.md).
struct CostOptions {
  std::string device = "auto";
  std::string cloud = "auto";
  void add(CLI::App* app);
  // The profiles for the loaded pair (with --cloud, `pair.llm` is null: the cloud's auto is
  // measured, as the remote reports it) run at `threads`. Prints fallback and mismatch notes on
  // stderr, and one when a CPU profile was measured at another thread count.
  Result<CostConfig> resolve(const ModelPair& pair, int threads) const;
};

// What --json outputs and eval's config record about the cost profiles in use: each side's
// profile name ("measured" without one) and the digest of its content.
nlohmann::json cost_json(const CostConfig& cost);

// --cloud and how to reach it: TLS roots, API key, deadline, channel emulation.
struct CloudLinkOptions {
  std::string cloud;  // host:port of `hlm serve`; empty: the LLM runs in this process
  std::string api_key_file;
  std::string tls_ca_file;
  bool emulate_channel = false;
  double timeout_s = 10;
  void add(CLI::App* app);
  // The client's options; `channel` is emulated with --emulate-channel.
  Result<RemoteOptions> remote(const ChannelConfig& channel) const;
};

// With --cloud: the cloud's energy is priced at the power of the server's own cost profile (its
// Health reply), as an in-process cloud's profile's power would be, unless this run names a cloud
// cost profile itself or --channel sets p_cloud. Returns a note for stderr ("" when nothing
// changed); a server that does not answer leaves the channel's power as it is.
std::string adopt_server_power(RemoteVerifier& cloud, const MethodOptions& method, RunConfig& cfg);

// The device model alone (with --cloud the server checks the vocabulary at session open).
Result<ModelPair> load_device_only(const PairOptions& models);

}  // namespace hlm::apps
