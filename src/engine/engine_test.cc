// Engine invariants on tiny random models (every architecture and supported weight type): finite
// logits, rollback, batching, attention capture, sampling reproducibility, and load errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "engine/context.h"
#include "engine/model_writer.h"
#include "engine/sampler.h"
#include "gguf/gguf_writer.h"

namespace hlm {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("hlm_engine_test_" + name)).string();
}

// The arch_test_spec model of `arch` (gemma3's has a sliding window shorter than kPrompt).
std::shared_ptr<const Model> tiny(TensorType t = TensorType::Q8_0, bool tied = false,
                                  const std::string& arch = "llama") {
  TinyModelSpec spec = arch_test_spec(arch, t);
  spec.tied_output = spec.tied_output || tied;
  const std::string path =
      temp_path(arch + std::string(info(t).name) + (tied ? "_tied" : "") + ".gguf");
  EXPECT_TRUE(write_tiny_model(path, spec).ok());
  auto m = Model::load(path);
  EXPECT_TRUE(m.ok()) << m.error().message;
  return m.ok() ? m.value() : nullptr;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
  EXPECT_EQ(a.size(), b.size());
  float d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

const std::vector<int32_t> kPrompt = {1, 270, 275, 265, 100, 101, 277, 69, 70, 271, 3, 200};

// (architecture, weight type)
class EngineTypes : public ::testing::TestWithParam<std::tuple<const char*, TensorType>> {
 protected:
  static std::shared_ptr<const Model> model() {
    return tiny(std::get<1>(GetParam()), false, std::get<0>(GetParam()));
  }
};

TEST_P(EngineTypes, LogitsFiniteAndSoftmaxSumsToOne) {
  auto model = this->model();
  ASSERT_TRUE(model);
  ThreadPool pool(2);
  Context ctx(model, 1, 64, pool);
  auto logits = ctx.eval_last(0, kPrompt);
  ASSERT_TRUE(logits.ok()) << logits.error().message;
  ASSERT_EQ(int(logits->size()), model->config().n_vocab);
  for (float x : *logits) ASSERT_TRUE(std::isfinite(x));
  auto p = softmax(*logits);
  double sum = 0;
  for (float x : p) sum += x;
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_EQ(ctx.n_past(0), int(kPrompt.size()));
}

TEST_P(EngineTypes, RollbackThenReevalEqualsFresh) {
  auto model = this->model();
  ASSERT_TRUE(model);
  ThreadPool pool(2);
  Context a(model, 1, 64, pool), b(model, 1, 64, pool);
  // a: prompt, then 3 wrong tokens, roll them back, then the right continuation.
  ASSERT_TRUE(a.eval_last(0, kPrompt).ok());
  const std::vector<int32_t> wrong = {5, 6, 7}, right = {8, 9};
  ASSERT_TRUE(a.eval_last(0, wrong).ok());
  a.truncate(0, int(kPrompt.size()));
  auto la = a.eval_last(0, right);
  std::vector<int32_t> all = kPrompt;
  all.insert(all.end(), right.begin(), right.end());
  auto lb = b.eval_last(0, all);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_LE(max_abs_diff(*la, *lb), 1e-3f);
}

TEST_P(EngineTypes, BatchedSequencesEqualEachAlone) {
  auto model = this->model();
  ASSERT_TRUE(model);
  ThreadPool pool(2);
  const std::vector<int32_t> s0 = {1, 100, 101, 102, 103}, s1 = {1, 270, 271};
  Context batched(model, 2, 64, pool), alone(model, 1, 64, pool);
  SeqInput in[2] = {{0, s0, {0, 4}, nullptr}, {1, s1, {2}, nullptr}};
  auto out = batched.eval(in);
  ASSERT_TRUE(out.ok()) << out.error().message;
  const int V = model->config().n_vocab;
  SeqInput a0{0, s0, {0, 4}, nullptr};
  auto r0 = alone.eval(std::span<const SeqInput>(&a0, 1));
  ASSERT_TRUE(r0.ok());
  // Logits stay valid until the context's next eval.
  EXPECT_LE(max_abs_diff((*out)[0].logits, (*r0)[0].logits), 1e-4f);
  alone.clear(0);
  SeqInput a1{0, s1, {2}, nullptr};
  auto r1 = alone.eval(std::span<const SeqInput>(&a1, 1));
  ASSERT_TRUE(r1.ok());
  ASSERT_EQ(int((*out)[0].logits.size()), 2 * V);
  EXPECT_LE(max_abs_diff((*out)[1].logits, (*r1)[0].logits), 1e-4f);
  // Continue both after the batch: decode steps batched across sequences.
  const std::vector<int32_t> n0 = {7}, n1 = {9};
  SeqInput step[2] = {{0, n0, {0}, nullptr}, {1, n1, {0}, nullptr}};
  auto out2 = batched.eval(step);
  ASSERT_TRUE(out2.ok());
  EXPECT_EQ(batched.n_past(0), 6);
  EXPECT_EQ(batched.n_past(1), 4);
}

// Many sequences of several new tokens each in one forward (the elementwise steps then run on
// the pool): every sequence's logits at every position and its captured attention equal what it
// gets alone; a position asked for twice gets the same logits twice.
TEST_P(EngineTypes, ManySequencesOfSeveralTokensEqualEachAlone) {
  auto model = this->model();
  ASSERT_TRUE(model);
  ThreadPool pool(2);
  const ModelConfig& c = model->config();
  const AttentionRequest req = AttentionRequest::all(c.n_layer);
  const std::vector<std::vector<int32_t>> prefix = {{1, 9}, {1}, {1, 5, 6, 7}, {1, 2}, {1, 3}, {1}};
  const std::vector<std::vector<int32_t>> fresh = {
      {10, 11, 12},    {13}, {14, 15, 16, 17, 18, 19}, {20, 21}, {22, 23, 24, 25, 26},
      {27, 28, 29, 30}};
  const int n = int(prefix.size());
  const int V = c.n_vocab;
  Context batched(model, n, 64, pool), alone(model, 1, 64, pool);
  std::vector<SeqInput> in;
  for (int s = 0; s < n; ++s) {
    ASSERT_TRUE(batched.eval_last(s, prefix[size_t(s)]).ok());
    SeqInput x{s, fresh[size_t(s)], {}, &req};
    for (int j = 0; j < int(fresh[size_t(s)].size()); ++j) x.logits_at.push_back(j);
    x.logits_at.push_back(0);
    in.push_back(x);
  }
  auto out = batched.eval(in);
  ASSERT_TRUE(out.ok()) << out.error().message;
  const std::vector<SeqOutput> together = std::move(out).value();
  for (int s = 0; s < n; ++s) {
    SCOPED_TRACE("sequence " + std::to_string(s));
    const std::span<const float> z = together[size_t(s)].logits;
    const size_t k = fresh[size_t(s)].size();
    ASSERT_EQ(z.size(), (k + 1) * V);
    EXPECT_EQ(max_abs_diff(z.first(V), z.subspan(k * V, V)), 0.0f) << "position 0 asked twice";
    alone.clear(0);
    ASSERT_TRUE(alone.eval_last(0, prefix[size_t(s)]).ok());
    SeqInput x = in[size_t(s)];
    x.seq = 0;
    x.logits_at.pop_back();
    auto one = alone.eval(std::span<const SeqInput>(&x, 1));
    ASSERT_TRUE(one.ok());
    EXPECT_LE(max_abs_diff(z.first(k * V), (*one)[0].logits), 1e-4f);
    const AttentionRows &a = together[size_t(s)].attention, &b = (*one)[0].attention;
    ASSERT_EQ(a.n_pos, b.n_pos);
    EXPECT_LE(max_abs_diff(a.probs, b.probs), 1e-4f);
  }
}

TEST_P(EngineTypes, AttentionRowsAreDistributionsAndCaptureIsFree) {
  auto model = this->model();
  ASSERT_TRUE(model);
  ThreadPool pool(2);
  const ModelConfig& c = model->config();
  Context on(model, 1, 64, pool), off(model, 1, 64, pool);
  AttentionRequest req = AttentionRequest::all(c.n_layer);
  ASSERT_TRUE(on.eval_last(0, kPrompt, &req).ok());
  ASSERT_TRUE(off.eval_last(0, kPrompt).ok());
  for (int32_t t : {17, 42, 99}) {
    AttentionRows rows;
    const std::vector<int32_t> tok = {t};
    auto a = on.eval_last(0, tok, &req, &rows);
    auto b = off.eval_last(0, tok);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b) << "capture changed the logits";
    ASSERT_EQ(rows.n_pos, on.n_past(0));
    ASSERT_EQ(rows.layers.size(), size_t(c.n_layer));
    ASSERT_EQ(rows.probs.size(), size_t(c.n_layer) * c.n_head * rows.n_pos);
    for (size_t l = 0; l < rows.layers.size(); ++l) {
      for (int h = 0; h < c.n_head; ++h) {
        const float* r = rows.row(l, h, c.n_head);
        double sum = 0;
        for (int j = 0; j < rows.n_pos; ++j) {
          ASSERT_GE(r[j], 0.0f);
          sum += r[j];
        }
        EXPECT_NEAR(sum, 1.0, 1e-3);
      }
    }
  }
  // A subset of layers.
  AttentionRequest one{{c.n_layer - 1}};
  AttentionRows rows;
  const std::vector<int32_t> tok = {5};
  ASSERT_TRUE(on.eval_last(0, tok, &one, &rows).ok());
  EXPECT_EQ(rows.probs.size(), size_t(c.n_head) * rows.n_pos);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, EngineTypes,
                         ::testing::Combine(::testing::ValuesIn(kTinyArchitectures),
                                            ::testing::Values(TensorType::F32, TensorType::Q8_0,
                                                              TensorType::Q4_0, TensorType::Q4_1,
                                                              TensorType::Q5_0, TensorType::Q5_1)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_" +
                                  std::string(hlm::info(std::get<1>(info.param)).name);
                         });

