// VllmVerifier against a fake vLLM: an HTTP server speaking the endpoints the backend uses, whose
// log-probabilities come from hlm's engine on a tiny model. With no real vLLM needed, it shows
// that the vLLM backend verifies exactly as the engine backend does (same seeds, same tokens),
// that start-up refuses replicas serving different models or another tokenizer, and that a
// replica that goes away fails one request as UNAVAILABLE and moves its sessions to another, and
// a stalled one reaches devices as DEADLINE_EXCEEDED.
#include "vllm/vllm_verifier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cloud/cloud_verifier.h"
#include "device/device.h"
#include "engine/context.h"
#include "engine/model_writer.h"
#include "http/server.h"
#include "protocol/remote_verifier.h"
#include "server/server.h"

namespace hlm::vllm {
namespace {

const TinyPair& tiny() {
  static const TinyPair p = make_tiny_pair(2).value();
  return p;
}

// /v1/models, /tokenize and /v1/completions (max_tokens 1, logprobs N or -1) on the tiny LLM.
class FakeVllm {
 public:
  explicit FakeVllm(std::string model_id = "tiny", bool wrong_tokenizer = false)
      : model_id_(std::move(model_id)),
        wrong_tokenizer_(wrong_tokenizer),
        pool_(1),
        context_(tiny().llm, 1, 256, pool_) {
    http::ServerOptions o;
    server_ = http::Server::start(o, [this](const http::Request& r) { return handle(r); }).value();
  }
  std::string url() const { return fmt::format("http://127.0.0.1:{}", server_->port()); }
  void stop() { server_->stop(); }
  // Completions then take this long (a stalled replica).
  void stall(std::chrono::milliseconds delay) { stall_ = delay; }
  int completions() const { return completions_; }

 private:
  http::Reply handle(const http::Request& r) {
    http::Response out;
    if (r.path == "/v1/models") {
      out.body = nlohmann::json{{"data", {{{"id", model_id_}, {"max_model_len", 256}}}}}.dump();
      return out;
    }
    const auto j = nlohmann::json::parse(r.body);
    if (r.path == "/tokenize") {
      auto ids = tiny().llm->tokenizer().encode(j["prompt"].get<std::string>(), false, false);
      if (wrong_tokenizer_) std::reverse(ids.begin(), ids.end());
      out.body = nlohmann::json{{"tokens", ids}}.dump();
      return out;
    }
    completions_++;
    std::this_thread::sleep_for(stall_.load());
    const int n = j["logprobs"].get<int>();
    nlohmann::json choices = nlohmann::json::array();
    int index = 0;
    for (const auto& p : j["prompt"]) {
      choices.push_back(
          {{"index", index++},
           {"logprobs", {{"top_logprobs", {top(p.get<std::vector<int32_t>>(), n)}}}}});
    }
    out.body = nlohmann::json{{"choices", choices}}.dump();
    return out;
  }

  // The raw log-probabilities vLLM would return: log-softmax of the logits, the n largest.
  nlohmann::json top(const std::vector<int32_t>& prompt, int n) {
    std::lock_guard<std::mutex> lock(mu_);
    context_.clear(0);
    SeqInput in{0, prompt, {int(prompt.size()) - 1}, nullptr};
    auto logits = context_.eval(std::span<const SeqInput>(&in, 1)).value()[0].logits;
    const double mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (float z : logits) sum += std::exp(double(z) - mx);
    const double lse = mx + std::log(sum);
    std::vector<int32_t> idx(logits.size());
    std::iota(idx.begin(), idx.end(), 0);
    const size_t keep = n < 0 ? idx.size() : std::min(idx.size(), size_t(n));
    std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    nlohmann::json t = nlohmann::json::object();
    for (size_t i = 0; i < keep; ++i) {
      t[fmt::format("token_id:{}", idx[i])] = double(logits[size_t(idx[i])]) - lse;
    }
    return t;
  }

