// Real-shape model writing (hlm models synth): llama.cpp's per-tensor type mix, a file that loads
// with the requested shape, types and copied vocabulary and runs, and bytes fixed by the seed
// alone (not by the thread count).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/context.h"
#include "engine/file_type.h"
#include "engine/model_writer.h"
#include "engine/shapes.h"
#include "gguf/gguf_writer.h"
#include "util/thread_pool.h"

namespace hlm {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("hlm_synth_test_" + name)).string();
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

TEST(FileType, ParsesLlamaCppNames) {
  EXPECT_EQ(parse_file_type("Q4_0"), FileType::kQ4_0);
  EXPECT_EQ(parse_file_type("q4_k_m"), FileType::kQ4_K_M);
  EXPECT_EQ(parse_file_type("Q8_0"), FileType::kQ8_0);
  EXPECT_FALSE(parse_file_type("Q4_K"));
  EXPECT_FALSE(parse_file_type(""));
  EXPECT_EQ(file_type_names(), "Q4_0, Q4_K_M, Q8_0");
}

// llama.cpp's rules on a 32-layer model (Llama-2-7B): Q4_K_M gives attn_v and ffn_down Q6_K in
// layers 0-3, 28-31 and every third layer from 6 (use_more_bits), the output matrix Q6_K, and
// Q4_K elsewhere; Q4_0 keeps Q4_0 but for the output matrix; Q8_0 is Q8_0 throughout.
TEST(FileType, LlamaCppMixOnA32LayerModel) {
  int six = 0;
  for (int l = 0; l < 32; ++l) {
    const bool more = l < 4 || l >= 28 || (l - 4) % 3 == 2;
    for (const char* m : {"attn_v.weight", "ffn_down.weight"}) {
      const std::string name = "blk." + std::to_string(l) + "." + m;
      const TensorType t = file_type_tensor(FileType::kQ4_K_M, name, 32, 4096, false);
      EXPECT_EQ(t, more ? TensorType::Q6_K : TensorType::Q4_K) << name;
      six += t == TensorType::Q6_K;
    }
    EXPECT_EQ(file_type_tensor(FileType::kQ4_K_M, "blk." + std::to_string(l) + ".attn_q.weight", 32,
                               4096, false),
              TensorType::Q4_K);
  }
  EXPECT_EQ(six, 2 * 16);
  EXPECT_EQ(file_type_tensor(FileType::kQ4_K_M, "output.weight", 32, 4096, false),
            TensorType::Q6_K);
  EXPECT_EQ(file_type_tensor(FileType::kQ4_K_M, "token_embd.weight", 32, 4096, false),
            TensorType::Q4_K);
  EXPECT_EQ(file_type_tensor(FileType::kQ4_0, "output.weight", 32, 4096, false), TensorType::Q6_K);
  EXPECT_EQ(file_type_tensor(FileType::kQ4_0, "token_embd.weight", 32, 4096, false),
            TensorType::Q4_0);
  EXPECT_EQ(file_type_tensor(FileType::kQ4_0, "token_embd.weight", 32, 4096, true),
            TensorType::Q6_K);  // tied: the embedding is the output matrix
  EXPECT_EQ(file_type_tensor(FileType::kQ8_0, "output.weight", 32, 4096, false), TensorType::Q8_0);
}

// Rows that 256-element blocks do not fit (Qwen2.5-0.5B's 896) fall back as llama.cpp does.
TEST(FileType, FallsBackWhenBlocksDoNotFitTheRow) {
  EXPECT_EQ(file_type_tensor(FileType::kQ4_K_M, "blk.5.attn_q.weight", 24, 896, true),
            TensorType::Q5_0);
  EXPECT_EQ(file_type_tensor(FileType::kQ4_K_M, "blk.0.attn_v.weight", 24, 896, true),
            TensorType::Q8_0);
  EXPECT_EQ(file_type_tensor(FileType::kQ4_K_M, "token_embd.weight", 24, 896, true),
            TensorType::Q8_0);
  EXPECT_EQ(file_type_tensor(FileType::kQ4_0, "blk.0.attn_q.weight", 24, 40, false),
            TensorType::F16);
}

TEST(Shapes, TableHoldsThePublishedConfigs) {
  const ModelShape* l2 = find_shape("llama-2-7b");
  ASSERT_TRUE(l2);
  EXPECT_EQ(l2->n_embd, 4096);
  EXPECT_EQ(l2->n_layer, 32);
  EXPECT_EQ(l2->n_ff, 11008);
  const ModelShape* tl = find_shape("tinyllama-1.1b");
  ASSERT_TRUE(tl);
  EXPECT_EQ(tl->n_head_kv, 4);
  EXPECT_EQ(tl->n_ff, 5632);
  for (const char* name : {"qwen2.5-0.5b", "qwen2.5-7b", "gemma3-1b", "test-llama"}) {
    EXPECT_TRUE(find_shape(name)) << name;
  }
  for (const ModelShape& s : known_shapes()) {
    EXPECT_EQ(s.n_head % s.n_head_kv, 0) << s.name;
    EXPECT_EQ(s.n_embd % 32, 0) << s.name;
  }
  EXPECT_FALSE(find_shape("llama-2-13b"));
}

// A vocabulary source that needs no download: a tiny model's own tokenizer.
std::string vocab_file() {
  const std::string path = temp_path("vocab.gguf");
  TinyModelSpec spec;
  EXPECT_TRUE(write_tiny_model(path, spec).ok());
  return path;
}

class SynthTypes : public ::testing::TestWithParam<FileType> {};