// Sliding layers (gemma3: all but every 6th) give no attention to positions before their window;
// global layers attend to every position.
TEST(Engine, SlidingWindowLayersAttendWithinTheWindow) {
  auto model = tiny(TensorType::Q8_0, false, "gemma3");
  ASSERT_TRUE(model);
  const ModelConfig& c = model->config();
  ASSERT_GT(c.sliding_window, 0);
  ASSERT_GT(int(kPrompt.size()), c.sliding_window);
  ThreadPool pool(2);
  Context ctx(model, 1, 64, pool);
  const AttentionRequest req = AttentionRequest::all(c.n_layer);
  AttentionRows rows;
  ASSERT_TRUE(ctx.eval_last(0, kPrompt, &req, &rows).ok());
  const int first = rows.n_pos - c.sliding_window;
  for (int l = 0; l < c.n_layer; ++l) {
    const bool sliding = model->layers()[size_t(l)].sliding;
    EXPECT_EQ(sliding, l != 5) << "layer " << l;
    for (int h = 0; h < c.n_head; ++h) {
      const float* r = rows.row(size_t(l), h, c.n_head);
      double before = 0;
      for (int j = 0; j < first; ++j) before += r[j];
      if (sliding) {
        EXPECT_EQ(before, 0.0) << "layer " << l << " head " << h;
      } else {
        EXPECT_GT(before, 0.0) << "layer " << l << " head " << h;
      }
    }
  }
}

