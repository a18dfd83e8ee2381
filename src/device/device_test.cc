// Device loop + in-process cloud verifier on tiny random models (same vocabulary, the SLM a
// perturbed copy of the LLM): policy upload rules from the trace, context synchronisation after
// any mix of skips, uploads and rejections, greedy equivalence with the LLM, and refusals.
#include "device/device.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "cloud/cloud_verifier.h"
#include "cloud/costed_verifier.h"
#include "engine/model_writer.h"
#include "method/stats_testing.h"

namespace hlm {
namespace {

const TinyPair& tiny_pair() {
  static const TinyPair p = make_tiny_pair(3).value();
  return p;
}

const std::vector<int32_t> kPrompt = {1, 270, 275, 265, 100, 101, 277};

RunConfig config(const std::string& policy, float temp = 0.8f, uint64_t seed = 5) {
  RunConfig c;
  c.policy = parse_policy(policy).value();
  c.sampling.temperature = temp;
  c.sampling.seed = seed;
  c.max_tokens = 40;
  c.n_ctx = 128;
  return c;
}

struct Outcome {
  RunResult result;
  std::vector<int32_t> cloud_context;
  std::vector<int32_t> pending;
};

Outcome run(const RunConfig& cfg, const TinyPair& pair = tiny_pair()) {
  ThreadPool pool(2);
  CloudVerifier cloud(pair.llm, pool, {4, 256});
  Device dev(pair.slm, pool, cfg);
  auto r = dev.generate(kPrompt, &cloud);
  EXPECT_TRUE(r.ok()) << r.error().message;
  Outcome o{r.ok() ? r.value() : RunResult{}, {}, dev.pending()};
  if (dev.session()) o.cloud_context = cloud.context(dev.session()).value();
  return o;
}

TEST(DevicePolicies, SlmNeverUploadsHlmAlwaysDoes) {
  auto slm = run(config("slm"));
  EXPECT_EQ(slm.result.uploads, 0);
  EXPECT_EQ(slm.result.llm_calls, 0);
  EXPECT_EQ(slm.result.tokens.size(), 40u);
  for (const auto& t : slm.result.trace) EXPECT_FALSE(t.uploaded);
  auto hlm = run(config("hlm"));
  EXPECT_EQ(hlm.result.uploads, int64_t(hlm.result.tokens.size()));
  for (const auto& t : hlm.result.trace) {
    EXPECT_TRUE(t.uploaded);
    EXPECT_EQ(t.accepted, !t.resampled);
    EXPECT_GT(t.ul_bytes, 49152u * 0);  // full upload priced
  }
  EXPECT_GT(hlm.result.resampled, 0) << "a perturbed SLM should be corrected sometimes";
}

TEST(DevicePolicies, UhlmUploadsExactlyTheUncertainTokens) {
  for (float u_th : {0.0f, 0.2f, 0.5f}) {
    auto o = run(config("uhlm(" + std::to_string(u_th) + ")"));
    int64_t expected = 0;
    for (const auto& t : o.result.trace) {
      ASSERT_GE(t.u, 0.0f);
      EXPECT_EQ(t.uploaded, t.u > u_th) << "u=" << t.u << " u_th=" << u_th;
      expected += t.u > u_th;
    }
    EXPECT_EQ(o.result.uploads, expected);
  }
}

TEST(DevicePolicies, IuhlmUploadsUncertainAndImportantTokens) {
  for (const char* est : {"focus", "entropy", "received"}) {
    auto o = run(config(std::string("iuhlm:u_th=0.1,est=") + est));
    for (const auto& t : o.result.trace) {
      if (t.u <= 0.1f) {
        EXPECT_FALSE(t.uploaded);
        continue;
      }
      EXPECT_GE(t.importance, -0.0f) << est;
      // A token with no attention evidence (received: nothing drafted after it) counts as
      // important whatever λ is.
      const bool no_evidence = std::isinf(t.lambda_flip);
      EXPECT_EQ(t.uploaded, t.importance >= t.tau || no_evidence)
          << est << " I=" << t.importance << " tau=" << t.tau;
    }
  }
}

TEST(DevicePolicies, MeasuredSignalsLeaveTheOutputAlone) {
  // `hlm run --trace-signals`: u and the importance on every line of an hlm trace, while the
  // tokens stay those of a plain hlm run (the gate analysis reads the LLM's verdicts from it).
  // received(w) drafts w tokens ahead before each upload, so at T > 0 a replaced draft leaves
  // the random stream elsewhere than plain hlm does (same distribution, other draws): it is
  // compared greedily.
  for (const char* est : {"focus", "entropy", "received"}) {
    const float temp = std::string(est) == "received" ? 0.0f : 0.8f;
    const auto plain = run(config("hlm", temp));
    RunConfig c = config("hlm", temp);
    c.policy.importance.estimator =
        parse_policy(std::string("iuhlm:est=") + est).value().importance.estimator;
    c.measure_uncertainty = c.measure_importance = true;
    const auto o = run(c);
    EXPECT_EQ(o.result.tokens, plain.result.tokens) << est;
    int replaced = 0;
    for (const auto& t : o.result.trace) {
      EXPECT_TRUE(t.uploaded);
      EXPECT_GE(t.u, 0.0f) << est;
      EXPECT_FALSE(std::isnan(t.lambda_flip)) << est << " at " << t.position;
      EXPECT_EQ(t.draft_piece.empty(), !t.resampled) << est << " at " << t.position;
      replaced += t.resampled;
    }
    EXPECT_GT(replaced, 0) << est;
  }
}

TEST(DeviceSync, CloudContextEqualsDeviceContext) {
  for (const char* policy : {"hlm", "uhlm(0.1)", "rand(0.3)", "iuhlm:u_th=0.05,est=focus",
                             "iuhlm:u_th=0.05,est=received,w=2", "spec(3)"}) {
    for (uint64_t seed : {1, 2, 3}) {
      auto o = run(config(policy, 0.9f, seed));
      std::vector<int32_t> cloud = o.cloud_context;
      cloud.insert(cloud.end(), o.pending.begin(), o.pending.end());
      EXPECT_EQ(cloud, o.result.context()) << policy << " seed " << seed;
    }
  }
}

// spec(k) whose last round fits --max-tokens exactly with every draft accepted (a device model
// identical to the cloud's, greedy): no bonus token is asked for, so none is left in the cloud
// that the device dropped.
TEST(DeviceSync, SpecEndsInStepWithTheCloud) {
  static const TinyPair same = make_tiny_pair(2, 0.0f).value();
  for (int max_tokens : {5, 6, 7, 8}) {
    RunConfig c = config("spec(4)", 0.0f);
    c.max_tokens = max_tokens;
    auto o = run(c, same);
    ASSERT_EQ(o.result.tokens.size(), static_cast<size_t>(max_tokens));
    EXPECT_EQ(o.result.accepted, o.result.drafts_sent) << "the models are identical";
    std::vector<int32_t> cloud = o.cloud_context;
    cloud.insert(cloud.end(), o.pending.begin(), o.pending.end());
    EXPECT_EQ(cloud, o.result.context()) << "max_tokens " << max_tokens;
  }
}

TEST(DeviceSync, TopKAndIdsEncodingsStaySynchronised) {
  for (const char* enc : {"topk(8,8)", "topk(8,8,renorm)", "ids"}) {
    RunConfig c = config("uhlm(0.05)");
    c.encoding = parse_encoding(enc).value();
    auto o = run(c);
    std::vector<int32_t> cloud = o.cloud_context;
    cloud.insert(cloud.end(), o.pending.begin(), o.pending.end());
    EXPECT_EQ(cloud, o.result.context()) << enc;
    EXPECT_GT(o.result.uploads, 0);
  }
}

// Greedy LLM decoding with the engine alone.
std::vector<int32_t> llm_greedy(const TinyPair& pair, int n) {
  ThreadPool pool(1);
  Context ctx(pair.llm, 1, 128, pool);
  std::vector<int32_t> out;
  auto z = ctx.eval_last(0, kPrompt);
  for (int i = 0; i < n; ++i) {
    const int32_t t = argmax(*z);
    out.push_back(t);
    if (pair.llm->tokenizer().is_eog(t)) break;
    z = ctx.eval_last(0, std::vector<int32_t>{t});
  }
  return out;
}

TEST(DeviceExactness, GreedyHlmAndSpecEqualLlmGreedy) {
  const auto want = llm_greedy(tiny_pair(), 40);
  for (const char* policy : {"hlm", "spec(4)", "llm"}) {
    auto o = run(config(policy, 0.0f));
    EXPECT_EQ(o.result.tokens, want) << policy;
  }
}

// llm streams: one request takes the prompt up, every token comes down as the cloud produces it,
// the session is gone afterwards, and the ledger bills one round trip in all.
TEST(DeviceLlm, StreamsInOneRequestPricedWithoutARoundTripPerToken) {
  ThreadPool pool(2);
  CloudVerifier cloud(tiny_pair().llm, pool, {4, 256});
  RunConfig cfg = config("llm", 0.9f, 7);
  cfg.channel = parse_channel("lte").value();
  Device dev(tiny_pair().slm, pool, cfg);
  auto r = dev.generate(kPrompt, &cloud);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(cloud.n_sessions(), 0) << "the generation's session is freed when it ends";
  const size_t n = r->tokens.size();
  ASSERT_GT(n, 2u);
  EXPECT_EQ(r->llm_calls, int64_t(n));
  const ChannelConfig& c = cfg.channel;
  const Totals& t = r->totals;
  EXPECT_EQ(t.uplinks, 1);
  EXPECT_EQ(t.ul_bits, 32u * kPrompt.size() + 320);
  EXPECT_EQ(t.dl_bits, n * (32u + 320));
  // The device's clock: the request's transmission, then each token when the cloud has made it
  // and the link has sent the ones before; RTT/2 each way once.
  const double tx = (32.0 * kPrompt.size() + 320) / uplink_rate_bps(c);
  const double rx = (32.0 + 320) / downlink_rate_bps(c);
  double cloud_done = tx + c.rtt_s / 2, link = cloud_done, cloud_s = 0;
  for (const auto& tr : r->trace) {
    EXPECT_TRUE(tr.from_cloud);
    EXPECT_FALSE(tr.uploaded);
    cloud_done += tr.t_llm;
    cloud_s += tr.t_llm;
    link = std::max(cloud_done, link) + rx;
  }
  EXPECT_NEAR(t.latency_s, link + c.rtt_s / 2, 1e-9);
  EXPECT_LT(t.latency_s, 2 * c.rtt_s + cloud_s + double(n) * rx);
  EXPECT_NEAR(t.e_cloud_j, c.p_cloud_w * cloud_s, 1e-9);
  // The same tokens as the cloud's own generation for this seed.
  GenerateRequest g;
  g.session.vocab_fingerprint = tiny_pair().llm->tokenizer().fingerprint();
  g.session.n_vocab = tiny_pair().llm->config().n_vocab;
  g.session.sampling = cfg.sampling;
  g.session.prompt = kPrompt;
  g.max_tokens = cfg.max_tokens;
  std::vector<int32_t> direct;
  ASSERT_TRUE(cloud.generate(g, [&](const GeneratedToken& x) {
    direct.push_back(x.token);
    return true;
  }));
  EXPECT_EQ(direct, r->tokens);
}

TEST(CloudVerifier, GenerateRefusesWhatDoesNotFitAndStopsWhenTheSinkSaysSo) {
  ThreadPool pool(1);
  CloudVerifier cloud(tiny_pair().llm, pool, {2, 64});
  GenerateRequest g;
  g.session.vocab_fingerprint = tiny_pair().llm->tokenizer().fingerprint();
  g.session.n_vocab = tiny_pair().llm->config().n_vocab;
  g.session.prompt = kPrompt;
  const auto none = [](const GeneratedToken&) { return true; };
  g.max_tokens = 0;
  auto st = cloud.generate(g, none);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("max_tokens is 0"), std::string::npos) << st.error().message;
  g.max_tokens = 64;
  st = cloud.generate(g, none);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("at most 57 tokens"), std::string::npos) << st.error().message;
  g.max_tokens = 50;
  g.stop_at_eog = false;
  int got = 0;
  ASSERT_TRUE(cloud.generate(g, [&](const GeneratedToken&) { return ++got < 3; }));
  EXPECT_EQ(got, 3);
  EXPECT_EQ(cloud.n_sessions(), 0);
}

