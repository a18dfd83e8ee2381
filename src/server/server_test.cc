// The server in-process on 127.0.0.1 (port 0) with tiny models: network output equals
// in-process output, pipelined or not, and a pipelined device's rollbacks leave the server's
// context the device's; malformed, oversized, out-of-order and unknown-session messages get clear
// errors while another client keeps being served; API keys, rate and session limits, idle
// expiry, batching across sessions, metrics, replies priced by a cloud cost line; and the device
// riding out a server restart.
#include "server/server.h"

#include <arpa/inet.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "cloud/cloud_verifier.h"
#include "device/device.h"
#include "engine/model_writer.h"
#include "models/testing.h"
#include "protocol/convert.h"
#include "protocol/hlm.grpc.pb.h"
#include "protocol/remote_verifier.h"
#include "server/security.h"

namespace hlm::server {
namespace {

const TinyPair& tiny_pair() {
  static const TinyPair p = make_tiny_pair(3).value();
  return p;
}

const std::vector<int32_t> kPrompt = {1, 70, 80, 65, 100, 101, 77};

std::unique_ptr<Server> start(ServerOptions o = {}) {
  o.listen = "127.0.0.1:0";
  if (o.threads == 0) o.threads = 2;
  if (o.max_context == 2048) o.max_context = 256;
  auto s = Server::start(tiny_pair().llm, o);
  EXPECT_TRUE(s.ok()) << s.error().message;
  return s.ok() ? std::move(s).value() : nullptr;
}

RunConfig config(const std::string& policy, float temp = 0.8f, uint64_t seed = 5) {
  RunConfig c;
  c.policy = parse_policy(policy).value();
  c.sampling.temperature = temp;
  c.sampling.seed = seed;
  c.max_tokens = 40;
  c.n_ctx = 128;
  return c;
}

RunResult run_local(const RunConfig& cfg) {
  ThreadPool pool(2);
  CloudVerifier cloud(tiny_pair().llm, pool, {2, 256});
  Device dev(tiny_pair().slm, pool, cfg);
  auto r = dev.generate(kPrompt, &cloud);
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? r.value() : RunResult{};
}

RunResult run_remote(const RunConfig& cfg, const std::string& target, std::string key = {}) {
  ThreadPool pool(1);
  RemoteOptions ro;
  ro.target = target;
  ro.api_key = std::move(key);
  RemoteVerifier remote(ro);
  Device dev(tiny_pair().slm, pool, cfg);
  auto r = dev.generate(kPrompt, &remote);
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? r.value() : RunResult{};
}

std::unique_ptr<v1::VerifierService::Stub> stub(const std::string& target) {
  return v1::VerifierService::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
}

v1::OpenRequest open_request() {
  SessionParams p;
  p.vocab_fingerprint = tiny_pair().llm->tokenizer().fingerprint();
  p.n_vocab = tiny_pair().llm->config().n_vocab;
  p.sampling = {0.8f, 0, 1.0f, 3};
  p.encoding = Encoding::kFull;
  p.prompt = kPrompt;
  v1::OpenRequest m;
  protocol::to_proto(p, &m);
  return m;
}

// A valid single-draft request for `session` at `step`.
v1::VerifyRequest verify_request(uint64_t session, uint64_t step, int32_t draft = 100) {
  const int V = tiny_pair().llm->config().n_vocab;
  std::vector<float> p(size_t(V), 0.5f / float(V - 1));
  p[size_t(draft)] = 0.5f;
  VerifyRequest r;
  r.session = session;
  r.pending = {101};
  r.drafts = {draft};
  r.p_hat = {encode(p, EncodingConfig{})};
  v1::VerifyRequest m;
  protocol::to_proto(r, step, &m);
  return m;
}

struct Call {
  grpc::StatusCode code;
  std::string message;
};

template <class Req, class Rep, class Fn>
Call call(Fn fn, const Req& req, Rep* rep, const std::string& key = {}) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!key.empty()) ctx.AddMetadata("authorization", "Bearer " + key);
  grpc::Status s = fn(&ctx, req, rep);
  return {s.error_code(), s.error_message()};
}

// A second client that must keep being served whatever the first one does.
struct GoodClient {
  std::unique_ptr<v1::VerifierService::Stub> s;
  uint64_t session = 0, step = 0;
  explicit GoodClient(const std::string& target) : s(stub(target)) {
    v1::OpenReply rep;
    auto c =
        call([&](auto* ctx, auto& r, auto* o) { return s->Open(ctx, r, o); }, open_request(), &rep);
    EXPECT_EQ(c.code, grpc::StatusCode::OK) << c.message;
    session = rep.session();
  }
  void check_served() {
    v1::VerifyReply rep;
    auto c = call([&](auto* ctx, auto& r, auto* o) { return s->Verify(ctx, r, o); },
                  verify_request(session, step), &rep);
    ASSERT_EQ(c.code, grpc::StatusCode::OK) << c.message;
    step++;
  }
};

// --- equivalence ------------------------------------------------------------------------------

