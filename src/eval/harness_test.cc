// Harness tests on tiny random models: sweep parsing and setting expansion, resumability
// (a second run redoes nothing; an interrupted file resumes exactly the missing runs), rand's
// rate matched to iuhlm, and the confidence intervals of the summary.
#include "eval/harness.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "engine/model_writer.h"

namespace hlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const TinyPair& tiny_pair() {
  static const TinyPair p = make_tiny_pair(2).value();
  return p;
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "hlm_harness_XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<EvalPrompt> prompts(int n) {
  std::vector<EvalPrompt> out;
  for (int i = 0; i < n; ++i) {
    out.push_back({"p" + std::to_string(i),
                   "prompt " + std::to_string(i),
                   "ref",
                   {1, 270 + i, 275, 265, 100 + i, 101, 277}});
  }
  return out;
}

EvalConfig config(const std::string& dir, const std::string& methods, const std::string& sweep) {
  EvalConfig c;
  c.settings =
      expand_settings(parse_methods(methods).value(), parse_sweep(sweep).value(), PolicyConfig{})
          .value();
  c.seeds = {1, 2};
  c.base.max_tokens = 6;
  c.base.n_ctx = 64;
  c.out_dir = dir;
  c.fingerprint = {{"max_tokens", 6}};
  return c;
}

size_t count_lines(const fs::path& p) {
  std::ifstream in(p);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) n += !line.empty();
  return n;
}

TEST(Sweep, CartesianProductAndUnion) {
  auto one = parse_sweep("u_th=0.05,0.1;lambda=1,2,3");
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(one->size(), 6u);
  auto two = parse_sweep("est=focus;lambda=2,3 | est=received(2),entropy;lambda=0.2");
  ASSERT_TRUE(two.ok()) << two.error().message;
  ASSERT_EQ(two->size(), 4u);
  EXPECT_EQ((*two)[2].at("est"), "received(2)");
  EXPECT_EQ(parse_sweep("")->size(), 1u);
}

TEST(Sweep, RefusesBadInput) {
  EXPECT_FALSE(parse_sweep("u_th").ok());
  EXPECT_FALSE(parse_sweep("temp=1").ok());
  EXPECT_FALSE(parse_sweep("u_th=2").ok());
  EXPECT_FALSE(parse_sweep("u_th=0.1;u_th=0.2").ok());
  EXPECT_FALSE(parse_sweep("est=focus(2)").ok());
  EXPECT_FALSE(parse_sweep("k=0").ok());
  EXPECT_FALSE(parse_methods("hlm,foo").ok());
  EXPECT_FALSE(parse_methods("hlm,hlm").ok());
}

TEST(Settings, EachMethodTakesOnlyItsKeysAndRandFollowsIuhlm) {
  auto s = expand_settings(parse_methods("rand,slm,uhlm,iuhlm").value(),
                           parse_sweep("u_th=0.1,0.2;lambda=1,2").value(), PolicyConfig{});
  ASSERT_TRUE(s.ok()) << s.error().message;
  std::vector<std::string> order;
  std::map<std::string, int> per_method;
  for (const auto& x : *s) {
    if (order.empty() || order.back() != x.method) order.push_back(x.method);
    per_method[x.method]++;
  }
  EXPECT_EQ(order, (std::vector<std::string>{"slm", "uhlm", "iuhlm", "rand"}));
  EXPECT_EQ(per_method["slm"], 1);
  EXPECT_EQ(per_method["uhlm"], 2);
  EXPECT_EQ(per_method["iuhlm"], 4);
  EXPECT_EQ(per_method["rand"], 4);
  for (const auto& x : *s) {
    if (x.method == "rand") {
      EXPECT_EQ(x.match_iuhlm, x.label);
      EXPECT_NE(x.label.find("lambda="), std::string::npos);
    }
    if (x.method == "uhlm") {
      EXPECT_EQ(x.label.find("lambda"), std::string::npos);
    }
  }
}

