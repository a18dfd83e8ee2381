// Hybrid option groups (see run_options.h).
#include "apps/run_options.h"

#include <fmt/format.h>

#include <cstdio>

#include "apps/cost_options.h"
#include "apps/options.h"
#include "apps/prompt.h"
#include "models/fingerprint.h"
#include "models/registry.h"
#include "server/security.h"

namespace hlm::apps {

void PairOptions::add(CLI::App* app) {
  app->add_option("--slm", slm, "Device model: a GGUF path or a known name")->capture_default_str();
  app->add_option("--llm", llm, "Cloud model: a GGUF path or a known name")->capture_default_str();
  app->add_option("--ctx", ctx, "Context size in tokens")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 20));
}

Result<ModelPair> PairOptions::load() const {
  ModelPair p;
  for (auto [name, out] : {std::pair{&slm, &p.slm}, {&llm, &p.llm}}) {
    auto path = resolve_model(*name);
    if (!path) return path.error();
    auto m = Model::load(*path);
    if (!m) return m.error();
    *out = *m;
  }
  if (auto st = check_vocab_compatible(p.slm->tokenizer(), p.slm->path(), p.llm->tokenizer(),
                                       p.llm->path());
      !st) {
    return st.error();
  }
  return p;
}

std::string adopt_server_power(RemoteVerifier& cloud, const MethodOptions& method, RunConfig& cfg) {
  if (cfg.cost.powers.p_cloud_w) return "";  // this run's own cloud profile decides
  auto health = cloud.health();
  if (!health || !health->cloud_power_w) return "";
  ComputePowers powers = cfg.cost.powers;
  powers.p_cloud_w = health->cloud_power_w;
  auto ch = parse_channel(method.channel, powers);
  if (!ch) return "";  // a power the channel refuses (negative, NaN): keep the preset's
  cfg.channel = *ch;
  cfg.cost.cloud_name = health->cloud_cost;
  return fmt::format(
      "hlm: cloud energy at {:g} W while verifying, from the server's cost profile {}",
      cfg.channel.p_cloud_w, health->cloud_cost);
}

Result<ModelPair> load_device_only(const PairOptions& models) {
  auto path = resolve_model(models.slm);
  if (!path) return path.error();
  auto m = Model::load(*path);
  if (!m) return m.error();
  return ModelPair{*m, nullptr};
}

void CloudLinkOptions::add(CLI::App* app) {
  app->add_option("--cloud", cloud,
                  "Verify through `hlm serve` at host:port (grpc://host:port; grpcs:// for TLS) "
                  "instead of loading --llm here");
  app->add_option("--tls-ca", tls_ca_file,
                  "With --cloud: PEM roots that sign the server's certificate (implies TLS; "
                  "grpcs:// without it uses the system's roots)");
  app->add_option("--api-key-file", api_key_file, "File holding the cloud server's API key");
  app->add_flag("--emulate-channel", emulate_channel,
                "With --cloud: sleep the --channel's uplink/downlink times for the bytes sent, so "
                "wall-clock figures follow the modelled ones");
  app->add_option("--cloud-timeout", timeout_s, "Deadline of each cloud call (s)")
      ->capture_default_str()
      ->check(finite_positive());
}

Result<RemoteOptions> CloudLinkOptions::remote(const ChannelConfig& channel) const {
  auto target = cloud_target(cloud);
  if (!target) return target.error();
  RemoteOptions ro;
  ro.target = target->target;
  ro.tls = target->tls;
  if (!tls_ca_file.empty()) {
    auto roots = server::read_pem_file(tls_ca_file, "--tls-ca");
    if (!roots) return roots.error();
    ro.tls_roots_pem = *roots;  // implies TLS (RemoteOptions)
  }
  ro.timeout_s = timeout_s;
  if (emulate_channel) ro.emulate = channel;
  if (!api_key_file.empty()) {
    auto key = server::read_api_key_file(api_key_file);
    if (!key) return key.error();
    ro.api_key = *key;
  }
  return ro;
}