TEST(ServerEquivalence, NetworkOutputEqualsInProcessOutput) {
  auto srv = start();
  ASSERT_TRUE(srv);
  struct Case {
    const char* policy;
    float temp;
    const char* encoding;
  };
  for (const Case& c :
       {Case{"hlm", 0.8f, "full"}, Case{"hlm", 0.0f, "full"}, Case{"uhlm(0.2)", 0.8f, "topk(16,8)"},
        Case{"iuhlm", 0.8f, "full"}, Case{"rand(0.5)", 1.0f, "ids"}, Case{"spec", 0.8f, "full"},
        Case{"llm", 0.8f, "full"}}) {
    RunConfig cfg = config(c.policy, c.temp, 11);
    cfg.encoding = parse_encoding(c.encoding).value();
    const RunResult local = run_local(cfg);
    const RunResult remote = run_remote(cfg, srv->address());
    EXPECT_EQ(local.tokens, remote.tokens) << c.policy << " T=" << c.temp << " " << c.encoding;
    // Pipelined over the network (the default), with replies arriving on their own time, the
    // output is still the one the device gets waiting for every reply.
    RunConfig waiting = cfg;
    waiting.pipeline = false;
    EXPECT_EQ(run_local(waiting).tokens, remote.tokens) << c.policy << " T=" << c.temp;
    EXPECT_EQ(local.uploads, remote.uploads) << c.policy;
    EXPECT_EQ(local.resampled, remote.resampled) << c.policy;
    EXPECT_EQ(remote.slm_only, 0) << c.policy;
    EXPECT_FALSE(local.tokens.empty());
  }
  EXPECT_GT(srv->metrics().verifications.load(), 0u);
  EXPECT_EQ(srv->metrics().sessions.load(), 0) << "clients close their sessions on the way out";
}

TEST(ServerCost, RepliesReportTheProfilesTimeAndBatchesAreRecorded) {
  // `hlm serve --cloud-cost`: each verification reports the line's time for its batch, and the
  // batches (one device waiting for every reply: one request each) are kept for a fit.
  ServerOptions o;
  o.cloud_cost = CostLine{2e-3, 1e-3, 1e-5};
  o.record_batches = true;
  auto srv = start(o);
  ASSERT_TRUE(srv);
  RunConfig cfg = config("hlm");
  cfg.pipeline = false;
  cfg.max_tokens = 12;
  const RunResult r = run_remote(cfg, srv->address());
  ASSERT_GT(r.uploads, 0);
  const std::vector<CostSample> batches = srv->batch_samples();
  ASSERT_EQ(int64_t(batches.size()), r.uploads);
  EXPECT_EQ(batches.front().work.context, double(kPrompt.size()) - 1);
  size_t i = 0;
  for (const auto& t : r.trace) {
    if (!t.uploaded) continue;
    ASSERT_LT(i, batches.size());
    const Work& w = batches[i++].work;
    EXPECT_EQ(w.batch, 1);
    EXPECT_EQ(w.n, 1);  // hlm: nothing pending, one draft
    EXPECT_DOUBLE_EQ(t.t_llm, o.cloud_cost->seconds(w)) << "token " << t.position;
  }
  EXPECT_EQ(i, batches.size());
}

// The network client, recorded: every request the device submits, numbered in submission
// order, with the reply it got.
class RecordingVerifier : public Verifier {
 public:
  explicit RecordingVerifier(RemoteVerifier& inner) : inner_(inner) {}
  Result<SessionId> open(const SessionParams& p) override {
    params = p;
    return inner_.open(p);
  }
  Result<VerifyReply> verify(const VerifyRequest& r) override { return submit(r).get(); }
  std::future<Result<VerifyReply>> submit(const VerifyRequest& r) override {
    Exchange* e;
    {
      std::lock_guard<std::mutex> lock(mu);
      e = &exchanges.emplace_back(Exchange{r, std::nullopt});
    }
    return std::async(std::launch::async, [this, e, f = inner_.submit(r)]() mutable {
      auto reply = f.get();
      std::lock_guard<std::mutex> lock(mu);
      if (reply.ok()) e->reply = *reply;
      return reply;
    });
  }
  bool asynchronous() const override { return true; }
  Status close(SessionId s) override { return inner_.close(s); }
  Status generate(const GenerateRequest& r, const TokenSink& sink) override {
    return inner_.generate(r, sink);
  }

  struct Exchange {
    VerifyRequest request;
    std::optional<VerifyReply> reply;
  };
  SessionParams params;
  std::deque<Exchange> exchanges;  // a deque: appending keeps the others where they are
  std::mutex mu;

 private:
  RemoteVerifier& inner_;
};

// Rollback over the network: the server applied exactly the requests that were not stale, in
// order. Replaying those into an in-process cloud with the same session parameters gives the
// same replies (a stale request applied by the server would have moved its context and its
// random draws), and after each of them the cloud's context is a prefix of the device's output.
TEST(ServerEquivalence, PipelinedRollbackKeepsTheServersContextTheDevices) {
  auto srv = start();
  ASSERT_TRUE(srv);
  for (uint64_t seed : {3, 4}) {
    ThreadPool pool(1);
    RemoteOptions ro;
    ro.target = srv->address();
    RemoteVerifier remote(ro);
    RecordingVerifier recording(remote);
    Device dev(tiny_pair().slm, pool, config("hlm", 0.8f, seed));
    auto r = dev.generate(kPrompt, &recording);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_GT(r->resampled, 0);
    ASSERT_GT(r->discarded, 0) << "requests were sent past a replaced draft";

    CloudVerifier shadow(tiny_pair().llm, pool, {1, 256});
    const SessionId s = shadow.open(recording.params).value();
    const std::vector<int32_t> device = r->context();
    int served = 0, stale = 0;
    for (const auto& [request, reply] : recording.exchanges) {
      ASSERT_TRUE(reply) << "every request was answered";
      if (reply->stale) {
        stale++;
        continue;
      }
      VerifyRequest again = request;
      again.session = s;
      auto want = shadow.verify(again);
      ASSERT_TRUE(want.ok()) << want.error().message;
      EXPECT_EQ(reply->n_accepted, want->n_accepted) << "request " << served;
      EXPECT_EQ(reply->next, want->next) << "request " << served;
      const std::vector<int32_t> c = shadow.context(s).value();
      ASSERT_LE(c.size(), device.size());
      EXPECT_TRUE(std::equal(c.begin(), c.end(), device.begin())) << "request " << served;
      served++;
    }
    EXPECT_EQ(served, r->uploads);
    EXPECT_EQ(stale, r->discarded);
  }
}