TEST(Settings, ReceivedLookaheadComesFromEst) {
  auto s =
      expand_settings({"iuhlm"}, parse_sweep("est=received(2),entropy").value(), PolicyConfig{});
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->size(), 2u);
  EXPECT_EQ((*s)[0].policy.importance.estimator, ImportanceEstimator::kReceived);
  EXPECT_EQ((*s)[0].policy.importance.lookahead, 2);
  EXPECT_NE((*s)[0].label.find("est=received(2)"), std::string::npos);
  EXPECT_EQ((*s)[1].policy.importance.estimator, ImportanceEstimator::kEntropy);
}

TEST(Stats, StudentTAndConfidenceInterval) {
  EXPECT_NEAR(student_t975(1), 12.7062, 1e-4);
  EXPECT_NEAR(student_t975(10), 2.2281, 1e-4);
  EXPECT_NEAR(student_t975(40), 2.0211, 2e-4);
  EXPECT_NEAR(student_t975(120), 1.9799, 2e-4);
  // 1..5: mean 3, sd sqrt(2.5), half-width t(4)·sd/√5.
  MeanCi m = mean_ci95({1, 2, 3, 4, 5});
  EXPECT_EQ(m.n, 5u);
  EXPECT_DOUBLE_EQ(m.mean, 3.0);
  EXPECT_NEAR(m.ci95, 2.7764 * std::sqrt(2.5) / std::sqrt(5.0), 1e-6);
  MeanCi one = mean_ci95({7, std::nan("")});
  EXPECT_EQ(one.n, 1u);
  EXPECT_DOUBLE_EQ(one.ci95, 0.0);
}

TEST(Harness, RunsEverythingOnceAndResumes) {
  TempDir dir;
  const auto& pair = tiny_pair();
  ThreadPool pool(1);
  EvalConfig cfg = config(dir.path.string(), "slm,llm,hlm,rand,uhlm,iuhlm,spec", "u_th=0.1,0.3");
  const auto ps = prompts(3);
  size_t calls = 0;
  auto st = run_eval(pair.slm, pair.llm, pool, cfg, ps, [&](const EvalProgress& p) {
    ++calls;
    EXPECT_FALSE(progress_bar(p).empty());
  });
  ASSERT_TRUE(st.ok()) << st.error().message;
  // settings: slm, llm, hlm, uhlm×2, iuhlm×2, rand×2, spec = 10; × 2 seeds × 3 prompts.
  EXPECT_EQ(cfg.settings.size(), 10u);
  EXPECT_EQ(st->total, 60u);
  EXPECT_EQ(st->ran, 60u);
  EXPECT_GT(calls, 60u);
  const fs::path results = dir.path / "results.jsonl";
  EXPECT_EQ(count_lines(results), 60u);

  // Keys are unique; rand took iuhlm's measured mean upload rate at the same setting.
  auto lines = read_jsonl(results.string()).value();
  std::set<std::string> keys;
  std::map<std::string, std::vector<double>> iuhlm_rate;
  for (const auto& j : lines) {
    EXPECT_TRUE(keys.insert(j["key"].get<std::string>()).second);
    EXPECT_TRUE(j.contains("text"));
    EXPECT_TRUE(j.contains("output_ids"));
    if (j["method"] == "iuhlm") iuhlm_rate[j["setting"]].push_back(j["upload_rate"]);
  }
  // Every method on a (prompt, seed) shares one run seed; prompts get different ones.
  std::map<std::pair<std::string, uint64_t>, std::set<uint64_t>> run_seeds;
  std::set<uint64_t> distinct;
  for (const auto& j : lines) {
    run_seeds[{j["id"], j["seed"]}].insert(j["run_seed"].get<uint64_t>());
    distinct.insert(j["run_seed"].get<uint64_t>());
  }
  for (const auto& [k, seeds] : run_seeds) EXPECT_EQ(seeds.size(), 1u) << k.first;
  EXPECT_EQ(distinct.size(), run_seeds.size());
  EXPECT_EQ(run_seed(5, "a"), run_seed(5, "a"));
  EXPECT_NE(run_seed(5, "a"), run_seed(5, "b"));
  EXPECT_NE(run_seed(5, "a"), run_seed(6, "a"));
  for (const auto& j : lines) {
    if (j["method"] != "rand") continue;
    const auto& rates = iuhlm_rate[j["setting"]];
    EXPECT_NEAR(j["rate"].get<double>(), mean_ci95(rates).mean, 1e-12);
    EXPECT_NE(j["rate_source"].get<std::string>().find("iuhlm"), std::string::npos);
  }

  // A second run finds everything done.
  auto again = run_eval(pair.slm, pair.llm, pool, cfg, ps);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->ran, 0u);
  EXPECT_EQ(again->skipped, 60u);
  EXPECT_EQ(count_lines(results), 60u);

  // Interrupt: keep 25 lines plus half of the 26th; the rerun redoes exactly the other 35.
  std::string content;
  {
    std::ifstream in(results);
    std::string line;
    for (int i = 0; i < 25 && std::getline(in, line); ++i) content += line + "\n";
    std::getline(in, line);
    content += line.substr(0, line.size() / 2);
  }
  {
    std::ofstream out(results, std::ios::trunc);
    out << content;
  }
  auto resumed = run_eval(pair.slm, pair.llm, pool, cfg, ps);
  ASSERT_TRUE(resumed.ok()) << resumed.error().message;
  EXPECT_EQ(resumed->skipped, 25u);
  EXPECT_EQ(resumed->ran, 35u);
  auto after = read_jsonl(results.string()).value();
  EXPECT_EQ(after.size(), 60u);
  std::set<std::string> keys_after;
  for (const auto& j : after) keys_after.insert(j["key"].get<std::string>());
  EXPECT_EQ(keys_after, keys);

  // Greedy-free determinism: a resumed run reproduces the same tokens for the same key.
  std::map<std::string, json> before_by_key, after_by_key;
  for (const auto& j : lines) before_by_key[j["key"]] = j["output_ids"];
  for (const auto& j : after) after_by_key[j["key"]] = j["output_ids"];
  for (const auto& [k, ids] : before_by_key) {
    if (k.find("|rand|") == std::string::npos) {
      EXPECT_EQ(after_by_key[k], ids) << k;
    }
  }
}

