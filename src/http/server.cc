// The HTTP server on libmicrohttpd (see server.h). A connection's state lives in a Conn shared
// by libmicrohttpd (until the request completes), the deferred work's thread and a streamed
// response; a suspended connection is resumed by whoever has something for it to send.
#include "http/server.h"

#include <microhttpd.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "http/listen.h"

namespace hlm::http {

std::string Request::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? std::string() : it->second;
}

Response json_response(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

std::string error_body(int status, std::string_view message, std::string_view type) {
  if (type.empty()) {
    type = status == 413   ? "request_too_large"
           : status == 429 ? "rate_limit_exceeded"
           : status >= 500 ? "server_error"
                           : "invalid_request_error";
  }
  nlohmann::json j = {
      {"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", status}}}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

Response error_response(int status, std::string_view message) {
  return json_response(status, error_body(status, message));
}

}  // namespace

struct Server::Impl {
  ServerOptions options;
  Handler handler;
  MHD_Daemon* daemon = nullptr;
  int port = 0;
  std::atomic<bool> stopping{false};
  mutable std::mutex mu;
  std::condition_variable cv;
  int deferred = 0;

  struct Conn;
  static MHD_Result access(void* cls, MHD_Connection* connection, const char* url,
                           const char* method, const char* version, const char* upload_data,
                           size_t* upload_data_size, void** con_cls);
  static void completed(void* cls, MHD_Connection* connection, void** con_cls,
                        MHD_RequestTerminationCode toe);
  static ssize_t read_stream(void* cls, uint64_t pos, char* buf, size_t max);
  static void free_stream(void* cls);
  static MHD_Result queue(MHD_Connection* c, const Response& r);
  void run_deferred(std::shared_ptr<Conn> conn, Deferred work);
};

struct Server::Impl::Conn : Exchange {
  enum class State { kReading, kWorking, kWhole, kStream, kQueued };

  Impl* server = nullptr;
  MHD_Connection* connection = nullptr;
  int fd = -1;
  Request request;
  bool too_large = false;

  std::mutex mu;
  State state = State::kReading;
  Response head;    // the whole response, or the stream's head
  std::string buf;  // stream bytes not yet handed to libmicrohttpd, from `off`
  size_t off = 0;
  bool streaming = false;  // begin_stream() was the answer
  bool eof = false;
  bool suspended = false;
  bool gone = false;  // the request is over for libmicrohttpd (sent, closed or timed out)

