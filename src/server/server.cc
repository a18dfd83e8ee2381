// Server implementation: one handler per RPC (Open, Verify, Close, Generate, Health), a session
// table in front of the cloud backend (a BatchVerifier), the batch scheduler, the idle reaper and
// the metrics endpoint.
#include "server/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <sys/random.h>

#include <condition_variable>
#include <map>
#include <mutex>

#include "cloud/cloud_verifier.h"
#include "cloud/costed_verifier.h"
#include "http/listen.h"
#include "protocol/convert.h"
#include "protocol/hlm.grpc.pb.h"
#include "server/scheduler.h"
#include "server/security.h"
#include "util/thread_pool.h"

namespace hlm::server {
namespace {

using Clock = std::chrono::steady_clock;
using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;

// The server's view of one session; its context lives in the backend.
struct Session {
  SessionId inner = 0;  // the backend's id
  Encoding encoding = Encoding::kFull;
  std::string client;      // host of the peer that opened it: only it may use the session
  uint64_t next_step = 0;  // VerifyRequest.step expected next
  int64_t n_tokens = 0;    // context length
  bool busy = false;       // a Verify is being served (later steps wait for it)
  Clock::time_point last_used;
};

// Pipelined Verify requests of one session: at most this many steps ahead of the one being
// served, and how long a request waits for a predecessor that has not arrived.
constexpr uint64_t kMaxAhead = 64;
constexpr std::chrono::milliseconds kReorderGrace{500};

uint64_t random_id() {
  uint64_t id = 0;
  while (id == 0) {
    if (getrandom(&id, sizeof id, 0) != sizeof id) {
      // getrandom cannot fail for 8 bytes once the pool is initialised; fall back anyway.
      id = uint64_t(Clock::now().time_since_epoch().count()) * 0x9e3779b97f4a7c15ull;
    }
  }
  return id;
}

}  // namespace

struct Server::Impl final : public v1::VerifierService::Service {
  ServerOptions options;
  std::shared_ptr<const Model> llm;
  protocol::Limits limits;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<BatchVerifier> cloud;
  const CostedVerifier* costed = nullptr;  // `cloud`, when it is one
  Metrics metrics;
  std::unique_ptr<BatchScheduler> scheduler;
  std::unique_ptr<RateLimiter> limiter;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<http::Server> http;
  int port = 0;
  std::string host;

  std::mutex mu;
  std::condition_variable step_cv;  // a session's next_step moved on
  std::map<uint64_t, Session> sessions;
  int opening = 0;    // sessions reserved by Open calls in progress
  int streaming = 0;  // sessions held by Generate streams

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopped = false;   // shutdown has begun
  bool finished = false;  // shutdown is complete: every thread joined
  std::thread reaper;

  // --- admission: rate limit, then authentication --------------------------------------------
  Status admit(ServerContext* ctx) {
    if (!limiter->allow(host_of(ctx->peer()))) {
      metrics.errors_rate_limited++;
      return Status(
          StatusCode::RESOURCE_EXHAUSTED,
          fmt::format("rate limit: at most {} requests/s per client (burst {}); slow down",
                      options.rate_limit, options.rate_burst));
    }
    if (options.api_key.empty()) return Status::OK;
    const auto& md = ctx->client_metadata();
    auto it = md.find("authorization");
    if (it == md.end()) {
      metrics.errors_unauthenticated++;
      return Status(StatusCode::UNAUTHENTICATED,
                    "this server needs an API key: send metadata 'authorization: Bearer <key>' "
                    "(hlm run --api-key-file FILE)");
    }
    const std::string_view token =
        bearer_token(std::string_view(it->second.data(), it->second.size()));
    if (!keys_equal(token, options.api_key)) {
      metrics.errors_unauthenticated++;
      return Status(StatusCode::UNAUTHENTICATED, "invalid API key");
    }
    return Status::OK;
  }

  Status refuse(StatusCode code, std::string message) {
    switch (code) {
      case StatusCode::INVALID_ARGUMENT:
      case StatusCode::OUT_OF_RANGE:
        metrics.errors_invalid++;
        break;
      case StatusCode::NOT_FOUND:
        metrics.errors_not_found++;
        break;
      case StatusCode::FAILED_PRECONDITION:
        metrics.errors_precondition++;
        break;
      case StatusCode::RESOURCE_EXHAUSTED:
        metrics.errors_exhausted++;
        break;
      default:
        metrics.errors_internal++;
    }
    return Status(code, message);
  }