TEST(Engine, TiedOutputLoads) {
  auto model = tiny(TensorType::Q8_0, /*tied=*/true);
  ASSERT_TRUE(model);
  EXPECT_EQ(model->output().data, model->token_embd().data);
}

// A shortlist head (write_shortlisted_model) scores its ids exactly as the full head, at every
// position of a batch, and gives every other id -inf; tied heads shortlist the embedding's rows.
TEST(Engine, ShortlistHeadScoresItsIdsAsTheFullHeadAndNoOthers) {
  for (const bool tied : {false, true}) {
    for (const TensorType t : {TensorType::Q8_0, TensorType::Q4_1}) {
      SCOPED_TRACE(std::string(info(t).name) + (tied ? " tied" : ""));
      auto full = tiny(t, tied);
      ASSERT_TRUE(full);
      const int V = full->config().n_vocab;
      std::vector<int32_t> ids;
      for (int id = 0; id < V; id += 3) ids.push_back(id);
      if (ids.back() != V - 1) ids.push_back(V - 1);
      const std::string path =
          temp_path("shortlist_" + std::string(info(t).name) + (tied ? "_tied" : "") + ".gguf");
      ASSERT_TRUE(write_shortlisted_model(full->path(), path, ids).ok());
      auto loaded = Model::load(path);
      ASSERT_TRUE(loaded.ok()) << loaded.error().message;
      const auto& shortlisted = *loaded;
      EXPECT_EQ(shortlisted->output_ids(), ids);
      EXPECT_EQ(shortlisted->output().rows, int64_t(ids.size()));

      ThreadPool pool(2);
      Context a(full, 1, 64, pool), b(shortlisted, 1, 64, pool);
      std::vector<int> every(kPrompt.size());
      std::iota(every.begin(), every.end(), 0);
      const SeqInput in{0, kPrompt, every, nullptr};
      auto la = a.eval(std::span(&in, 1));
      auto lb = b.eval(std::span(&in, 1));
      ASSERT_TRUE(la.ok() && lb.ok());
      const std::span<const float> fa = (*la)[0].logits, fb = (*lb)[0].logits;
      ASSERT_EQ(fb.size(), kPrompt.size() * size_t(V));
      std::vector<bool> kept(size_t(V), false);
      for (int32_t id : ids) kept[size_t(id)] = true;
      for (size_t r = 0; r < kPrompt.size(); ++r) {
        for (int id = 0; id < V; ++id) {
          const size_t i = r * size_t(V) + size_t(id);
          if (kept[size_t(id)]) {
            ASSERT_NEAR(fb[i], fa[i], 1e-5f) << "position " << r << ", id " << id;
          } else {
            ASSERT_EQ(fb[i], -std::numeric_limits<float>::infinity()) << "id " << id;
          }
        }
      }
      // Sampling never leaves the shortlist, and the distribution still sums to one.
      Sampler sampler({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 3});
      const auto last = fb.subspan((kPrompt.size() - 1) * size_t(V), size_t(V));
      const std::vector<float> p = sampler.distribution(last);
      EXPECT_NEAR(std::accumulate(p.begin(), p.end(), 0.0), 1.0, 1e-5);
      for (int k = 0; k < 200; ++k) EXPECT_TRUE(kept[size_t(sampler.sample(last))]);
    }
  }
}