// --- refusals ---------------------------------------------------------------------------------

TEST(ServerRefusals, BadOpensNameTheProblem) {
  auto srv = start();
  ASSERT_TRUE(srv);
  GoodClient good(srv->address());
  auto s = stub(srv->address());
  auto open = [&](v1::OpenRequest m) {
    v1::OpenReply rep;
    return call([&](auto* ctx, auto& r, auto* o) { return s->Open(ctx, r, o); }, m, &rep);
  };
  struct Case {
    std::function<void(v1::OpenRequest&)> edit;
    grpc::StatusCode code;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {[](auto& m) { m.set_protocol_version(2); }, grpc::StatusCode::FAILED_PRECONDITION,
       "protocol version"},
      {[](auto& m) { m.set_vocab_fingerprint(m.vocab_fingerprint() ^ 1); },
       grpc::StatusCode::FAILED_PRECONDITION, "vocabulary mismatch"},
      {[](auto& m) { m.set_n_vocab(m.n_vocab() + 1); }, grpc::StatusCode::FAILED_PRECONDITION,
       "vocabulary mismatch"},
      {[](auto& m) { m.clear_prompt(); }, grpc::StatusCode::INVALID_ARGUMENT, "OpenRequest.prompt"},
      {[](auto& m) { m.set_prompt(2, 1 << 20); }, grpc::StatusCode::INVALID_ARGUMENT,
       "OpenRequest.prompt[2]"},
      {[](auto& m) { m.mutable_sampling()->set_top_p(3); }, grpc::StatusCode::INVALID_ARGUMENT,
       "OpenRequest.sampling.top_p"},
      {[](auto& m) { m.set_encoding(static_cast<v1::Encoding>(42)); },
       grpc::StatusCode::INVALID_ARGUMENT, "OpenRequest.encoding"},
  };
  for (const Case& c : cases) {
    v1::OpenRequest m = open_request();
    c.edit(m);
    const Call r = open(m);
    EXPECT_EQ(r.code, c.code) << c.needle << ": " << r.message;
    EXPECT_NE(r.message.find(c.needle), std::string::npos) << r.message;
    good.check_served();
  }
}

