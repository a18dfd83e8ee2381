// The vLLM backend against a real vLLM server (ctest label "vllm"; HLM_VLLM_URL names it): q
// from the top log-probabilities equals q from the whole vocabulary, verdicts follow q (χ²), at
// T = 0 every policy reproduces vLLM's own greedy generation through `hlm serve`, and a vLLM
// killed mid-generation and restarted, or stalled, costs the device verification, never its
// generation (a server of the test's own, through HLM_VLLM_SERVE = tools/vllm/serve.sh, on
// HLM_VLLM_FAULT_PORT or else a free port).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "device/device.h"
#include "method/stats_testing.h"
#include "models/registry.h"
#include "protocol/remote_verifier.h"
#include "server/server.h"
#include "vllm/vllm_verifier.h"

namespace hlm::vllm {
namespace {

constexpr const char* kEnable =
    "HLM_VLLM_URL=http://127.0.0.1:8100 ctest --test-dir build -L vllm (a vLLM server serving the "
    "default LLM, started with --max-logprobs -1; see docs/vllm.md)";

struct Setup {
  std::string url, skip;
  std::shared_ptr<const Model> llm, slm;
  std::unique_ptr<VllmVerifier> vllm;
};

const Setup& setup() {
  static Setup s = [] {
    Setup r;
    const char* url = std::getenv("HLM_VLLM_URL");
    if (!url || !*url) {
      r.skip = "HLM_VLLM_URL is not set";
      return r;
    }
    r.url = url;
    auto llm = resolve_model("llm");
    auto slm = resolve_model("slm");
    if (!llm || !slm) {
      r.skip = "the default models are not fetched (hlm models fetch)";
      return r;
    }
    r.llm = Model::load(*llm).value();
    r.slm = Model::load(*slm).value();
    VllmOptions o;
    o.urls = {r.url};
    o.timeout_s = 60;
    auto v = VllmVerifier::connect(r.llm, o);
    if (!v) {
      r.skip = v.error().message;
      return r;
    }
    r.vllm = std::move(v).value();
    return r;
  }();
  return s;
}

// Fails in CI (CI=true), where vLLM must be there; elsewhere skips, saying how to run.
#define SKIP_OR_FAIL(why)                                                         \
  do {                                                                            \
    const char* ci = std::getenv("CI");                                           \
    if (ci && std::string(ci) == "true") {                                        \
      FAIL() << "vLLM tests cannot run in CI: " << (why) << ". Run: " << kEnable; \
    }                                                                             \
    GTEST_SKIP() << (why) << "; to run these tests: " << kEnable;                 \
  } while (0)

class Vllm : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!setup().vllm) SKIP_OR_FAIL(setup().skip);
  }
  const Tokenizer& tok() const { return setup().llm->tokenizer(); }
  VllmVerifier& vllm() const { return *setup().vllm; }
  std::vector<int32_t> chat(const std::string& text) const {
    return tok().encode("<|im_start|>user\n" + text + "<|im_end|>\n<|im_start|>assistant\n", false,
                        true);
  }
};

Payload full_payload(const std::vector<float>& p) {
  Payload payload;
  payload.kind = Encoding::kFull;
  payload.n_vocab = int(p.size());
  payload.probs = p;
  return payload;
}

const char* kTexts[] = {
    "The history of the printing press begins",
    "Write a haiku about the sea.",
    "What is 17 times 23?",
    "def fibonacci(n):",
    "List three uses of copper.",
    "Once upon a time, in a small village,",
    "Explain photosynthesis to a child.",
    "The capital of France is",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "import numpy as np\nx =",
    "My favourite colour is",
};

