// Options: the CLI option groups shared by subcommands, one struct per concern (model loading,
// threading, sampling, prompt, output), each registering its own flags with CLI11.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>

#include "cloud/batch_verifier.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "vllm/vllm_verifier.h"

namespace hlm::apps {

// CLI checks for real-valued options: a finite number in [lo, hi] (in (lo, hi] with `above_lo`),
// a finite number above 0, and one at or above 0. CLI::Range and CLI::PositiveNumber let NaN
// through (every comparison with it is false), which would reach the sampler or the cost model as
// garbage; CLI::NonNegativeNumber's message spells out the largest double in full.
CLI::Validator finite_range(double lo, double hi, bool above_lo = false);
CLI::Validator finite_positive();
CLI::Validator finite_non_negative();

// Which model to load and how large a context to give it.
struct ModelOptions {
  std::string model = "llm";  // a file path, or a registry name such as "llm"
  int ctx = 2048;
  void add(CLI::App* app, const std::string& flag = "--model");
};

struct ThreadOptions {
  int threads = std::max(1u, std::thread::hardware_concurrency());
  void add(CLI::App* app);
};

// What computes the LLM behind `hlm serve` and `hlm bench serve`: the in-process engine, or
// vLLM servers (--vllm-url, one per replica).
struct BackendOptions {
  std::string backend = "engine";
  vllm::VllmOptions vllm;
  void add(CLI::App* app);
  // The cloud model at `path`: whole for the engine, only its vocabulary for vLLM.
  Result<std::shared_ptr<const Model>> load(const std::string& path) const;
  // Null for the engine (the server builds it on the model); else the vLLM backend, connected
  // and checked against `vocab`'s vocabulary.
  Result<std::unique_ptr<BatchVerifier>> make(std::shared_ptr<const Model> vocab, int max_sessions,
                                              int max_context) const;
};

struct SamplingOptions {
  float temperature = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 42;
  void add(CLI::App* app);
  SamplingParams params() const {
    return {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = seed};
  }
};

// The user's prompt and how to present it to the model.
struct PromptOptions {
  std::string prompt;
  std::string system;  // system message for --chat; empty means the template's default
  bool chat = false;
  int max_tokens = 128;
  void add(CLI::App* app);
};

struct OutputOptions {
  bool json = false;
  void add(CLI::App* app, const std::string& what = "Print one JSON object instead of text");
};

}  // namespace hlm::apps
