// Tests for build_student: a tiny synthetic teacher + delta, whole or in parts (structure,
// determinism, tensor order, an output head of its own, errors),
// and, when the real teacher is in the model cache, the shipped delta (models/slm-delta.gguf)
// rebuilt into the student whose sha256 is recorded in models/slm-delta.json.
#include "models/derive.h"

#include <gtest/gtest.h>

#include <algorithm>
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

// One tensor of a synthetic model, with its bytes.
struct TestTensor {
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

constexpr int64_t kEmbd = 64, kFf = 96, kVocab = 40;

// Layer `l` of the tiny llama (n_embd 64, n_ff 96, 2 KV heads of 16), seeded by `seed`.
std::vector<TestTensor> layer(int l, float seed, bool bad_shape = false) {
  std::vector<TestTensor> out;
  for (const char* s : kLayer) {
    const std::string name = "blk." + std::to_string(l) + "." + s;
    const std::string n(s);
    if (n.find("norm") != std::string::npos) {
      std::vector<float> v(kEmbd, 1.0f + seed);
      std::vector<uint8_t> b(v.size() * 4);
      std::memcpy(b.data(), v.data(), b.size());
      out.push_back({name, TensorType::F32, {kEmbd}, std::move(b)});
      continue;
    }
    int64_t cols = kEmbd, rows = kEmbd;
    if (n == "ffn_down.weight") cols = kFf;
    if (n == "ffn_gate.weight" || n == "ffn_up.weight") rows = kFf;
    if (n == "attn_k.weight" || n == "attn_v.weight") rows = 32;
    if (bad_shape && n == "attn_q.weight") rows = 32;
    out.push_back(
        {name, TensorType::Q4_1, {cols, rows}, quantized(TensorType::Q4_1, cols, rows, seed + l)});
  }
  return out;
}

TestTensor norm(const std::string& name, float value) {
  std::vector<float> v(kEmbd, value);
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return {name, TensorType::F32, {kEmbd}, std::move(b)};
}

// The tensors of an m-layer delta (seeded apart from the teacher), and an output head of
// `output_rows` rows (the vocabulary's 40 fit the teacher) when `output_rows` > 0.
std::vector<TestTensor> delta_tensors(int m, bool bad_shape = false, int64_t output_rows = 0) {
  std::vector<TestTensor> out;
  for (int l = 0; l < m; ++l) {
    for (auto& t : layer(l, 7.0f, bad_shape)) out.push_back(std::move(t));
  }
  out.push_back(norm("output_norm.weight", 3.0f));
  if (output_rows > 0) {
    out.push_back({"output.weight",
                   TensorType::Q8_0,
                   {kEmbd, output_rows},
                   quantized(TensorType::Q8_0, kEmbd, output_rows, 11.0f)});
  }
  return out;
}

// Writes a delta part holding `tensors`, with llama.block_count = `block_count` unless it is 0,
// and hlm.delta.part_count = `part_count` unless it is 0.
void write_part(const std::string& path, const std::vector<TestTensor>& tensors,
                uint32_t block_count, uint32_t part_count = 0) {
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  if (block_count > 0) w.set_u32("llama.block_count", block_count);
  if (part_count > 0) w.set_u32("hlm.delta.part_count", part_count);
  for (const auto& t : tensors)
    w.add_tensor(t.name, t.type, t.shape, t.bytes.data(), t.bytes.size());
  ASSERT_TRUE(w.write(path).ok());
}

// A 3-layer "llama" with n_embd 64, vocab 40 as teacher.gguf; delta.gguf: `m` layers (seeded
// differently) in one part.
void write_models(const ScopedTempDir& dir, int m, bool bad_shape = false) {
  GgufWriter t;
  t.set_string("general.architecture", "llama");
  t.set_string("general.name", "tiny");
  t.set_u32("llama.block_count", 3);
  t.set_u32("llama.embedding_length", kEmbd);
  t.set_string("tokenizer.ggml.model", "gpt2");
  t.set_strings("tokenizer.ggml.tokens", std::vector<std::string>(kVocab, "x"));
  t.set_string("tokenizer.chat_template", "{{ messages }}");
  auto e = quantized(TensorType::Q8_0, kEmbd, kVocab, 0.5f);
  t.add_tensor("token_embd.weight", TensorType::Q8_0, {kEmbd, kVocab}, e.data(), e.size());
  for (int l = 0; l < 3; ++l) {
    for (const auto& x : layer(l, 0.0f))
      t.add_tensor(x.name, x.type, x.shape, x.bytes.data(), x.bytes.size());
  }
  const TestTensor on = norm("output_norm.weight", 2.0f);
  t.add_tensor(on.name, on.type, on.shape, on.bytes.data(), on.bytes.size());
  ASSERT_TRUE(t.write(dir / "teacher.gguf").ok());
  write_part(dir / "delta.gguf", delta_tensors(m, bad_shape), m);
}

// Splits `all` into two parts by a predicate on the name (true: the first part).
template <typename Pred>
std::pair<std::vector<TestTensor>, std::vector<TestTensor>> split(
    const std::vector<TestTensor>& all, Pred first) {
  std::pair<std::vector<TestTensor>, std::vector<TestTensor>> out;
  for (const auto& t : all) (first(t.name) ? out.first : out.second).push_back(t);
  return out;
}

// A result's error message, or "ok" (for failure messages of tests that expect an error).
template <typename R>
std::string msg(const R& r) {
  return r.ok() ? "ok" : r.error().message;
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
  ASSERT_TRUE(build_student(dir / "teacher.gguf", {dir / "delta.gguf"}, dir / "s.gguf").ok());
  auto s = GgufFile::open(dir / "s.gguf");
  ASSERT_TRUE(s.ok()) << msg(s);
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
  ASSERT_TRUE(build_student(dir / "teacher.gguf", {dir / "delta.gguf"}, dir / "a.gguf").ok());
  ASSERT_TRUE(build_student(dir / "teacher.gguf", {dir / "delta.gguf"}, dir / "b.gguf").ok());
  EXPECT_EQ(slurp(dir / "a.gguf"), slurp(dir / "b.gguf"));
}

TEST(DeriveTest, RejectsBadDeltas) {
  {
    ScopedTempDir dir;
    write_models(dir, 4);  // more layers than the teacher
    auto s = build_student(dir / "teacher.gguf", {dir / "delta.gguf"}, dir / "s.gguf");
    EXPECT_FALSE(s.ok());
    EXPECT_FALSE(fs::exists(dir / "s.gguf"));
  }
  {
    ScopedTempDir dir;
    write_models(dir, 2, /*bad_shape=*/true);
    auto s = build_student(dir / "teacher.gguf", {dir / "delta.gguf"}, dir / "s.gguf");
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().message.find("attn_q"), std::string::npos) << msg(s);
  }
  {
    ScopedTempDir dir;
    write_models(dir, 1);
    EXPECT_FALSE(build_student(dir / "missing.gguf", {dir / "delta.gguf"}, dir / "s.gguf").ok());
  }
}

