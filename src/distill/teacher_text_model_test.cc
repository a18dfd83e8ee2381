// teacher_text on the real teacher (label model: skipped when llm is not cached).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "distill/teacher_text.h"
#include "engine/model.h"
#include "models/registry.h"
#include "ops/quant_formats.h"
#include "tokenizer/tokenizer.h"
#include "util/thread_pool.h"

namespace hlm {
namespace {

std::shared_ptr<const Model> teacher() {
  static std::shared_ptr<const Model> m = [] {
    auto path = resolve_model("llm");
    if (!path) return std::shared_ptr<const Model>();
    auto loaded = Model::load(*path);
    return loaded ? *loaded : std::shared_ptr<const Model>();
  }();
  return m;
}

TeacherTextOptions small() {
  TeacherTextOptions o;
  o.max_user = 48;
  o.max_new = 12;
  o.top = 16;
  o.seed = 7;
  return o;
}

struct Written {
  std::vector<TeacherSequence> seqs;  // in the order they finished
  int64_t dropped = 0;
  std::vector<int64_t> dropped_ids;
};

Written write(const std::vector<int64_t>& ids, int slots, TeacherTextOptions o = small()) {
  ThreadPool pool(2);
  Context ctx(teacher(), slots, teacher_text_ctx(teacher()->tokenizer(), o), pool);
  Written w;
  auto r = teacher_text(
      ctx, ids, o,
      [&](TeacherSequence&& s) {
        w.seqs.push_back(std::move(s));
        return ok_status();
      },
      [&](int64_t id) {
        w.dropped_ids.push_back(id);
        return ok_status();
      });
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (r) w.dropped = *r;
  return w;
}

TEST(TeacherTextModel, SequencesAreChatTurnsWithARowPerPosition) {
  if (!teacher()) GTEST_SKIP() << "llm is not cached (hlm models fetch llm)";
  const Tokenizer& tok = teacher()->tokenizer();
  const auto seqs = write({0, 1, 2, 3, 4, 5}, 6).seqs;
  ASSERT_GE(seqs.size(), 3u) << "most questions end within 48 tokens";
  const int32_t im_end = tok.find_token("<|im_end|>");
  for (const auto& s : seqs) {
    const size_t n = s.tokens.size();
    const std::string text = tok.decode(s.tokens, /*special=*/true);
    EXPECT_EQ(text.rfind("<|im_start|>system\n", 0), 0u) << text;
    EXPECT_NE(text.find("<|im_end|>\n<|im_start|>assistant\n"), std::string::npos) << text;
    EXPECT_EQ(s.tokens[size_t(s.n_prompt) - 1], tok.encode("user\n", false, true).back());
    const size_t answer = n -
                          size_t(std::find(s.tokens.begin() + s.n_prompt, s.tokens.end(), im_end) -
                                 s.tokens.begin()) -
                          1;
    EXPECT_LE(answer, 12u + 5u)
        << "the assistant header (a few tokens) and at most 12 answer tokens";
    ASSERT_EQ(s.lse.size(), n);
    ASSERT_EQ(s.top_ids.size(), n * 16);
    ASSERT_EQ(s.top_logits.size(), n * 16);
    for (size_t p = 0; p < n; ++p) {
      const float first = ops::fmt::f16_to_f32(s.top_logits[p * 16]);
      for (int k = 1; k < 16; ++k)
        EXPECT_LE(ops::fmt::f16_to_f32(s.top_logits[p * 16 + size_t(k)]), first);
      // fp16 keeps 11 significant bits: the kept logit is within 1/2048 of the true one.
      EXPECT_GT(s.lse[p], first - std::abs(first) / 1024)
          << "log-sum-exp is at least the largest logit";
    }
  }
}

// The rows kept while decoding are the teacher's predictions for the finished text, as a
// single prefill of it gives them.
TEST(TeacherTextModel, RowsMatchAPrefillOfTheWrittenText) {
  if (!teacher()) GTEST_SKIP() << "llm is not cached (hlm models fetch llm)";
  const auto seqs = write({10, 11}, 2).seqs;
  ASSERT_FALSE(seqs.empty());
  const TeacherSequence& s = seqs.front();
  ThreadPool pool(2);
  Context ctx(teacher(), 1, int(s.tokens.size()) + 1, pool);
  SeqInput in;
  in.tokens = s.tokens;
  in.logits_at.resize(s.tokens.size());
  std::iota(in.logits_at.begin(), in.logits_at.end(), 0);
  auto out = ctx.eval(std::span(&in, 1));
  ASSERT_TRUE(out.ok()) << out.error().message;
  const size_t V = size_t(teacher()->config().n_vocab);
  int same_top1 = 0;
  double max_lse = 0;
  for (size_t p = 0; p < s.tokens.size(); ++p) {
    auto row = (*out)[0].logits.subspan(p * V, V);
    const auto best = std::max_element(row.begin(), row.end()) - row.begin();
    same_top1 += best == s.top_ids[p * 16];
    double mx = *std::max_element(row.begin(), row.end()), sum = 0;
    for (float x : row) sum += std::exp(x - mx);
    max_lse = std::max(max_lse, std::abs(mx + std::log(sum) - s.lse[p]));
  }
  EXPECT_GE(same_top1, int(s.tokens.size()) - 1) << "at most one near-tie flips";
  EXPECT_LT(max_lse, 0.05) << "incremental and batched forwards agree to rounding";
}

// Text kept as tokens only gets its rows back from teacher_score: the same ids, n_prompt and
// tokens, the same top-1 and log-sum-exp up to rounding, each id once.
TEST(TeacherTextModel, ScoringTheTokensGivesTheRowsBack) {
  if (!teacher()) GTEST_SKIP() << "llm is not cached (hlm models fetch llm)";
  const auto written = write({40, 41, 42, 43}, 4).seqs;
  ASSERT_GE(written.size(), 2u);
  std::vector<TeacherSequence> bare;
  size_t longest = 0;
  for (const auto& s : written) {
    TeacherSequence b;
    b.id = s.id;
    b.n_prompt = s.n_prompt;
    b.tokens = s.tokens;
    bare.push_back(std::move(b));
    longest = std::max(longest, s.tokens.size());
  }
  ThreadPool pool(2);
  Context ctx(teacher(), 2, int(longest) + 1, pool);  // fewer slots than sequences
  std::vector<TeacherSequence> scored;
  auto st = teacher_score(ctx, bare, 16, [&](TeacherSequence&& s) {
    scored.push_back(std::move(s));
    return ok_status();
  });
  ASSERT_TRUE(st.ok()) << st.error().message;
  ASSERT_EQ(scored.size(), written.size());
  for (const auto& w : written) {
    auto it = std::find_if(scored.begin(), scored.end(),
                           [&](const TeacherSequence& s) { return s.id == w.id; });
    ASSERT_NE(it, scored.end()) << "sequence " << w.id << " not scored";
    EXPECT_EQ(it->tokens, w.tokens);
    EXPECT_EQ(it->n_prompt, w.n_prompt);
    ASSERT_EQ(it->lse.size(), w.lse.size());
    ASSERT_EQ(it->top_ids.size(), w.top_ids.size());
    int same_top1 = 0;
    float max_lse = 0;
    for (size_t p = 0; p < w.lse.size(); ++p) {
      same_top1 += it->top_ids[p * 16] == w.top_ids[p * 16];
      max_lse = std::max(max_lse, std::abs(it->lse[p] - w.lse[p]));
    }
    EXPECT_GE(same_top1, int(w.lse.size()) - 1) << "at most one near-tie flips";
    EXPECT_LT(max_lse, 0.05f) << "incremental and batched forwards agree to rounding";
  }

  // A sequence longer than the context, or a token outside the vocabulary, is refused by id.
  Context small_ctx(teacher(), 1, 8, pool);
  auto too_long =
      teacher_score(small_ctx, {bare.front()}, 16, [](TeacherSequence&&) { return ok_status(); });
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.error().message.find("sequence " + std::to_string(bare.front().id)),
            std::string::npos)
      << too_long.error().message;
  TeacherSequence bad = bare.front();
  bad.tokens[1] = teacher()->config().n_vocab;
  auto out_of_vocab = teacher_score(ctx, {bad}, 16, [](TeacherSequence&&) { return ok_status(); });
  ASSERT_FALSE(out_of_vocab.ok());
  EXPECT_NE(out_of_vocab.error().message.find("vocabulary"), std::string::npos)
      << out_of_vocab.error().message;
}

TEST(TeacherTextModel, SameIdsAndSeedGiveTheSameText) {
  if (!teacher()) GTEST_SKIP() << "llm is not cached (hlm models fetch llm)";
  const auto a = write({20, 21}, 2).seqs, b = write({20, 21}, 2).seqs;
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    EXPECT_EQ(a[i].tokens, b[i].tokens);
  }
}

