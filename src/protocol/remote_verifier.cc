// RemoteVerifier implementation: one channel, per-call deadlines, status mapping, optional
// channel emulation.
#include "protocol/remote_verifier.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <thread>

#include "protocol/convert.h"
#include "protocol/hlm.grpc.pb.h"

namespace hlm {
namespace {

using Clock = std::chrono::system_clock;

// Transient conditions the device loop recovers from by going SLM-only and reconnecting.
bool transient(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::UNAVAILABLE:         // no connection, server going away
    case grpc::StatusCode::DEADLINE_EXCEEDED:   // no answer in time
    case grpc::StatusCode::RESOURCE_EXHAUSTED:  // rate limit or all sessions in use
    case grpc::StatusCode::NOT_FOUND:           // session lost (server restarted or expired it)
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::ABORTED:
      return true;
    default:
      return false;
  }
}

const char* code_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    default:
      return "ERROR";
  }
}

Error to_error(const grpc::Status& s, std::string_view what, const std::string& target) {
  Error e = make_error("cloud {} ({}): {}: {}", what, target, code_name(s.error_code()),
                       s.error_message());
  e.code = transient(s.error_code()) ? ErrorCode::kUnavailable : ErrorCode::kFailed;
  return e;
}

void sleep_s(double s) {
  if (s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

void prepare(grpc::ClientContext& ctx, const RemoteOptions& o, double timeout_s) {
  ctx.set_deadline(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(timeout_s)));
  if (!o.api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + o.api_key);
}

}  // namespace

// The channel is rebuilt after a connection failure: gRPC 1.51's pick_first otherwise stays in
// TRANSIENT_FAILURE with an idle subchannel after the server restarts, failing every call fast
// without trying to reconnect.
struct RemoteVerifier::Impl {
  std::string target;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::mutex mu;
  std::shared_ptr<v1::VerifierService::Stub> stub;
  bool broken = true;

  std::shared_ptr<v1::VerifierService::Stub> get() {
    std::lock_guard<std::mutex> lock(mu);
    if (broken) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(16 << 20);
      args.SetMaxSendMessageSize(-1);  // the server enforces its own limit and says so
      // Reconnect quickly instead of gRPC's default backoff of up to 2 min. (Leave
      // GRPC_ARG_MIN_RECONNECT_BACKOFF_MS alone: it also bounds each connection attempt.)
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);  // the device loop owns retries
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      stub = v1::VerifierService::NewStub(grpc::CreateCustomChannel(target, credentials, args));
      broken = false;
    }
    return stub;
  }
  void check(const grpc::Status& s) {
    if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
      std::lock_guard<std::mutex> lock(mu);
      broken = true;
    }
  }
};

namespace {

// One metered call: waits out the emulated uplink time, calls, sleeps the downlink time on
// success, and books bytes and emulated time into `stats` under `mu`. The uplink is one radio:
// concurrent calls (pipelined drafting) transmit one after another, tracked by `uplink_free`,
// while their propagation delays overlap.
template <class Req, class Reply, class Rpc>
grpc::Status metered_call(const RemoteOptions& o, std::mutex& mu, RemoteStats& stats,
                          std::chrono::steady_clock::time_point& uplink_free, const Req& req,
                          Reply* reply, double timeout_s, Rpc rpc) {
  using Steady = std::chrono::steady_clock;
  grpc::ClientContext ctx;
  prepare(ctx, o, timeout_s);
  const auto link_bits = [&](size_t bytes) {
    return 8 * uint64_t(bytes) + uint64_t(o.emulate->header_bits);
  };
  double emulated = 0;
  if (o.emulate) {
    const uint64_t bits = link_bits(req.ByteSizeLong());
    const double tx = double(bits) / uplink_rate_bps(*o.emulate);
    Steady::time_point sent;
    {
      std::lock_guard<std::mutex> lock(mu);
      const auto start = std::max(Steady::now(), uplink_free);
      uplink_free =
          start + std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(tx));
      sent = uplink_free;
    }
    const auto arrive = sent + std::chrono::duration_cast<Steady::duration>(
                                   std::chrono::duration<double>(o.emulate->rtt_s / 2));
    emulated = uplink_time_s(*o.emulate, bits);
    std::this_thread::sleep_until(arrive);
  }
  const grpc::Status s = rpc(&ctx, req, reply);
  if (s.ok() && o.emulate) {
    const double t = downlink_time_s(*o.emulate, link_bits(reply->ByteSizeLong()));
    sleep_s(t);
    emulated += t;
  }
  std::lock_guard<std::mutex> lock(mu);
  stats.calls++;
  stats.sent_bytes += req.ByteSizeLong();
  stats.emulated_s += emulated;
  if (s.ok()) stats.received_bytes += reply->ByteSizeLong();
  return s;
}

}  // namespace