bool has(const Status& s, const std::string& part) {
  return !s.ok() && s.error().message.find(part) != std::string::npos;
}

// Whatever way the tensors are split into parts, and in whatever order the parts are given, the
// student is the same file; with an output head of its own it sits after the embedding.
TEST(DeriveTest, PartsGiveTheSameStudentAsOneDelta) {
  ScopedTempDir dir;
  write_models(dir, 2);
  const auto all = delta_tensors(2, false, kVocab);
  write_part(dir / "one.gguf", all, 2);
  // Part a: block 1 and output_norm (with the block count); part b: the rest, no block count.
  auto [a, b] = split(all, [](const std::string& n) {
    return n.starts_with("blk.1.") || n == "output_norm.weight";
  });
  write_part(dir / "a.gguf", a, 2);
  write_part(dir / "b.gguf", b, 0);
  ASSERT_TRUE(build_student(dir / "teacher.gguf", {dir / "one.gguf"}, dir / "s1.gguf").ok());
  auto st = build_student(dir / "teacher.gguf", {dir / "a.gguf", dir / "b.gguf"}, dir / "s2.gguf");
  ASSERT_TRUE(st.ok()) << st.error().message;
  ASSERT_TRUE(
      build_student(dir / "teacher.gguf", {dir / "b.gguf", dir / "a.gguf"}, dir / "s3.gguf").ok());
  EXPECT_EQ(slurp(dir / "s1.gguf"), slurp(dir / "s2.gguf"));
  EXPECT_EQ(slurp(dir / "s1.gguf"), slurp(dir / "s3.gguf"));

  // The order: token_embd, output, blk.0.*, blk.1.*, output_norm; output.weight byte for byte.
  auto s = GgufFile::open(dir / "s2.gguf");
  ASSERT_TRUE(s.ok()) << msg(s);
  const auto& ts = s->tensors();
  ASSERT_EQ(ts.size(), 2u + 2 * 9 + 1);
  EXPECT_EQ(ts[0].name, "token_embd.weight");
  EXPECT_EQ(ts[0].type, TensorType::Q4_1);
  EXPECT_EQ(ts[1].name, "output.weight");
  EXPECT_EQ(ts[2].name, "blk.0.attn_norm.weight");
  EXPECT_EQ(ts[11].name, "blk.1.attn_norm.weight");
  EXPECT_EQ(ts.back().name, "output_norm.weight");
  EXPECT_EQ(s->get_int("llama.block_count"), 2);
  const TestTensor& head = all.back();
  ASSERT_EQ(head.name, "output.weight");
  EXPECT_EQ(ts[1].type, TensorType::Q8_0);
  EXPECT_EQ(ts[1].shape, head.shape);
  ASSERT_EQ(ts[1].n_bytes, head.bytes.size());
  EXPECT_EQ(0, std::memcmp(ts[1].data, head.bytes.data(), head.bytes.size()));

  // Without an output head, two parts still give what one part gives.
  const auto tied = delta_tensors(2);
  auto [c, d] = split(tied, [](const std::string& n) { return n.starts_with("blk.0."); });
  write_part(dir / "c.gguf", c, 2);
  write_part(dir / "d.gguf", d, 2);
  ASSERT_TRUE(
      build_student(dir / "teacher.gguf", {dir / "c.gguf", dir / "d.gguf"}, dir / "s4.gguf").ok());
  ASSERT_TRUE(build_student(dir / "teacher.gguf", {dir / "delta.gguf"}, dir / "s5.gguf").ok());
  EXPECT_EQ(slurp(dir / "s4.gguf"), slurp(dir / "s5.gguf"));
  auto tied_student = GgufFile::open(dir / "s4.gguf");
  ASSERT_TRUE(tied_student.ok());
  EXPECT_EQ(tied_student->tensor("output.weight"), nullptr);
}