TEST(Harness, RefusesToMixConfigurations) {
  TempDir dir;
  const auto& pair = tiny_pair();
  ThreadPool pool(1);
  EvalConfig cfg = config(dir.path.string(), "slm", "");
  ASSERT_TRUE(run_eval(pair.slm, pair.llm, pool, cfg, prompts(1)).ok());
  cfg.fingerprint["max_tokens"] = 7;
  auto r = run_eval(pair.slm, pair.llm, pool, cfg, prompts(1));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("max_tokens"), std::string::npos);
}

// With cost profiles the modelled figures depend on the work alone: two evaluations into two
// directories record the same energy and modelled throughput for every run; the cost setting is
// part of the configuration a resumed directory must match.
TEST(Harness, ModelledFiguresWithCostProfilesAreTheSameRunAfterRun) {
  TempDir a, b;
  const auto& pair = tiny_pair();
  ThreadPool pool(1);
  CostConfig cost;
  cost.device =
      DeviceCost{{1e-3, 2e-4, 1e-7, 0, 0}, CostLine{2e-3, 2e-4}, {1e-5, 1e-6}, {1e-6, 0, 1e-8}};
  cost.cloud = CostLine{5e-3, 1e-3, 1e-6};
  cost.device_name = "d";
  cost.cloud_name = "c";
  std::vector<std::vector<nlohmann::json>> lines;
  for (const TempDir* dir : {&a, &b}) {
    EvalConfig cfg = config(dir->path.string(), "slm,llm,hlm,uhlm,iuhlm,spec", "u_th=0.3");
    cfg.base.cost = cost;
    cfg.fingerprint["cost"] = {{"device", "d"}, {"cloud", "c"}};
    ASSERT_TRUE(run_eval(pair.slm, pair.llm, pool, cfg, prompts(2)).ok());
    lines.push_back(read_jsonl((dir->path / "results.jsonl").string()).value());
  }
  ASSERT_EQ(lines[0].size(), lines[1].size());
  ASSERT_FALSE(lines[0].empty());
  for (size_t i = 0; i < lines[0].size(); ++i) {
    const auto& x = lines[0][i];
    const auto& y = lines[1][i];
    ASSERT_EQ(x["key"], y["key"]);
    for (const char* f : {"e_per_token_j", "e_device_per_token_j", "e_cloud_per_token_j",
                          "latency_s", "tokens_per_s"}) {
      EXPECT_EQ(x[f], y[f]) << x["key"] << " " << f;
    }
  }
  EvalConfig other = config(a.path.string(), "slm", "");
  other.fingerprint["cost"] = {{"device", "measured"}, {"cloud", "c"}};
  auto r = run_eval(pair.slm, pair.llm, pool, other, prompts(1));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(
      r.error().message.find(
          R"(cost was {"cloud":"c","device":"d"} and is now {"cloud":"c","device":"measured"})"),
      std::string::npos)
      << r.error().message;
}

