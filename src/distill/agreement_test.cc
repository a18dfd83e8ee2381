// agreement on tiny random models: a model agrees with itself completely; Σ min(p, q) and top-1
// are symmetric in the two models while the perplexities swap; bad sequences are named.
#include "distill/agreement.h"

#include <gtest/gtest.h>

#include "engine/model_writer.h"
#include "util/thread_pool.h"

namespace hlm {
namespace {

std::vector<TeacherSequence> text() {
  std::vector<TeacherSequence> seqs(2);
  seqs[0].id = 0;
  seqs[0].tokens = {1, 270, 275, 265, 100, 101, 277, 69, 70, 271, 3, 200};
  seqs[0].n_prompt = 4;
  seqs[1].id = 1;
  seqs[1].tokens = {1, 100, 120, 140, 160, 180, 200};
  seqs[1].n_prompt = 0;
  return seqs;
}

TEST(Agreement, AModelAgreesWithItself) {
  auto pair = make_tiny_pair(2);
  ASSERT_TRUE(pair.ok()) << pair.error().message;
  ThreadPool pool(2);
  Context a(pair->llm, 1, 64, pool), b(pair->llm, 1, 64, pool);
  auto r = agreement(a, b, text());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->positions, 8 + 6);  // tokens 4..11 of the first, 1..6 of the second
  EXPECT_NEAR(r->accept, 1.0, 1e-9);
  EXPECT_EQ(r->top1, 1.0);
  EXPECT_DOUBLE_EQ(r->ppl_teacher, r->ppl_student);
  EXPECT_GT(r->ppl_teacher, 1.0);
}

TEST(Agreement, SymmetricInTheTwoModels) {
  auto pair = make_tiny_pair(2);
  ASSERT_TRUE(pair.ok()) << pair.error().message;
  ThreadPool pool(2);
  Context llm(pair->llm, 1, 64, pool), slm(pair->slm, 1, 64, pool);
  auto fwd = agreement(llm, slm, text());
  auto back = agreement(slm, llm, text());
  ASSERT_TRUE(fwd.ok() && back.ok());
  EXPECT_GT(fwd->accept, 0.0);
  EXPECT_LT(fwd->accept, 0.999);  // the perturbed copy is a different model
  EXPECT_NEAR(fwd->accept, back->accept, 1e-12);
  EXPECT_DOUBLE_EQ(fwd->top1, back->top1);
  EXPECT_DOUBLE_EQ(fwd->ppl_teacher, back->ppl_student);
  EXPECT_DOUBLE_EQ(fwd->ppl_student, back->ppl_teacher);
}

TEST(Agreement, BadSequencesNamed) {
  auto pair = make_tiny_pair(1);
  ASSERT_TRUE(pair.ok()) << pair.error().message;
  ThreadPool pool(1);
  Context a(pair->llm, 1, 8, pool), b(pair->slm, 1, 8, pool);
  std::vector<TeacherSequence> one(1);
  one[0].id = 7;
  one[0].tokens = {1};
  auto short_seq = agreement(a, b, one);
  ASSERT_FALSE(short_seq.ok());
  EXPECT_NE(short_seq.error().message.find("sequence 7"), std::string::npos);
  auto long_seq = agreement(a, b, text());  // 12 tokens in a context of 8
  ASSERT_FALSE(long_seq.ok());
  EXPECT_NE(long_seq.error().message.find("sequence 0: 12 tokens"), std::string::npos)
      << long_seq.error().message;
  one[0].tokens = {1, 2, 3};
  one[0].n_prompt = 3;
  auto prompt_only = agreement(a, b, one);
  ASSERT_FALSE(prompt_only.ok());
  EXPECT_NE(prompt_only.error().message.find("no positions"), std::string::npos);
}

}  // namespace
}  // namespace hlm