// Given questions: sequence i asks question i mod N, in the same chat turns a drawn one has, and
// the answers to one question differ (each id has its own answer seed); a question over max_user
// tokens is dropped and named.
TEST(TeacherTextModel, GivenQuestionsAreAskedInTurnAndAnsweredAgain) {
  if (!teacher()) GTEST_SKIP() << "llm is not cached (hlm models fetch llm)";
  const Tokenizer& tok = teacher()->tokenizer();
  TeacherTextOptions o = small();
  o.max_new = 24;
  std::string long_one;  // about 90 tokens, over max_user 48
  for (int i = 0; i < 10; ++i) long_one += "Tell me more about apples and pears. ";
  o.questions = {"What is the capital of France?", "Name three primary colours.", long_one};
  const std::vector<int64_t> ids = {0, 1, 2, 3, 4, 5};
  const Written w = write(ids, 4, o);
  EXPECT_EQ(w.dropped, 2);
  std::vector<int64_t> dropped = w.dropped_ids;
  std::sort(dropped.begin(), dropped.end());
  EXPECT_EQ(dropped, (std::vector<int64_t>{2, 5})) << "the long question, both times";
  ASSERT_EQ(w.seqs.size(), 4u);
  std::map<int64_t, std::string> answer;
  for (const auto& s : w.seqs) {
    const std::string text = tok.decode(s.tokens, /*special=*/true);
    const std::string asked = "<|im_start|>user\n" + o.questions[size_t(s.id) % 3] +
                              "<|im_end|>\n<|im_start|>assistant\n";
    const size_t at = text.find(asked);
    ASSERT_NE(at, std::string::npos) << text;
    EXPECT_EQ(text.rfind("<|im_start|>system\n", 0), 0u) << text;
    EXPECT_EQ(s.tokens[size_t(s.n_prompt) - 1], tok.encode("user\n", false, true).back());
    ASSERT_EQ(s.lse.size(), s.tokens.size());
    answer[s.id] = text.substr(at + asked.size());
    EXPECT_FALSE(answer[s.id].empty());
  }
  EXPECT_NE(answer[0], answer[3]) << "two answers to the first question, with their own seeds";
  EXPECT_NE(answer[1], answer[4]);
}