TEST(Summary, MeansAndIntervalsOverPromptsWithScoresAndSavings) {
  TempDir dir;
  const auto& pair = tiny_pair();
  ThreadPool pool(1);
  EvalConfig cfg = config(dir.path.string(), "slm,hlm,uhlm", "");
  const auto ps = prompts(4);
  ASSERT_TRUE(run_eval(pair.slm, pair.llm, pool, cfg, ps).ok());
  // A scorer's output: bertscore per key, here a known value per prompt.
  auto lines = read_jsonl((dir.path / "results.jsonl").string()).value();
  {
    std::ofstream s(dir.path / "scores.jsonl");
    for (const auto& j : lines) {
      const int p = std::stoi(j["id"].get<std::string>().substr(1));
      s << json{{"key", j["key"]}, {"bertscore_f1_llm", 0.5 + 0.1 * p}}.dump() << "\n";
    }
    std::ofstream m(dir.path / "scores_meta.json");
    m << json{{"model", "test"}}.dump();
  }
  auto sum = write_summary(dir.path.string());
  ASSERT_TRUE(sum.ok()) << sum.error().message;
  ASSERT_EQ((*sum)["groups"].size(), 3u);
  EXPECT_EQ((*sum)["scoring"]["model"], "test");
  for (const auto& g : (*sum)["groups"]) {
    EXPECT_EQ(g["n_prompts"], 4);
    EXPECT_EQ(g["n_runs"], 8);
    const auto& b = g["metrics"]["bertscore_f1_llm"];
    EXPECT_NEAR(b["mean"].get<double>(), 0.65, 1e-9);  // 0.5, 0.6, 0.7, 0.8
    const double sd = std::sqrt((0.0225 + 0.0025 + 0.0025 + 0.0225) / 3.0);
    EXPECT_NEAR(b["ci95"].get<double>(), student_t975(3) * sd / 2.0, 1e-9);
    if (g["method"] == "hlm") {
      EXPECT_NEAR(g["metrics"]["energy_saving_vs_hlm"]["mean"].get<double>(), 0.0, 1e-12);
      EXPECT_NEAR(g["metrics"]["upload_rate"]["mean"].get<double>(), 1.0, 1e-12);
    }
    if (g["method"] == "slm") {
      EXPECT_GT(g["metrics"]["energy_saving_vs_hlm"]["mean"].get<double>(), 0.0);
    }
  }
  std::ifstream csv(dir.path / "summary.csv");
  std::string header;
  std::getline(csv, header);
  EXPECT_EQ(header.rfind("method,setting,n_prompts,n_runs,bertscore_f1_llm,", 0), 0u);
  EXPECT_EQ(count_lines(dir.path / "summary.csv"), 4u);
}

}  // namespace
}  // namespace hlm
