// Tests for build_student: a tiny synthetic teacher + delta (structure, determinism, errors),
// and, when the real teacher is in the model cache, the shipped delta (models/slm-delta.gguf)
// rebuilt into the student whose sha256 is recorded in models/slm-delta.json.
#include "models/derive.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/model.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "models/registry.h"
#include "models/sha256.h"
#include "models/testing.h"
#include "ops/ops.h"

namespace hlm {
namespace {

namespace fs = std::filesystem;
using testing::ScopedTempDir;

constexpr const char* kLayer[] = {"attn_norm.weight",   "ffn_down.weight", "ffn_gate.weight",
                                  "ffn_up.weight",      "ffn_norm.weight", "attn_k.weight",
                                  "attn_output.weight", "attn_q.weight",   "attn_v.weight"};

std::vector<uint8_t> quantized(TensorType t, int64_t cols, int64_t rows, float seed) {
  std::vector<uint8_t> out(row_bytes(t, cols) * rows);
  std::vector<float> f(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) f[c] = std::sin(seed + 0.37f * r + 0.11f * c);
    ops::quantize_row(t, f.data(), out.data() + r * row_bytes(t, cols), cols);
  }
  return out;
}

// A 3-layer "llama" with n_embd 64, vocab 40; delta of `m` layers (seeded differently).
void write_models(const ScopedTempDir& dir, int m, bool bad_shape = false) {
  const int64_t d = 64, ff = 96, vocab = 40;
  auto add_layer = [&](GgufWriter& w, int l, float seed) {
    for (const char* s : kLayer) {
      const std::string name = "blk." + std::to_string(l) + "." + s;
      const std::string n(s);
      if (n.find("norm") != std::string::npos) {
        std::vector<float> v(d, 1.0f + seed);
        w.add_tensor(name, TensorType::F32, {d}, v.data(), v.size() * 4);
        continue;
      }
      int64_t cols = d, rows = d;
      if (n == "ffn_down.weight") cols = ff;
      if (n == "ffn_gate.weight" || n == "ffn_up.weight") rows = ff;
      if (n == "attn_k.weight" || n == "attn_v.weight") rows = 32;
      if (bad_shape && seed > 5 && n == "attn_q.weight") rows = 32;
      auto q = quantized(TensorType::Q4_1, cols, rows, seed + l);
      w.add_tensor(name, TensorType::Q4_1, {cols, rows}, q.data(), q.size());
    }
  };
  GgufWriter t;
  t.set_string("general.architecture", "llama");
  t.set_string("general.name", "tiny");
  t.set_u32("llama.block_count", 3);
  t.set_u32("llama.embedding_length", d);
  t.set_string("tokenizer.ggml.model", "gpt2");
  t.set_strings("tokenizer.ggml.tokens", std::vector<std::string>(vocab, "x"));
  t.set_string("tokenizer.chat_template", "{{ messages }}");
  auto e = quantized(TensorType::Q8_0, d, vocab, 0.5f);
  t.add_tensor("token_embd.weight", TensorType::Q8_0, {d, vocab}, e.data(), e.size());
  for (int l = 0; l < 3; ++l) add_layer(t, l, 0.0f);
  std::vector<float> on(d, 2.0f);
  t.add_tensor("output_norm.weight", TensorType::F32, {d}, on.data(), on.size() * 4);
  ASSERT_TRUE(t.write(dir / "teacher.gguf").ok());

  GgufWriter dw;
  dw.set_u32("llama.block_count", m);
  for (int l = 0; l < m; ++l) add_layer(dw, l, 7.0f);
  std::vector<float> on2(d, 3.0f);
  dw.add_tensor("output_norm.weight", TensorType::F32, {d}, on2.data(), on2.size() * 4);
  ASSERT_TRUE(dw.write(dir / "delta.gguf").ok());
}

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST(DeriveTest, BuildsTruncatedStudentFromTeacherAndDelta) {
  ScopedTempDir dir;
  write_models(dir, 2);
  ASSERT_TRUE(build_student(dir / "teacher.gguf", dir / "delta.gguf", dir / "s.gguf").ok());
  auto s = GgufFile::open(dir / "s.gguf");
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto t = GgufFile::open(dir / "teacher.gguf");
  auto d = GgufFile::open(dir / "delta.gguf");
  ASSERT_TRUE(t.ok() && d.ok());
  EXPECT_EQ(s->get_int("llama.block_count"), 2);
  EXPECT_EQ(s->get_string("tokenizer.chat_template"), t->get_string("tokenizer.chat_template"));
  EXPECT_EQ(s->get_strings("tokenizer.ggml.tokens"), t->get_strings("tokenizer.ggml.tokens"));
  EXPECT_EQ(s->tensors().size(), 1u + 2 * 9 + 1);
  EXPECT_EQ(s->tensor("blk.2.attn_q.weight"), nullptr);
  // Delta tensors are copied byte for byte.
  for (const auto& dt : d->tensors()) {
    const GgufTensor* st = s->tensor(dt.name);
    ASSERT_NE(st, nullptr) << dt.name;
    EXPECT_EQ(st->type, dt.type);
    ASSERT_EQ(st->n_bytes, dt.n_bytes);
    EXPECT_EQ(0, std::memcmp(st->data, dt.data, dt.n_bytes)) << dt.name;
  }
  // The embedding is the teacher's, requantised to Q4_1 (close to the Q8_0 original).
  const GgufTensor* se = s->tensor("token_embd.weight");
  const GgufTensor* te = t->tensor("token_embd.weight");
  ASSERT_NE(se, nullptr);
  EXPECT_EQ(se->type, TensorType::Q4_1);
  EXPECT_EQ(se->shape, te->shape);
  std::vector<float> a(64), b(64);
  for (int64_t r = 0; r < te->rows(); ++r) {
    ops::dequantize_row(te->type,
                        static_cast<const uint8_t*>(te->data) + r * row_bytes(te->type, 64),
                        a.data(), 64);
    ops::dequantize_row(se->type,
                        static_cast<const uint8_t*>(se->data) + r * row_bytes(se->type, 64),
                        b.data(), 64);
    for (int c = 0; c < 64; ++c) EXPECT_NEAR(a[c], b[c], 2.0f / 15 / 2 + 1e-3f);
  }
}

TEST(DeriveTest, IsDeterministic) {
  ScopedTempDir dir;
  write_models(dir, 1);
  ASSERT_TRUE(build_student(dir / "teacher.gguf", dir / "delta.gguf", dir / "a.gguf").ok());
  ASSERT_TRUE(build_student(dir / "teacher.gguf", dir / "delta.gguf", dir / "b.gguf").ok());
  EXPECT_EQ(slurp(dir / "a.gguf"), slurp(dir / "b.gguf"));
}

TEST(DeriveTest, RejectsBadDeltas) {
  {
    ScopedTempDir dir;
    write_models(dir, 4);  // more layers than the teacher
    auto s = build_student(dir / "teacher.gguf", dir / "delta.gguf", dir / "s.gguf");
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(fs::exists(dir / "s.gguf"));
  }
  {
    ScopedTempDir dir;
    write_models(dir, 2, /*bad_shape=*/true);
    auto s = build_student(dir / "teacher.gguf", dir / "delta.gguf", dir / "s.gguf");
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message.find("attn_q"), std::string::npos) << s.error().message;
  }
  {
    ScopedTempDir dir;
    write_models(dir, 1);
    EXPECT_FALSE(build_student(dir / "missing.gguf", dir / "delta.gguf", dir / "s.gguf").ok());
  }
}

