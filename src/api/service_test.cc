// The API service over real HTTP with tiny models: answers equal the device loop's, streams
// equal whole answers, stop sequences, concurrency, limits, vanishing clients and an
// unreachable cloud.
#include "api/service.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "cloud/cloud_verifier.h"
#include "engine/model_writer.h"
#include "http/testing.h"
#include "method/policy.h"

namespace hlm::api {
namespace {

using namespace http::testing;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

const TinyPair& tiny_pair() {
  static const TinyPair p = make_tiny_pair(2).value();
  return p;
}

// A verifier whose calls can be held (to keep a request running) or made to fail as an
// unreachable cloud does.
class TestVerifier : public Verifier {
 public:
  explicit TestVerifier(ThreadPool& pool) : inner_(tiny_pair().llm, pool, CloudOptions{16, 512}) {}
  Result<SessionId> open(const SessionParams& p) override {
    if (auto e = gate()) return *e;
    return inner_.open(p);
  }
  Result<VerifyReply> verify(const VerifyRequest& r) override {
    if (auto e = gate()) return *e;
    return inner_.verify(r);
  }
  Status close(SessionId s) override { return inner_.close(s); }
  Status generate(const GenerateRequest& r, const TokenSink& sink) override {
    if (auto e = gate()) return *e;
    return inner_.generate(r, sink);
  }

