// Protocol conversion without a network: round trips, and every refusal naming its field.
#include <gtest/gtest.h>

#include <cmath>

#include "protocol/convert.h"

namespace hlm::protocol {
namespace {

const Limits kLimits{300, 64, 4};

std::vector<float> peaked(int V, int top) {
  std::vector<float> p(size_t(V), 0.5f / float(V - 1));
  p[size_t(top)] = 0.5f;
  return p;
}

SessionParams params() {
  SessionParams p;
  p.vocab_fingerprint = 0xabcdef;
  p.n_vocab = 300;
  p.sampling = {0.7f, 10, 0.9f, 99};
  p.encoding = Encoding::kTopK;
  p.prompt = {1, 2, 299};
  return p;
}

void expect_error(const Status& st, std::string_view needle) {
  ASSERT_FALSE(st.ok()) << "expected an error mentioning " << needle;
  EXPECT_NE(st.error().message.find(needle), std::string::npos) << st.error().message;
}
template <class T>
void expect_error(const Result<T>& r, std::string_view needle) {
  ASSERT_FALSE(r.ok()) << "expected an error mentioning " << needle;
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

TEST(ProtocolOpen, RoundTrip) {
  v1::OpenRequest m;
  to_proto(params(), &m);
  EXPECT_EQ(m.protocol_version(), kProtocolVersion);
  EXPECT_TRUE(check_compatible(m, 0xabcdef, 300, "m").ok());
  auto p = from_proto(m, kLimits);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->prompt, params().prompt);
  EXPECT_EQ(p->encoding, Encoding::kTopK);
  EXPECT_EQ(p->sampling.top_k, 10);
  EXPECT_FLOAT_EQ(p->sampling.top_p, 0.9f);
  EXPECT_EQ(p->sampling.seed, 99u);
}

TEST(ProtocolOpen, RefusesOtherVersionsAndVocabularies) {
  v1::OpenRequest m;
  to_proto(params(), &m);
  m.set_protocol_version(2);
  expect_error(check_compatible(m, 0xabcdef, 300, "m"), "protocol version");
  to_proto(params(), &m);
  expect_error(check_compatible(m, 0x1234, 300, "cloud.gguf"), "vocabulary mismatch");
  expect_error(check_compatible(m, 0xabcdef, 301, "cloud.gguf"), "vocabulary mismatch");
}

TEST(ProtocolOpen, ChecksEveryField) {
  auto with = [](auto edit) {
    v1::OpenRequest m;
    to_proto(params(), &m);
    edit(m);
    return from_proto(m, kLimits);
  };
  expect_error(with([](auto& m) { m.clear_prompt(); }), "OpenRequest.prompt");
  expect_error(with([](auto& m) { m.set_prompt(1, 300); }), "OpenRequest.prompt[1]");
  expect_error(with([](auto& m) { m.set_prompt(0, -1); }), "OpenRequest.prompt[0]");
  expect_error(with([](auto& m) {
                 for (int i = 0; i < 70; ++i) m.add_prompt(1);
               }),
               "do not fit");
  expect_error(with([](auto& m) { m.mutable_sampling()->set_temperature(-1); }), "temperature");
  expect_error(with([](auto& m) { m.mutable_sampling()->set_temperature(NAN); }), "temperature");
  expect_error(with([](auto& m) { m.mutable_sampling()->set_top_p(0); }), "top_p");
  expect_error(with([](auto& m) { m.mutable_sampling()->set_top_p(1.5f); }), "top_p");
  expect_error(with([](auto& m) { m.mutable_sampling()->set_top_k(-3); }), "top_k");
  expect_error(with([](auto& m) { m.set_encoding(static_cast<v1::Encoding>(9)); }), "encoding");
  expect_error(with([](auto& m) { m.set_n_vocab(100); }), "n_vocab");
}

VerifyRequest request(Encoding e, int drafts = 1) {
  VerifyRequest r;
  r.session = 7;
  r.pending = {5, 6, 7};
  for (int i = 0; i < drafts; ++i) {
    r.drafts.push_back(10 + i);
    if (e != Encoding::kIds) {
      EncodingConfig cfg{e, 8, 8};
      r.p_hat.push_back(encode(peaked(300, 10 + i), cfg));
    }
  }
  return r;
}

TEST(ProtocolVerify, RoundTripInEveryEncoding) {
  for (Encoding e : {Encoding::kFull, Encoding::kTopK, Encoding::kIds}) {
    const VerifyRequest r = request(e, 3);
    v1::VerifyRequest m;
    to_proto(r, 4, &m);
    EXPECT_EQ(m.step(), 4u);
    auto back = from_proto(m, kLimits, e);
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(back->pending, r.pending);
    EXPECT_EQ(back->drafts, r.drafts);
    ASSERT_EQ(back->p_hat.size(), r.p_hat.size());
    for (size_t i = 0; i < r.p_hat.size(); ++i)
      EXPECT_EQ(decode(back->p_hat[i]), decode(r.p_hat[i]));
    EXPECT_FALSE(back->epoch) << "no epoch: the device waits for every reply";
  }
  // A pipelining device's epoch travels as set, 0 included.
  for (uint64_t epoch : {0u, 7u}) {
    VerifyRequest r = request(Encoding::kFull, 1);
    r.epoch = epoch;
    v1::VerifyRequest m;
    to_proto(r, 0, &m);
    auto back = from_proto(m, kLimits, Encoding::kFull);
    ASSERT_TRUE(back.ok()) << back.error().message;
    ASSERT_TRUE(back->epoch);
    EXPECT_EQ(*back->epoch, epoch);
  }
}

TEST(ProtocolVerify, ChecksCountsIdsAndPayloads) {
  auto with = [](Encoding e, auto edit) {
    v1::VerifyRequest m;
    to_proto(request(e), 0, &m);
    edit(m);
    return from_proto(m, kLimits, e);
  };
  const Encoding F = Encoding::kFull, K = Encoding::kTopK, I = Encoding::kIds;
  expect_error(with(F, [](auto& m) { m.set_pending(2, 300); }), "VerifyRequest.pending[2]");
  expect_error(with(F, [](auto& m) { m.set_drafts(0, -5); }), "VerifyRequest.drafts[0]");
  expect_error(with(F,
                    [](auto& m) {
                      for (int i = 0; i < 70; ++i) m.add_pending(1);
                    }),
               "VerifyRequest.pending");
  expect_error(with(F,
                    [](auto& m) {
                      for (int i = 0; i < 4; ++i) m.add_drafts(1);
                    }),
               "VerifyRequest.drafts");
  expect_error(with(F, [](auto& m) { m.clear_p_hat(); }), "VerifyRequest.p_hat");
  expect_error(with(I, [](auto& m) { m.add_p_hat("x"); }), "VerifyRequest.p_hat");
  expect_error(with(F, [](auto& m) { m.set_p_hat(0, "garbage"); }), "VerifyRequest.p_hat[0]");
  expect_error(with(F, [](auto& m) { m.set_p_hat(0, std::string(5000, '\0')); }),
               "VerifyRequest.p_hat[0]");
  expect_error(with(F, [](auto& m) { m.mutable_p_hat(0)->push_back('\0'); }), "oversized");
  expect_error(with(F, [](auto& m) { m.mutable_p_hat(0)->pop_back(); }), "truncated");
  // A topk payload in a session opened for full.
  {
    v1::VerifyRequest m;
    to_proto(request(K), 0, &m);
    expect_error(from_proto(m, kLimits, F), "session was opened with full");
  }
  expect_error(with(F,
                    [](auto& m) {
                      m.clear_drafts();
                      m.clear_p_hat();
                      m.set_want_bonus(true);
                    }),
               "want_bonus");
}

TEST(ProtocolVerify, PayloadForAnotherVocabularyIsRefused) {
  v1::VerifyRequest m;
  VerifyRequest r = request(Encoding::kFull);
  r.p_hat = {encode(peaked(200, 3), EncodingConfig{})};
  to_proto(r, 0, &m);
  expect_error(from_proto(m, kLimits, Encoding::kFull), "vocabulary");
}

TEST(ProtocolReply, ChecksCountsAndTokens) {
  VerifyReply ok{1, true, 42, 0.01};
  v1::VerifyReply m;
  to_proto(ok, &m);
  auto r = from_proto(m, 2, 300, false);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->next, 42);
  EXPECT_EQ(r->n_accepted, 1);
  expect_error(from_proto(m, 0, 300, false), "n_accepted");
  m.set_next(300);
  expect_error(from_proto(m, 2, 300, false), "VerifyReply.next");
  to_proto(VerifyReply{0, false, -1, 0}, &m);
  expect_error(from_proto(m, 1, 300, false), "has_next");  // a rejection brings a token
  expect_error(from_proto(m, 0, 300, false), "has_next");  // generation brings a token
  to_proto(VerifyReply{1, false, -1, 0}, &m);
  EXPECT_TRUE(from_proto(m, 1, 300, false).ok());
  expect_error(from_proto(m, 1, 300, true), "has_next");  // a bonus was asked for
  to_proto(VerifyReply{1, true, 3, -1}, &m);
  expect_error(from_proto(m, 1, 300, true), "t_llm");
  // A stale reply carries no verdict, and one that does is refused.
  VerifyReply stale;
  stale.stale = true;
  to_proto(stale, &m);
  auto s = from_proto(m, 1, 300, false);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_TRUE(s->stale);
  m.set_has_next(true);
  m.set_next(5);
  expect_error(from_proto(m, 1, 300, false), "VerifyReply.stale");
}

TEST(ProtocolGenerate, RoundTripAndEveryFieldChecked) {
  GenerateRequest g;
  g.session = params();
  g.max_tokens = 61;  // 64 − a prompt of 3
  g.stop_at_eog = false;
  v1::GenerateRequest m;
  to_proto(g, &m);
  EXPECT_TRUE(m.ignore_eos());
  auto back = from_proto(m, kLimits);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->session.prompt, g.session.prompt);
  EXPECT_EQ(back->session.sampling.seed, 99u);
  EXPECT_EQ(back->max_tokens, 61);
  EXPECT_FALSE(back->stop_at_eog);
  m.set_max_tokens(62);
  expect_error(from_proto(m, kLimits), "GenerateRequest.max_tokens: 62 outside [1, 61]");
  m.set_max_tokens(-1);
  expect_error(from_proto(m, kLimits), "GenerateRequest.max_tokens: -1");
  m.set_max_tokens(8);
  m.mutable_session()->mutable_sampling()->set_temperature(NAN);
  expect_error(from_proto(m, kLimits), "GenerateRequest.session: OpenRequest.sampling.temperature");
  m.clear_session();
  expect_error(from_proto(m, kLimits), "GenerateRequest.session: missing");

