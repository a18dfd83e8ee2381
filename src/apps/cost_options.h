// Cost profile options of the cloud's commands and of the ones that measure profiles
// (docs/energy.md): --cloud-cost for `hlm serve` and `hlm bench serve`, and --save-cost (with
// the profile's name, hardware, powers and their source) for `hlm bench engine` and
// `hlm bench serve`.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "engine/model.h"
#include "eval/cost_profile.h"
#include "server/server.h"

namespace hlm::apps {

// --cloud-cost where the cloud itself runs: the times its replies report to devices.
struct CloudCostOptions {
  std::string cloud = "auto";
  void add(CLI::App* app);
  // auto: the profile of the served model's shape, except on vLLM (`vllm`), where the GGUF is
  // only the vocabulary: measured. Prints the notes on stderr, as CostOptions::resolve does.
  Result<CostChoice> resolve(const Model& llm, bool vllm, int threads) const;
};

// What a server takes from its cloud cost profile: the line it prices replies by (the profile's
// forward; unset when measured), and the name and power Health reports to devices.
void set_cloud_cost(server::ServerOptions& so, const CostChoice& choice);

// The stderr lines about a chosen profile: its fallback or mismatch note, and a CPU profile
// measured at another thread count than `threads`.
void print_cost_notes(const CostChoice& choice, int threads);

struct SaveCostOptions {
  std::string file;                         // --save-cost FILE
  std::string name;                         // --cost-name (default: the file's stem)
  std::string hardware;                     // --hardware (default: the CPU's model name)
  std::optional<double> power, idle_power;  // --power, --idle-power (W; default_power())
  std::string power_source;                 // --power-source
  // `what`: what --save-cost measures, for its help.
  void add(CLI::App* app, const std::string& what);
  // A profile of `role` measured at `threads` with these settings (name, hardware, version,
  // powers); the caller adds the model, the method, the command and the lines. Refuses
  // --idle-power on a cloud profile and a power without --power-source.
  Result<CostProfile> start(CostRole role, int threads) const;
  // These flags as they were given, for the profile's `command` field.
  std::string flags() const;
  // Saves `p`, prints its JSON on stdout (unless `quiet`: stdout carries other JSON) and a line
  // on stderr; `who` prefixes it ("bench").
  Status finish(const CostProfile& p, const char* who, bool quiet = false) const;
};

// The CPU's model name from /proc/cpuinfo ("unknown CPU" without one).
std::string cpu_name();

}  // namespace hlm::apps