TEST(ServerRefusals, BadVerifiesAreRefusedAndOthersKeepBeingServed) {
  auto srv = start();
  ASSERT_TRUE(srv);
  GoodClient good(srv->address());
  auto s = stub(srv->address());
  v1::OpenReply opened;
  ASSERT_EQ(
      call([&](auto* ctx, auto& r, auto* o) { return s->Open(ctx, r, o); }, open_request(), &opened)
          .code,
      grpc::StatusCode::OK);
  const uint64_t sid = opened.session();
  auto verify = [&](const v1::VerifyRequest& m) {
    v1::VerifyReply rep;
    return call([&](auto* ctx, auto& r, auto* o) { return s->Verify(ctx, r, o); }, m, &rep);
  };
  const int V = tiny_pair().llm->config().n_vocab;
  struct Case {
    std::function<void(v1::VerifyRequest&)> edit;
    grpc::StatusCode code;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {[&](auto& m) { m.set_session(sid ^ 0x5555); }, grpc::StatusCode::NOT_FOUND,
       "unknown session"},
      {[&](auto& m) { m.set_drafts(0, V); }, grpc::StatusCode::INVALID_ARGUMENT,
       "VerifyRequest.drafts[0]"},
      {[&](auto& m) { m.add_pending(-7); }, grpc::StatusCode::INVALID_ARGUMENT,
       "VerifyRequest.pending[1]"},
      {[&](auto& m) { m.clear_p_hat(); }, grpc::StatusCode::INVALID_ARGUMENT,
       "VerifyRequest.p_hat"},
      {[&](auto& m) { m.set_p_hat(0, "\x01garbage"); }, grpc::StatusCode::INVALID_ARGUMENT,
       "VerifyRequest.p_hat[0]"},
      {[&](auto& m) {
         for (int i = 0; i < 40; ++i) m.add_drafts(1);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "VerifyRequest.drafts"},
      {[&](auto& m) { m.set_step(3); }, grpc::StatusCode::FAILED_PRECONDITION,
       "VerifyRequest.step"},
      {[&](auto& m) {
         for (int i = 0; i < 250; ++i) m.add_pending(5);
       },
       grpc::StatusCode::OUT_OF_RANGE, "--max-context"},
  };
  for (const Case& c : cases) {
    v1::VerifyRequest m = verify_request(sid, 0);
    c.edit(m);
    const Call r = verify(m);
    EXPECT_EQ(r.code, c.code) << c.needle << ": " << r.message;
    EXPECT_NE(r.message.find(c.needle), std::string::npos) << r.message;
    good.check_served();
  }
  // The refused requests left the session where it was: step 0 still works, then step 1.
  EXPECT_EQ(verify(verify_request(sid, 0)).code, grpc::StatusCode::OK);
  const Call replay = verify(verify_request(sid, 0));
  EXPECT_EQ(replay.code, grpc::StatusCode::FAILED_PRECONDITION) << replay.message;
  EXPECT_NE(replay.message.find("expected 1, got 0"), std::string::npos) << replay.message;
  EXPECT_EQ(verify(verify_request(sid, 1)).code, grpc::StatusCode::OK);

  // Oversized: beyond the gRPC receive limit, refused before it is parsed.
  v1::VerifyRequest huge = verify_request(sid, 2);
  huge.set_p_hat(0, std::string(protocol::max_verify_request_bytes({V, 256, 16}) + 1024, 'x'));
  const Call big = verify(huge);
  EXPECT_EQ(big.code, grpc::StatusCode::RESOURCE_EXHAUSTED) << big.message;
  good.check_served();

  // Close, then the session is gone.
  v1::CloseRequest cr;
  cr.set_session(sid);
  v1::CloseReply crep;
  EXPECT_EQ(call([&](auto* ctx, auto& r, auto* o) { return s->Close(ctx, r, o); }, cr, &crep).code,
            grpc::StatusCode::OK);
  const Call after = verify(verify_request(sid, 2));
  EXPECT_EQ(after.code, grpc::StatusCode::NOT_FOUND) << after.message;
  good.check_served();
  EXPECT_GT(srv->metrics().errors_invalid.load(), 0u);
}

TEST(ServerRefusals, GarbageBytesAndVanishingClientsDoNotHurtOthers) {
  auto srv = start();
  ASSERT_TRUE(srv);
  GoodClient good(srv->address());
  // Bytes that are not a protobuf message, through gRPC's generic stub.
  {
    auto channel = grpc::CreateChannel(srv->address(), grpc::InsecureChannelCredentials());
    grpc::GenericStub generic(channel);
    const char junk[] = "\xff\xff\xff\xff\x0f\x12\x34garbage\x00\x01";
    for (const char* method : {"/hlm.v1.VerifierService/Verify", "/hlm.v1.VerifierService/Open",
                               "/hlm.v1.VerifierService/Nope"}) {
      grpc::Slice slice(junk, sizeof junk);
      grpc::ByteBuffer req(&slice, 1), rep;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      grpc::Status st;
      generic.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &rep, [&](grpc::Status s) {
        std::lock_guard<std::mutex> lock(mu);
        st = s;
        done = true;
        cv.notify_all();
      });
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return done; });
      EXPECT_FALSE(st.ok()) << method;
      good.check_served();
    }
  }
  // Raw TCP: not HTTP/2 at all, then a connection dropped half-way.
  for (const std::string& junk : {std::string("GET / HTTP/1.1\r\n\r\n"), std::string(4096, '\x07'),
                                  std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00")}) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(srv->port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    (void)!write(fd, junk.data(), junk.size());
    close(fd);
    good.check_served();
  }
  // A client that gives up mid-request (its deadline passes while the server works).
  {
    auto s = stub(srv->address());
    v1::OpenReply opened;
    ASSERT_EQ(call([&](auto* ctx, auto& r, auto* o) { return s->Open(ctx, r, o); }, open_request(),
                   &opened)
                  .code,
              grpc::StatusCode::OK);
    for (int i = 0; i < 5; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::microseconds(50));
      v1::VerifyReply rep;
      (void)s->Verify(&ctx, verify_request(opened.session(), 0), &rep);
    }
    good.check_served();
  }
}

// --- security ---------------------------------------------------------------------------------

// Listeners refuse what they cannot honour: a port out of range (gRPC would take it modulo
// 65536) and a port another server holds (gRPC would share it through SO_REUSEPORT and split
// the devices' sessions between two processes).
TEST(ServerRefusals, EngineBackendRefusesAModelLoadedWithoutWeights) {
  testing::ScopedTempDir dir;
  const std::string path = dir / "llm.gguf";
  ASSERT_TRUE(write_tiny_model(path, TinyModelSpec{}).ok());
  auto vocab = Model::load(path, Model::Weights::kSkip);
  ASSERT_TRUE(vocab.ok()) << vocab.error().message;
  ServerOptions o;
  o.threads = 1;
  o.listen = "127.0.0.1:0";
  auto s = Server::start(*vocab, o);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("without its weights"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find(path), std::string::npos);
}