  v1::GenerateChunk c;
  c.set_token(299);
  c.set_t_llm_s(0.004);
  auto t = from_proto(c, 300);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->token, 299);
  EXPECT_DOUBLE_EQ(t->t_llm_s, 0.004);
  c.set_token(300);
  expect_error(from_proto(c, 300), "GenerateChunk.token: token id 300 outside");
  c.set_token(-1);
  expect_error(from_proto(c, 300), "GenerateChunk.token");
  c.set_token(5);
  c.set_t_llm_s(-1);
  expect_error(from_proto(c, 300), "GenerateChunk.t_llm_s");
}

TEST(ProtocolLimits, MessageBoundCoversTheLargestLegalRequest) {
  const Limits big{49152, 2048, 16};
  VerifyRequest r;
  r.pending.assign(2000, 49151);
  for (int i = 0; i < 16; ++i) {
    r.drafts.push_back(49151);
    r.p_hat.push_back(encode(peaked(49152, i), EncodingConfig{}));
  }
  v1::VerifyRequest m;
  to_proto(r, 123456789, &m);
  EXPECT_LE(m.ByteSizeLong(), max_verify_request_bytes(big));
  EXPECT_GE(max_payload_bytes(49152), serialize(r.p_hat[0]).size());
  EncodingConfig worst{Encoding::kTopK, 49152, 24};
  EXPECT_GE(max_payload_bytes(300), serialize(encode(peaked(300, 1), worst)).size());
}

}  // namespace
}  // namespace hlm::protocol