TEST(Engine, ThreadCountDoesNotChangeLogits) {
  auto model = tiny();
  ASSERT_TRUE(model);
  ThreadPool p1(1), p2(2);
  Context a(model, 1, 64, p1), b(model, 1, 64, p2);
  auto la = a.eval_last(0, kPrompt), lb = b.eval_last(0, kPrompt);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_LE(max_abs_diff(*la, *lb), 1e-4f);
}

TEST(Engine, BadInputLeavesCacheUnchanged) {
  auto model = tiny();
  ASSERT_TRUE(model);
  ThreadPool pool(1);
  Context ctx(model, 2, 16, pool);
  ASSERT_TRUE(ctx.eval_last(0, std::vector<int32_t>{1, 2, 3}).ok());
  auto bad_tok = ctx.eval_last(0, std::vector<int32_t>{5, 1 << 20});
  ASSERT_FALSE(bad_tok.ok());
  EXPECT_NE(bad_tok.error().message.find("out of range"), std::string::npos);
  auto bad_seq = ctx.eval_last(7, std::vector<int32_t>{5});
  ASSERT_FALSE(bad_seq.ok());
  EXPECT_NE(bad_seq.error().message.find("sequence 7"), std::string::npos);
  auto full = ctx.eval_last(0, std::vector<int32_t>(20, 5));
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.error().message.find("--ctx"), std::string::npos);
  EXPECT_EQ(ctx.n_past(0), 3);
  EXPECT_EQ(ctx.n_past(1), 0);
}

TEST(Sampler, SeededSamplingIsReproducible) {
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = std::sin(i * 0.7f) * 3;
  SamplingParams p{0.9f, 20, 0.9f, 1234};
  Sampler a(p), b(p);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(a.sample(logits), b.sample(logits));
  Sampler g({0.0f, 40, 0.95f, 1});
  EXPECT_EQ(g.sample(logits), argmax(logits));
}