TEST(DeviceAccounting, TotalsAddUp) {
  auto o = run(config("uhlm(0.1)"));
  const Totals& t = o.result.totals;
  EXPECT_EQ(t.tokens, int64_t(o.result.tokens.size()));
  double e = 0;
  uint64_t ul = 0;
  for (const auto& tr : o.result.trace) {
    e += tr.e_device + tr.e_cloud;
    ul += tr.ul_bytes;
  }
  // Per-token records exclude the session-opening step and the prompt prefill.
  EXPECT_LE(e, t.e_total_j() + 1e-9);
  EXPECT_GT(t.latency_s, 0);
  EXPECT_GE(t.ul_bits / 8 + 1, ul);
}

// Modelled compute (cost profiles): the energy and latency follow the lines, not the clock.
CostConfig line_costs() {
  CostConfig c;
  c.device =
      DeviceCost{{2e-3, 1e-3, 1e-6, 1e-8, 0}, CostLine{3e-3, 1e-3}, {1e-5, 1e-6}, {1e-6, 0, 1e-8}};
  c.cloud = CostLine{1e-2, 4e-3, 2e-6};
  c.device_name = "test-device";
  c.cloud_name = "test-cloud";
  return c;
}

TEST(DeviceCost, ModelledFiguresAreTheSameRunAfterRun) {
  for (const char* policy : {"slm", "hlm", "uhlm(0.1)", "iuhlm(0.1)", "spec", "llm"}) {
    RunConfig cfg = config(policy);
    cfg.cost = line_costs();
    const RunResult a = run(cfg).result, b = run(cfg).result;
    ASSERT_EQ(a.tokens, b.tokens) << policy;
    EXPECT_EQ(a.totals.e_device_j, b.totals.e_device_j) << policy;
    EXPECT_EQ(a.totals.e_cloud_j, b.totals.e_cloud_j) << policy;
    EXPECT_EQ(a.totals.latency_s, b.totals.latency_s) << policy;
    EXPECT_EQ(a.t_slm_s, b.t_slm_s) << policy;
    EXPECT_EQ(a.t_filter_s, b.t_filter_s) << policy;
    ASSERT_EQ(a.trace.size(), b.trace.size());
    for (size_t i = 0; i < a.trace.size(); ++i) {
      EXPECT_EQ(a.trace[i].t_llm, b.trace[i].t_llm) << policy << " token " << i;
      EXPECT_EQ(a.trace[i].e_device, b.trace[i].e_device) << policy << " token " << i;
    }
    EXPECT_GT(a.totals.e_total_j(), 0) << policy;
  }
}