void MethodOptions::add(CLI::App* app) {
  app->add_option("--policy", policy,
                  "slm | llm | hlm | rand | uhlm | iuhlm | spec, optionally with arguments as in "
                  "'uhlm(0.1)' or 'iuhlm:u_th=0.6,lambda=5,est=focus'")
      ->capture_default_str();
  app->add_option("--u-th", u_th, "Uncertainty threshold u_th (uhlm, iuhlm)");
  app->add_option("--lambda", lambda,
                  fmt::format("Importance threshold knob λ (iuhlm; default per estimator: "
                              "entropy {:g}, focus {:g}, received {:g})",
                              default_lambda(ImportanceEstimator::kEntropy),
                              default_lambda(ImportanceEstimator::kFocus),
                              default_lambda(ImportanceEstimator::kReceived)));
  app->add_option("--u-hi", u_hi, "Always upload when u > u_hi (iuhlm; 1 disables)");
  app->add_option("--estimator", estimator,
                  fmt::format("Importance estimator: focus | received | entropy (default {})",
                              to_string(ImportanceConfig{}.estimator)));
  app->add_option("--sinks", sinks, "Leading attention-sink positions dropped (s)");
  app->add_option("--lookahead", lookahead, "w for received(w)");
  app->add_option("--rate", rate, "Upload probability r (rand)");
  app->add_option("--draft", draft, "Draft length k (spec)");
  app->add_option("--encoding", encoding,
                  "Upload encoding: full (standard HLM) | topk(k,bits[,renorm]) | ids")
      ->capture_default_str();
  app->add_option("--channel", channel,
                  "Channel preset narrowband | lte | wifi, with overrides as in 'lte:rtt=0.03'")
      ->capture_default_str();
  app->add_option("--unc-samples", unc_samples, "K: temperature-perturbed samples for u")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app->add_option("--theta-max", theta_max, "θ_max of the perturbation temperatures")
      ->capture_default_str()
      ->check(finite_positive());
  app->add_option("--temp", temperature, "Sampling temperature shared by both models; 0 = greedy")
      ->capture_default_str()
      ->check(finite_range(0, 100));
  app->add_option("--top-k", top_k, "Top-k filter on both sides; 0 disables")
      ->capture_default_str()
      ->check(finite_non_negative());
  app->add_option("--top-p", top_p, "Top-p filter on both sides; 1 disables")
      ->capture_default_str()
      ->check(finite_range(0, 1, true));
  app->add_option("--seed", seed, "Random seed")->capture_default_str();
  app->add_flag("--no-pipeline", no_pipeline,
                "Wait for each verification before drafting on (default: keep drafting, deciding "
                "and uploading while replies are in flight; the output is the same)");
  app->add_option("--pipeline-depth", pipeline_depth,
                  "Pipelined drafting: at most this many uploads in flight")
      ->capture_default_str()
      ->check(CLI::Range(1, kMaxPipelineDepth));
  app->add_option("--pipeline-ahead", pipeline_ahead,
                  "Pipelined drafting: at most this many tokens drafted past the oldest upload "
                  "whose reply is not in")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
}

Result<RunConfig> MethodOptions::config(int max_tokens, int ctx, const PolicyConfig& base,
                                        const CostConfig& cost) const {
  RunConfig c;
  c.cost = cost;
  auto p = parse_policy(policy, base);
  if (!p) return make_error("--policy: {}", p.error().message);
  c.policy = *p;
  if (u_th) c.policy.u_th = *u_th;
  if (u_hi) c.policy.u_hi = *u_hi;
  if (rate) c.policy.rate = *rate;
  if (draft) c.policy.draft = *draft;
  if (estimator) {
    auto e = parse_estimator(*estimator);
    if (!e) return make_error("--estimator: {}", e.error().message);
    c.policy.importance.estimator = *e;
  }
  if (lambda) c.policy.importance.lambda = *lambda;
  if (sinks) c.policy.importance.sinks = *sinks;
  if (lookahead) c.policy.importance.lookahead = *lookahead;
  if (auto st = validate(c.policy); !st) return make_error("policy: {}", st.error().message);
  auto enc = parse_encoding(encoding);
  if (!enc) return make_error("--encoding: {}", enc.error().message);
  c.encoding = *enc;
  auto ch = parse_channel(channel, cost.powers);
  if (!ch) return make_error("--channel: {}", ch.error().message);
  c.channel = *ch;
  c.uncertainty = {unc_samples, theta_max};
  c.sampling = {temperature, top_k, top_p, seed};
  c.max_tokens = max_tokens;
  c.n_ctx = ctx;
  c.pipeline = !no_pipeline;
  c.pipeline_depth = pipeline_depth;
  c.pipeline_ahead = pipeline_ahead;
  return c;
}