TEST(Sampler, TopKTopPRestrictSupport) {
  std::vector<float> logits = {5, 4, 3, 2, 1, 0};
  Sampler k({1.0f, 2, 1.0f, 1});
  auto pk = k.distribution(logits);
  EXPECT_GT(pk[0], 0);
  EXPECT_GT(pk[1], 0);
  for (int i = 2; i < 6; ++i) EXPECT_EQ(pk[i], 0);
  EXPECT_NEAR(pk[0] + pk[1], 1.0, 1e-6);
  Sampler p({1.0f, 0, 0.5f, 1});
  auto pp = p.distribution(logits);
  EXPECT_NEAR(pp[0], 1.0, 1e-6);  // softmax(5..0)[0] ≈ 0.64 ≥ 0.5 alone
  // Empirical frequencies follow the distribution (chi-square style bound, fixed seed).
  Sampler s({1.0f, 0, 1.0f, 7});
  auto q = s.distribution(logits);
  std::vector<int> counts(6, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) counts[s.sample(logits)]++;
  for (int i = 0; i < 6; ++i) {
    const double sd = std::sqrt(n * q[i] * (1 - q[i]));
    EXPECT_NEAR(counts[i], n * q[i], 5 * sd + 1) << "token " << i;
  }
}

// The filtered distribution by the definition: sort the whole vocabulary (ties by id), keep the
// top k, then the shortest prefix holding top_p, renormalise.
std::vector<float> filtered_by_full_sort(std::span<const float> logits, const SamplingParams& sp) {
  std::vector<float> p = softmax(logits, sp.temperature);
  std::vector<int32_t> idx(p.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(),
            [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  size_t keep = sp.top_k > 0 ? std::min(p.size(), size_t(sp.top_k)) : p.size();
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += p[idx[i]];
    if (cum >= sp.top_p) {
      keep = i + 1;
      break;
    }
  }
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += p[idx[i]];
  std::vector<float> q(p.size(), 0.0f);
  for (size_t i = 0; i < keep; ++i) q[idx[i]] = float(p[idx[i]] / sum);
  return q;
}

// Top-p orders only a widening prefix of the vocabulary; the result must be the full sort's,
// whether the mass sits in a few tokens, is spread over thousands (several widenings), or ties.
TEST(Sampler, TopPMatchesAFullSortOnLargeVocabularies) {
  std::mt19937 rng(20261207);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  for (float spread : {6.0f, 1.0f, 0.05f}) {
    for (float top_p : {0.5f, 0.9f, 0.95f, 0.999f}) {
      for (int top_k : {0, 40, 3000}) {
        std::vector<float> logits(20000);
        for (float& x : logits) x = std::round(gauss(rng) * spread * 8) / 8;  // many ties
        const SamplingParams sp{0.8f, top_k, top_p, 1};
        const std::vector<float> want = filtered_by_full_sort(logits, sp);
        const std::vector<float> got = Sampler(sp).distribution(logits);
        size_t kept = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          ASSERT_EQ(got[i] > 0, want[i] > 0)
              << "token " << i << " spread " << spread << " top_p " << top_p << " top_k " << top_k;
          ASSERT_NEAR(got[i], want[i], 1e-6f);
          kept += want[i] > 0;
        }
        if (spread == 0.05f && top_k == 0) {
          EXPECT_GT(kept, 256u * 4);  // widened at least twice
        }
      }
    }
  }
}

TEST(ModelLoad, Errors) {
  auto missing = Model::load("/no/such/model.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/no/such/model.gguf"), std::string::npos);

  const std::string text = temp_path("text.gguf");
  std::ofstream(text) << "hello";
  auto not_gguf = Model::load(text);
  ASSERT_FALSE(not_gguf.ok());
  EXPECT_NE(not_gguf.error().message.find("not a GGUF file"), std::string::npos);

  const std::string good = temp_path("good.gguf");
  ASSERT_TRUE(write_tiny_model(good, {}).ok());
  std::ifstream in(good, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  const std::string cut = temp_path("cut.gguf");
  std::ofstream(cut, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size() / 2));
  auto truncated = Model::load(cut);
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.error().message.find("truncated"), std::string::npos);
  EXPECT_NE(truncated.error().message.find(cut), std::string::npos);
}