TEST(ServerListen, RefusesBadPortsAndPortsInUse) {
  ServerOptions o;
  o.threads = 1;
  o.max_context = 256;
  o.listen = "127.0.0.1:99999";
  auto bad = Server::start(tiny_pair().llm, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("0 to 65535"), std::string::npos) << bad.error().message;

  auto first = start();
  ASSERT_TRUE(first);
  o.listen = fmt::format("127.0.0.1:{}", first->port());
  auto second = Server::start(tiny_pair().llm, o);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("another process holds the port"), std::string::npos)
      << second.error().message;

  o.listen = "127.0.0.1:0";
  o.metrics_listen = fmt::format("127.0.0.1:{}", first->port());
  auto metrics_taken = Server::start(tiny_pair().llm, o);
  ASSERT_FALSE(metrics_taken.ok());
  EXPECT_NE(metrics_taken.error().message.find("--metrics-listen"), std::string::npos)
      << metrics_taken.error().message;
}

TEST(ServerSecurity, ApiKeyRequiredAndCheckedAndNonLoopbackNeedsOne) {
  ServerOptions o;
  o.api_key = "correct horse battery staple";
  auto srv = start(o);
  ASSERT_TRUE(srv);
  auto s = stub(srv->address());
  v1::OpenReply rep;
  auto open = [&](const std::string& key) {
    return call([&](auto* ctx, auto& r, auto* out) { return s->Open(ctx, r, out); }, open_request(),
                &rep, key);
  };
  const Call none = open("");
  EXPECT_EQ(none.code, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(none.message.find("Bearer"), std::string::npos) << none.message;
  EXPECT_EQ(open("correct horse battery stapler").code, grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(open("correct horse battery staple").code, grpc::StatusCode::OK);
  // The device loop with the key works; without it fails with a refusal, not an outage.
  const RunResult ok = run_remote(config("hlm"), srv->address(), o.api_key);
  EXPECT_EQ(ok.tokens.size(), 40u);
  RemoteOptions ro;
  ro.target = srv->address();
  RemoteVerifier nokey(ro);
  SessionParams sp;
  sp.vocab_fingerprint = tiny_pair().llm->tokenizer().fingerprint();
  sp.n_vocab = tiny_pair().llm->config().n_vocab;
  sp.prompt = kPrompt;
  auto refused = nokey.open(sp);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kFailed) << refused.error().message;
  EXPECT_GE(srv->metrics().errors_unauthenticated.load(), 3u);

  ServerOptions open_world;
  open_world.listen = "0.0.0.0:0";
  auto refused_listen = Server::start(tiny_pair().llm, open_world);
  ASSERT_FALSE(refused_listen.ok());
  EXPECT_NE(refused_listen.error().message.find("API key"), std::string::npos);
}

// TLS: a certificate made here with the openssl CLI (shipped with ca-certificates) for
// 127.0.0.1. A client trusting it generates through the server; a plaintext client and a
// client trusting other roots are refused as outages (the handshake fails), never served.
TEST(ServerSecurity, TlsServesTrustingClientsOnly) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("hlm_tls_{}", getpid());
  std::filesystem::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  const std::string other = (dir / "other.pem").string(), other_key = (dir / "other.key").string();
  auto make_cert = [&](const std::string& c, const std::string& k) {
    const std::string cmd = fmt::format(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout '{}' -out '{}' -days 1 -subj "
        "/CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost >/dev/null 2>&1",
        k, c);
    return std::system(cmd.c_str()) == 0;
  };
  if (!make_cert(cert, key) || !make_cert(other, other_key)) {
    std::filesystem::remove_all(dir);
    GTEST_SKIP() << "the openssl CLI could not make a test certificate";
  }
  EXPECT_FALSE(read_pem_file((dir / "missing.pem").string(), "--tls-cert").ok());
  const std::string plain = (dir / "plain.txt").string();
  std::ofstream(plain) << "not a certificate\n";
  const auto not_pem = read_pem_file(plain, "--tls-cert");
  ASSERT_FALSE(not_pem.ok());
  EXPECT_NE(not_pem.error().message.find("not PEM"), std::string::npos) << not_pem.error().message;
  EXPECT_NE(not_pem.error().message.find(plain), std::string::npos);
  ServerOptions o;
  o.tls_cert_pem = read_pem_file(cert, "--tls-cert").value();
  o.tls_key_pem = read_pem_file(key, "--tls-key").value();
  ServerOptions half = o;
  half.tls_key_pem.clear();
  half.listen = "127.0.0.1:0";
  auto refused = Server::start(tiny_pair().llm, half);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("--tls-key"), std::string::npos);

  auto srv = start(o);
  ASSERT_TRUE(srv);
  const auto url = cloud_target("grpcs://" + srv->address());
  ASSERT_TRUE(url.ok());
  EXPECT_TRUE(url->tls);
  EXPECT_FALSE(cloud_target("grpc://" + srv->address())->tls);

  SessionParams sp;
  sp.vocab_fingerprint = tiny_pair().llm->tokenizer().fingerprint();
  sp.n_vocab = tiny_pair().llm->config().n_vocab;
  sp.prompt = kPrompt;
  auto open_with = [&](RemoteOptions ro) {
    ro.target = url->target;
    ro.open_timeout_s = 5;
    RemoteVerifier remote(ro);
    return remote.open(sp);
  };
  RemoteOptions trusting;
  trusting.tls_roots_pem = o.tls_cert_pem;
  RemoteOptions plaintext;
  RemoteOptions wrong_roots;
  wrong_roots.tls_roots_pem = read_pem_file(other, "--tls-ca").value();
  EXPECT_TRUE(open_with(trusting).ok());
  for (const RemoteOptions& ro : {plaintext, wrong_roots}) {
    auto r = open_with(ro);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable) << r.error().message;
  }
  std::filesystem::remove_all(dir);
  EXPECT_EQ(srv->metrics().verifications.load(), 0u);

  // The whole device loop over TLS.
  ThreadPool pool(1);
  trusting.target = url->target;
  RemoteVerifier remote(trusting);
  Device dev(tiny_pair().slm, pool, config("hlm"));
  auto r = dev.generate(kPrompt, &remote);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->tokens.size(), 40u);
  EXPECT_EQ(r->slm_only, 0);
}