  Status unknown_session(uint64_t id) {
    return refuse(StatusCode::NOT_FOUND,
                  fmt::format("unknown session {:016x}: never opened, closed, expired after {} s "
                              "idle, or lost in a server restart; open a new session",
                              id, options.idle_timeout_s));
  }

  // --- RPCs ------------------------------------------------------------------------------------
  Status Open(ServerContext* ctx, const v1::OpenRequest* req, v1::OpenReply* reply) override {
    if (Status s = admit(ctx); !s.ok()) return s;
    const Tokenizer& tok = llm->tokenizer();
    if (auto st = protocol::check_compatible(*req, tok.fingerprint(), llm->config().n_vocab,
                                             llm->config().name);
        !st) {
      return refuse(StatusCode::FAILED_PRECONDITION, st.error().message);
    }
    auto params = protocol::from_proto(*req, limits);
    if (!params) return refuse(StatusCode::INVALID_ARGUMENT, params.error().message);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (Status full = reserve(opening); !full.ok()) return full;
    }
    auto inner = cloud->open(*params);
    std::lock_guard<std::mutex> lock(mu);
    opening--;
    if (!inner) return refuse(StatusCode::INTERNAL, "open: " + inner.error().message);
    uint64_t id;
    do {
      id = random_id();
    } while (sessions.count(id));
    Session s;
    s.inner = *inner;
    s.encoding = params->encoding;
    s.client = host_of(ctx->peer());
    s.n_tokens = int64_t(params->prompt.size());
    s.last_used = Clock::now();
    sessions.emplace(id, s);
    metrics.sessions = int64_t(sessions.size());
    metrics.sessions_opened++;
    reply->set_session(id);
    reply->set_max_context(options.max_context);
    return Status::OK;
  }

  Status Verify(ServerContext* ctx, const v1::VerifyRequest* req, v1::VerifyReply* reply) override {
    if (Status s = admit(ctx); !s.ok()) return s;
    const uint64_t id = req->session();
    Encoding encoding;
    SessionId inner;
    int64_t n_tokens;
    {
      // A pipelined device sends a session's requests before the earlier replies are back, and
      // handler threads may pick them up out of order: each waits until its predecessor is
      // served. One whose predecessor does not turn up within kReorderGrace is out of order.
      std::unique_lock<std::mutex> lock(mu);
      uint64_t seen_step = UINT64_MAX;
      auto give_up = Clock::now() + kReorderGrace;
      for (;;) {
        auto it = sessions.find(id);
        if (it == sessions.end() || it->second.client != host_of(ctx->peer())) {
          return unknown_session(id);
        }
        Session& s = it->second;
        if (s.next_step != seen_step || s.busy) {  // the session moves: keep waiting
          seen_step = s.next_step;
          give_up = Clock::now() + kReorderGrace;
        }
        if (req->step() < s.next_step || req->step() >= s.next_step + kMaxAhead ||
            Clock::now() >= give_up) {
          return refuse(StatusCode::FAILED_PRECONDITION,
                        fmt::format("VerifyRequest.step: expected {}, got {} (a message out of "
                                    "order or repeated); reopen the session to resynchronise",
                                    s.next_step, req->step()));
        }
        if (!s.busy && req->step() == s.next_step) break;
        if (ctx->IsCancelled()) return Status(StatusCode::CANCELLED, "the client went away");
        step_cv.wait_until(lock, give_up);
      }
      Session& s = sessions.at(id);
      encoding = s.encoding;
      inner = s.inner;
      n_tokens = s.n_tokens;
      s.busy = true;  // from here until the reply, no other Verify, Close or expiry
    }
    auto release = [&](const VerifyReply* r, size_t n_pending) {
      std::lock_guard<std::mutex> lock(mu);
      auto it = sessions.find(id);
      if (it == sessions.end()) return;
      it->second.busy = false;
      it->second.last_used = Clock::now();
      if (r) {
        it->second.next_step++;
        if (!r->stale) {
          it->second.n_tokens += int64_t(n_pending) + r->n_accepted + (r->has_next ? 1 : 0);
        }
      }
      step_cv.notify_all();
    };
    auto request = protocol::from_proto(*req, limits, encoding);
    if (!request) {
      release(nullptr, 0);
      return refuse(StatusCode::INVALID_ARGUMENT, request.error().message);
    }
    const int64_t need = n_tokens + int64_t(request->pending.size() + request->drafts.size()) + 1;
    if (need > options.max_context) {
      release(nullptr, 0);
      return refuse(StatusCode::OUT_OF_RANGE,
                    fmt::format("session {:016x}: the context would reach {} tokens, over this "
                                "server's --max-context {}; open a new session",
                                id, need, options.max_context));
    }
    request->session = inner;
    const size_t n_pending = request->pending.size();
    auto result = scheduler->submit(std::move(request).value()).get();
    if (!result) {
      release(nullptr, 0);
      return refuse(failure_code(result.error()), "verify: " + result.error().message);
    }
    release(&result.value(), n_pending);
    (result->stale ? metrics.stale : metrics.verifications)++;
    protocol::to_proto(*result, reply);
    return Status::OK;
  }