// A delta with a shortlist head (kOutputTokenIdsKey): its output.weight has one row per id, and
// the student carries the ids; a head of the wrong height, or ids without a head, are refused.
TEST(DeriveTest, ShortlistHeadDelta) {
  ScopedTempDir dir;
  write_models(dir, 2);
  const std::vector<int32_t> ids = {0, 3, 7, 20, 39};
  auto write_delta = [&](const std::string& path, int64_t output_rows) {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    w.set_u32("llama.block_count", 2);
    w.set_i32s(kOutputTokenIdsKey, ids);
    for (const auto& t : delta_tensors(2, false, output_rows))
      w.add_tensor(t.name, t.type, t.shape, t.bytes.data(), t.bytes.size());
    ASSERT_TRUE(w.write(path).ok());
  };
  write_delta(dir / "short.gguf", int64_t(ids.size()));
  ASSERT_TRUE(build_student(dir / "teacher.gguf", {dir / "short.gguf"}, dir / "s.gguf").ok());
  auto s = GgufFile::open(dir / "s.gguf");
  ASSERT_TRUE(s.ok()) << msg(s);
  ASSERT_NE(s->tensor("output.weight"), nullptr);
  EXPECT_EQ(s->tensor("output.weight")->shape, (std::vector<int64_t>{kEmbd, 5}));
  const std::vector<double> got = s->get_numbers(kOutputTokenIdsKey);
  EXPECT_EQ(got, std::vector<double>(ids.begin(), ids.end()));

  write_delta(dir / "tall.gguf", kVocab);
  Status tall = build_student(dir / "teacher.gguf", {dir / "tall.gguf"}, dir / "t.gguf");
  EXPECT_TRUE(has(tall, "must have 5 rows")) << msg(tall);
  write_delta(dir / "headless.gguf", 0);
  Status headless = build_student(dir / "teacher.gguf", {dir / "headless.gguf"}, dir / "h.gguf");
  EXPECT_TRUE(has(headless, "no part holds output.weight")) << msg(headless);
  EXPECT_FALSE(fs::exists(dir / "t.gguf") || fs::exists(dir / "h.gguf"));
}

