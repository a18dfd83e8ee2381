// Metrics implementation: histograms, the Prometheus exposition, the HTTP endpoint.
#include "server/metrics.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "server/security.h"

namespace hlm::server {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard<std::mutex> lock(mu_);
  counts_[i]++;
  sum_ += v;
  count_++;
}

uint64_t Histogram::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

double Histogram::sum() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sum_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help) const {
  std::lock_guard<std::mutex> lock(mu_);
  out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  cum += counts_.back();
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n{}_sum {}\n{}_count {}\n", name, cum, name, sum_,
                     name, count_);
}

Metrics::Metrics()
    : batch_size({1, 2, 4, 8, 16, 32, 64}),
      verify_latency({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
      forward_time({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
      started_(Clock::now()) {}

void Metrics::add_tokens(uint64_t n, Clock::time_point now) {
  tokens_ += n;
  std::lock_guard<std::mutex> lock(mu_);
  recent_.emplace_back(now, n);
  while (!recent_.empty() && now - recent_.front().first > window_) recent_.pop_front();
}

double Metrics::tokens_per_s(Clock::time_point now) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const auto& [t, k] : recent_) {
    if (now - t <= window_) n += k;
  }
  const double span = std::min(std::chrono::duration<double>(window_).count(),
                               std::chrono::duration<double>(now - started_).count());
  return span > 0 ? double(n) / span : 0.0;
}

std::string Metrics::render() const {
  std::string o;
  auto gauge = [&](const char* name, const char* help, double v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", name, help, name, name, v);
  };
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} counter\n{} {}\n", name, help, name, name, v);
  };
  gauge("hlm_sessions", "Open verification sessions.", double(sessions.load()));
  counter("hlm_sessions_opened_total", "Sessions opened.", sessions_opened.load());
  counter("hlm_sessions_expired_total", "Sessions closed for being idle.", sessions_expired.load());
  counter("hlm_verifications_total", "Verify calls answered successfully.", verifications.load());
  counter("hlm_batches_total", "Batched engine forwards run for Verify calls.", batches.load());
  counter("hlm_drafts_total", "Drafted tokens received for verification.", drafts.load());
  counter("hlm_drafts_accepted_total", "Drafted tokens accepted.", accepted.load());
  counter("hlm_tokens_total", "Tokens committed to session contexts (pending, accepted, next).",
          tokens_total());
  gauge("hlm_tokens_per_second", "Tokens committed per second over the last 10 s.", tokens_per_s());
  o += "# HELP hlm_request_errors_total Requests refused, by gRPC status.\n"
       "# TYPE hlm_request_errors_total counter\n";
  for (auto [code, v] : {std::pair{"INVALID_ARGUMENT", &errors_invalid},
                         {"NOT_FOUND", &errors_not_found},
                         {"FAILED_PRECONDITION", &errors_precondition},
                         {"UNAUTHENTICATED", &errors_unauthenticated},
                         {"RATE_LIMITED", &errors_rate_limited},
                         {"RESOURCE_EXHAUSTED", &errors_exhausted},
                         {"INTERNAL", &errors_internal}}) {
    o += fmt::format("hlm_request_errors_total{{code=\"{}\"}} {}\n", code, v->load());
  }
  batch_size.render(o, "hlm_batch_size", "Verify requests served by one engine forward.");
  verify_latency.render(o, "hlm_verify_latency_seconds",
                        "Time from a Verify call's arrival to its reply.");
  forward_time.render(o, "hlm_forward_seconds",
                      "Time per batch: the engine forward and the verdicts on its requests.");
  return o;
}

// ---------------------------------------------------------------------------------------------
// HTTP endpoint

MetricsHttpServer::~MetricsHttpServer() { stop(); }

Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::start(const std::string& listen,
                                                                    const Metrics& metrics) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return make_error("--metrics-listen {}: expected host:port (e.g. 127.0.0.1:7071)", listen);
  }
  std::string host = listen.substr(0, colon);
  const std::string port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
      rc != 0) {
    return make_error("--metrics-listen {}: {}", listen, gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  std::unique_ptr<MetricsHttpServer> s(new MetricsHttpServer(metrics));
  s->fd_ = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s->fd_ < 0) return make_error("--metrics-listen {}: socket: {}", listen, strerror(errno));
  const int one = 1;
  setsockopt(s->fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(s->fd_, res->ai_addr, res->ai_addrlen) != 0 || ::listen(s->fd_, 16) != 0) {
    return make_error("--metrics-listen {}: cannot listen: {}", listen, strerror(errno));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  getsockname(s->fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  s->port_ = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(addr).sin6_port
                                              : reinterpret_cast<sockaddr_in&>(addr).sin_port);
  s->thread_ = std::thread([p = s.get()] { p->loop(); });
  return s;
}

void MetricsHttpServer::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void MetricsHttpServer::loop() {
  while (!stop_) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    serve(c);
    ::close(c);
  }
}

void MetricsHttpServer::serve(int fd) {
  // Read the request head (up to 8 KiB, 2 s in total).
  std::string req;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  char buf[1024];
  while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos &&
         req.size() < 8192) {
    const int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(
                             deadline - std::chrono::steady_clock::now())
                             .count());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) return;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    req.append(buf, size_t(n));
  }
  std::string status = "404 Not Found", type = "text/plain; charset=utf-8",
              body = "not found: try GET /metrics\n";
  const std::string line = req.substr(0, req.find_first_of("\r\n"));
  if (line.rfind("GET /metrics ", 0) == 0 || line == "GET /metrics") {
    status = "200 OK";
    type = "text/plain; version=0.0.4; charset=utf-8";
    body = metrics_.render();
  } else if (line.rfind("GET / ", 0) == 0) {
    status = "200 OK";
    body = "hlm serve: metrics at /metrics\n";
  } else if (line.rfind("GET ", 0) != 0) {
    status = "405 Method Not Allowed";
    body = "only GET is served\n";
  }
  const std::string resp = fmt::format(
      "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
      status, type, body.size(), body);
  size_t sent = 0;
  while (sent < resp.size()) {
    const ssize_t n = send(fd, resp.data() + sent, resp.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += size_t(n);
  }
}

}  // namespace hlm::server