// A shortlist head that does not fit its file is refused, naming the key or tensor.
TEST(ModelLoad, ShortlistHeadErrorsNamed) {
  const std::string src = temp_path("shortlist_src.gguf");
  ASSERT_TRUE(write_tiny_model(src, {}).ok());
  auto bad_ids = write_shortlisted_model(src, temp_path("shortlist_bad.gguf"), {5, 3});
  ASSERT_FALSE(bad_ids.ok());
  EXPECT_NE(bad_ids.error().message.find("strictly increasing"), std::string::npos);

  const std::string good = temp_path("shortlist_good.gguf");
  ASSERT_TRUE(write_shortlisted_model(src, good, {2, 4, 6, 8}).ok());
  auto base = GgufFile::open(good);
  ASSERT_TRUE(base.ok());
  // (the ids written, what the loader must say)
  const std::pair<std::vector<int32_t>, std::string> cases[] = {
      {{2, 4, 4, 8}, "strictly increasing"},     // a repeated id
      {{2, 4, 6, 1 << 20}, "[3] is 1048576"},    // out of the vocabulary
      {{2, 4, 6}, "'output.weight' has shape"},  // fewer ids than rows
  };
  for (const auto& [ids, what] : cases) {
    GgufWriter w;
    w.copy_metadata(*base);
    w.set_i32s(kOutputTokenIdsKey, ids);
    for (const auto& t : base->tensors()) w.add_tensor(t.name, t.type, t.shape, t.data, t.n_bytes);
    const std::string p = temp_path("shortlist_case.gguf");
    ASSERT_TRUE(w.write(p).ok());
    auto m = Model::load(p);
    ASSERT_FALSE(m.ok()) << what;
    EXPECT_NE(m.error().message.find(what), std::string::npos) << m.error().message;
    EXPECT_NE(m.error().message.find(p), std::string::npos) << m.error().message;
  }
  auto twice = write_shortlisted_model(good, temp_path("shortlist_twice.gguf"), {1, 2});
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.error().message.find("already has a shortlist"), std::string::npos);
}

TEST(ModelLoad, UnsupportedArchitectureNamed) {
  auto base = GgufFile::open([] {
    const std::string p = temp_path("arch_base.gguf");
    EXPECT_TRUE(write_tiny_model(p, {}).ok());
    return p;
  }());
  ASSERT_TRUE(base.ok());
  GgufWriter w;
  w.copy_metadata(*base);
  w.set_string("general.architecture", "gpt2");
  for (const auto& t : base->tensors()) w.add_tensor(t.name, t.type, t.shape, t.data, t.n_bytes);
  const std::string p = temp_path("gpt2.gguf");
  ASSERT_TRUE(w.write(p).ok());
  auto m = Model::load(p);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("'gpt2'"), std::string::npos) << m.error().message;
  EXPECT_NE(m.error().message.find(kSupportedArchitectures), std::string::npos)
      << m.error().message;
}

TEST(ModelLoad, WithoutWeightsKeepsTheVocabularyOnly) {
  auto whole = tiny();
  ASSERT_TRUE(whole);
  auto vocab = Model::load(whole->path(), Model::Weights::kSkip);
  ASSERT_TRUE(vocab.ok()) << vocab.error().message;
  EXPECT_TRUE(whole->has_weights());
  EXPECT_FALSE((*vocab)->has_weights());
  EXPECT_EQ((*vocab)->config().n_vocab, whole->config().n_vocab);
  EXPECT_EQ((*vocab)->tokenizer().fingerprint(), whole->tokenizer().fingerprint());
  EXPECT_EQ((*vocab)->tokenizer().encode("a tiny vocabulary", false, false),
            whole->tokenizer().encode("a tiny vocabulary", false, false));
}

TEST(ModelLoad, UnsupportedTensorTypeNamed) {
  // A Q2_K weight: the file parses, but the model refuses it, naming tensor and type.
  auto base = GgufFile::open([] {
    const std::string p = temp_path("base.gguf");
    EXPECT_TRUE(write_tiny_model(p, {}).ok());
    return p;
  }());
  ASSERT_TRUE(base.ok());
  GgufWriter w;
  w.copy_metadata(*base);
  for (const auto& t : base->tensors()) {
    if (t.name == "blk.1.ffn_up.weight") {
      std::vector<uint8_t> q2(row_bytes(TensorType::Q2_K, 256) * (t.n_elements() / 256));
      // Q2_K blocks cover 256 elements: reshape the row length accordingly is not possible
      // for 64-wide rows, so keep the tensor's element count with a 256-wide shape.
      w.add_tensor(t.name, TensorType::Q2_K, {256, t.n_elements() / 256}, q2.data(), q2.size());
    } else {
      w.add_tensor(t.name, t.type, t.shape, t.data, t.n_bytes);
    }
  }
  const std::string p = temp_path("q2k.gguf");
  ASSERT_TRUE(w.write(p).ok());
  auto m = Model::load(p);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("blk.1.ffn_up.weight"), std::string::npos) << m.error().message;
}

}  // namespace
}  // namespace hlm