TEST(DeviceCost, SlmComputeIsTheForwardLineSummed) {
  // slm: the prompt's forward, then one position per token but the last; no filter, no radio.
  RunConfig cfg = config("slm");
  cfg.cost = line_costs();
  const RunResult r = run(cfg).result;
  const DeviceCost& d = *cfg.cost.device;
  const int64_t n_prompt = int64_t(kPrompt.size());
  double t = d.slm_s(n_prompt, 0, false);
  for (int64_t i = 0; i + 1 < int64_t(r.tokens.size()); ++i) t += d.slm_s(1, n_prompt + i, false);
  EXPECT_NEAR(r.t_slm_s, t, 1e-15);
  EXPECT_EQ(r.t_filter_s, 0.0);
  EXPECT_NEAR(r.totals.e_device_j, cfg.channel.p_comp_w * t, 1e-12);
}

TEST(DeviceCost, HlmCloudComputeIsOneForwardPerUploadPlusTheOpen) {
  // hlm uploads every token with nothing pending: each verification forwards one position.
  RunConfig cfg = config("hlm");
  cfg.cost = line_costs();
  cfg.cost.cloud = CostLine{1e-2};  // a constant 10 ms per forward
  const RunResult r = run(cfg).result;
  EXPECT_NEAR(r.totals.e_cloud_j, cfg.channel.p_cloud_w * 1e-2 * double(1 + r.uploads), 1e-9);
  for (const auto& t : r.trace) EXPECT_EQ(t.t_llm, 1e-2);
}

