// Cost profile options: --cloud-cost where the cloud runs, and --save-cost (a measured
// profile's name, hardware and powers, and its writing).
#include "apps/cost_options.h"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "apps/options.h"

namespace hlm::apps {

void CloudCostOptions::add(CLI::App* app) {
  app->add_option("--cloud-cost", cloud,
                  "Cloud compute time each verification reports to devices: auto (the cost "
                  "profile matching the served model's shape, else measured; measured on vLLM), "
                  "measured (this machine's clock), a profile name (costs/cloud/NAME.json) or a "
                  "file")
      ->capture_default_str();
}

Result<CostChoice> CloudCostOptions::resolve(const Model& llm, bool vllm, int threads) const {
  auto c = find_cost_profile(cloud, CostRole::kCloud,
                             vllm ? std::nullopt : std::optional(model_shape(llm)));
  if (!c) return c.error();
  print_cost_notes(*c, threads);
  return c;
}

void set_cloud_cost(server::ServerOptions& so, const CostChoice& choice) {
  so.cloud_cost = choice.profile ? std::optional(choice.profile->forward) : std::nullopt;
  so.cloud_cost_name = choice.name();
  so.cloud_power_w = choice.profile ? std::optional(choice.profile->power.compute_w) : std::nullopt;
}

void print_cost_notes(const CostChoice& choice, int threads) {
  if (!choice.note.empty()) std::fprintf(stderr, "%s\n", choice.note.c_str());
  const int measured_at = choice.profile ? choice.profile->threads : 0;
  if (measured_at > 0 && measured_at != threads) {
    // The figures stay reproducible, but they describe another configuration than this one.
    std::fprintf(stderr,
                 "hlm: cost profile %s was measured at %d thread(s); this run uses %d "
                 "(--threads %d matches it)\n",
                 choice.name().c_str(), measured_at, threads, measured_at);
  }
  std::fflush(stderr);
}

void SaveCostOptions::add(CLI::App* app, const std::string& what) {
  app->add_option("--save-cost", file, what + " and save them as a cost profile (docs/energy.md)");
  app->add_option("--cost-name", name,
                  "With --save-cost: the profile's name (default: the file's stem)");
  app->add_option("--hardware", hardware,
                  "With --save-cost: the hardware recorded (default: the CPU's model name)");
  app->add_option("--power", power,
                  "With --save-cost: the power (W) the machine draws while it computes "
                  "(default: SPEC §7's, 5 W for a device, 300 W for a cloud; needs "
                  "--power-source)")
      ->check(finite_range(1e-6, 1e6));
  app->add_option("--idle-power", idle_power,
                  "With --save-cost, a device profile: its power (W) while it waits for the "
                  "cloud (default 0.5 W)")
      ->check(finite_range(0, 1e6));
  app->add_option("--power-source", power_source,
                  "With --save-cost: where --power (and --idle-power) come from: a datasheet, a "
                  "meter, or the assumption and its reason");
}

Result<CostProfile> SaveCostOptions::start(CostRole role, int threads) const {
  if (role == CostRole::kCloud && idle_power) {
    return make_error(
        "--idle-power: a cloud profile has no idle power (the device's waiting is "
        "in the device profile)");
  }
  if ((power || idle_power) && power_source.empty()) {
    return make_error(
        "--power and --idle-power need --power-source: say where the figures come "
        "from (a datasheet, a meter, or the assumption and its reason)");
  }
  if (!power && !idle_power && !power_source.empty()) {
    return make_error("--power-source names the source of --power: give --power as well");
  }
  CostProfile p;
  p.name = name.empty() ? std::filesystem::path(file).stem().string() : name;
  p.role = role;
  p.hardware = hardware.empty() ? cpu_name() : hardware;
  p.threads = threads;
  p.hlm_version = HLM_VERSION;
  p.power = default_power(role);
  if (power) p.power.compute_w = *power;
  if (idle_power) p.power.idle_w = *idle_power;
  if (!power_source.empty()) p.power.source = power_source;
  return p;
}

std::string SaveCostOptions::flags() const {
  std::string s = fmt::format(" --save-cost {}", file);
  if (!name.empty()) s += fmt::format(" --cost-name {}", name);
  if (!hardware.empty()) s += fmt::format(" --hardware '{}'", hardware);
  if (power) s += fmt::format(" --power {:g}", *power);
  if (idle_power) s += fmt::format(" --idle-power {:g}", *idle_power);
  if (!power_source.empty()) s += fmt::format(" --power-source '{}'", power_source);
  return s;
}

Status SaveCostOptions::finish(const CostProfile& p, const char* who, bool quiet) const {
  if (auto st = save_cost_profile(p, file); !st) return st;
  if (!quiet) {
    std::printf("%s", cost_profile_to_json(p).c_str());
    std::fflush(stdout);
  }
  std::fprintf(stderr, "%s: wrote %s (forward R² %.3f; %g W while computing)\n", who, file.c_str(),
               p.forward.r2, p.power.compute_w);
  return ok_status();
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown CPU";
}

}  // namespace hlm::apps
