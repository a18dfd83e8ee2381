// Pair profiles: the upload thresholds calibrated for one device model and one cloud model,
// saved by `hlm calibrate --save` and looked up by the hybrid commands for the pair they load
// (docs/profiles.md). A profile names both models by fingerprint (models/fingerprint.h), holds
// the calibration fit (SPEC §9), the chosen u_th, the importance estimator and its λ, and the
// rule that chose them.
#pragma once

#include <string>
#include <vector>

#include "eval/calibration.h"
#include "method/policy.h"
#include "util/result.h"

namespace hlm {

inline constexpr const char* kProfileFormat = "hlm-pair-profile/1";

struct ProfileModel {
  std::string fingerprint;  // model_fingerprint()
  std::string file;         // the file's name when calibrated (informational)
};

struct PairProfile {
  ProfileModel slm, llm;
  // How the calibration ran (informational, so a reader can reproduce it).
  std::string prompts;
  int64_t n_prompts = 0;
  int max_tokens = 0;
  float temperature = 0;
  int unc_samples = 0;
  float theta_max = 0;
  CalibrationFit fit;
  ThresholdChoice choice;  // the rule and the u_th it chose
  ImportanceEstimator estimator = ImportanceEstimator::kEntropy;
  float lambda = 0;
  std::string importance_rule;  // where the estimator and λ come from
  std::string hlm_version;
};

// JSON text of a profile (stable key order, one field per line) and its inverse. Parse errors
// name `source` (the file) and the offending field, with what was expected.
std::string profile_to_json(const PairProfile& p);
Result<PairProfile> parse_profile(const std::string& text, const std::string& source);
Result<PairProfile> load_profile(const std::string& path);
Status save_profile(const PairProfile& p, const std::string& path);

// The policy defaults a profile sets: u_th, and the estimator with its λ (the λ holds only while
// that estimator is in use; see ImportanceConfig::pair_lambda).
PolicyConfig profile_policy(const PairProfile& p);

// Where saved files of one kind are searched, in order: the directory in $env_var, `relative` in
// the models cache (models_dir()) and `relative` in the source tree (the shipped ones;
// $HLM_SOURCE_DIR or the build's source directory) when it exists.
std::vector<std::string> search_dirs(const char* env_var, const std::string& relative);
// Where profiles are searched, in order: $HLM_PROFILES_DIR, `profiles/` in the models cache
// (models_dir(); where `hlm calibrate --save` writes by default), and `profiles/` in the source
// tree (the shipped ones; $HLM_SOURCE_DIR or the build's source directory).
std::vector<std::string> profile_dirs();
// The file `hlm calibrate --save` writes when no FILE is given.
std::string default_profile_path(const PairProfile& p);

// The profile in use for a pair, or the fallback to U-HLM's published values.
struct ProfileChoice {
  std::string path;  // empty: none matched (fallback)
  PairProfile profile;
  PolicyConfig policy;  // the defaults to start the method options from
  std::string note;     // what was chosen and why, for stderr (empty when a profile matched)
};

// `explicit_path`: --profile (an error when the file does not fit the pair, naming the model);
// "none" takes the fallback on purpose. Otherwise the first profile in profile_dirs() whose
// fingerprints match (the LLM's is not compared when `llm_fingerprint` is empty: with --cloud
// the device cannot see the cloud's model). Unreadable or malformed files in the search
// directories are errors naming the file and field.
Result<ProfileChoice> find_profile(const std::string& explicit_path,
                                   const std::string& slm_fingerprint,
                                   const std::string& llm_fingerprint);

}  // namespace hlm