TEST(CostedVerifier, RepliesShareTheLinesBatchTimeByPositions) {
  // Two sessions verified in one batch: 3 and 1 positions after 7 - 1 cached each.
  ThreadPool pool(1);
  const CostLine line{1e-2, 1e-3, 1e-5, 0, 5e-3};
  auto inner = std::make_unique<CloudVerifier>(tiny_pair().llm, pool, CloudOptions{2, 64});
  CostedVerifier cloud(std::move(inner), line, true);
  SessionParams sp;
  sp.vocab_fingerprint = tiny_pair().llm->tokenizer().fingerprint();
  sp.n_vocab = tiny_pair().llm->config().n_vocab;
  sp.prompt = kPrompt;
  sp.encoding = Encoding::kIds;
  const SessionId a = cloud.open(sp).value(), b = cloud.open(sp).value();
  std::vector<VerifyRequest> reqs(2);
  reqs[0].session = a;
  reqs[0].pending = {270, 271};
  reqs[0].drafts = {272};
  reqs[1].session = b;
  reqs[1].drafts = {272};
  const auto replies = cloud.verify_batch(reqs);
  ASSERT_TRUE(replies[0].ok() && replies[1].ok());
  EXPECT_EQ(replies[0]->positions, 3);
  EXPECT_EQ(replies[1]->positions, 1);
  const int64_t cached = int64_t(kPrompt.size()) - 1;
  EXPECT_EQ(replies[0]->context, cached);
  const double t = line.seconds({4, double(cached), 2});
  EXPECT_DOUBLE_EQ(replies[0]->t_llm_s, t * 3 / 4);
  EXPECT_DOUBLE_EQ(replies[1]->t_llm_s, t * 1 / 4);
  const auto samples = cloud.samples();
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].work.n, 4);
  EXPECT_EQ(samples[0].work.batch, 2);
  EXPECT_EQ(samples[0].work.context, double(cached));
  EXPECT_GT(samples[0].seconds, 0);

  // Without a line the replies keep the backend's measured time.
  auto plain = std::make_unique<CloudVerifier>(tiny_pair().llm, pool, CloudOptions{1, 64});
  CostedVerifier measured(std::move(plain), std::nullopt, false);
  reqs.resize(1);
  reqs[0].session = measured.open(sp).value();
  const auto r = measured.verify_batch(reqs);
  ASSERT_TRUE(r[0].ok());
  EXPECT_NE(r[0]->t_llm_s, line.seconds({3, double(cached), 1}));
  EXPECT_TRUE(measured.samples().empty());
}