  Status Close(ServerContext* ctx, const v1::CloseRequest* req, v1::CloseReply*) override {
    if (Status s = admit(ctx); !s.ok()) return s;
    SessionId inner;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = sessions.find(req->session());
      if (it == sessions.end() || it->second.client != host_of(ctx->peer())) {
        return unknown_session(req->session());
      }
      if (it->second.busy) {
        return refuse(StatusCode::FAILED_PRECONDITION,
                      "close: the session has a Verify in flight; wait for its reply");
      }
      inner = it->second.inner;
      sessions.erase(it);
      metrics.sessions = int64_t(sessions.size());
    }
    (void)cloud->close(inner);
    return Status::OK;
  }

  // Under mu: takes one of the --max-sessions slots into `counter`, or says they are all used.
  Status reserve(int& counter) {
    if (int(sessions.size()) + opening + streaming >= options.max_sessions) {
      return refuse(StatusCode::RESOURCE_EXHAUSTED,
                    fmt::format("all {} sessions are in use; retry later (the server's "
                                "--max-sessions)",
                                options.max_sessions));
    }
    counter++;
    return Status::OK;
  }

  Status Generate(ServerContext* ctx, const v1::GenerateRequest* req,
                  grpc::ServerWriter<v1::GenerateChunk>* writer) override {
    if (Status s = admit(ctx); !s.ok()) return s;
    if (!req->has_session()) {
      return refuse(StatusCode::INVALID_ARGUMENT,
                    "GenerateRequest.session: missing (the vocabulary, sampling and prompt)");
    }
    if (auto st = protocol::check_compatible(req->session(), llm->tokenizer().fingerprint(),
                                             llm->config().n_vocab, llm->config().name);
        !st) {
      return refuse(StatusCode::FAILED_PRECONDITION, st.error().message);
    }
    auto request = protocol::from_proto(*req, limits);
    if (!request) return refuse(StatusCode::INVALID_ARGUMENT, request.error().message);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (Status full = reserve(streaming); !full.ok()) return full;
    }
    metrics.generations++;
    // The session lives for this call only: the stream frees it however it ends.
    v1::GenerateChunk chunk;
    const Status ended = [&]() -> Status {
      auto st = stream_generate(
          *cloud, *scheduler, *request,
          [&](const GeneratedToken& g) {
            chunk.set_token(g.token);
            chunk.set_t_llm_s(g.t_llm_s);
            return writer->Write(chunk);  // false: the client went away
          },
          [&] { return ctx->IsCancelled() || stopped_flag(); });
      if (ctx->IsCancelled()) return Status(StatusCode::CANCELLED, "the client cancelled");
      if (!st) return refuse(failure_code(st.error()), "generate: " + st.error().message);
      return Status::OK;
    }();
    std::lock_guard<std::mutex> lock(mu);
    streaming--;
    return ended;
  }

  Status Health(ServerContext* ctx, const v1::HealthRequest*, v1::HealthReply* reply) override {
    if (!limiter->allow(host_of(ctx->peer()))) {
      metrics.errors_rate_limited++;
      return Status(StatusCode::RESOURCE_EXHAUSTED, "rate limit: slow down");
    }
    reply->set_serving(!stopped_flag());
    reply->set_protocol_version(protocol::kProtocolVersion);
    reply->set_vocab_fingerprint(llm->tokenizer().fingerprint());
    reply->set_n_vocab(llm->config().n_vocab);
    reply->set_max_sessions(options.max_sessions);
    reply->set_max_context(options.max_context);
    reply->set_model(llm->config().name);
    reply->set_cloud_cost(options.cloud_cost_name);
    if (options.cloud_power_w) reply->set_cloud_power_w(*options.cloud_power_w);
    std::lock_guard<std::mutex> lock(mu);
    reply->set_sessions(int(sessions.size()) + streaming);
    return Status::OK;
  }

  // A backend's failure as devices must see it: a backend that cannot be reached, or did not
  // answer in time, is transient (the device continues on its SLM and comes back), as is a
  // server shutting down; anything else is the server's own fault.
  StatusCode failure_code(const Error& e) {
    if (stopped_flag() || e.code == ErrorCode::kUnavailable) return StatusCode::UNAVAILABLE;
    if (e.code == ErrorCode::kDeadlineExceeded) return StatusCode::DEADLINE_EXCEEDED;
    return StatusCode::INTERNAL;
  }

  // --- lifecycle -------------------------------------------------------------------------------
  bool stopped_flag() {
    std::lock_guard<std::mutex> lock(stop_mu);
    return stopped;
  }

  void reap_loop() {
    const double period = std::clamp(options.idle_timeout_s / 4, 0.05, 1.0);
    std::unique_lock<std::mutex> lock(stop_mu);
    while (!stopped) {
      stop_cv.wait_for(lock, std::chrono::duration<double>(period));
      if (stopped) break;
      lock.unlock();
      std::vector<SessionId> expired;
      {
        std::lock_guard<std::mutex> g(mu);
        const auto now = Clock::now();
        for (auto it = sessions.begin(); it != sessions.end();) {
          const double idle = std::chrono::duration<double>(now - it->second.last_used).count();
          if (!it->second.busy && idle > options.idle_timeout_s) {
            expired.push_back(it->second.inner);
            it = sessions.erase(it);
          } else {
            ++it;
          }
        }
        metrics.sessions = int64_t(sessions.size());
      }
      for (SessionId s : expired) {
        (void)cloud->close(s);
        metrics.sessions_expired++;
      }
      lock.lock();
    }
  }

  void shutdown() {
    {
      std::unique_lock<std::mutex> lock(stop_mu);
      if (stopped) {  // another thread is shutting down: wait until it has finished
        stop_cv.wait(lock, [&] { return finished; });
        return;
      }
      stopped = true;
    }
    stop_cv.notify_all();
    // In-flight handlers finish (the scheduler is still running); then the rest stops.
    if (grpc_server) {
      grpc_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
      grpc_server->Wait();
    }
    if (scheduler) scheduler->stop();
    if (reaper.joinable()) reaper.join();
    if (http) http->stop();
    {
      std::lock_guard<std::mutex> lock(stop_mu);
      finished = true;
    }
    stop_cv.notify_all();
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { stop(); }

int Server::port() const { return impl_->port; }
int Server::metrics_port() const { return impl_->http ? impl_->http->port() : 0; }
const Metrics& Server::metrics() const { return impl_->metrics; }
const ServerOptions& Server::options() const { return impl_->options; }
std::vector<CostSample> Server::batch_samples() const {
  return impl_->costed ? impl_->costed->samples() : std::vector<CostSample>{};
}

std::string Server::address() const {
  const std::string& h = impl_->host;
  if (h.find(':') != std::string::npos) return fmt::format("[{}]:{}", h, impl_->port);
  return fmt::format("{}:{}", h, impl_->port);
}

void Server::stop() { impl_->shutdown(); }

void Server::wait() {
  std::unique_lock<std::mutex> lock(impl_->stop_mu);
  impl_->stop_cv.wait(lock, [&] { return impl_->finished; });
}

Result<std::unique_ptr<Server>> Server::start(std::shared_ptr<const Model> llm, ServerOptions o,
                                              std::unique_ptr<BatchVerifier> backend) {
  if (!llm) return make_error("serve: no model");
  if (!backend && !llm->has_weights()) {
    return make_error("serve: {} was loaded without its weights, which the engine backend needs",
                      llm->path());
  }
  if (o.max_sessions < 1) return make_error("--max-sessions must be at least 1");
  if (o.max_context < 16) return make_error("--max-context must be at least 16 tokens");
  if (o.max_drafts < 1) return make_error("--max-drafts must be at least 1");
  if (!(o.idle_timeout_s > 0)) return make_error("--idle-timeout must be positive (seconds)");
  if (o.max_batch < 1) return make_error("--max-batch must be at least 1");
  if (!(o.batch_gather >= 0)) return make_error("--batch-gather must be at least 0");
  if (o.tls_cert_pem.empty() != o.tls_key_pem.empty()) {
    return make_error("TLS needs both a certificate (--tls-cert) and its private key (--tls-key)");
  }
  if (o.threads <= 0) o.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  if (o.rate_limit > 0 && o.rate_burst <= 0) o.rate_burst = std::max(1.0, 2 * o.rate_limit);
  if (!is_loopback(o.listen) && o.api_key.empty()) {
    return make_error(
        "refusing to listen on {} without an API key: a non-loopback address is reachable by "
        "other machines. Pass --api-key-file FILE (clients then send the key), or listen on "
        "127.0.0.1",
        o.listen);
  }
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  impl->llm = llm;
  impl->limits = {llm->config().n_vocab, o.max_context, o.max_drafts};
  if (backend) {
    impl->cloud = std::move(backend);
  } else {
    impl->pool = std::make_unique<ThreadPool>(o.threads);
    impl->cloud = std::make_unique<CloudVerifier>(llm, *impl->pool,
                                                  CloudOptions{o.max_sessions, o.max_context});
  }
  if (o.cloud_cost || o.record_batches) {
    auto costed =
        std::make_unique<CostedVerifier>(std::move(impl->cloud), o.cloud_cost, o.record_batches);
    impl->costed = costed.get();
    impl->cloud = std::move(costed);
  }
  impl->scheduler = std::make_unique<BatchScheduler>(
      *impl->cloud, impl->metrics, SchedulerOptions{o.max_batch, o.batch_window_s, o.batch_gather});
  impl->limiter = std::make_unique<RateLimiter>(o.rate_limit, o.rate_burst);
  impl->host = host_of(o.listen);

  const size_t max_msg =
      o.max_message_bytes ? o.max_message_bytes : protocol::max_verify_request_bytes(impl->limits);
  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!o.tls_cert_pem.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({o.tls_key_pem, o.tls_cert_pem});
    credentials = grpc::SslServerCredentials(ssl);
  }
  // gRPC would take "host:99999" as port 99999 mod 65536 and share a port another server holds
  // (SO_REUSEPORT): validate the address and own the port alone.
  if (o.listen.rfind("unix:", 0) != 0) {
    if (auto a = http::parse_listen_address(o.listen, "--listen"); !a) {
      impl->scheduler->stop();
      return a.error();
    }
  }
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(o.listen, credentials, &impl->port);
  builder.RegisterService(impl.get());
  builder.SetMaxReceiveMessageSize(int(std::min<size_t>(max_msg, size_t(INT32_MAX))));
  grpc::ResourceQuota quota("hlm-serve");
  // Pipelining devices keep several Verify calls of a session waiting in handler threads.
  quota.SetMaxThreads(int(kMaxAhead + 2) * o.max_sessions + 16);
  builder.SetResourceQuota(quota);
  // Every session may have a Verify blocked in a handler thread until its batch is served. The
  // sync server lets at most MAX_POLLERS idle threads live (default 2), so with more sessions it
  // would end and respawn a thread for nearly every call; keep one per session instead.
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
                              o.max_sessions + 2);
  impl->grpc_server = builder.BuildAndStart();
  if (!impl->grpc_server || impl->port == 0) {
    impl->grpc_server.reset();
    impl->scheduler->stop();
    return make_error(
        "--listen {}: cannot listen: the host does not resolve to a local address or "
        "another process holds the port",
        o.listen);
  }
  if (!o.metrics_listen.empty()) {
    auto http = serve_metrics(o.metrics_listen, impl->metrics);
    if (!http) {
      impl->shutdown();
      return http.error();
    }
    impl->http = std::move(http).value();
  }
  Impl* p = impl.get();
  impl->reaper = std::thread([p] { p->reap_loop(); });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

}  // namespace hlm::server
