// Options: flag names, help texts, defaults and validators of the shared option groups.
#include "apps/options.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "models/registry.h"

namespace hlm::apps {

namespace {

CLI::Validator number_check(double lo, double hi, bool above_lo, const std::string& what) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double v = 0;
        const bool ok = CLI::detail::lexical_cast(text, v) && std::isfinite(v) &&
                        (above_lo ? v > lo : v >= lo) && v <= hi;
        return ok ? std::string() : fmt::format("{} is not a number in {}", text, what);
      },
      "NUMBER in " + what);
}

}  // namespace

CLI::Validator finite_range(double lo, double hi, bool above_lo) {
  return number_check(lo, hi, above_lo, fmt::format("{}{}, {}]", above_lo ? "(" : "[", lo, hi));
}

CLI::Validator finite_positive() {
  return number_check(0, std::numeric_limits<double>::max(), true, "(0, inf)");
}

CLI::Validator finite_non_negative() {
  return number_check(0, std::numeric_limits<double>::max(), false, "[0, inf)");
}

void ModelOptions::add(CLI::App* app, const std::string& flag) {
  std::string names;
  for (const auto& m : known_models()) names += (names.empty() ? "" : ", ") + m.name;
  app->add_option(flag, model, "Model: a GGUF file path or a known name (" + names + ")")
      ->capture_default_str();
  app->add_option("--ctx", ctx, "Context size in tokens (prompt plus generated)")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 20));
}

void ThreadOptions::add(CLI::App* app) {
  app->add_option("--threads", threads, "Worker threads (default: hardware threads)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
}

void BackendOptions::add(CLI::App* app) {
  app->add_option("--backend", backend,
                  "What computes the LLM: engine (in this process) or vllm (--vllm-url servers)")
      ->capture_default_str()
      ->check(CLI::IsMember({"engine", "vllm"}));
  app->add_option("--vllm-url", vllm.urls,
                  "A vLLM server (http://HOST:PORT, started with --max-logprobs -1) serving the "
                  "LLM of --llm; repeat once per replica");
  app->add_option("--vllm-max-in-flight", vllm.max_in_flight, "Requests in flight per vLLM replica")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app->add_option("--vllm-timeout", vllm.timeout_s,
                  "Seconds a vLLM request may take before devices are told DEADLINE_EXCEEDED "
                  "(keep it under the devices' own deadline)")
      ->capture_default_str()
      ->check(finite_positive());
}

Result<std::shared_ptr<const Model>> BackendOptions::load(const std::string& path) const {
  return Model::load(path, backend == "vllm" ? Model::Weights::kSkip : Model::Weights::kLoad);
}

Result<std::unique_ptr<BatchVerifier>> BackendOptions::make(std::shared_ptr<const Model> vocab,
                                                            int max_sessions,
                                                            int max_context) const {
  if (backend != "vllm") {
    if (!vllm.urls.empty()) return make_error("--vllm-url needs --backend vllm");
    return std::unique_ptr<BatchVerifier>();
  }
  vllm::VllmOptions o = vllm;
  o.max_sessions = max_sessions;
  o.max_context = max_context;
  auto v = vllm::VllmVerifier::connect(std::move(vocab), o);
  if (!v) return v.error();
  return std::unique_ptr<BatchVerifier>(std::move(v).value());
}

void SamplingOptions::add(CLI::App* app) {
  app->add_option("--temp", temperature, "Sampling temperature; 0 means greedy")
      ->capture_default_str()
      ->check(finite_range(0, 100));
  app->add_option("--top-k", top_k, "Keep the k most likely tokens; 0 disables")
      ->capture_default_str()
      ->check(finite_non_negative());
  app->add_option("--top-p", top_p, "Nucleus sampling mass; 1 disables")
      ->capture_default_str()
      ->check(finite_range(0, 1, true));
  app->add_option("--seed", seed, "Random seed")->capture_default_str();
}

void PromptOptions::add(CLI::App* app) {
  app->add_option("--prompt,-p", prompt, "The prompt text")->required();
  app->add_flag("--chat", chat, "Wrap the prompt in the model's chat template");
  app->add_option("--system", system, "System message for --chat");
  app->add_option("--max-tokens,-n", max_tokens, "Maximum number of tokens to generate")
      ->capture_default_str()
      ->check(finite_non_negative());
}

void OutputOptions::add(CLI::App* app, const std::string& what) {
  app->add_flag("--json", json, what);
}

}  // namespace hlm::apps
