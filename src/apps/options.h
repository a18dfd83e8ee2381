// Options: the CLI option groups shared by subcommands, one struct per concern (model loading,
// threading, sampling, prompt, output), each registering its own flags with CLI11.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <string>
#include <thread>

#include "engine/sampler.h"

namespace hlm::apps {

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