TEST(CloudVerifier, RefusesMismatchedVocabularyAndUnknownSessions) {
  ThreadPool pool(1);
  CloudVerifier cloud(tiny_pair().llm, pool, {2, 64});
  SessionParams sp;
  sp.vocab_fingerprint = tiny_pair().llm->tokenizer().fingerprint() ^ 1;
  sp.n_vocab = tiny_pair().llm->config().n_vocab;
  sp.prompt = kPrompt;
  auto bad = cloud.open(sp);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("vocabulary mismatch"), std::string::npos);

  VerifyRequest req;
  req.session = 999;
  req.drafts = {5};
  auto unknown = cloud.verify(req);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("unknown session 999"), std::string::npos);

  sp.vocab_fingerprint ^= 1;
  auto id = cloud.open(sp);
  ASSERT_TRUE(id.ok()) << id.error().message;
  req.session = *id;
  req.drafts = {1 << 20};
  auto oob = cloud.verify(req);
  ASSERT_FALSE(oob.ok());
  EXPECT_NE(oob.error().message.find("out of range"), std::string::npos);
  // The session still works after a bad request.
  req.drafts = {};
  EXPECT_TRUE(cloud.verify(req).ok());
  EXPECT_EQ(cloud.context(*id)->size(), kPrompt.size() + 1);
  // Sessions are bounded.
  ASSERT_TRUE(cloud.open(sp).ok());
  auto third = cloud.open(sp);
  ASSERT_FALSE(third.ok());
  EXPECT_NE(third.error().message.find("max-sessions"), std::string::npos);
  EXPECT_TRUE(cloud.close(*id).ok());
  EXPECT_TRUE(cloud.open(sp).ok());
}

// A greedy session in the ids encoding on the tiny pair's LLM (no p̂ to build).
SessionParams greedy_ids_session(const TinyPair& pair) {
  SessionParams sp;
  sp.vocab_fingerprint = pair.llm->tokenizer().fingerprint();
  sp.n_vocab = pair.llm->config().n_vocab;
  sp.sampling.temperature = 0.0f;
  sp.encoding = Encoding::kIds;
  return sp;
}

TEST(CloudVerifier, BatchedVerificationEqualsOneByOne) {
  ThreadPool pool(2);
  const TinyPair& pair = tiny_pair();
  SessionParams sp = greedy_ids_session(pair);
  CloudVerifier a(pair.llm, pool, {4, 128}), b(pair.llm, pool, {4, 128});
  std::vector<VerifyRequest> reqs;
  for (int s = 0; s < 3; ++s) {
    sp.prompt = {1, 100 + s, 200 + s};
    VerifyRequest r;
    r.session = a.open(sp).value();
    ASSERT_EQ(b.open(sp).value(), r.session);
    r.pending = {50, 60 + s};
    r.drafts = {70, 80};
    r.want_bonus = s == 1;
    reqs.push_back(r);
  }
  auto batched = a.verify_batch(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto one = b.verify(reqs[i]);
    ASSERT_TRUE(batched[i].ok() && one.ok());
    EXPECT_EQ(batched[i]->n_accepted, one->n_accepted);
    EXPECT_EQ(batched[i]->next, one->next);
    EXPECT_EQ(a.context(reqs[i].session).value(), b.context(reqs[i].session).value());
  }
}

// q is needed before each draft and after the last one only for a bonus, so the cloud forwards
// [last] + pending + the drafts but the last (all of them with a bonus); its context still grows
// by exactly what was accepted, and its cache stays what a fresh forward of that context gives.
TEST(CloudVerifier, ForwardsOnlyThePositionsWhoseQueriesAreRead) {
  ThreadPool pool(1);
  const TinyPair& pair = tiny_pair();
  SessionParams sp = greedy_ids_session(pair);
  sp.prompt = kPrompt;
  CloudVerifier cloud(pair.llm, pool, {1, 128});
  const SessionId id = cloud.open(sp).value();
  struct Case {
    std::vector<int32_t> pending, drafts;
    bool bonus;
    uint64_t forwarded;
  };
  const Case cases[] = {
      {{}, {}, false, 1},           {{40, 41}, {}, false, 3},      {{40}, {50}, false, 2},
      {{}, {50, 51, 52}, false, 3}, {{40, 41}, {50, 51}, true, 5}, {{40}, {50, 51, 52}, false, 4}};
  for (const Case& c : cases) {
    const std::vector<int32_t> before = cloud.context(id).value();
    const uint64_t n0 = cloud.n_evaluated();
    VerifyRequest r;
    r.session = id;
    r.pending = c.pending;
    r.drafts = c.drafts;
    r.want_bonus = c.bonus;
    auto reply = cloud.verify(r);
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    EXPECT_EQ(cloud.n_evaluated() - n0, c.forwarded);
    // The context grew by the pending tokens, the accepted drafts and the token that follows.
    const std::vector<int32_t> after = cloud.context(id).value();
    std::vector<int32_t> expect = before;
    expect.insert(expect.end(), c.pending.begin(), c.pending.end());
    expect.insert(expect.end(), c.drafts.begin(), c.drafts.begin() + reply->n_accepted);
    if (reply->has_next) expect.push_back(reply->next);
    EXPECT_EQ(after, expect);
  }
  // Greedy decoding from the resulting context equals the LLM's own greedy continuation of it:
  // the skipped forwards left no stale or missing cache entry.
  const std::vector<int32_t> ctx = cloud.context(id).value();
  Context ref(pair.llm, 1, 128, pool);
  auto logits = ref.eval_last(0, ctx).value();
  VerifyRequest next;
  next.session = id;
  EXPECT_EQ(cloud.verify(next)->next, argmax(logits));
}

}  // namespace
}  // namespace hlm

