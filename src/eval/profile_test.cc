// Pair profiles on tiny models: fingerprints, the skip-risk rule, the JSON round trip, errors
// that name the file and field, the search for a pair's profile, and flag precedence.
#include "eval/profile.h"

#include <gtest/gtest.h>

#include <fstream>

#include "engine/model.h"
#include "engine/model_writer.h"
#include "models/fingerprint.h"
#include "models/testing.h"

namespace hlm {
namespace {

using testing::ScopedEnv;
using testing::ScopedTempDir;

std::string fingerprint_of(const std::string& path) {
  return model_fingerprint(Model::load(path).value()->gguf());
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(ModelFingerprint, SameContentSameFingerprintAnyChangeAnother) {
  ScopedTempDir dir;
  TinyModelSpec spec;
  ASSERT_TRUE(write_tiny_model(dir / "a.gguf", spec).ok());
  ASSERT_TRUE(write_tiny_model(dir / "b.gguf", spec).ok());  // same content, another file
  TinyModelSpec perturbed = spec;
  perturbed.perturb = 0.01f;  // same metadata and layout, slightly different weights
  ASSERT_TRUE(write_tiny_model(dir / "c.gguf", perturbed).ok());
  TinyModelSpec deeper = spec;
  deeper.n_layer = 3;
  ASSERT_TRUE(write_tiny_model(dir / "d.gguf", deeper).ok());

  const std::string a = fingerprint_of(dir / "a.gguf");
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos) << a;
  EXPECT_EQ(a, fingerprint_of(dir / "a.gguf"));
  EXPECT_EQ(a, fingerprint_of(dir / "b.gguf"));
  EXPECT_NE(a, fingerprint_of(dir / "c.gguf"));
  EXPECT_NE(a, fingerprint_of(dir / "d.gguf"));
}

std::vector<CalibrationPoint> levels(std::initializer_list<std::pair<float, float>> u_beta,
                                     int copies) {
  std::vector<CalibrationPoint> pts;
  for (int c = 0; c < copies; ++c) {
    for (auto [u, beta] : u_beta) pts.push_back({u, beta, 0, 0});
  }
  return pts;
}

TEST(SkipRiskRule, TakesTheLargestThresholdWithinTheBudget) {
  // Four u levels of 10 points each (n = 40): rejection mass per level 0, 1, 5 and 10.
  const auto pts = levels({{0.0f, 0.0f}, {0.25f, 0.1f}, {0.5f, 0.5f}, {1.0f, 1.0f}}, 10);
  const ThresholdChoice c = choose_u_th(pts, 0.05);  // 0 + 1/40 fits, + 5/40 does not
  EXPECT_DOUBLE_EQ(c.u_th, 0.375);                   // midway between 0.25 and 0.5
  EXPECT_DOUBLE_EQ(c.skip_share, 0.5);
  EXPECT_NEAR(c.risk, 1.0 / 40, 1e-9);
  EXPECT_EQ(c.max_risk, 0.05);
  // The share skipped is the share with u <= u_th, i.e. what uhlm at u_th skips.
  int skipped = 0;
  for (const auto& p : pts) skipped += !(p.u > c.u_th);
  EXPECT_EQ(skipped, 20);

  const std::vector<RiskLevel> curve = risk_curve(pts);
  ASSERT_EQ(curve.size(), 4u);
  EXPECT_EQ(curve[1].u, 0.25f);
  EXPECT_DOUBLE_EQ(curve[1].skip_share, 0.5);
  EXPECT_NEAR(curve[2].risk, 6.0 / 40, 1e-9);
  EXPECT_NEAR(curve[3].risk, 16.0 / 40, 1e-9);
  EXPECT_DOUBLE_EQ(curve[3].skip_share, 1.0);

  EXPECT_DOUBLE_EQ(choose_u_th(pts, 0.0).u_th, 0.125);  // only the riskless level
  EXPECT_DOUBLE_EQ(choose_u_th(pts, 1.0).u_th, 1.0);    // everything fits: never upload
  EXPECT_DOUBLE_EQ(choose_u_th(pts, 1.0).skip_share, 1.0);
  // Not even the lowest level fits: u_th = 0, nothing counted as skipped.
  const ThresholdChoice none = choose_u_th(levels({{0.5f, 0.9f}, {1.0f, 1.0f}}, 5), 0.1);
  EXPECT_EQ(none.u_th, 0.0);
  EXPECT_EQ(none.skip_share, 0.0);
}

PairProfile sample_profile(const std::string& slm_fp, const std::string& llm_fp) {
  PairProfile p;
  p.slm = {slm_fp, "device.gguf"};
  p.llm = {llm_fp, "cloud.gguf"};
  p.prompts = "data/prompts/calibration.jsonl";
  p.n_prompts = 100;
  p.max_tokens = 64;
  p.temperature = 0.8f;
  p.unc_samples = 20;
  p.theta_max = 2.0f;
  p.fit = {6400, 0.7696, 0.0926, 0.4, 0.808, -0.1203, 0.9294, 0.726};
  p.choice = {0.1, 0.31, 0.625, 0.0987};
  p.estimator = ImportanceEstimator::kFocus;
  p.lambda = 4.25f;
  p.importance_rule = "given";
  p.hlm_version = "0.1.0";
  return p;
}

const std::string kFpA(64, 'a'), kFpB(64, 'b'), kFpC(64, 'c');

TEST(PairProfile, SaveLoadRoundTrip) {
  ScopedTempDir dir;
  const PairProfile p = sample_profile(kFpA, kFpB);
  const std::string path = dir / "sub/pair.json";  // the directory is created
  ASSERT_TRUE(save_profile(p, path).ok());
  auto q = load_profile(path);
  ASSERT_TRUE(q.ok()) << q.error().message;
  EXPECT_EQ(q->slm.fingerprint, kFpA);
  EXPECT_EQ(q->slm.file, "device.gguf");
  EXPECT_EQ(q->llm.fingerprint, kFpB);
  EXPECT_EQ(q->llm.file, "cloud.gguf");
  EXPECT_EQ(q->prompts, p.prompts);
  EXPECT_EQ(q->n_prompts, 100);
  EXPECT_EQ(q->max_tokens, 64);
  EXPECT_EQ(q->temperature, 0.8f);
  EXPECT_EQ(q->unc_samples, 20);
  EXPECT_EQ(q->theta_max, 2.0f);
  EXPECT_EQ(q->fit.n, 6400);
  EXPECT_EQ(q->fit.a, p.fit.a);
  EXPECT_EQ(q->fit.b, p.fit.b);
  EXPECT_EQ(q->fit.correlation, p.fit.correlation);
  EXPECT_EQ(q->fit.delta, p.fit.delta);
  EXPECT_EQ(q->fit.u_th_averse, p.fit.u_th_averse);
  EXPECT_EQ(q->fit.u_th_prone, p.fit.u_th_prone);
  EXPECT_EQ(q->fit.mean_beta, p.fit.mean_beta);
  EXPECT_EQ(q->choice.max_risk, p.choice.max_risk);
  EXPECT_EQ(q->choice.u_th, p.choice.u_th);
  EXPECT_EQ(q->choice.skip_share, p.choice.skip_share);
  EXPECT_EQ(q->choice.risk, p.choice.risk);
  EXPECT_EQ(q->estimator, ImportanceEstimator::kFocus);
  EXPECT_EQ(q->lambda, 4.25f);
  EXPECT_EQ(q->importance_rule, "given");
  EXPECT_EQ(q->hlm_version, "0.1.0");
  EXPECT_EQ(profile_to_json(*q), profile_to_json(p));
}

TEST(PairProfile, MalformedFilesNameTheFileAndField) {
  const std::string good = profile_to_json(sample_profile(kFpA, kFpB));
  const auto edited = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? s : s.replace(at, from.size(), to);
  };
  const struct {
    std::string text, field;
  } cases[] = {
      {"{ not json", "not valid JSON"},
      {"[1, 2]", "JSON object"},
      {edited("\"u_th\": 0.31", "\"u_th_x\": 0.31"), "'u_th' is missing"},
      {edited("\"u_th\": 0.31", "\"u_th\": 1.5"), "'u_th' is 1.5"},
      {edited("\"a\": 0.7696", "\"a\": \"steep\""), "'calibration.a' must be a number"},
      {edited("\"estimator\": \"focus\"", "\"estimator\": \"psychic\""), "'importance.estimator'"},
      {edited(kFpA, "xyz"), "'slm.fingerprint' must be 64 hex digits"},
      {edited(kProfileFormat, "hlm-pair-profile/99"), "'format'"},
  };
  for (const auto& c : cases) {
    auto r = parse_profile(c.text, "/profiles/pair.json");
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_TRUE(contains(r.error().message, "/profiles/pair.json")) << r.error().message;
    EXPECT_TRUE(contains(r.error().message, c.field)) << r.error().message;
  }
  auto missing = load_profile("/nonexistent/pair.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.error().message, "/nonexistent/pair.json"));
}

class ProfileSearch : public ::testing::Test {
 protected:
  ScopedTempDir profiles, cache;
  ScopedEnv profiles_env{"HLM_PROFILES_DIR", profiles.path()};
  ScopedEnv cache_env{"HLM_MODELS_DIR", cache.path()};
};

TEST_F(ProfileSearch, MatchesBothFingerprintsElseFallsBack) {
  ASSERT_TRUE(save_profile(sample_profile(kFpA, kFpB), profiles / "ab.json").ok());
  auto hit = find_profile("", kFpA, kFpB);
  ASSERT_TRUE(hit.ok()) << hit.error().message;
  EXPECT_EQ(hit->path, profiles / "ab.json");
  EXPECT_TRUE(hit->note.empty());
  EXPECT_FLOAT_EQ(hit->policy.u_th, 0.31f);

  // Another cloud model: no match, U-HLM's published values and a note saying so.
  auto miss = find_profile("", kFpA, kFpC);
  ASSERT_TRUE(miss.ok()) << miss.error().message;
  EXPECT_TRUE(miss->path.empty());
  EXPECT_FLOAT_EQ(miss->policy.u_th, kDefaultUth);
  EXPECT_TRUE(contains(miss->note, "no pair profile")) << miss->note;
  EXPECT_TRUE(contains(miss->note, profiles.path())) << miss->note;  // where it looked

  // With --cloud the cloud model is not visible: the device model alone decides.
  auto cloud = find_profile("", kFpA, "");
  ASSERT_TRUE(cloud.ok());
  EXPECT_EQ(cloud->path, profiles / "ab.json");
}

TEST_F(ProfileSearch, ExplicitProfileMustFitThePair) {
  const std::string file = cache / "mine.json";
  ASSERT_TRUE(save_profile(sample_profile(kFpA, kFpB), file).ok());
  auto ok = find_profile(file, kFpA, kFpB);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->path, file);
  auto wrong_llm = find_profile(file, kFpA, kFpC);
  ASSERT_FALSE(wrong_llm.ok());
  EXPECT_TRUE(contains(wrong_llm.error().message, "another cloud model"))
      << wrong_llm.error().message;
  EXPECT_TRUE(contains(wrong_llm.error().message, file));
  auto wrong_slm = find_profile(file, kFpC, kFpB);
  ASSERT_FALSE(wrong_slm.ok());
  EXPECT_TRUE(contains(wrong_slm.error().message, "another device model"));
  auto none = find_profile("none", kFpA, kFpB);  // the fallback on purpose
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->path.empty());
  EXPECT_FLOAT_EQ(none->policy.u_th, kDefaultUth);
  EXPECT_TRUE(contains(none->note, "--profile none"));
}

