// Model tests: SmolLM2-135M-Instruct's tokenizer against ids recorded from llama.cpp
// (tests/fixtures/smollm2_tokens.json), round trips, chat template and EOG detection.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace hlm {
namespace {

// Timing limits hold for optimised builds only (not Debug or sanitizer builds).
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
constexpr bool kOptimizedBuild = true;
#else
constexpr bool kOptimizedBuild = false;
#endif

constexpr const char* kModelFile = "SmolLM2-135M-Instruct.Q4_1.gguf";

// $HLM_MODELS_DIR, else $XDG_CACHE_HOME/hlm/models, else ~/.cache/hlm/models.
std::string models_dir() {
  if (const char* d = std::getenv("HLM_MODELS_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/hlm/models";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/hlm/models";
  return ".";
}

class SmolLM2Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = models_dir() + "/" + kModelFile;
    if (!std::filesystem::exists(path_)) return;
    auto f = GgufFile::open(path_);
    ASSERT_TRUE(f.ok()) << f.error().message;
    file_ = new GgufFile(std::move(f).value());
    auto t = Tokenizer::from_gguf(*file_);
    ASSERT_TRUE(t.ok()) << t.error().message;
    tok_ = new Tokenizer(std::move(t).value());
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete file_;
    tok_ = nullptr;
    file_ = nullptr;
  }
  void SetUp() override {
    if (!tok_) {
      GTEST_SKIP() << path_ << " not found; download " << kModelFile
                   << " into $HLM_MODELS_DIR (or ~/.cache/hlm/models) to run model tests";
    }
  }

  static std::string path_;
  static GgufFile* file_;
  static Tokenizer* tok_;
};
std::string SmolLM2Tokenizer::path_;
GgufFile* SmolLM2Tokenizer::file_ = nullptr;
Tokenizer* SmolLM2Tokenizer::tok_ = nullptr;

TEST_F(SmolLM2Tokenizer, Metadata) {
  EXPECT_EQ(tok_->model_type(), "gpt2");
  EXPECT_EQ(tok_->pre_type(), "smollm");
  EXPECT_EQ(tok_->n_vocab(), 49152);
  EXPECT_FALSE(tok_->add_bos());
  EXPECT_EQ(tok_->bos(), 1);
  EXPECT_EQ(tok_->eos(), 2);
  EXPECT_TRUE(tok_->is_eog(tok_->find_token("<|im_end|>")));
  EXPECT_TRUE(tok_->is_eog(tok_->find_token("<|endoftext|>")));
  EXPECT_FALSE(tok_->is_eog(tok_->find_token("<|im_start|>")));
  EXPECT_FALSE(tok_->is_eog(tok_->find_token("Hello")));
}

TEST_F(SmolLM2Tokenizer, MatchesLlamaCppFixtures) {
  std::ifstream in(HLM_FIXTURES_DIR "/smollm2_tokens.json");
  ASSERT_TRUE(in) << "missing " HLM_FIXTURES_DIR "/smollm2_tokens.json";
  nlohmann::json j = nlohmann::json::parse(in);
  int matched = 0, total = 0;
  for (const auto& c : j.at("cases")) {
    const std::string text = c.at("text");
    const bool add_special = c.at("add_special");
    const bool parse_special = c.at("parse_special");
    const std::vector<int32_t> want = c.at("ids").get<std::vector<int32_t>>();
    std::vector<int32_t> got = tok_->encode(text, add_special, parse_special);
    ++total;
    if (got == want) {
      ++matched;
    } else {
      ADD_FAILURE() << "encode mismatch for " << nlohmann::json(text).dump()
                    << " add_special=" << add_special << " parse_special=" << parse_special
                    << "\n  want " << nlohmann::json(want).dump() << "\n  got  "
                    << nlohmann::json(got).dump();
    }
    // Every fixture string survives a round trip (special tokens rendered as text).
    EXPECT_EQ(tok_->decode(want, /*special=*/true), text) << nlohmann::json(text).dump();
  }
  std::printf("[ fixtures ] %d / %d strings match llama.cpp\n", matched, total);
  EXPECT_EQ(matched, total);
  EXPECT_GT(total, 0);
}

TEST_F(SmolLM2Tokenizer, ChatTemplateAndPromptTokens) {
  auto t = ChatTemplate::from_gguf(*file_, *tok_);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->format(), ChatFormat::ChatML);
  const std::string prompt = t->apply({{"user", "What is the capital of France?"}});
  EXPECT_EQ(prompt,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
            "<|im_start|>assistant\n");
  std::vector<int32_t> ids = tok_->encode(prompt, true, true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), tok_->find_token("<|im_start|>"));
  EXPECT_EQ(tok_->decode(ids, true), prompt);
}

TEST_F(SmolLM2Tokenizer, EncodeSpeed) {
  std::string text;
  while (text.size() < 16384) {
    text +=
        "The quick brown fox jumps over the lazy dog. In 2024, 1,000,000 people paid "
        "$19.99 each; caf\xC3\xA9 na\xC3\xAFve \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x8D\x95\n"
        "def f(x):\n    return x * 2  # comment\n";
  }
  tok_->encode(text, false, false);  // warm up
  auto t0 = std::chrono::steady_clock::now();
  constexpr int kReps = 5;
  size_t n = 0;
  for (int i = 0; i < kReps; ++i) n += tok_->encode(text, false, false).size();
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  double ms_per_kb = ms / kReps / (text.size() / 1024.0);
  std::printf("[ speed ] %.3f ms/KB (%zu tokens per %zu bytes)\n", ms_per_kb, n / kReps,
              text.size());
  if (kOptimizedBuild) {
    EXPECT_LT(ms_per_kb, 1.0);
  }
}

}  // namespace
}  // namespace hlm