TEST(ServerSecurity, RateLimitPerClient) {
  ServerOptions o;
  o.rate_limit = 5;
  o.rate_burst = 5;
  auto srv = start(o);
  ASSERT_TRUE(srv);
  auto s = stub(srv->address());
  int ok = 0, limited = 0;
  for (int i = 0; i < 20; ++i) {
    v1::HealthReply rep;
    const Call c = call([&](auto* ctx, auto& r, auto* out) { return s->Health(ctx, r, out); },
                        v1::HealthRequest(), &rep);
    if (c.code == grpc::StatusCode::OK) ok++;
    if (c.code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      limited++;
      EXPECT_NE(c.message.find("rate limit"), std::string::npos);
    }
  }
  EXPECT_GE(ok, 5);
  EXPECT_LE(ok, 8);
  EXPECT_GE(limited, 12);
}

TEST(ServerSessions, SessionLimitAndIdleExpiry) {
  ServerOptions o;
  o.max_sessions = 2;
  o.idle_timeout_s = 0.3;
  auto srv = start(o);
  ASSERT_TRUE(srv);
  auto s = stub(srv->address());
  auto open = [&](v1::OpenReply* rep) {
    return call([&](auto* ctx, auto& r, auto* out) { return s->Open(ctx, r, out); }, open_request(),
                rep);
  };
  v1::OpenReply a, b, c;
  EXPECT_EQ(open(&a).code, grpc::StatusCode::OK);
  EXPECT_EQ(open(&b).code, grpc::StatusCode::OK);
  EXPECT_NE(a.session(), b.session());
  const Call full = open(&c);
  EXPECT_EQ(full.code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(full.message.find("--max-sessions"), std::string::npos) << full.message;
  std::this_thread::sleep_for(std::chrono::milliseconds(900));
  v1::VerifyReply rep;
  const Call gone = call([&](auto* ctx, auto& r, auto* out) { return s->Verify(ctx, r, out); },
                         verify_request(a.session(), 0), &rep);
  EXPECT_EQ(gone.code, grpc::StatusCode::NOT_FOUND) << gone.message;
  EXPECT_EQ(srv->metrics().sessions.load(), 0);
  EXPECT_EQ(srv->metrics().sessions_expired.load(), 2u);
  EXPECT_EQ(open(&c).code, grpc::StatusCode::OK);
  // Health reports it.
  v1::HealthReply h;
  ASSERT_EQ(call([&](auto* ctx, auto& r, auto* out) { return s->Health(ctx, r, out); },
                 v1::HealthRequest(), &h)
                .code,
            grpc::StatusCode::OK);
  EXPECT_TRUE(h.serving());
  EXPECT_EQ(h.sessions(), 1);
  EXPECT_EQ(h.protocol_version(), protocol::kProtocolVersion);
}

// --- streamed generation ---------------------------------------------------------------------

v1::GenerateRequest generate_request(int max_tokens) {
  v1::GenerateRequest m;
  *m.mutable_session() = open_request();
  m.set_max_tokens(max_tokens);
  m.set_ignore_eos(true);
  return m;
}

// Reads a Generate stream to its end, or hangs up after `hang_up_after` tokens.
Call generate(v1::VerifierService::Stub& s, const v1::GenerateRequest& req,
              std::vector<int32_t>* tokens = nullptr, int hang_up_after = -1) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = s.Generate(&ctx, req);
  v1::GenerateChunk chunk;
  int n = 0;
  while (n != hang_up_after && reader->Read(&chunk)) {
    if (tokens) tokens->push_back(chunk.token());
    n++;
  }
  if (n == hang_up_after) ctx.TryCancel();
  const grpc::Status st = reader->Finish();
  return {st.error_code(), st.error_message()};
}