// The shipped delta rebuilds the registry's `slm` byte for byte, and that student loads in
// hlm and shares the teacher's vocabulary. Needs the teacher in the model cache.
TEST(DeriveTest, ShippedDeltaRebuildsRecordedStudent) {
  auto teacher = resolve_model("llm");
  if (!teacher) GTEST_SKIP() << "teacher not available: " << teacher.error().message;
  const ModelEntry* slm = find_model("slm");
  ASSERT_NE(slm, nullptr);
  ASSERT_EQ(slm->source, ModelSource::kDerived);
  ScopedTempDir dir;
  const std::string out = dir / "slm.gguf";
  auto st = build_student(*teacher, slm->delta_file, out);
  ASSERT_TRUE(st.ok()) << st.error().message;
  auto got = sha256_file(out);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, slm->sha256);
  EXPECT_EQ(fs::file_size(out), slm->size);
  auto student = Model::load(out);
  ASSERT_TRUE(student.ok()) << student.error().message;
  auto llm = Model::load(*teacher);
  ASSERT_TRUE(llm.ok());
  EXPECT_TRUE(
      check_vocab_compatible((*student)->tokenizer(), out, (*llm)->tokenizer(), *teacher).ok());
  EXPECT_LT((*student)->config().n_layer, (*llm)->config().n_layer);
}

}  // namespace
}  // namespace hlm
