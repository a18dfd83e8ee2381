// Model test: `hlm eval --smoke` end to end (every method, a two-point sweep, 2 prompts × 8
// tokens) with the default cloud model and its 6-layer truncation as the device model, then a
// resumed run that redoes nothing. Skipped when the cloud model is not cached.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/model_writer.h"
#include "eval/harness.h"
#include "models/registry.h"
#include "models/testing.h"

namespace {

using hlm::testing::run_command;

TEST(EvalSmoke, AllMethodsResumeAndSummarise) {
  auto llm = hlm::resolve_model("llm");
  if (!llm) GTEST_SKIP() << "default model absent: " << llm.error().message;
  hlm::testing::ScopedTempDir tmp;
  const std::string slm = tmp / "slm-trunc6.gguf";
  ASSERT_TRUE(hlm::write_truncated_model(*llm, slm, 6).ok());
  const std::string out = tmp / "eval";
  const std::string cmd = std::string("HLM_SOURCE_DIR='") + HLM_SOURCE_ROOT + "' '" + HLM_BINARY +
                          "' eval --smoke --slm '" + slm + "' --threads 2 --quiet --out '" + out +
                          "' 2>&1";
  auto a = run_command(cmd);
  ASSERT_EQ(a.code, 0) << a.out;
  auto lines = hlm::read_jsonl(out + "/results.jsonl");
  ASSERT_TRUE(lines.ok());
  // slm, llm, hlm, spec, uhlm×2, iuhlm×2, rand×2 = 10 settings × 2 prompts.
  EXPECT_EQ(lines->size(), 20u);
  for (const auto& j : *lines) {
    EXPECT_LE(j["n_tokens"].get<int>(), 8);
    EXPECT_TRUE(j.contains("text"));
  }
  std::ifstream in(out + "/summary.json");
  auto summary = nlohmann::json::parse(in);
  EXPECT_EQ(summary["groups"].size(), 10u);

  auto b = run_command(cmd);
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("hlm eval"), std::string::npos);
  EXPECT_EQ(hlm::read_jsonl(out + "/results.jsonl")->size(), 20u);
}

}  // namespace