TEST_P(SynthTypes, LoadsWithTheShapeTypesAndVocabularyAndRuns) {
  const ModelShape& shape = *find_shape("test-llama");
  const std::string vocab = vocab_file();
  TinyModelSpec spec = TinyModelSpec::from_shape(shape, GetParam(), 5);
  spec.vocab_path = vocab;
  ThreadPool pool(2);
  spec.pool = &pool;
  uint64_t last_done = 0, calls = 0;
  spec.progress = [&](uint64_t done, uint64_t total) {
    EXPECT_GT(done, last_done);
    EXPECT_LE(done, total);
    last_done = done;
    ++calls;
  };
  const std::string path = temp_path(std::string(file_type_name(GetParam())) + ".gguf");
  ASSERT_TRUE(write_tiny_model(path, spec).ok());
  EXPECT_EQ(calls, 2u + 7u * shape.n_layer);  // every matrix reports once
  auto m = Model::load(path);
  ASSERT_TRUE(m.ok()) << m.error().message;
  const ModelConfig& c = (*m)->config();
  EXPECT_EQ(c.n_embd, shape.n_embd);
  EXPECT_EQ(c.n_layer, shape.n_layer);
  EXPECT_EQ(c.n_head, shape.n_head);
  EXPECT_EQ(c.n_head_kv, shape.n_head_kv);
  EXPECT_EQ(c.n_ff, shape.n_ff);
  EXPECT_EQ(c.n_ctx_train, shape.n_ctx);
  EXPECT_EQ(c.rope_base, shape.rope_base);
  EXPECT_EQ(c.rms_eps, shape.rms_eps);
  EXPECT_EQ((*m)->gguf().get_int("general.file_type"), static_cast<int>(GetParam()));
  // Every matrix has the type llama.cpp's mix gives it.
  for (const GgufTensor& t : (*m)->gguf().tensors()) {
    if (t.shape.size() < 2) {
      EXPECT_EQ(t.type, TensorType::F32) << t.name;
      continue;
    }
    EXPECT_EQ(t.type, file_type_tensor(GetParam(), t.name, shape.n_layer, t.shape[0], false))
        << t.name;
  }
  // The vocabulary is the source's, token for token.
  auto src = Model::load(vocab);
  ASSERT_TRUE(src.ok());
  ASSERT_EQ(c.n_vocab, (*src)->config().n_vocab);
  EXPECT_EQ((*m)->gguf().get_strings("tokenizer.ggml.tokens"),
            (*src)->gguf().get_strings("tokenizer.ggml.tokens"));
  EXPECT_EQ((*m)->tokenizer().encode("the rain in spain", true, false),
            (*src)->tokenizer().encode("the rain in spain", true, false));
  // And it runs: finite logits that are not all equal.
  Context ctx(*m, 1, 32, pool);
  auto z = ctx.eval_last(0, std::vector<int32_t>{1, 40, 80, 120});
  ASSERT_TRUE(z.ok()) << z.error().message;
  float lo = z->front(), hi = z->front();
  for (float x : *z) {
    ASSERT_TRUE(std::isfinite(x));
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  EXPECT_GT(hi - lo, 1e-3f);
}

INSTANTIATE_TEST_SUITE_P(All, SynthTypes,
                         ::testing::Values(FileType::kQ4_0, FileType::kQ4_K_M, FileType::kQ8_0),
                         [](const auto& i) { return std::string(file_type_name(i.param)); });

// The seed fixes the bytes, whatever the thread count; another seed gives other weights.
TEST(Synth, BytesDependOnTheSeedAloneNotTheThreads) {
  const std::string vocab = vocab_file();
  const auto write = [&](uint64_t seed, int threads, const std::string& name) {
    TinyModelSpec spec =
        TinyModelSpec::from_shape(*find_shape("test-llama"), FileType::kQ4_K_M, seed);
    spec.vocab_path = vocab;
    ThreadPool pool(threads);
    spec.pool = &pool;
    const std::string path = temp_path(name);
    EXPECT_TRUE(write_tiny_model(path, spec).ok());
    return read_all(path);
  };
  const std::string a = write(9, 1, "seed9_t1.gguf"), b = write(9, 2, "seed9_t2.gguf"),
                    c = write(10, 2, "seed10.gguf");
  ASSERT_GT(a.size(), 500000u);
  EXPECT_TRUE(a == b);
  EXPECT_EQ(a.size(), c.size());
  EXPECT_FALSE(a == c);
}

TEST(Synth, ErrorsNameTheProblem) {
  TinyModelSpec spec = TinyModelSpec::from_shape(*find_shape("test-llama"), FileType::kQ4_0, 1);
  spec.vocab_path = temp_path("no_such_vocab.gguf");
  auto st = write_tiny_model(temp_path("x.gguf"), spec);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("no_such_vocab.gguf"), std::string::npos) << st.error().message;

  const std::string not_vocab = temp_path("not_vocab.gguf");
  {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    ASSERT_TRUE(w.write(not_vocab).ok());
  }
  spec.vocab_path = not_vocab;
  st = write_tiny_model(temp_path("x.gguf"), spec);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("not a vocabulary"), std::string::npos) << st.error().message;

  TinyModelSpec falcon = TinyModelSpec::from_shape(*find_shape("test-qwen2"), FileType::kQ4_0, 1);
  falcon.arch = "falcon";
  ASSERT_FALSE(writer_supports(falcon.arch));
  st = write_tiny_model(temp_path("x.gguf"), falcon);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("falcon"), std::string::npos) << st.error().message;
}

}  // namespace
}  // namespace hlm