// hlm's defaults (T = 0.8, top-k 40, top-p 0.95): q from the top 64 and from the top 512 (the
// default) log-probabilities equals q from all of them, on twelve contexts. Where a top N does
// not determine q, the verifier asks for all, so the count of those is printed too.
TEST_F(Vllm, TopLogprobsGiveTheSameQAsTheWholeVocabulary) {
  std::vector<std::vector<int32_t>> contexts;
  for (const char* t : kTexts) contexts.push_back(chat(t));
  const SamplingParams s;
  auto all = vllm().distributions_full(contexts, s);
  ASSERT_TRUE(all.ok()) << all.error().message;
  for (int n_top : {64, 512}) {
    VllmOptions o;
    o.urls = {setup().url};
    o.timeout_s = 60;
    o.n_top = n_top;
    auto v = VllmVerifier::connect(setup().llm, o);
    ASSERT_TRUE(v.ok()) << v.error().message;
    const uint64_t full_before = (*v)->stats().full_vocab;  // connect() asked for some too
    auto top = (*v)->distributions(contexts, s);
    ASSERT_TRUE(top.ok()) << top.error().message;
    double worst = 0;
    for (size_t c = 0; c < contexts.size(); ++c) {
      for (size_t i = 0; i < (*top)[c].size(); ++i) {
        worst = std::max(worst, double(std::abs((*top)[c][i] - (*all)[c][i])));
      }
    }
    std::printf("top %d: max |q_top - q_full| over %zu contexts: %.3g (%llu asked again in full)\n",
                n_top, contexts.size(), worst,
                static_cast<unsigned long long>((*v)->stats().full_vocab - full_before));
    EXPECT_LT(worst, 1e-4) << n_top;
  }
}

// Speculative verification with vLLM's q against a p̂ that differs from it (uniform over q's
// support and eight tokens outside it): the kept token is distributed as q. The verdict is the
// one VllmVerifier applies (decide()); VerdictOfAVerificationIsDecideOnItsQ ties the two.
TEST_F(Vllm, VerdictFrequenciesFollowQ) {
  const SamplingParams s;
  // The context among kTexts (as plain text) whose q spreads over the most tokens.
  std::vector<std::vector<int32_t>> contexts;
  for (const char* t : kTexts) contexts.push_back(tok().encode(t, false, false));
  auto q = vllm().distributions(contexts, s);
  ASSERT_TRUE(q.ok()) << q.error().message;
  const auto spread = [](const std::vector<float>& v) {
    return std::count_if(v.begin(), v.end(), [](float x) { return x > 0; });
  };
  const std::vector<float>& qv = *std::max_element(
      q->begin(), q->end(), [&](const auto& a, const auto& b) { return spread(a) < spread(b); });
  const int V = int(qv.size());
  std::vector<float> p_hat(size_t(V), 0.0f);
  int support = 0;
  for (int i = 0; i < V; ++i) support += qv[size_t(i)] > 0;
  for (int i = 0, extra = 0; i < V; ++i) {
    if (qv[size_t(i)] > 0 || extra++ < 8) p_hat[size_t(i)] = 1.0f / float(support + 8);
  }
  constexpr int kTrials = 2000;
  std::vector<int64_t> counts(size_t(V), 0);
  std::vector<float> scratch;
  dist::Rng draft_rng(11);
  for (int t = 0; t < kTrials; ++t) {
    SessionParams params;
    params.sampling = s;
    params.sampling.seed = uint64_t(1000 + t);
    params.n_vocab = V;
    params.prompt = {1};
    CloudSession session(params);
    VerifyRequest r;
    r.drafts = {dist::sample(p_hat, draft_rng)};
    r.p_hat = {full_payload(p_hat)};
    const VerifyReply reply = decide(r, session, qv, V, scratch);
    counts[size_t(reply.has_next ? reply.next : r.drafts[0])]++;
  }
  const double p = hlm::testing::chi_square_p_pooled(counts, qv);
  std::printf(
      "chi-square p-value of %d verdicts against vLLM's q (%d tokens in its support): %.4f\n",
      kTrials, support, p);
  EXPECT_GT(p, 0.001);
}

// A verification through VllmVerifier makes the same verdict as decide() on the q it fetches,
// with the session's seed: the χ² above covers the verifier.
TEST_F(Vllm, VerdictOfAVerificationIsDecideOnItsQ) {
  const auto context = chat(kTexts[1]);
  SamplingParams s;
  auto q = vllm().distributions({context}, s);
  ASSERT_TRUE(q.ok()) << q.error().message;
  const int V = int((*q)[0].size());
  std::vector<float> p_hat(size_t(V), 1.0f / float(V));
  std::vector<float> scratch;
  for (uint64_t seed = 1; seed <= 8; ++seed) {
    SessionParams params;
    params.vocab_fingerprint = tok().fingerprint();
    params.n_vocab = V;
    params.sampling = s;
    params.sampling.seed = seed;
    params.prompt = context;
    VerifyRequest r;
    r.drafts = {int32_t(seed * 1000)};
    r.p_hat = {full_payload(p_hat)};
    CloudSession local(params);
    const VerifyReply want = decide(r, local, (*q)[0], V, scratch);
    auto id = vllm().open(params);
    ASSERT_TRUE(id.ok()) << id.error().message;
    r.session = *id;
    auto got = vllm().verify(r);
    ASSERT_TRUE(got.ok()) << got.error().message;
    EXPECT_EQ(got->n_accepted, want.n_accepted);
    EXPECT_EQ(got->next, want.next);
    ASSERT_TRUE(vllm().close(*id).ok());
  }
}