Result<CloudTarget> cloud_target(const std::string& url) {
  std::string t = url;
  bool tls = false;
  for (const char* scheme : {"grpcs://", "https://", "grpc://", "http://"}) {
    if (t.rfind(scheme, 0) == 0) {
      tls = std::string_view(scheme).find("s://") != std::string_view::npos;
      t = t.substr(std::string_view(scheme).size());
      break;
    }
  }
  while (!t.empty() && t.back() == '/') t.pop_back();
  if (t.empty()) return make_error("--cloud: empty address; expected host:port");
  if (t.rfind("unix:", 0) != 0 && t.find(':') == std::string::npos) {
    return make_error("--cloud {}: expected host:port (e.g. 127.0.0.1:7070)", url);
  }
  return CloudTarget{t, tls};
}

RemoteVerifier::RemoteVerifier(RemoteOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  impl_->target = options_.target;
  if (options_.tls || !options_.tls_roots_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options_.tls_roots_pem;
    impl_->credentials = grpc::SslCredentials(ssl);
  } else {
    impl_->credentials = grpc::InsecureChannelCredentials();
  }
}

// Sessions still open (the device loop does not close its own) are closed on the way out, so
// they do not hold server slots until the idle timeout. Best effort, short deadline.
RemoteVerifier::~RemoteVerifier() {
  std::vector<SessionId> open;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, s] : sessions_) open.push_back(id);
  }
  for (SessionId id : open) {
    v1::CloseRequest req;
    req.set_session(id);
    v1::CloseReply reply;
    grpc::ClientContext ctx;
    prepare(ctx, options_, 5.0);  // generous: a loaded server answers Close late
    (void)impl_->get()->Close(&ctx, req, &reply);
  }
}

RemoteStats RemoteVerifier::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

Result<SessionId> RemoteVerifier::open(const SessionParams& params) {
  v1::OpenRequest req;
  protocol::to_proto(params, &req);
  v1::OpenReply reply;
  auto stub = impl_->get();
  const grpc::Status s =
      metered_call(options_, mu_, stats_, uplink_free_, req, &reply, options_.open_timeout_s,
                   [&](auto* ctx, const auto& rq, auto* rp) { return stub->Open(ctx, rq, rp); });
  impl_->check(s);
  if (!s.ok()) return to_error(s, "open", options_.target);
  std::lock_guard<std::mutex> lock(mu_);
  if (reply.session() == 0) {
    return make_error("cloud open ({}): OpenReply.session is 0", options_.target);
  }
  sessions_[reply.session()] = ClientSession{0, params.n_vocab};
  return SessionId(reply.session());
}

Result<VerifyReply> RemoteVerifier::verify(const VerifyRequest& request) {
  return submit_step(request,
                     [&](uint64_t step, int n_vocab) {
                       std::promise<Result<VerifyReply>> reply;
                       reply.set_value(call_verify(request, step, n_vocab));
                       return reply.get_future();
                     })
      .get();
}

std::future<Result<VerifyReply>> RemoteVerifier::submit(const VerifyRequest& request) {
  return submit_step(request, [&](uint64_t step, int n_vocab) {
    return std::async(std::launch::async, [this, request, step, n_vocab] {
      return call_verify(request, step, n_vocab);
    });
  });
}

// Numbers the request in submission order (the server serves a session's steps in order).
template <class Send>
std::future<Result<VerifyReply>> RemoteVerifier::submit_step(const VerifyRequest& request,
                                                             Send send) {
  uint64_t step = 0;
  int n_vocab = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(request.session);
    if (it == sessions_.end()) {
      std::promise<Result<VerifyReply>> refused;
      Error e = make_error("verify: session {} was not opened by this client", request.session);
      if (lost_.count(request.session)) {
        // An earlier call of this session failed while this one was being built (pipelining).
        e = make_error("cloud verify ({}): session {} was lost in an earlier call; reopen it",
                       options_.target, request.session);
        e.code = ErrorCode::kUnavailable;
      }
      refused.set_value(std::move(e));
      return refused.get_future();
    }
    step = it->second.step++;
    n_vocab = it->second.n_vocab;
  }
  return send(step, n_vocab);
}

Result<VerifyReply> RemoteVerifier::call_verify(const VerifyRequest& request, uint64_t step,
                                                int n_vocab) {
  v1::VerifyRequest req;
  protocol::to_proto(request, step, &req);
  v1::VerifyReply reply;
  auto stub = impl_->get();
  const grpc::Status s =
      metered_call(options_, mu_, stats_, uplink_free_, req, &reply, options_.timeout_s,
                   [&](auto* ctx, const auto& rq, auto* rp) { return stub->Verify(ctx, rq, rp); });
  impl_->check(s);
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.ok()) {
    // The session may or may not have advanced on the server: it cannot be used again.
    if (sessions_.erase(request.session)) lost_.insert(request.session);
    return to_error(s, "verify", options_.target);
  }
  auto r = protocol::from_proto(reply, int(request.drafts.size()), n_vocab, request.want_bonus);
  if (!r) {
    sessions_.erase(request.session);
    return make_error("cloud verify ({}): bad reply: {}", options_.target, r.error().message);
  }
  return r;
}

