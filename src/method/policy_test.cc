// Tests for policies: parsing (positional and keyed), validation errors and upload decisions.
#include "method/policy.h"

#include <gtest/gtest.h>

namespace hlm {
namespace {

TEST(Policy, ParseNamesAndDefaults) {
  for (auto [text, kind] : {std::pair{"slm", PolicyKind::kSlm},
                            {"llm", PolicyKind::kLlm},
                            {"hlm", PolicyKind::kHlm},
                            {"rand", PolicyKind::kRand},
                            {"uhlm", PolicyKind::kUhlm},
                            {"iuhlm", PolicyKind::kIuhlm},
                            {"spec", PolicyKind::kSpec}}) {
    auto p = parse_policy(text);
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_EQ(p->kind, kind);
  }
  auto p = parse_policy("iuhlm");
  ASSERT_TRUE(p.ok());
  EXPECT_FLOAT_EQ(p->u_th, 0.06f / 0.82f);
  EXPECT_FLOAT_EQ(p->u_hi, 1.0f);
  EXPECT_EQ(p->importance.estimator, ImportanceEstimator::kEntropy);
  EXPECT_FLOAT_EQ(p->importance.lambda_value(), 0.201f);
  EXPECT_EQ(p->importance.lookahead, 1);
  EXPECT_EQ(p->importance.sinks, 1);
}

TEST(Policy, ParseArguments) {
  auto r = parse_policy("rand(0.3)");
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r->rate, 0.3);
  auto u = parse_policy("uhlm:u_th=0.15");
  ASSERT_TRUE(u.ok());
  EXPECT_FLOAT_EQ(u->u_th, 0.15f);
  auto i = parse_policy("iuhlm(0.1, 0.4, entropy, 0.8)");
  ASSERT_TRUE(i.ok()) << i.error().message;
  EXPECT_FLOAT_EQ(i->u_th, 0.1f);
  EXPECT_FLOAT_EQ(i->importance.lambda_value(), 0.4f);
  EXPECT_EQ(i->importance.estimator, ImportanceEstimator::kEntropy);
  EXPECT_FLOAT_EQ(i->u_hi, 0.8f);
  auto k = parse_policy("iuhlm:est=received,w=2,s=2");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->importance.lookahead, 2);
  EXPECT_EQ(k->importance.sinks, 2);
  EXPECT_FLOAT_EQ(k->importance.lambda_value(), default_lambda(ImportanceEstimator::kReceived));
  auto s = parse_policy("spec(6)");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->draft, 6);
  // Canonical strings parse back to the same configuration.
  for (const char* text : {"rand:r=0.25", "iuhlm:u_th=0.2,lambda=2.5,est=entropy,u_hi=0.9,s=0,w=3",
                           "spec:k=3", "hlm"}) {
    auto a = parse_policy(text);
    ASSERT_TRUE(a.ok()) << text;
    auto b = parse_policy(to_string(*a));
    ASSERT_TRUE(b.ok()) << to_string(*a);
    EXPECT_EQ(to_string(*a), to_string(*b));
  }
}

TEST(Policy, ParseErrors) {
  EXPECT_NE(parse_policy("nope").error().message.find("unknown policy"), std::string::npos);
  EXPECT_NE(parse_policy("uhlm:r=0.3").error().message.find("valid: u_th"), std::string::npos);
  EXPECT_FALSE(parse_policy("rand(1.5)").ok());
  EXPECT_FALSE(parse_policy("rand(abc)").ok());
  EXPECT_FALSE(parse_policy("spec(0)").ok());
  EXPECT_FALSE(parse_policy("spec(1,2)").ok());
  EXPECT_FALSE(parse_policy("iuhlm:est=magic").ok());
  EXPECT_FALSE(parse_policy("iuhlm:w=0").ok());
  EXPECT_FALSE(parse_policy("iuhlm:u_th").ok());
  EXPECT_FALSE(parse_policy("hlm(1)").ok());
}

TEST(Policy, Decisions) {
  dist::Rng rng(1);
  PolicyConfig c;
  const Importance yes{1.0f, 0.5f, true}, no{0.1f, 0.5f, false};
  c.kind = PolicyKind::kSlm;
  EXPECT_FALSE(decide_upload(c, 1.0f, &yes, rng));
  c.kind = PolicyKind::kHlm;
  EXPECT_TRUE(decide_upload(c, 0.0f, &no, rng));
  c.kind = PolicyKind::kUhlm;
  c.u_th = 0.2f;
  EXPECT_FALSE(decide_upload(c, 0.2f, nullptr, rng));
  EXPECT_TRUE(decide_upload(c, 0.25f, nullptr, rng));
  c.kind = PolicyKind::kIuhlm;
  EXPECT_FALSE(decide_upload(c, 0.1f, &yes, rng));
  EXPECT_TRUE(decide_upload(c, 0.5f, &yes, rng));
  EXPECT_FALSE(decide_upload(c, 0.5f, &no, rng));
  EXPECT_TRUE(needs_importance(c, 0.5f));
  EXPECT_FALSE(needs_importance(c, 0.1f));
  c.u_hi = 0.6f;
  EXPECT_TRUE(decide_upload(c, 0.65f, &no, rng));  // the u_hi override
  EXPECT_FALSE(needs_importance(c, 0.65f));
  c.kind = PolicyKind::kRand;
  c.rate = 0.3;
  int ups = 0;
  for (int i = 0; i < 10000; ++i) ups += decide_upload(c, 0.0f, nullptr, rng);
  EXPECT_NEAR(ups / 10000.0, 0.3, 0.02);
  EXPECT_FALSE(is_per_token(PolicyKind::kSpec));
  EXPECT_FALSE(is_per_token(PolicyKind::kLlm));
  EXPECT_TRUE(needs_uncertainty(c) == false);
}

}  // namespace
}  // namespace hlm