// T = 0 through `hlm serve --backend vllm` (in process) and the network client: policies that
// verify every token produce vLLM's greedy generation; the others hold vLLM's greedy choice at
// every verified position.
TEST_F(Vllm, GreedyPoliciesReproduceVllmsGreedyGeneration) {
  VllmOptions o;
  o.urls = {setup().url};
  o.timeout_s = 60;
  auto backend = VllmVerifier::connect(setup().llm, o);
  ASSERT_TRUE(backend.ok()) << backend.error().message;
  server::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.max_sessions = 16;  // devices leave their sessions to the idle reaper
  auto srv = server::Server::start(setup().llm, so, std::move(backend).value());
  ASSERT_TRUE(srv.ok()) << srv.error().message;
  RemoteOptions ro;
  ro.target = (*srv)->address();
  ro.timeout_s = 60;
  RemoteVerifier remote(ro);
  const auto prompt = chat("Name three planets and one fact about each.");
  constexpr int kTokens = 24;
  auto want = vllm().greedy(prompt, kTokens);
  ASSERT_TRUE(want.ok()) << want.error().message;
  ThreadPool pool(1);
  for (const char* policy : {"llm", "hlm", "spec(4)", "uhlm", "iuhlm", "rand(0.5)"}) {
    RunConfig cfg;
    cfg.policy = parse_policy(policy).value();
    cfg.sampling.temperature = 0;
    cfg.max_tokens = kTokens;
    auto r = Device(setup().slm, pool, cfg).generate(prompt, &remote);
    ASSERT_TRUE(r.ok()) << policy << ": " << r.error().message;
    EXPECT_EQ(r->slm_only, 0) << policy << ": " << r->cloud_error;
    const std::string name = policy;
    if (name == "llm" || name == "hlm" || name == "spec(4)") {
      // vLLM stops at end-of-sequence as hlm does; compare what both produced.
      EXPECT_EQ(r->tokens, *want) << policy;
      std::printf("%s: %zu tokens equal vLLM's greedy generation: %s\n", policy, r->tokens.size(),
                  r->tokens == *want ? "yes" : "NO");
      continue;
    }
    std::vector<std::vector<int32_t>> contexts;
    std::vector<int32_t> tokens;
    std::vector<int32_t> full = prompt;
    full.insert(full.end(), r->tokens.begin(), r->tokens.end());
    for (const TokenTrace& t : r->trace) {
      if (!t.uploaded) continue;
      contexts.emplace_back(full.begin(), full.begin() + t.position);
      tokens.push_back(t.token);
    }
    if (contexts.empty()) continue;
    SamplingParams greedy;
    greedy.temperature = 0;
    auto q = vllm().distributions(contexts, greedy);
    ASSERT_TRUE(q.ok()) << q.error().message;
    int agree = 0;
    for (size_t i = 0; i < contexts.size(); ++i) agree += dist::argmax((*q)[i]) == tokens[i];
    std::printf("%s: %d of %zu verified positions hold vLLM's greedy choice\n", policy, agree,
                contexts.size());
    EXPECT_EQ(agree, int(contexts.size())) << policy;
  }
}

// A port nothing listens on now (the kernel's pick for port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

// A vLLM server of the test's own, driven by HLM_VLLM_SERVE; stopped at the end if this test
// started it (never one that held the port before).
class OwnServer {
 public:
  OwnServer(std::string script, int port) : script_(std::move(script)), port_(port) {}
  ~OwnServer() {
    if (started_) run("stop");
  }
  bool run(const std::string& command) {
    const std::string line =
        fmt::format("'{}' {} {}{} >&2", script_, command, port_, command == "wait" ? " 600" : "");
    const bool ok = std::system(line.c_str()) == 0;
    started_ = started_ || (ok && command == "start");
    return ok;
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}", port_); }

 private:
  std::string script_;
  int port_;
  bool started_ = false;
};

