// Model test: `hlm generate` with the default model end to end (skipped when it is not cached).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "models/registry.h"
#include "models/testing.h"

namespace {

using hlm::testing::run_command;

class HlmGenerate : public ::testing::Test {
 protected:
  void SetUp() override {
    auto path = hlm::resolve_model("llm");
    if (!path) GTEST_SKIP() << "default model absent: " << path.error().message;
  }
  std::string hlm(const std::string& args) { return std::string("'") + HLM_BINARY + "' " + args; }
};

TEST_F(HlmGenerate, ChatJsonGreedyIsDeterministic) {
  const std::string cmd =
      hlm("generate --model llm --chat --prompt 'What is the capital of France?' --max-tokens 12 "
          "--temp 0 --threads 2 --json 2>/dev/null");
  auto a = run_command(cmd);
  ASSERT_EQ(a.code, 0) << a.out;
  auto j = nlohmann::json::parse(a.out);
  EXPECT_GT(j["n_prompt_tokens"].get<int>(), 5);
  EXPECT_GT(j["n_tokens"].get<int>(), 0);
  EXPECT_LE(j["n_tokens"].get<int>(), 12);
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0.0);
  EXPECT_FALSE(j["text"].get<std::string>().empty());
  EXPECT_NE(j["model"].get<std::string>().find("SmolLM2"), std::string::npos);
  auto b = run_command(cmd);
  ASSERT_EQ(b.code, 0);
  EXPECT_EQ(nlohmann::json::parse(b.out)["text"], j["text"]);
}

TEST_F(HlmGenerate, StreamsTextToStdout) {
  auto r =
      run_command(hlm("generate --model llm --prompt 'Once upon a time' --max-tokens 8 --seed 1 "
                      "--threads 2 2>/dev/null"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(r.out.empty());
}

TEST_F(HlmGenerate, PromptLongerThanContextIsAnError) {
  auto r = run_command(
      hlm("generate --model llm --prompt 'one two three four five six seven eight nine "
          "ten eleven twelve thirteen fourteen fifteen sixteen seventeen' --ctx 16 2>&1"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("--ctx"), std::string::npos) << r.out;
}

}  // namespace
