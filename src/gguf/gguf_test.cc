// Tests for the GGUF reader and writer: round trip, and clear errors on bad files.
#include "gguf/gguf.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "gguf/gguf_writer.h"

namespace hlm {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("hlm_gguf_test_" + name)).string();
}

std::string write_small(const std::string& name) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 2);
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_strings("tokenizer.ggml.tokens", {"<unk>", "a", "b"});
  w.set_f32s("tokenizer.ggml.scores", {0.f, -1.f, -2.f});
  std::vector<float> t(64);
  for (int i = 0; i < 64; ++i) t[i] = static_cast<float>(i);
  w.add_tensor("x.weight", TensorType::F32, {32, 2}, t.data(), t.size() * 4);
  std::vector<uint8_t> q(34 * 2, 1);
  w.add_tensor("y.weight", TensorType::Q8_0, {64, 1}, q.data(), q.size());
  const std::string path = temp_path(name);
  EXPECT_TRUE(w.write(path).ok());
  return path;
}

TEST(Gguf, RoundTrip) {
  auto path = write_small("roundtrip.gguf");
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count"), 2);
  EXPECT_DOUBLE_EQ(*f->get_float("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(f->get_int("tokenizer.ggml.add_bos_token"), 1);
  EXPECT_EQ(f->get_strings("tokenizer.ggml.tokens"), (std::vector<std::string>{"<unk>", "a", "b"}));
  EXPECT_EQ(f->get_numbers("tokenizer.ggml.scores")[2], -2.0);
  const GgufTensor* x = f->tensor("x.weight");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->rows(), 2);
  EXPECT_EQ(static_cast<const float*>(x->data)[63], 63.0f);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x->data) % 32, 0u);
  const GgufTensor* y = f->tensor("y.weight");
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y->type, TensorType::Q8_0);
  EXPECT_EQ(y->n_bytes, 68u);
  EXPECT_EQ(f->tensor("nope"), nullptr);
  std::filesystem::remove(path);
}

TEST(Gguf, CopyMetadataRoundTrip) {
  auto path = write_small("copy_src.gguf");
  auto f = GgufFile::open(path);
  ASSERT_TRUE(f.ok());
  GgufWriter w;
  w.copy_metadata(*f);
  auto path2 = temp_path("copy_dst.gguf");
  ASSERT_TRUE(w.write(path2).ok());
  auto g = GgufFile::open(path2);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->get_strings("tokenizer.ggml.tokens"), f->get_strings("tokenizer.ggml.tokens"));
  EXPECT_EQ(g->get_numbers("tokenizer.ggml.scores"), f->get_numbers("tokenizer.ggml.scores"));
  EXPECT_EQ(g->get_int("llama.block_count"), 2);
  std::filesystem::remove(path);
  std::filesystem::remove(path2);
}

TEST(Gguf, MissingFile) {
  auto f = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("/nonexistent/model.gguf"), std::string::npos);
  EXPECT_NE(f.error().message.find("cannot open"), std::string::npos);
}

TEST(Gguf, NotGguf) {
  auto path = temp_path("notgguf.gguf");
  std::ofstream(path) << "this is a text file, not a model";
  auto f = GgufFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("not a GGUF file"), std::string::npos);
  EXPECT_NE(f.error().message.find(path), std::string::npos);
  std::filesystem::remove(path);
}

TEST(Gguf, TruncatedAtEveryLength) {
  auto path = write_small("full.gguf");
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  auto cut = temp_path("cut.gguf");
  // Every prefix that cuts into data must be rejected cleanly (never a crash), with a message
  // naming the file. The last 28 bytes are alignment padding after y.weight's 68 bytes.
  const size_t padding = 32 - 68 % 32;
  for (size_t n = 0; n + padding < bytes.size(); n += (n < 400 ? 1 : 7)) {
    std::ofstream(cut, std::ios::binary | std::ios::trunc)
        .write(bytes.data(), static_cast<std::streamsize>(n));
    auto f = GgufFile::open(cut);
    ASSERT_FALSE(f.ok()) << "prefix " << n;
    EXPECT_NE(f.error().message.find(cut), std::string::npos);
  }
  std::ofstream(cut, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size() - padding - 10));
  auto f = GgufFile::open(cut);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("truncated"), std::string::npos);
  EXPECT_NE(f.error().message.find("y.weight"), std::string::npos);
  std::filesystem::remove(path);
  std::filesystem::remove(cut);
}

TEST(Gguf, UnknownTensorTypeNamed) {
  GgufWriter w;
  std::vector<uint8_t> d(64);
  w.add_tensor("weird.weight", static_cast<TensorType>(99), {16}, d.data(), d.size());
  auto path = temp_path("weird.gguf");
  ASSERT_TRUE(w.write(path).ok());
  auto f = GgufFile::open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("weird.weight"), std::string::npos);
  EXPECT_NE(f.error().message.find("99"), std::string::npos);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace hlm