namespace hlm {
namespace {

// Forwards to a real verifier, but is unreachable for calls [down_from, down_until): the cloud
// "restarts" there (its sessions are lost), as a killed and restarted server would be; a call
// on the lost session afterwards is transient too, as the network client reports NOT_FOUND.
class FlakyVerifier : public Verifier {
 public:
  FlakyVerifier(CloudVerifier& inner, int down_from, int down_until)
      : inner_(inner), from_(down_from), until_(down_until) {}
  Result<SessionId> open(const SessionParams& p) override {
    if (down()) return Error{"connection refused", ErrorCode::kUnavailable};
    return inner_.open(p);
  }
  Result<VerifyReply> verify(const VerifyRequest& r) override {
    if (down()) {
      if (calls_ == from_ + 1) (void)inner_.close(r.session);  // the restart loses the session
      return Error{"connection reset", ErrorCode::kUnavailable};
    }
    auto reply = inner_.verify(r);
    if (!reply.ok() && reply.error().message.starts_with("unknown session")) {
      return Error{reply.error().message, ErrorCode::kUnavailable};
    }
    return reply;
  }
  Status close(SessionId s) override { return inner_.close(s); }
  Status generate(const GenerateRequest& r, const TokenSink& sink) override {
    return inner_.generate(r, sink);
  }

 private:
  bool down() {
    ++calls_;
    return calls_ > from_ && calls_ <= until_;
  }
  CloudVerifier& inner_;
  int from_, until_, calls_ = 0;
};

TEST(DeviceFailure, CloudLossMidGenerationLosesNoToken) {
  for (bool pipeline : {false, true}) {
    SCOPED_TRACE(pipeline ? "pipelined" : "not pipelined");
    ThreadPool pool(1);
    const TinyPair& pair = tiny_pair();
    CloudVerifier cloud(pair.llm, pool, {4, 256});
    FlakyVerifier flaky(cloud, 5, 9);
    RunConfig cfg = config("hlm");
    cfg.retry_initial_s = 0.0;  // retry at the next upload
    cfg.pipeline = pipeline;
    Device dev(pair.slm, pool, cfg);
    auto r = dev.generate(kPrompt, &flaky);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_FALSE(r->tokens.empty());
    EXPECT_TRUE(r->tokens.size() == size_t(cfg.max_tokens) ||
                pair.slm->tokenizer().is_eog(r->tokens.back()));
    EXPECT_GE(r->slm_only, 1);
    EXPECT_GE(r->reconnects, 1);
    // The last reason is reported, not only counted (a reconnection attempt was refused).
    // (Pipelined, the refusals fall on requests already in flight; the lost session is the last.)
    if (pipeline) {
      EXPECT_FALSE(r->cloud_error.empty());
    } else {
      EXPECT_EQ(r->cloud_error, "connection refused");
    }
    int marked = 0;
    for (const auto& t : r->trace) marked += t.slm_only;
    EXPECT_EQ(marked, r->slm_only);
    std::vector<int32_t> ctx = cloud.context(dev.session()).value();
    ctx.insert(ctx.end(), dev.pending().begin(), dev.pending().end());
    EXPECT_EQ(ctx, r->context());
  }
}

TEST(DeviceFailure, UnreachableFromTheStartStillGenerates) {
  ThreadPool pool(1);
  const TinyPair& pair = tiny_pair();
  CloudVerifier cloud(pair.llm, pool, {4, 256});
  FlakyVerifier flaky(cloud, 0, 1 << 30);
  Device dev(pair.slm, pool, config("uhlm(0.0)"));
  auto r = dev.generate(kPrompt, &flaky);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->tokens.size(), 40u);
  EXPECT_EQ(r->uploads, 0);
}

// --- pipelined drafting ------------------------------------------------------------------------

// The in-process cloud, watched: after every reply that was not stale, the session's context as
// the cloud holds it; and the number of stale replies.
class WatchedVerifier : public Verifier {
 public:
  explicit WatchedVerifier(CloudVerifier& inner) : inner_(inner) {}
  Result<SessionId> open(const SessionParams& p) override { return inner_.open(p); }
  Result<VerifyReply> verify(const VerifyRequest& r) override {
    auto reply = inner_.verify(r);
    if (reply.ok() && reply->stale) {
      stale++;
    } else if (reply.ok()) {
      contexts.push_back(inner_.context(r.session).value());
    }
    return reply;
  }
  Status close(SessionId s) override { return inner_.close(s); }
  Status generate(const GenerateRequest& r, const TokenSink& sink) override {
    return inner_.generate(r, sink);
  }
  std::vector<std::vector<int32_t>> contexts;
  int stale = 0;