TEST(DeriveTest, RejectsBadParts) {
  ScopedTempDir dir;
  write_models(dir, 2);
  const std::string teacher = dir / "teacher.gguf", out = dir / "s.gguf";
  const auto all = delta_tensors(2);
  auto [a, b] = split(all, [](const std::string& n) { return n.starts_with("blk.0."); });
  {  // A tensor in two parts: both files named.
    auto a2 = a;
    a2.push_back(b.front());
    write_part(dir / "a.gguf", a2, 2);
    write_part(dir / "b.gguf", b, 2);
    auto s = build_student(teacher, {dir / "a.gguf", dir / "b.gguf"}, out);
    EXPECT_TRUE(has(s, b.front().name)) << msg(s);
    EXPECT_TRUE(has(s, dir / "a.gguf")) << msg(s);
    EXPECT_TRUE(has(s, dir / "b.gguf")) << msg(s);
  }
  {  // A tensor in no part.
    auto b2 = b;
    b2.erase(std::find_if(b2.begin(), b2.end(),
                          [](const TestTensor& t) { return t.name == "blk.1.ffn_up.weight"; }));
    write_part(dir / "a.gguf", a, 2);
    write_part(dir / "b.gguf", b2, 0);
    auto s = build_student(teacher, {dir / "a.gguf", dir / "b.gguf"}, out);
    EXPECT_TRUE(has(s, "missing tensor blk.1.ffn_up.weight")) << msg(s);
  }
  {  // Parts that disagree on the block count, or none that gives it.
    write_part(dir / "a.gguf", a, 2);
    write_part(dir / "b.gguf", b, 1);
    auto s = build_student(teacher, {dir / "a.gguf", dir / "b.gguf"}, out);
    EXPECT_TRUE(has(s, "llama.block_count")) << msg(s);
    EXPECT_TRUE(has(s, dir / "a.gguf") && has(s, dir / "b.gguf")) << msg(s);
    write_part(dir / "a.gguf", a, 0);
    write_part(dir / "b.gguf", b, 0);
    s = build_student(teacher, {dir / "a.gguf", dir / "b.gguf"}, out);
    EXPECT_TRUE(has(s, "no delta part sets llama.block_count")) << msg(s);
  }
  {  // A tensor no student has (a layer beyond the block count), named with its part.
    auto b2 = b;
    b2.push_back(layer(2, 7.0f).front());
    write_part(dir / "a.gguf", a, 2);
    write_part(dir / "b.gguf", b2, 0);
    auto s = build_student(teacher, {dir / "a.gguf", dir / "b.gguf"}, out);
    EXPECT_TRUE(has(s, "unexpected tensor blk.2.attn_norm.weight")) << msg(s);
    EXPECT_TRUE(has(s, dir / "b.gguf")) << msg(s);
  }
  {  // An output head whose shape is not the teacher's embedding's.
    auto b2 = b;
    const auto head = delta_tensors(0, false, kVocab - 8).back();
    ASSERT_EQ(head.name, "output.weight");
    b2.push_back(head);
    write_part(dir / "a.gguf", a, 2);
    write_part(dir / "b.gguf", b2, 0);
    auto s = build_student(teacher, {dir / "a.gguf", dir / "b.gguf"}, out);
    EXPECT_TRUE(has(s, "output.weight")) << msg(s);
    EXPECT_TRUE(has(s, dir / "b.gguf")) << msg(s);
  }
  {  // A part that says the delta has two parts, given alone (the output head's part forgotten).
    auto [body, head] = split(delta_tensors(2, false, kVocab),
                              [](const std::string& n) { return n != "output.weight"; });
    write_part(dir / "a.gguf", body, 2, 2);
    write_part(dir / "b.gguf", head, 2, 2);
    auto s = build_student(teacher, {dir / "a.gguf"}, out);
    EXPECT_TRUE(has(s, "2 parts")) << msg(s);
    EXPECT_TRUE(has(s, dir / "a.gguf")) << msg(s);
    s = build_student(teacher, {dir / "a.gguf", dir / "b.gguf"}, out);
    EXPECT_TRUE(s.ok()) << msg(s);
    fs::remove(out);
  }
  EXPECT_FALSE(build_student(teacher, {}, out).ok());
  EXPECT_FALSE(fs::exists(out));
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
  std::vector<std::string> parts;
  for (const auto& d : slm->deltas) parts.push_back(d.file);
  ASSERT_FALSE(parts.empty());
  auto st = build_student(*teacher, parts, out);
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
