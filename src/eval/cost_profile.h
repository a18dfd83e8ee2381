// Cost profiles: the device's or the cloud's compute times as fitted lines (method/cost.h) for
// one model shape on one piece of hardware, saved as JSON (`hlm bench engine --save-cost`, or
// written by hand from published figures) and chosen by --device-cost / --cloud-cost
// (docs/energy.md). A profile records what it models (the model's shape, the hardware), how it
// was obtained (the command that measured it, or the assumption and its sources) and each fit
// with its R².
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "method/cost.h"
#include "util/result.h"

namespace hlm {

class Model;

inline constexpr const char* kCostProfileFormat = "hlm-cost-profile/1";

// What a cost profile is matched on: a model's architecture and size, not its weights (a
// fine-tune of the same shape costs the same).
struct ModelShape {
  std::string arch;  // general.architecture
  int n_layer = 0;
  int n_embd = 0;
  int n_vocab = 0;
  int64_t params = 0;       // elements over every tensor
  std::string weight_type;  // the tensor type holding most of the parameters ("Q4_1", "F16")

  bool operator==(const ModelShape&) const = default;
  std::string describe() const;  // "llama, 30 layers, n_embd 576, n_vocab 49152, 134.5M Q4_1"
};
ModelShape model_shape(const Model& m);

enum class CostRole { kDevice, kCloud };
const char* to_string(CostRole r);

// The machine's power while it computes (a device's also while it waits for the cloud), and
// where the figures come from: a datasheet, or an assumption with its reason. The energy model
// multiplies the profile's times by these (the radio's powers stay with the channel).
struct ProfilePower {
  double compute_w = 0;
  std::optional<double> idle_w;  // device profiles only, and required there
  std::string source;

  bool operator==(const ProfilePower&) const = default;
};
// What `hlm bench engine|serve --save-cost` record unless told otherwise: SPEC §7's powers,
// stated as the assumption they are (a CPU measurement gives the times, not the power of the
// device or accelerator it stands in for).
ProfilePower default_power(CostRole role);

struct CostProfile {
  std::string name;
  CostRole role = CostRole::kDevice;
  std::string source = "measured";  // or "assumption" (derived from published figures)
  ModelShape model;
  std::string model_file;  // the file measured, or the model assumed (informational)
  std::string hardware;
  int threads = 0;      // CPU threads the times hold for (0: not a CPU measurement)
  std::string method;   // how the lines were obtained, in words
  std::string command;  // the command that made the profile
  std::string hlm_version;
  ProfilePower power;
  CostLine forward;  // one forward: n positions after `context` cached, `batch` sequences
  // Device profiles only (required there): the forward with attention capture, and the filter.
  std::optional<CostLine> forward_capture;
  std::optional<CostLine> uncertainty;  // n = K samples
  std::optional<CostLine> importance;   // context = positions attended
};

// JSON text of a profile (stable key order) and its inverse. Errors name `source` (the file)
// and the offending field, with what was expected.
std::string cost_profile_to_json(const CostProfile& p);
Result<CostProfile> parse_cost_profile(const std::string& text, const std::string& source);
Result<CostProfile> load_cost_profile(const std::string& path);
Status save_cost_profile(const CostProfile& p, const std::string& path);

// Where profiles of a role are searched, in order: $HLM_COSTS_DIR/<role>, costs/<role> in the
// models cache and costs/<role> in the source tree (the shipped ones).
std::vector<std::string> cost_dirs(CostRole role);

// The profile a --device-cost / --cloud-cost setting picks.
struct CostChoice {
  std::string path;                    // empty: measured
  std::optional<CostProfile> profile;  // unset: measured
  std::string note;                    // for stderr: a fallback or a mismatch ("" otherwise)
  std::string digest;                  // the first 12 hex digits of the SHA-256 of its JSON
  std::string name() const { return profile ? profile->name : "measured"; }
};

// `setting`: "measured"; "auto": the first profile of the role in cost_dirs() whose model shape
// is `shape` (measured when none is, or when `shape` is unset: a remote cloud, whose model the
// device cannot see); a FILE (a path, or a name ending in .json); otherwise a NAME looked up as
// NAME.json in cost_dirs(). A named or given profile is used whatever model it was made for (a
// note says when the loaded model differs): that is how a run asks "what if the cloud were a
// 7B model on an A100". Errors name the file and field, or the directories searched.
Result<CostChoice> find_cost_profile(const std::string& setting, CostRole role,
                                     const std::optional<ModelShape>& shape);

// The run's cost configuration from the two choices (with their names, digests and powers).
CostConfig cost_config(const CostChoice& device, const CostChoice& cloud);

}  // namespace hlm