// Fewer slots than ids: a slot that finishes takes the next id, and every id ends exactly once,
// written or dropped (and a dropped one is named, so a resumed run can skip it); an error from
// the callback stops the work and comes back.
TEST(TeacherTextModel, SlotsTakeTheNextIdAndEveryIdEndsOnce) {
  if (!teacher()) GTEST_SKIP() << "llm is not cached (hlm models fetch llm)";
  const std::vector<int64_t> ids = {30, 31, 32, 33, 34, 35, 36};
  // A user turn must end at exactly 4 tokens to be kept under max_user 4: most are dropped.
  TeacherTextOptions tight = small();
  tight.max_user = 4;
  for (const TeacherTextOptions& o : {small(), tight}) {
    const Written w = write(ids, 3, o);
    std::vector<int64_t> got;
    for (const auto& s : w.seqs) got.push_back(s.id);
    EXPECT_EQ(int64_t(w.dropped_ids.size()), w.dropped);
    got.insert(got.end(), w.dropped_ids.begin(), w.dropped_ids.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, ids) << "every id is written or dropped, exactly once";
    if (o.max_user == 4) EXPECT_GE(w.dropped, 4) << "most 4-token user turns are dropped";
  }

  ThreadPool pool(2);
  Context ctx(teacher(), 3, teacher_text_ctx(teacher()->tokenizer(), small()), pool);
  int calls = 0;
  auto r = teacher_text(ctx, ids, small(), [&](TeacherSequence&&) -> Status {
    ++calls;
    return make_error("disk full");
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "disk full");
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace hlm