TEST_F(ProfileSearch, MalformedFileInTheSearchPathIsAnError) {
  std::ofstream(profiles / "broken.json") << "{\"format\": \"hlm-pair-profile/1\"}";
  auto r = find_profile("", kFpA, kFpB);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, profiles / "broken.json")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "hlm_version")) << r.error().message;
}

TEST(PairProfile, FlagsOverrideTheProfile) {
  PairProfile p = sample_profile(kFpA, kFpB);
  p.estimator = ImportanceEstimator::kEntropy;
  p.lambda = 0.15f;
  const PolicyConfig base = profile_policy(p);
  const auto policy = [&](const char* text) { return parse_policy(text, base).value(); };
  EXPECT_FLOAT_EQ(policy("uhlm").u_th, 0.31f);  // the profile's
  EXPECT_EQ(policy("uhlm").kind, PolicyKind::kUhlm);
  EXPECT_FLOAT_EQ(policy("uhlm:u_th=0.5").u_th, 0.5f);  // the text's
  EXPECT_FLOAT_EQ(policy("uhlm(0.25)").u_th, 0.25f);
  const PolicyConfig i = policy("iuhlm");
  EXPECT_EQ(i.importance.estimator, ImportanceEstimator::kEntropy);
  EXPECT_FLOAT_EQ(i.importance.lambda_value(), 0.15f);
  EXPECT_FLOAT_EQ(policy("iuhlm:lambda=0.3").importance.lambda_value(), 0.3f);
  // Another estimator: the profile's λ is on entropy's scale, so focus takes its own default.
  EXPECT_FLOAT_EQ(policy("iuhlm:est=focus").importance.lambda_value(),
                  default_lambda(ImportanceEstimator::kFocus));
  EXPECT_FLOAT_EQ(policy("iuhlm:est=focus,lambda=2").importance.lambda_value(), 2.0f);
  // Without a profile the built-in defaults hold.
  EXPECT_FLOAT_EQ(parse_policy("uhlm").value().u_th, kDefaultUth);
}

}  // namespace
}  // namespace hlm