// The sessions the server holds, once they have dropped to zero or after 2 s.
int sessions_after_settling(v1::VerifierService::Stub& s) {
  v1::HealthReply h;
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(call([&](auto* ctx, auto& r, auto* out) { return s.Health(ctx, r, out); },
                   v1::HealthRequest(), &h)
                  .code,
              grpc::StatusCode::OK);
    if (h.sessions() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return h.sessions();
}

TEST(ServerGenerate, BadRequestsNameTheFieldAndOthersKeepBeingServed) {
  auto srv = start();  // max_context 256
  ASSERT_TRUE(srv);
  GoodClient good(srv->address());
  auto s = stub(srv->address());
  const int V = tiny_pair().llm->config().n_vocab;
  struct Case {
    std::function<void(v1::GenerateRequest&)> edit;
    grpc::StatusCode code;
    const char* needle;
  };
  const std::vector<Case> cases = {
      {[](auto& m) { m.clear_session(); }, grpc::StatusCode::INVALID_ARGUMENT,
       "GenerateRequest.session: missing"},
      {[](auto& m) { m.set_max_tokens(0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "GenerateRequest.max_tokens: 0 outside [1, 249]"},
      {[](auto& m) { m.set_max_tokens(250); }, grpc::StatusCode::INVALID_ARGUMENT,
       "a prompt of 7 tokens leaves 249 of the server's context of 256"},
      {[&](auto& m) { m.mutable_session()->set_prompt(2, V); }, grpc::StatusCode::INVALID_ARGUMENT,
       "GenerateRequest.session: OpenRequest.prompt[2]"},
      {[](auto& m) { m.mutable_session()->mutable_sampling()->set_top_p(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "OpenRequest.sampling.top_p"},
      {[](auto& m) { m.mutable_session()->set_vocab_fingerprint(1); },
       grpc::StatusCode::FAILED_PRECONDITION, "share the tokenizer"},
      {[](auto& m) { m.mutable_session()->set_protocol_version(99); },
       grpc::StatusCode::FAILED_PRECONDITION, "protocol version"},
  };
  for (const Case& c : cases) {
    v1::GenerateRequest m = generate_request(8);
    c.edit(m);
    const Call r = generate(*s, m);
    EXPECT_EQ(r.code, c.code) << c.needle << ": " << r.message;
    EXPECT_NE(r.message.find(c.needle), std::string::npos) << r.message;
    good.check_served();
  }
  std::vector<int32_t> tokens;
  const Call ok = generate(*s, generate_request(249), &tokens);
  EXPECT_EQ(ok.code, grpc::StatusCode::OK) << ok.message;
  EXPECT_EQ(tokens.size(), 249u) << "ignore_eos: the whole context";
  EXPECT_EQ(srv->metrics().generations.load(), 1u);
}

// A client that hangs up or runs out of time stops its generation and frees its session.
TEST(ServerGenerate, HangUpsAndDeadlinesStopTheGenerationAndFreeTheSession) {
  ServerOptions o;
  o.max_sessions = 1;
  o.max_context = 2000;  // long enough that no generation can finish before its deadline
  auto srv = start(o);
  ASSERT_TRUE(srv);
  auto s = stub(srv->address());
  std::vector<int32_t> first;
  const Call hung = generate(*s, generate_request(240), &first, 3);
  EXPECT_EQ(hung.code, grpc::StatusCode::CANCELLED) << hung.message;
  EXPECT_EQ(first.size(), 3u);
  EXPECT_EQ(sessions_after_settling(*s), 0);
  // Through the client: the sink stops after 5 tokens; then the deadline passes mid-stream.
  RemoteOptions ro;
  ro.target = srv->address();
  RemoteVerifier remote(ro);
  const protocol::Limits limits{tiny_pair().llm->config().n_vocab, o.max_context, 16};
  const GenerateRequest g = protocol::from_proto(generate_request(1990), limits).value();
  std::vector<int32_t> got;
  auto st = remote.generate(g, [&](const GeneratedToken& t) {
    got.push_back(t.token);
    return got.size() < 5;
  });
  EXPECT_TRUE(st) << st.error().message;
  ASSERT_EQ(got.size(), 5u);
  EXPECT_TRUE(std::equal(first.begin(), first.end(), got.begin())) << "same seed, same tokens";
  EXPECT_EQ(sessions_after_settling(*s), 0);
  // A deadline a quarter of what the whole generation takes here, so that it passes mid-stream
  // however fast this machine decodes (the client reads ahead of its slow sink).
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int32_t> all;
  ASSERT_EQ(generate(*s, generate_request(1990), &all).code, grpc::StatusCode::OK);
  ASSERT_EQ(sessions_after_settling(*s), 0);
  ro.open_timeout_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 4;
  ro.timeout_s = 0;
  RemoteVerifier hasty(ro);
  st = hasty.generate(g, [&](const GeneratedToken&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a slow reader
    return true;
  });
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("DEADLINE_EXCEEDED"), std::string::npos) << st.error().message;
  // The one session slot comes back: a new generation is served.
  EXPECT_EQ(sessions_after_settling(*s), 0);
  std::vector<int32_t> again;
  const Call ok = generate(*s, generate_request(3), &again);
  EXPECT_EQ(ok.code, grpc::StatusCode::OK) << ok.message;
  EXPECT_EQ(again, std::vector<int32_t>(first.begin(), first.begin() + 3));
  EXPECT_EQ(srv->metrics().sessions.load(), 0);
}

// --- batching and metrics ---------------------------------------------------------------------

std::string http_get(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "";
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  close(fd);
  return out;
}

TEST(ServerBatching, ConcurrentDevicesShareForwardsAndMetricsShowIt) {
  ServerOptions o;
  o.max_sessions = 8;
  o.metrics_listen = "127.0.0.1:0";
  o.batch_window_s = 0.002;
  auto srv = start(o);
  ASSERT_TRUE(srv);
  ASSERT_GT(srv->metrics_port(), 0);
  std::vector<std::thread> devices;
  std::vector<RunResult> results(6);
  for (int i = 0; i < 6; ++i) {
    devices.emplace_back([&, i] {
      RunConfig cfg = config("hlm", 0.8f, 100 + i);
      results[size_t(i)] = run_remote(cfg, srv->address());
    });
  }
  for (auto& t : devices) t.join();
  // Each device runs to 40 tokens or to an end-of-generation token, every token verified.
  uint64_t uploads = 0;
  for (const auto& r : results) {
    ASSERT_FALSE(r.tokens.empty());
    EXPECT_TRUE(r.tokens.size() == 40u || tiny_pair().llm->tokenizer().is_eog(r.tokens.back()))
        << r.tokens.size() << " tokens";
    EXPECT_EQ(r.slm_only, 0);
    EXPECT_EQ(r.uploads, int64_t(r.tokens.size()));
    uploads += uint64_t(r.uploads);
  }
  const Metrics& m = srv->metrics();
  EXPECT_EQ(m.verifications.load(), uploads) << "pipelined requests past a replaced draft count "
                                                "as stale, not as verifications";
  EXPECT_GT(m.stale.load(), 0u);
  EXPECT_LT(m.batches.load(), m.verifications.load()) << "some forwards should serve several";
  EXPECT_GT(m.batch_size.sum() / double(m.batch_size.count()), 1.0);

  const std::string page = http_get(srv->metrics_port(), "/metrics");
  EXPECT_NE(page.find("HTTP/1.1 200 OK"), std::string::npos);
  for (const char* name :
       {"hlm_sessions ", "hlm_batch_size_bucket{le=\"1\"}", "hlm_batch_size_count",
        "hlm_verify_latency_seconds_bucket", "hlm_forward_seconds_sum", "hlm_tokens_per_second",
        "hlm_tokens_total", "hlm_request_errors_total{code=\"NOT_FOUND\"} 0"}) {
    EXPECT_NE(page.find(name), std::string::npos) << name << "\n" << page;
  }
  EXPECT_NE(page.find("hlm_verifications_total " + std::to_string(uploads)), std::string::npos)
      << page;
  EXPECT_NE(http_get(srv->metrics_port(), "/nope").find("404"), std::string::npos);
}

// --- failure ----------------------------------------------------------------------------------

TEST(ServerFailure, UnreachableAndSilentServersAreTransient) {
  // Nothing listening: a port that was just free.
  int port = 0;
  {
    auto srv = start();
    ASSERT_TRUE(srv);
    port = srv->port();
  }
  RemoteOptions ro;
  ro.target = fmt::format("127.0.0.1:{}", port);
  ro.timeout_s = 1;
  RemoteVerifier refused(ro);
  SessionParams sp;
  sp.vocab_fingerprint = tiny_pair().llm->tokenizer().fingerprint();
  sp.n_vocab = tiny_pair().llm->config().n_vocab;
  sp.prompt = kPrompt;
  auto a = refused.open(sp);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, ErrorCode::kUnavailable) << a.error().message;

  // A listener that accepts and never answers: the deadline fires.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ro.target = fmt::format("127.0.0.1:{}", ntohs(addr.sin_port));
  ro.open_timeout_s = 0.5;
  RemoteVerifier silent(ro);
  const auto t0 = std::chrono::steady_clock::now();
  auto b = silent.open(sp);
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  close(fd);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, ErrorCode::kUnavailable) << b.error().message;
  EXPECT_LT(dt, 5.0);
}

TEST(ServerFailure, DeviceContinuesSlmOnlyAndReconnectsAfterRestart) {
  auto srv = start();
  ASSERT_TRUE(srv);
  const int port = srv->port();
  RunConfig cfg = config("hlm", 0.8f, 21);
  cfg.max_tokens = 60;
  cfg.retry_initial_s = 0.02;
  cfg.retry_max_s = 0.1;
  ThreadPool pool(1);
  RemoteOptions ro;
  ro.target = srv->address();
  ro.timeout_s = 2;
  RemoteVerifier remote(ro);
  Device dev(tiny_pair().slm, pool, cfg);
  int n = 0;
  auto on_token = [&](const TokenTrace&) -> bool {
    ++n;
    if (n == 5) srv.reset();  // the cloud goes away mid-generation
    if (n == 12) {
      ServerOptions o;
      o.listen = fmt::format("127.0.0.1:{}", port);
      o.threads = 2;
      o.max_context = 256;
      auto again = Server::start(tiny_pair().llm, o);
      EXPECT_TRUE(again.ok()) << again.error().message;
      if (!again.ok()) return false;
      srv = std::move(again).value();
    }
    if (n >= 5) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return true;
  };
  auto r = dev.generate(kPrompt, &remote, on_token);
  ASSERT_TRUE(r.ok()) << r.error().message;
  // No output token is lost: the generation runs to the limit or to end-of-sequence.
  EXPECT_TRUE(r->tokens.size() == 60u || tiny_pair().slm->tokenizer().is_eog(r->tokens.back()))
      << r->tokens.size();
  EXPECT_GT(r->slm_only, 0);
  EXPECT_GE(r->reconnects, 1);
  int slm_only_marked = 0, verified_after = 0;
  for (const auto& t : r->trace) {
    slm_only_marked += t.slm_only;
    if (t.position >= int(kPrompt.size()) + 15) verified_after += t.uploaded;
  }
  EXPECT_EQ(slm_only_marked, r->slm_only);
  EXPECT_GT(verified_after, 0) << "verification resumes after reconnecting";
  // The resumed session holds the device's whole context.
  ASSERT_TRUE(srv);
  EXPECT_EQ(srv->metrics().sessions.load(), 1);
}

}  // namespace
}  // namespace hlm::server