void ProfileOptions::add(CLI::App* app) {
  app->add_option("--profile", profile,
                  "Pair profile (from `hlm calibrate --save`) that sets the default u_th, "
                  "estimator and lambda; 'none' uses U-HLM's published values. Default: the "
                  "profile matching the loaded models, searched in $HLM_PROFILES_DIR, the "
                  "models cache's profiles/ and the source tree's profiles/");
}

Result<ProfileChoice> ProfileOptions::resolve(const ModelPair& pair) const {
  auto c = find_profile(profile, model_fingerprint(pair.slm->gguf()),
                        pair.llm ? model_fingerprint(pair.llm->gguf()) : std::string());
  if (!c) return make_error("--profile: {}", c.error().message);
  if (!c->note.empty()) {
    std::fprintf(stderr, "%s\n", c->note.c_str());
    std::fflush(stderr);
  }
  return c;
}

nlohmann::json profile_json(const ProfileChoice& c) {
  if (c.path.empty()) {
    return {{"path", nullptr},
            {"fallback", "U-HLM"},
            {"u_th", c.policy.u_th},
            {"estimator", to_string(c.policy.importance.estimator)},
            {"lambda", c.policy.importance.lambda_value()}};
  }
  return {{"path", c.path},
          {"u_th", c.profile.choice.u_th},
          {"estimator", to_string(c.profile.estimator)},
          {"lambda", c.profile.lambda},
          {"rule", fmt::format("skip-risk(max_risk={:g})", c.profile.choice.max_risk)}};
}

void CostOptions::add(CLI::App* app) {
  app->add_option("--device-cost", device,
                  "Device compute times (SLM forward, filter) for the energy and latency model: "
                  "auto (the cost profile matching the device model, else measured), measured "
                  "(this machine's clock), a profile name (costs/device/NAME.json) or a file")
      ->capture_default_str();
  app->add_option("--cloud-cost", cloud,
                  "Cloud compute times (LLM forward): auto (the profile matching the cloud model, "
                  "else measured; with --cloud: measured, as the server reports), measured, a "
                  "profile name (costs/cloud/NAME.json, e.g. a100-llama-2-7b-fp16) or a file")
      ->capture_default_str();
}

Result<CostConfig> CostOptions::resolve(const ModelPair& pair, int threads) const {
  auto d = find_cost_profile(device, CostRole::kDevice, model_shape(*pair.slm));
  if (!d) return d.error();
  auto c = find_cost_profile(cloud, CostRole::kCloud,
                             pair.llm ? std::optional(model_shape(*pair.llm)) : std::nullopt);
  if (!c) return c.error();
  for (const CostChoice* choice : {&*d, &*c}) print_cost_notes(*choice, threads);
  return cost_config(*d, *c);
}

nlohmann::json cost_json(const CostConfig& cost) {
  nlohmann::json j = {{"device", cost.device_name}, {"cloud", cost.cloud_name}};
  if (!cost.device_digest.empty()) j["device_sha256"] = cost.device_digest;
  if (!cost.cloud_digest.empty()) j["cloud_sha256"] = cost.cloud_digest;
  return j;
}

}  // namespace hlm::apps