  void hold() {
    std::lock_guard l(mu_);
    held_ = true;
  }
  void release() {
    {
      std::lock_guard l(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }
  bool waiting() {
    std::lock_guard l(mu_);
    return waiting_ > 0;
  }
  std::atomic<bool> unreachable{false};
  int sessions() const { return inner_.n_sessions(); }

 private:
  std::optional<Error> gate() {
    std::unique_lock l(mu_);
    ++waiting_;
    cv_.wait(l, [&] { return !held_; });
    --waiting_;
    if (unreachable) return Error{"connection refused", ErrorCode::kUnavailable};
    return std::nullopt;
  }
  CloudVerifier inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  int waiting_ = 0;
};

RunConfig base_config() {
  RunConfig c;
  c.policy = parse_policy("hlm").value();
  c.n_ctx = 512;
  c.sampling.temperature = 0.0f;
  c.keep_trace = false;
  return c;
}

struct Fixture {
  ThreadPool pool{2};
  TestVerifier cloud{pool};
  std::unique_ptr<ApiService> service;
  std::unique_ptr<http::Server> server;

  explicit Fixture(ApiOptions o = {}) {
    o.max_tokens_limit = 256;
    service = std::make_unique<ApiService>(
        ApiBackend{tiny_pair().slm, &cloud, &pool, base_config(), "test cloud"}, o);
    auto s = http::Server::start({}, [this](const http::Request& r) { return service->handle(r); });
    EXPECT_TRUE(s) << s.error().message;
    server = std::move(s).value();
  }
  int port() const { return server->port(); }
  json complete(const json& body, std::string* raw = nullptr) {
    const std::string reply = post(port(), "/v1/completions", body.dump());
    if (raw) *raw = reply;
    EXPECT_EQ(status_of(reply), 200) << reply;
    return json::parse(body_of(reply), nullptr, false);
  }
  void wait_idle() {
    const auto t0 = Clock::now();
    while (service->active() > 0 && Clock::now() - t0 < std::chrono::seconds(20))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
};

// The device loop run directly with the same settings.
RunResult direct(const std::vector<int32_t>& prompt, RunConfig cfg, int max_tokens) {
  ThreadPool pool(1);
  CloudVerifier cloud(tiny_pair().llm, pool, CloudOptions{1, 512});
  cfg.max_tokens = max_tokens;
  auto r = Device(tiny_pair().slm, pool, cfg).generate(prompt, &cloud);
  EXPECT_TRUE(r) << r.error().message;
  return *r;
}

// The text the API sends for a generation: pieces through the UTF-8 stream (the tiny models
// emit arbitrary bytes; invalid ones become U+FFFD), end-of-generation tokens left out.
std::string api_text(const RunResult& r) {
  Utf8Stream u;
  std::string s;
  for (int32_t t : r.tokens) {
    if (!tiny_pair().slm->tokenizer().is_eog(t))
      s += u.push(tiny_pair().slm->tokenizer().token_to_piece(t));
  }
  return s + u.flush();
}

std::vector<int32_t> encode(const std::string& text) {
  return tiny_pair().slm->tokenizer().encode(text, true, false);
}

// Concatenated text of an SSE stream's chunks; checks the framing on the way.
std::string stream_text(const std::string& reply, json* last = nullptr) {
  // De-chunk the HTTP body.
  std::string body = body_of(reply), data;
  for (size_t at = 0;;) {
    const size_t eol = body.find("\r\n", at);
    if (eol == std::string::npos) break;
    const size_t n = std::strtoul(body.substr(at, eol - at).c_str(), nullptr, 16);
    if (n == 0) break;
    data += body.substr(eol + 2, n);
    at = eol + 2 + n + 2;
  }
  std::string text;
  size_t at = 0;
  bool done = false;
  while (at < data.size()) {
    const size_t end = data.find("\n\n", at);
    EXPECT_NE(end, std::string::npos) << "an event without its blank line";
    if (end == std::string::npos) break;
    const std::string event = data.substr(at, end - at);
    at = end + 2;
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    EXPECT_FALSE(done) << "an event after [DONE]";
    if (event == "data: [DONE]") {
      done = true;
      continue;
    }
    json j = json::parse(event.substr(6));
    text += j["choices"][0].value("text", "");
    if (last) *last = j;
  }
  EXPECT_TRUE(done) << "no data: [DONE]";
  return text;
}

TEST(ApiService, CompletionEqualsTheDeviceLoop) {
  Fixture f;
  const json body = {{"prompt", "hello there"}, {"max_tokens", 24}, {"temperature", 0}};
  std::string raw;
  json r = f.complete(body, &raw);
  const RunResult want = direct(encode("hello there"), base_config(), 24);
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["choices"][0]["text"], api_text(want));
  EXPECT_EQ(r["usage"]["completion_tokens"], want.tokens.size());
  EXPECT_EQ(r["usage"]["prompt_tokens"], encode("hello there").size());
  EXPECT_EQ(r["usage"]["hlm"]["uploads"], want.uploads);
  EXPECT_EQ(r["usage"]["hlm"]["accepted"], want.accepted);
  EXPECT_EQ(r["usage"]["hlm"]["resampled"], want.resampled);
  EXPECT_EQ(r["usage"]["hlm"]["uplink_bytes"], (want.totals.ul_bits + 7) / 8);
  EXPECT_GT(r["usage"]["hlm"]["energy_j"]["total"].get<double>(), 0);
  // Which compute times priced it: this service's RunConfig has no cost profiles.
  EXPECT_EQ(r["usage"]["hlm"]["cost"], json({{"device", "measured"}, {"cloud", "measured"}}));
  EXPECT_EQ(r["hlm"]["cloud"], "verified");
  EXPECT_NE(raw.find("X-HLM-Cloud: verified"), std::string::npos);
  const bool eog = tiny_pair().slm->tokenizer().is_eog(want.tokens.back());
  EXPECT_EQ(r["choices"][0]["finish_reason"], eog ? "stop" : "length");
  f.wait_idle();
  EXPECT_EQ(f.cloud.sessions(), 0) << "the cloud session is closed after each request";
}

TEST(ApiService, StreamCarriesTheSameTextAndUsageLast) {
  Fixture f;
  json body = {{"prompt", "stream me"}, {"max_tokens", 20}, {"temperature", 0}};
  const std::string whole = f.complete(body)["choices"][0]["text"];
  body["stream"] = true;
  const std::string reply = post(f.port(), "/v1/completions", body.dump());
  EXPECT_EQ(status_of(reply), 200);
  EXPECT_NE(reply.find("Content-Type: text/event-stream"), std::string::npos) << reply;
  json last;
  EXPECT_EQ(stream_text(reply, &last), whole);
  EXPECT_FALSE(last["choices"][0]["finish_reason"].is_null());
  EXPECT_EQ(last["usage"]["completion_tokens"].get<int>() > 0, true);
  EXPECT_TRUE(last["usage"]["hlm"].contains("uplink_bytes"));
}

TEST(ApiService, StopSequenceEndsTheTextBeforeIt) {
  Fixture f;
  json body = {{"prompt", "abc"}, {"max_tokens", 40}, {"temperature", 0}};
  const std::string whole = f.complete(body)["choices"][0]["text"];
  // A stop sequence of two ASCII letters from past the text's start.
  size_t at = 3;
  while (at + 1 < whole.size() &&
         !(std::isalpha(uint8_t(whole[at])) && std::isalpha(uint8_t(whole[at + 1]))))
    ++at;
  ASSERT_LT(at + 1, whole.size()) << "no ASCII pair in " << whole;
  const std::string stop = whole.substr(at, 2);
  const std::string want = whole.substr(0, whole.find(stop));
  body["stop"] = stop;
  json r = f.complete(body);
  EXPECT_EQ(r["choices"][0]["text"], want);
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  EXPECT_LT(r["usage"]["completion_tokens"].get<int>(), 40);
  body["stream"] = true;
  EXPECT_EQ(stream_text(post(f.port(), "/v1/completions", body.dump())), want);
}

TEST(ApiService, ConcurrentRequestsEqualSequentialOnes) {
  ApiOptions o;
  o.max_concurrent = 8;
  Fixture f(o);
  std::vector<std::string> seq(8), par(8);
  auto body = [](int i) {
    return json{{"prompt", fmt::format("prompt number {}", i)},
                {"max_tokens", 16 + i},
                {"temperature", 0},
                {"stream", i % 2 == 1}};
  };
  auto text = [&](int i) -> std::string {
    const std::string reply = post(f.port(), "/v1/completions", body(i).dump());
    EXPECT_EQ(status_of(reply), 200) << "request " << i << ": " << reply;
    if (status_of(reply) != 200) return "";
    return i % 2 ? stream_text(reply)
                 : json::parse(body_of(reply))["choices"][0]["text"].get<std::string>();
  };
  for (int i = 0; i < 8; ++i) seq[size_t(i)] = text(i);
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) clients.emplace_back([&, i] { par[size_t(i)] = text(i); });
  for (auto& t : clients) t.join();
  for (int i = 0; i < 8; ++i) EXPECT_EQ(par[size_t(i)], seq[size_t(i)]) << i;
}

TEST(ApiService, ASequentialClientNeverFindsItsLastRequestRunning) {
  ApiOptions o;
  o.max_concurrent = 1;
  Fixture f(o);
  for (int i = 0; i < 30; ++i) {
    json body = {{"prompt", "next"}, {"max_tokens", 1}, {"stream", i % 2 == 1}};
    const std::string reply = post(f.port(), "/v1/completions", body.dump());
    ASSERT_EQ(status_of(reply), 200) << "request " << i << ": " << reply;
  }
}

TEST(ApiService, BusyServerAnswers429AndClientsThatLeaveFreeTheirSlot) {
  ApiOptions o;
  o.max_concurrent = 1;
  Fixture f(o);
  f.cloud.hold();
  const int fd = connect_to(f.port());
  send_all(fd, post_request("/v1/completions", R"({"prompt":"hold","max_tokens":50})"));
  const auto t0 = Clock::now();
  while (!f.cloud.waiting() && Clock::now() - t0 < std::chrono::seconds(10))
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(f.service->active(), 1);
  const std::string busy = post(f.port(), "/v1/completions", R"({"prompt":"x"})");
  EXPECT_EQ(status_of(busy), 429);
  json e = json::parse(body_of(busy));
  EXPECT_EQ(e["error"]["code"], 429);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("--max-concurrent"), std::string::npos);
  ::close(fd);  // the client goes away mid-generation
  f.cloud.release();
  f.wait_idle();
  EXPECT_EQ(f.service->active(), 0);
  EXPECT_NE(f.service->render_metrics().find("hlm_api_cancelled_total 1"), std::string::npos)
      << f.service->render_metrics();
  EXPECT_NE(f.service->render_metrics().find("hlm_api_active_requests 0"), std::string::npos);
  EXPECT_EQ(status_of(post(f.port(), "/v1/completions", R"({"prompt":"x","max_tokens":2})")), 200);
}

TEST(ApiService, UnreachableCloudAnswersFromTheSlmAndSaysSo) {
  Fixture f;
  f.cloud.unreachable = true;
  for (const char* policy : {"hlm", "llm", "spec(3)"}) {
    std::string raw;
    json r = f.complete({{"prompt", "offline"}, {"max_tokens", 12}, {"hlm", {{"policy", policy}}}},
                        &raw);
    EXPECT_FALSE(r["choices"][0]["text"].get<std::string>().empty()) << policy;
    EXPECT_EQ(r["hlm"]["cloud"], "unreachable") << policy;
    EXPECT_NE(r["hlm"]["cloud_error"].get<std::string>().find("connection refused"),
              std::string::npos);
    EXPECT_NE(raw.find("X-HLM-Cloud: unreachable"), std::string::npos) << policy;
  }
  const std::string health = get(f.port(), "/health");
  EXPECT_EQ(json::parse(body_of(health))["cloud_state"], "unreachable");
  f.cloud.unreachable = false;
  json back = f.complete({{"prompt", "online"}, {"max_tokens", 4}});
  EXPECT_EQ(back["hlm"]["cloud"], "verified");
}

TEST(ApiService, ErrorsHaveOpenAisShape) {
  Fixture f;
  const std::pair<std::string, int> cases[] = {
      {post(f.port(), "/v1/completions", R"({"prompt":"x","n":3})"), 400},
      {post(f.port(), "/v1/completions", R"({"prompt":"x","max_tokens":100000})"), 400},
      {post(f.port(), "/v1/completions", "{oops"), 400},
      {post(f.port(), "/v1/nothing", "{}"), 404},
      {get(f.port(), "/v1/completions"), 405},
  };
  for (const auto& [reply, status] : cases) {
    EXPECT_EQ(status_of(reply), status) << reply;
    json e = json::parse(body_of(reply), nullptr, false);
    ASSERT_TRUE(e.contains("error")) << reply;
    EXPECT_TRUE(e["error"]["message"].is_string());
    EXPECT_TRUE(e["error"]["type"].is_string());
    EXPECT_EQ(e["error"]["code"], status);
  }
  const std::string models = get(f.port(), "/v1/models");
  EXPECT_EQ(json::parse(body_of(models))["data"][0]["id"], "hlm");
}

}  // namespace
}  // namespace hlm::api