  // With mu held: lets libmicrohttpd send what is ready.
  void wake() {
    if (suspended) {
      suspended = false;
      MHD_resume_connection(connection);
    }
  }
  void answer(Response r, State s) {
    std::lock_guard lock(mu);
    if (state != State::kWorking) return;
    head = std::move(r);
    state = s;
    if (s == State::kStream) {
      streaming = true;
      buf = std::move(head.body);
    }
    wake();
  }
  void respond(Response r) override { answer(std::move(r), State::kWhole); }
  void begin_stream(Response h) override { answer(std::move(h), State::kStream); }
  bool write(std::string_view chunk) override {
    std::lock_guard lock(mu);
    if (gone || server->stopping || !streaming) return false;
    if (buf.size() - off + chunk.size() > server->options.max_stream_backlog) return false;
    buf.append(chunk);
    wake();
    return true;
  }
  bool client_connected() override {
    std::lock_guard lock(mu);  // libmicrohttpd closes the socket only after completed()
    if (gone || server->stopping) return false;
    if (fd < 0) return true;
    pollfd p{fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) <= 0 || (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0;
  }
  // The work returned: end the stream, or answer 500 for work that never answered.
  void finish() {
    std::lock_guard lock(mu);
    if (state == State::kWorking) {
      head = error_response(500, "the request ended without a response");
      state = State::kWhole;
    }
    eof = true;
    wake();
  }
};

MHD_Result Server::Impl::queue(MHD_Connection* c, const Response& r) {
  MHD_Response* resp = MHD_create_response_from_buffer(
      r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
  if (!resp) return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.content_type.c_str());
  for (const auto& [k, v] : r.headers) MHD_add_response_header(resp, k.c_str(), v.c_str());
  const MHD_Result ok = MHD_queue_response(c, unsigned(r.status), resp);
  MHD_destroy_response(resp);
  return ok;
}

ssize_t Server::Impl::read_stream(void* cls, uint64_t, char* out, size_t max) {
  Conn& c = **static_cast<std::shared_ptr<Conn>*>(cls);
  std::lock_guard lock(c.mu);
  if (c.off < c.buf.size()) {
    const size_t n = std::min(max, c.buf.size() - c.off);
    std::memcpy(out, c.buf.data() + c.off, n);
    c.off += n;
    if (c.off == c.buf.size()) {
      c.buf.clear();
      c.off = 0;
    }
    return ssize_t(n);
  }
  if (c.eof || c.server->stopping) return MHD_CONTENT_READER_END_OF_STREAM;
  // Nothing to send yet: sleep until write() or finish() wakes the connection.
  c.suspended = true;
  MHD_suspend_connection(c.connection);
  return 0;
}

void Server::Impl::free_stream(void* cls) { delete static_cast<std::shared_ptr<Conn>*>(cls); }

void Server::Impl::run_deferred(std::shared_ptr<Conn> conn, Deferred work) {
  try {
    work(*conn);
  } catch (const std::exception& e) {
    conn->respond(error_response(500, "internal error"));
  }
  conn->finish();
  // What the work captured dies here, before stop() can return and its owner go away.
  work = nullptr;
  std::lock_guard lock(mu);
  --deferred;
  cv.notify_all();
}

MHD_Result Server::Impl::access(void* cls, MHD_Connection* connection, const char* url,
                                const char* method, const char*, const char* upload_data,
                                size_t* upload_data_size, void** con_cls) {
  Impl& self = *static_cast<Impl*>(cls);
  auto* holder = static_cast<std::shared_ptr<Conn>*>(*con_cls);
  if (!holder) {
    auto conn = std::make_shared<Conn>();
    conn->server = &self;
    conn->connection = connection;
    conn->request.method = method;
    conn->request.path = url;
    MHD_get_connection_values(
        connection, MHD_HEADER_KIND,
        [](void* c, MHD_ValueKind, const char* key, const char* value) -> MHD_Result {
          std::string k(key);
          std::transform(k.begin(), k.end(), k.begin(),
                         [](unsigned char ch) { return char(std::tolower(ch)); });
          static_cast<Request*>(c)->headers[k] = value ? value : "";
          return MHD_YES;
        },
        &conn->request);
    if (const auto* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD))
      conn->fd = info->connect_fd;
    *con_cls = new std::shared_ptr<Conn>(conn);
    const std::string length = conn->request.header("content-length");
    if (!length.empty() &&
        std::strtoull(length.c_str(), nullptr, 10) > self.options.max_body_bytes) {
      return queue(connection,
                   error_response(413, fmt::format("the request body is over the limit of {} bytes",
                                                   self.options.max_body_bytes)));
    }
    return MHD_YES;
  }
  const std::shared_ptr<Conn>& conn = *holder;
  if (*upload_data_size) {
    if (!conn->too_large) {
      if (conn->request.body.size() + *upload_data_size > self.options.max_body_bytes) {
        conn->too_large = true;
        conn->request.body.clear();
      } else {
        conn->request.body.append(upload_data, *upload_data_size);
      }
    }
    *upload_data_size = 0;
    return MHD_YES;
  }
  std::unique_lock lock(conn->mu);
  switch (conn->state) {
    case Conn::State::kReading:
      break;
    case Conn::State::kWorking:
    case Conn::State::kQueued:
      return MHD_YES;
    case Conn::State::kWhole:
      conn->state = Conn::State::kQueued;
      return queue(connection, conn->head);
    case Conn::State::kStream: {
      conn->state = Conn::State::kQueued;
      auto* ref = new std::shared_ptr<Conn>(conn);
      MHD_Response* resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                             &read_stream, ref, &free_stream);
      if (!resp) {
        delete ref;
        return MHD_NO;
      }
      MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, conn->head.content_type.c_str());
      for (const auto& [k, v] : conn->head.headers)
        MHD_add_response_header(resp, k.c_str(), v.c_str());
      const int status = conn->head.status;
      lock.unlock();  // the first read_stream() takes the lock
      const MHD_Result ok = MHD_queue_response(connection, unsigned(status), resp);
      MHD_destroy_response(resp);
      return ok;
    }
  }
  conn->state = Conn::State::kQueued;
  lock.unlock();
  if (conn->too_large) {
    return queue(connection,
                 error_response(413, fmt::format("the request body is over the limit of {} bytes",
                                                 self.options.max_body_bytes)));
  }
  Reply reply;
  try {
    reply = self.handler(conn->request);
  } catch (const std::exception& e) {
    reply = error_response(500, "internal error");
  }
  if (auto* r = std::get_if<Response>(&reply)) return queue(connection, *r);
  {
    std::lock_guard g(self.mu);
    if (self.stopping || self.deferred >= int(self.options.max_deferred)) {
      return queue(connection, error_response(503, "the server is busy or stopping"));
    }
    ++self.deferred;
  }
  lock.lock();
  conn->state = Conn::State::kWorking;
  conn->suspended = true;
  MHD_suspend_connection(connection);
  lock.unlock();
  std::thread(&Impl::run_deferred, &self, conn, std::move(std::get<Deferred>(reply))).detach();
  return MHD_YES;
}

void Server::Impl::completed(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
  auto* holder = static_cast<std::shared_ptr<Conn>*>(*con_cls);
  if (!holder) return;
  {
    std::lock_guard lock((*holder)->mu);
    (*holder)->gone = true;
  }
  delete holder;
  *con_cls = nullptr;
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { stop(); }

int Server::port() const { return impl_->port; }

int Server::deferred_running() const {
  std::lock_guard lock(impl_->mu);
  return impl_->deferred;
}

void Server::stop() {
  if (!impl_->daemon) return;
  impl_->stopping = true;
  {
    std::unique_lock lock(impl_->mu);
    impl_->cv.wait(lock, [&] { return impl_->deferred == 0; });
  }
  MHD_stop_daemon(impl_->daemon);
  impl_->daemon = nullptr;
}

Result<std::unique_ptr<Server>> Server::start(ServerOptions o, Handler handler) {
  auto address = parse_listen_address(o.listen, o.flag);
  if (!address) return address.error();
  auto sock = open_listen_socket(*address, o.flag);
  if (!sock) return sock.error();
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  impl->handler = std::move(handler);
  impl->port = sock->port;
  // The memory pool holds the request head and the first read of the body.
  const size_t memory = o.max_header_bytes + 8 * 1024;
  impl->daemon = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, 0, nullptr, nullptr, &Impl::access,
      impl.get(), MHD_OPTION_LISTEN_SOCKET, sock->fd, MHD_OPTION_CONNECTION_LIMIT,
      o.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, o.idle_timeout_s,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, memory, MHD_OPTION_NOTIFY_COMPLETED, &Impl::completed,
      impl.get(), MHD_OPTION_END);
  if (!impl->daemon) {
    ::close(sock->fd);
    return make_error("{} {}: the HTTP server did not start", o.flag, o.listen);
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

}  // namespace hlm::http