TEST_F(Vllm, KilledMidGenerationTheDeviceContinuesAndResumesVerification) {
  const char* script = std::getenv("HLM_VLLM_SERVE");
  if (!script || !*script) SKIP_OR_FAIL("HLM_VLLM_SERVE (tools/vllm/serve.sh) is not set");
  const char* port_env = std::getenv("HLM_VLLM_FAULT_PORT");
  OwnServer vllm_server(script, port_env && *port_env ? std::atoi(port_env) : free_port());
  ASSERT_TRUE(vllm_server.run("start"));
  ASSERT_TRUE(vllm_server.run("wait"));
  VllmOptions o;
  o.urls = {vllm_server.url()};
  o.timeout_s = 2;
  auto backend = VllmVerifier::connect(setup().llm, o);
  ASSERT_TRUE(backend.ok()) << backend.error().message;
  server::ServerOptions so;
  so.listen = "127.0.0.1:0";
  auto srv = server::Server::start(setup().llm, so, std::move(backend).value());
  ASSERT_TRUE(srv.ok()) << srv.error().message;
  RemoteOptions ro;
  ro.target = (*srv)->address();
  RemoteVerifier remote(ro);

  const auto prompt = chat("Tell me about the moon.");
  constexpr int kTokens = 48;
  RunConfig cfg;
  cfg.policy = parse_policy("hlm").value();
  cfg.sampling.temperature = 0;
  cfg.max_tokens = kTokens;
  cfg.retry_initial_s = 0.05;
  cfg.retry_max_s = 0.2;
  ThreadPool pool(1);
  int n = 0;
  bool restarted = false;
  auto on_token = [&](const TokenTrace&) {
    ++n;
    if (n == 5) vllm_server.run("kill");  // vLLM dies without a word
    if (n == 12) restarted = vllm_server.run("start") && vllm_server.run("wait");
    if (n == 24) vllm_server.run("stall");  // then it hangs: requests time out
    if (n == 27) vllm_server.run("resume");
    // Past each fault, drafting slows to a pace the reconnect backoff (at most 0.2 s) keeps up
    // with, so that verification has tokens left to resume on.
    if (n >= 12) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return true;
  };
  auto r = Device(setup().slm, pool, cfg).generate(prompt, &remote, on_token);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_TRUE(restarted);
  EXPECT_TRUE(r->tokens.size() == size_t(kTokens) || tok().is_eog(r->tokens.back()))
      << r->tokens.size();
  EXPECT_GT(r->slm_only, 0) << "tokens while vLLM was down are kept SLM-only";
  EXPECT_GE(r->reconnects, 1);
  // The stall was the last failure: hlm serve answered DEADLINE_EXCEEDED.
  EXPECT_NE(r->cloud_error.find("DEADLINE_EXCEEDED"), std::string::npos) << r->cloud_error;
  // Verification resumed after each fault, and every token verified after the restart holds
  // vLLM's greedy choice.
  std::vector<int32_t> full = prompt;
  full.insert(full.end(), r->tokens.begin(), r->tokens.end());
  std::vector<std::vector<int32_t>> contexts;
  std::vector<int32_t> tokens;
  int after_stall = 0;
  for (const TokenTrace& t : r->trace) {
    const int i = t.position - int(prompt.size());
    if (i < 12 || !t.uploaded || t.slm_only) continue;
    contexts.emplace_back(full.begin(), full.begin() + t.position);
    tokens.push_back(t.token);
    after_stall += i >= 27;
  }
  EXPECT_GT(after_stall, 0) << "no verification after the stall";
  ASSERT_FALSE(contexts.empty()) << "no verification after the restart";
  SamplingParams greedy;
  greedy.temperature = 0;
  auto q = vllm().distributions(contexts, greedy);
  ASSERT_TRUE(q.ok()) << q.error().message;
  for (size_t i = 0; i < contexts.size(); ++i) EXPECT_EQ(dist::argmax((*q)[i]), tokens[i]) << i;
  std::printf(
      "killed at token 5, restarted at token 12, stalled from 24 to 27: %zu tokens, %lld "
      "SLM-only, %lld reconnects, %zu verified after the restart (%d after the stall)\n",
      r->tokens.size(), static_cast<long long>(r->slm_only), static_cast<long long>(r->reconnects),
      contexts.size(), after_stall);
}

}  // namespace
}  // namespace hlm::vllm