 private:
  CloudVerifier& inner_;
};

// A device model closer to the cloud's than tiny_pair()'s, so that some drafts are accepted at
// T > 0 and pipelining has something to gain.
const TinyPair& close_pair() {
  static const TinyPair p = make_tiny_pair(3, 0.15f).value();
  return p;
}

RunConfig pipelined(RunConfig c, bool on, int depth = 16, int ahead = 32) {
  c.pipeline = on;
  c.pipeline_depth = depth;
  c.pipeline_ahead = ahead;
  return c;
}

// SPEC §2's exactness with pipelining: every draw of the device and of the cloud happens as
// without it (the device restores its generators at a replaced draft; stale requests draw
// nothing in the cloud), so for a fixed seed the output is the same token for token, at T = 0
// and at T > 0, for every per-token policy and depth.
TEST(DevicePipeline, SameOutputsWithAndWithoutPipelining) {
  for (const char* policy : {"hlm", "uhlm(0.1)", "rand(0.3)", "iuhlm:u_th=0.05,est=focus",
                             "iuhlm:u_th=0.05,est=entropy", "iuhlm:u_th=0.05,est=received,w=2"}) {
    for (auto [temp, seed] : {std::pair{0.0f, 1}, {0.9f, 1}, {0.9f, 2}}) {
      const RunConfig base = config(policy, temp, uint64_t(seed));
      const auto off = run(pipelined(base, false));
      for (auto [depth, ahead] : {std::pair{1, 1}, {3, 4}, {16, 32}}) {
        const auto on = run(pipelined(base, true, depth, ahead));
        const std::string what =
            fmt::format("{} T={} seed {} depth {} ahead {}", policy, temp, seed, depth, ahead);
        EXPECT_EQ(on.result.tokens, off.result.tokens) << what;
        EXPECT_EQ(on.result.uploads, off.result.uploads) << what;
        EXPECT_EQ(on.result.resampled, off.result.resampled) << what;
        EXPECT_EQ(on.result.llm_calls, off.result.llm_calls) << what;
        ASSERT_EQ(on.result.trace.size(), off.result.trace.size()) << what;
        for (size_t i = 0; i < on.result.trace.size(); ++i) {
          EXPECT_EQ(on.result.trace[i].u, off.result.trace[i].u) << what << " token " << i;
          EXPECT_EQ(on.result.trace[i].uploaded, off.result.trace[i].uploaded) << what;
        }
        std::vector<int32_t> cloud = on.cloud_context;
        cloud.insert(cloud.end(), on.pending.begin(), on.pending.end());
        EXPECT_EQ(cloud, on.result.context()) << what;
      }
    }
  }
}

// The first two tokens of hlm at T = 1, every draft verified, have exactly the LLM's
// distribution (speculative sampling), pipelined or not: the second token is drafted while the
// first one's reply is in flight and redrafted when that draft is replaced. 2000 fixed seeds
// per arm give the same tokens in both arms, and the second token's counts pass Pearson's
// chi-square test against the LLM's own two-step marginal at p > 0.001 (cells under 5 expected
// pooled).
TEST(DevicePipeline, TokensKeepTheLlmDistribution) {
  const TinyPair& pair = close_pair();
  ThreadPool pool(1);
  RunConfig c = config("hlm", 1.0f);
  c.max_tokens = 2;
  const Sampler sampler(c.sampling);
  Context ctx(pair.llm, 1, 64, pool);
  const std::vector<float> q1 = sampler.distribution(*ctx.eval_last(0, kPrompt));
  // q2 = Σ_t q1(t)·q(· | prompt, t) / Σ_t q1(t) over the first tokens t that do not end the
  // generation.
  std::vector<double> q2(q1.size(), 0.0);
  double kept = 0;
  for (size_t t = 0; t < q1.size(); ++t) {
    if (q1[t] == 0.0f || pair.llm->tokenizer().is_eog(int32_t(t))) continue;
    kept += q1[t];
    ctx.truncate(0, int(kPrompt.size()));
    const std::vector<float> qt =
        sampler.distribution(*ctx.eval_last(0, std::vector<int32_t>{int32_t(t)}));
    for (size_t v = 0; v < qt.size(); ++v) q2[v] += double(q1[t]) * qt[v];
  }
  std::vector<float> q2f;
  for (double x : q2) q2f.push_back(float(x / kept));
  CloudVerifier cloud(pair.llm, pool, {2, 64});
  std::vector<std::vector<int64_t>> counts;
  for (bool on : {false, true}) {
    std::vector<int64_t> n2(q2.size(), 0);
    for (int i = 0; i < 2000; ++i) {
      RunConfig ci = pipelined(c, on);
      ci.sampling.seed = 1000 + uint64_t(i);
      ci.keep_trace = false;
      Device dev(pair.slm, pool, ci);
      auto r = dev.generate(kPrompt, &cloud);
      ASSERT_TRUE(r.ok()) << r.error().message;
      ASSERT_TRUE(cloud.close(dev.session()).ok());
      if (r->tokens.size() == 2) n2[size_t(r->tokens[1])]++;
    }
    EXPECT_GT(testing::chi_square_p_pooled(n2, q2f), 1e-3) << (on ? "pipelined" : "waiting");
    counts.push_back(std::move(n2));
  }
  EXPECT_EQ(counts[0], counts[1]);
}

// A replaced draft rolls both sides back: after every reply the cloud's context is a prefix of
// what the device finally outputs (it never holds a token drafted past a replaced one), the
// requests sent past a replaced draft are answered stale and dropped, and the modelled run is
// shorter than waiting for every reply.
TEST(DevicePipeline, ReplacedDraftsRollBothSidesBack) {
  const TinyPair& pair = close_pair();
  for (uint64_t seed : {1, 2, 3}) {
    ThreadPool pool(1);
    CloudVerifier cloud(pair.llm, pool, {4, 256});
    WatchedVerifier watched(cloud);
    Device dev(pair.slm, pool, pipelined(config("hlm", 0.9f, seed), true));
    auto r = dev.generate(kPrompt, &watched);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_GT(r->resampled, 0);
    ASSERT_GT(r->accepted, 0);
    EXPECT_GT(r->discarded, 0) << "uploads were sent past a draft the cloud replaced";
    EXPECT_EQ(r->discarded, watched.stale);
    EXPECT_EQ(int64_t(watched.contexts.size()), r->uploads);
    const std::vector<int32_t> device = r->context();
    for (const auto& c : watched.contexts) {
      ASSERT_LE(c.size(), device.size());
      EXPECT_TRUE(std::equal(c.begin(), c.end(), device.begin())) << "seed " << seed;
    }
    EXPECT_EQ(watched.contexts.back(), device) << "hlm verifies the last token too";

    CloudVerifier cloud2(pair.llm, pool, {4, 256});
    Device waiting(pair.slm, pool, pipelined(config("hlm", 0.9f, seed), false));
    auto w = waiting.generate(kPrompt, &cloud2);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->tokens, r->tokens);
    EXPECT_EQ(w->discarded, 0);
    EXPECT_LT(r->totals.latency_s, w->totals.latency_s)
        << r->uploads << " uploads " << r->resampled << " resampled " << r->discarded;
    EXPECT_GT(r->totals.ul_bits, w->totals.ul_bits) << "dropped requests were sent too";
  }
}

