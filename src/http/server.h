// HTTP server: an event-driven HTTP/1.1 listener on libmicrohttpd for hlm's endpoints (the
// device's OpenAI-compatible API, `hlm serve`'s /metrics). One epoll thread reads every
// connection, so clients that send half a request and wait cost a socket each, not a thread;
// header, body and idle limits are enforced before any handler runs. Cheap handlers answer on
// the event thread; long work (a generation) runs on a thread of its own and answers whole or
// as a chunked stream, through an Exchange that reports when the client has gone.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "util/result.h"

namespace hlm::http {

struct Request {
  std::string method, path;                    // path without the query string
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  // The header's value, or "" (name in lower case).
  std::string header(const std::string& name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// The link between deferred work and its client. Thread-safe; valid until the work returns.
class Exchange {
 public:
  virtual ~Exchange() = default;
  // Answers with a whole response. Only the first respond() or begin_stream() counts.
  virtual void respond(Response response) = 0;
  // Starts a chunked response with the head's status, type and headers (its body is sent first).
  virtual void begin_stream(Response head) = 0;
  // Queues a chunk of the stream. False once the client is gone (it closed the connection, or
  // stopped reading and was dropped after the idle timeout) or the server is stopping: the work
  // should stop. The stream ends when the work returns.
  virtual bool write(std::string_view chunk) = 0;
  // False once the client has closed its side or the server is stopping (checked on the socket
  // itself, so a non-streamed generation notices a client that hung up).
  virtual bool client_connected() = 0;
};

using Deferred = std::function<void(Exchange&)>;
// A handler answers at once (it runs on the event thread: keep it cheap) or hands back work to
// run on a thread of its own.
using Reply = std::variant<Response, Deferred>;
using Handler = std::function<Reply(const Request&)>;

struct ServerOptions {
  std::string listen = "127.0.0.1:0";
  std::string flag = "--listen";  // names the option in errors
  // Request line plus headers; beyond it the client gets 431 (libmicrohttpd's read buffer
  // holds them, so its memory limit is this plus room for the body's first read).
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 1 << 20;  // beyond it: 413
  unsigned max_connections = 1000;  // beyond it new connections are closed at accept
  unsigned idle_timeout_s = 15;     // a connection that moves no byte this long is closed
  unsigned max_deferred = 256;      // concurrent deferred works; beyond it: 503
  // Bytes a stream may queue for a client that does not read them before it is dropped.
  size_t max_stream_backlog = 8 << 20;
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> start(ServerOptions options, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;
  // Tells deferred works to stop (their write() and client_connected() turn false), waits for
  // them, then closes every connection.
  void stop();
  int deferred_running() const;

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A JSON body with the given status.
Response json_response(int status, std::string body);
// An error body in OpenAI's shape: {"error": {"message", "type", "param", "code"}}; the type
// defaults from the status.
std::string error_body(int status, std::string_view message, std::string_view type = {});

}  // namespace hlm::http