  std::string model_id_;
  bool wrong_tokenizer_;
  ThreadPool pool_;
  std::mutex mu_;
  Context context_;
  std::atomic<int> completions_{0};
  std::atomic<std::chrono::milliseconds> stall_{std::chrono::milliseconds(0)};
  std::unique_ptr<http::Server> server_;
};

VllmOptions options(std::vector<std::string> urls) {
  VllmOptions o;
  o.urls = std::move(urls);
  o.max_context = 256;
  o.retry_after_s = 60;
  return o;
}

const std::vector<int32_t> kPrompt = {1, 70, 80, 65, 100, 101, 77};

TEST(VllmVerifier, VerifiesAsTheEngineBackendDoes) {
  FakeVllm fake;
  auto v = VllmVerifier::connect(tiny().llm, options({fake.url()}));
  ASSERT_TRUE(v.ok()) << v.error().message;
  ThreadPool pool(1);
  for (const char* policy : {"hlm", "spec(3)", "llm", "rand(0.5)"}) {
    RunConfig cfg;
    cfg.policy = parse_policy(policy).value();
    cfg.sampling.seed = 9;
    cfg.max_tokens = 24;
    cfg.n_ctx = 128;
    CloudVerifier engine(tiny().llm, pool, {1, 256});
    auto a = Device(tiny().slm, pool, cfg).generate(kPrompt, &engine);
    auto b = Device(tiny().slm, pool, cfg).generate(kPrompt, v->get());
    ASSERT_TRUE(a.ok() && b.ok()) << policy;
    EXPECT_EQ(a->tokens, b->tokens) << policy;
    EXPECT_EQ(a->resampled, b->resampled) << policy;
  }
  EXPECT_GT(fake.completions(), 0);
}

TEST(VllmVerifier, RefusesReplicasThatDisagreeOrAnotherTokenizer) {
  FakeVllm a("tiny"), b("other"), wrong("tiny", true);
  auto mixed = VllmVerifier::connect(tiny().llm, options({a.url(), b.url()}));
  ASSERT_FALSE(mixed.ok());
  for (const std::string& s : {a.url(), b.url(), std::string("\"other\"")}) {
    EXPECT_NE(mixed.error().message.find(s), std::string::npos) << mixed.error().message;
  }
  auto tokenizer = VllmVerifier::connect(tiny().llm, options({wrong.url()}));
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_NE(tokenizer.error().message.find("vocabulary mismatch"), std::string::npos);
  EXPECT_NE(tokenizer.error().message.find(wrong.url() + "/tokenize"), std::string::npos);
  // Nothing listens on the port of a stopped server.
  const std::string gone = a.url();
  a.stop();
  auto unreachable = VllmVerifier::connect(tiny().llm, options({gone}));
  ASSERT_FALSE(unreachable.ok());
  EXPECT_EQ(unreachable.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(unreachable.error().message.find(gone + "/v1/models"), std::string::npos);
}

TEST(VllmVerifier, ADeadReplicaFailsOneRequestThenItsSessionsMove) {
  FakeVllm first, second;
  auto v = VllmVerifier::connect(tiny().llm, options({first.url(), second.url()}));
  ASSERT_TRUE(v.ok()) << v.error().message;
  SessionParams params;
  params.vocab_fingerprint = tiny().llm->tokenizer().fingerprint();
  params.n_vocab = tiny().llm->config().n_vocab;
  params.encoding = Encoding::kIds;
  params.sampling.temperature = 0;  // one request per verification (no full-vocabulary retry)
  params.prompt = kPrompt;
  auto on_first = (*v)->open(params);  // round robin: the first replica
  ASSERT_TRUE(on_first.ok()) << on_first.error().message;
  first.stop();
  VerifyRequest r;
  r.session = *on_first;
  r.drafts = {5};
  auto failed = (*v)->verify(r);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(failed.error().message.find(first.url()), std::string::npos) << failed.error().message;
  const int before = second.completions();
  auto moved = (*v)->verify(r);
  ASSERT_TRUE(moved.ok()) << moved.error().message;
  EXPECT_EQ(second.completions(), before + 1);
  // New sessions avoid the replica that failed (round robin would give it every other one).
  for (int i = 0; i < 2; ++i) {
    auto next = (*v)->open(params);
    ASSERT_TRUE(next.ok());
    r.session = *next;
    EXPECT_TRUE((*v)->verify(r).ok()) << i;
  }
  EXPECT_EQ((*v)->stats().failures, 1u);
}

TEST(HttpClient, RefusesRepliesOverItsSizeCap) {
  FakeVllm fake;
  HttpOptions o;
  o.max_response_bytes = 16;
  HttpClient http(o);
  auto r = http.get(fake.url() + "/v1/models");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(fake.url() + "/v1/models"), std::string::npos);
  EXPECT_NE(r.error().message.find("exceeds 16 bytes"), std::string::npos) << r.error().message;
  o.max_response_bytes = 1 << 20;
  HttpClient roomy(o);
  EXPECT_TRUE(roomy.get(fake.url() + "/v1/models").ok());
}

// A replica that stops answering: the request ends at --vllm-timeout, and `hlm serve` tells the
// device DEADLINE_EXCEEDED, which it takes as the cloud being unreachable (it continues alone).
TEST(VllmVerifier, AStalledReplicaIsADeadlineExceededForTheDevice) {
  FakeVllm fake;
  VllmOptions o = options({fake.url()});
  o.timeout_s = 0.2;
  auto v = VllmVerifier::connect(tiny().llm, o);
  ASSERT_TRUE(v.ok()) << v.error().message;
  server::ServerOptions so;
  so.listen = "127.0.0.1:0";
  so.max_context = 256;
  auto srv = server::Server::start(tiny().llm, so, std::move(v).value());
  ASSERT_TRUE(srv.ok()) << srv.error().message;
  RemoteOptions ro;
  ro.target = (*srv)->address();
  RemoteVerifier remote(ro);
  SessionParams params;
  params.vocab_fingerprint = tiny().llm->tokenizer().fingerprint();
  params.n_vocab = tiny().llm->config().n_vocab;
  params.encoding = Encoding::kIds;
  params.sampling.temperature = 0;
  params.prompt = kPrompt;
  auto id = remote.open(params);
  ASSERT_TRUE(id.ok()) << id.error().message;
  fake.stall(std::chrono::milliseconds(600));
  VerifyRequest r;
  r.session = *id;
  r.drafts = {5};
  auto failed = remote.verify(r);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(failed.error().message.find("DEADLINE_EXCEEDED"), std::string::npos)
      << failed.error().message;
  EXPECT_NE(failed.error().message.find(fake.url()), std::string::npos) << failed.error().message;
}

}  // namespace
}  // namespace hlm::vllm