// A stop requested by the caller mid-pipeline: the output ends at that token and the requests
// still in flight are dropped.
TEST(DevicePipeline, StopMidPipelineEndsAtThatToken) {
  const TinyPair& pair = tiny_pair();
  ThreadPool pool(1);
  CloudVerifier cloud(pair.llm, pool, {4, 256});
  Device dev(pair.slm, pool, pipelined(config("hlm", 0.9f, 4), true));
  int seen = 0;
  auto r = dev.generate(kPrompt, &cloud, [&](const TokenTrace&) { return ++seen < 7; });
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->tokens.size(), 7u);
  EXPECT_EQ(seen, 7);
  EXPECT_EQ(r->trace.size(), 7u);
}

TEST(DevicePipeline, RefusesBoundsOutsideTheirRange) {
  ThreadPool pool(1);
  CloudVerifier cloud(tiny_pair().llm, pool, {4, 256});
  for (auto [depth, ahead, flag] : {std::tuple{0, 32, "--pipeline-depth"},
                                    {kMaxPipelineDepth + 1, 32, "--pipeline-depth"},
                                    {2, 0, "--pipeline-ahead"}}) {
    Device dev(tiny_pair().slm, pool, pipelined(config("hlm"), true, depth, ahead));
    auto r = dev.generate(kPrompt, &cloud);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().message.find(flag), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace hlm