Status RemoteVerifier::close(SessionId session) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    sessions_.erase(session);
  }
  v1::CloseRequest req;
  req.set_session(session);
  v1::CloseReply reply;
  grpc::ClientContext ctx;
  prepare(ctx, options_, options_.timeout_s);
  const grpc::Status s = impl_->get()->Close(&ctx, req, &reply);
  impl_->check(s);
  if (!s.ok()) return to_error(s, "close", options_.target);
  return ok_status();
}

Status RemoteVerifier::generate(const GenerateRequest& request, const TokenSink& sink) {
  using Steady = std::chrono::steady_clock;
  v1::GenerateRequest req;
  protocol::to_proto(request, &req);
  grpc::ClientContext ctx;
  prepare(ctx, options_, options_.open_timeout_s + options_.timeout_s * request.max_tokens);
  const std::optional<ChannelConfig>& em = options_.emulate;
  const auto link_bits = [&](size_t bytes) {
    return 8 * uint64_t(bytes) + uint64_t(em->header_bits);
  };
  const auto span = [](double s) {
    return std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(s));
  };
  double emulated = 0;
  if (em) {
    emulated = uplink_time_s(*em, link_bits(req.ByteSizeLong()));
    sleep_s(emulated);
  }
  auto stub = impl_->get();
  std::unique_ptr<grpc::ClientReader<v1::GenerateChunk>> reader = stub->Generate(&ctx, req);
  // A reader thread stamps each chunk's arrival, so the emulated downlink below can delay it
  // without delaying the reads of the chunks behind it.
  struct Arrival {
    v1::GenerateChunk chunk;
    Steady::time_point at;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Arrival> arrivals;
  bool eof = false;
  grpc::Status s;  // the call's status, once eof
  std::thread read([&] {
    Arrival a;
    while (reader->Read(&a.chunk)) {
      a.at = Steady::now();
      std::lock_guard<std::mutex> lock(mu);
      arrivals.push_back(a);
      cv.notify_one();
    }
    const grpc::Status finished = reader->Finish();
    std::lock_guard<std::mutex> lock(mu);
    s = finished;
    eof = true;
    cv.notify_one();
  });
  Status status = ok_status();
  bool cancelled = false;
  uint64_t received = 0;
  Steady::time_point link_free{};
  while (true) {
    Arrival a;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return eof || !arrivals.empty(); });
      // A failed call fails the generation: what is still queued is not worth delivering.
      if (arrivals.empty() || (eof && !s.ok())) break;
      a = std::move(arrivals.front());
      arrivals.pop_front();
    }
    received += a.chunk.ByteSizeLong();
    auto token = protocol::from_proto(a.chunk, request.session.n_vocab);
    if (!token) {
      status =
          make_error("cloud generate ({}): bad reply: {}", options_.target, token.error().message);
    } else if (em) {
      const double rx = link_bits(a.chunk.ByteSizeLong()) / downlink_rate_bps(*em);
      link_free = std::max(link_free, a.at) + span(rx);
      const auto deliver = link_free + span(em->rtt_s / 2);
      emulated += std::max(0.0, std::chrono::duration<double>(deliver - Steady::now()).count());
      std::this_thread::sleep_until(deliver);
    }
    if (!status || !sink(*token)) {
      cancelled = true;
      ctx.TryCancel();
      break;
    }
  }
  read.join();
  impl_->check(s);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.calls++;
    stats_.sent_bytes += req.ByteSizeLong();
    stats_.received_bytes += received;
    stats_.emulated_s += emulated;
  }
  if (!status) return status;
  if (!s.ok() && !cancelled) {
    Error e = to_error(s, "generate", options_.target);
    if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      e.message +=
          " (this server predates streamed generation: update its hlm to serve --policy llm)";
    }
    return e;
  }
  return ok_status();
}

Result<RemoteHealth> RemoteVerifier::health() {
  v1::HealthRequest req;
  v1::HealthReply reply;
  grpc::ClientContext ctx;
  prepare(ctx, options_, options_.timeout_s);
  const grpc::Status s = impl_->get()->Health(&ctx, req, &reply);
  impl_->check(s);
  if (!s.ok()) return to_error(s, "health", options_.target);
  RemoteHealth h;
  h.serving = reply.serving();
  h.protocol_version = reply.protocol_version();
  h.vocab_fingerprint = reply.vocab_fingerprint();
  h.n_vocab = reply.n_vocab();
  h.sessions = reply.sessions();
  h.max_sessions = reply.max_sessions();
  h.max_context = reply.max_context();
  h.model = reply.model();
  h.cloud_cost = reply.cloud_cost();
  if (reply.has_cloud_power_w()) h.cloud_power_w = reply.cloud_power_w();
  return h;
}

}  // namespace hlm
