// The HTTP server against slow, hostile and vanishing clients, over real loopback sockets.
#include "http/server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "http/testing.h"

namespace hlm::http {
namespace {

using Clock = std::chrono::steady_clock;
using namespace testing;

struct Fixture {
  std::unique_ptr<Server> server;
  std::atomic<int> finished{0};
  std::atomic<bool> saw_disconnect{false}, write_failed{false};

  explicit Fixture(ServerOptions o = {}) {
    auto s = Server::start(o, [this](const Request& r) -> Reply {
      if (r.path == "/hello") return json_response(200, R"({"hello":"world"})");
      if (r.path == "/echo") return json_response(200, r.body);
      if (r.path == "/whole") {
        return Deferred([this](Exchange& ex) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          ex.respond(json_response(200, "later"));
          finished++;
        });
      }
      if (r.path == "/stream") {
        return Deferred([this](Exchange& ex) {
          Response head;
          head.content_type = "text/event-stream";
          ex.begin_stream(head);
          for (int i = 0; i < 5; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            ex.write(fmt::format("data: {}\n\n", i));
          }
          finished++;
        });
      }
      if (r.path == "/flood") {  // a big stream the client may not read
        return Deferred([this](Exchange& ex) {
          ex.begin_stream(Response{});
          const std::string chunk(4096, 'x');
          for (int i = 0; i < 100000; ++i) {
            if (!ex.write(chunk)) {
              write_failed = true;
              break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          finished++;
        });
      }
      if (r.path == "/wait") {  // a long non-streamed work that notices a client hanging up
        return Deferred([this](Exchange& ex) {
          for (int i = 0; i < 1000 && ex.client_connected(); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          saw_disconnect = !ex.client_connected();
          ex.respond(json_response(200, "done"));
          finished++;
        });
      }
      return json_response(404, "{}");
    });
    EXPECT_TRUE(s) << s.error().message;
    if (s) server = std::move(s).value();
  }
  int port() const { return server->port(); }
};

TEST(HttpServer, AnswersInlineAndDeferredAndStreamed) {
  Fixture f;
  const std::string hello = get(f.port(), "/hello");
  EXPECT_EQ(status_of(hello), 200) << hello;
  EXPECT_NE(hello.find(R"({"hello":"world"})"), std::string::npos);
  EXPECT_NE(hello.find("Content-Type: application/json"), std::string::npos);

  const std::string whole = get(f.port(), "/whole");
  EXPECT_EQ(status_of(whole), 200);
  EXPECT_NE(whole.find("later"), std::string::npos);

  const std::string stream = get(f.port(), "/stream");
  EXPECT_EQ(status_of(stream), 200);
  EXPECT_NE(stream.find("Transfer-Encoding: chunked"), std::string::npos) << stream;
  size_t at = 0;
  for (int i = 0; i < 5; ++i) {
    at = stream.find(fmt::format("data: {}\n\n", i), at);
    ASSERT_NE(at, std::string::npos) << i << "\n" << stream;
  }
  EXPECT_EQ(get(f.port(), "/nothing").find("404"), 9u);
}

TEST(HttpServer, ServesPostBodies) {
  Fixture f;
  const std::string body = R"({"x":[1,2,3]})";
  const std::string r = round_trip(
      f.port(), fmt::format("POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                            body.size(), body));
  EXPECT_EQ(status_of(r), 200);
  EXPECT_NE(r.find(body), std::string::npos);
}

// Goal: while 100 connections hold half-sent requests, a normal request is answered within 1 s
// (a server that gives each connection a thread from a fixed pool answers after the idle
// timeout, here 15 s).
TEST(HttpServer, HalfSentRequestsDoNotDelayOthers) {
  Fixture f;
  std::vector<int> slow;
  for (int i = 0; i < 100; ++i) {
    const int fd = connect_to(f.port());
    ASSERT_GE(fd, 0);
    send_all(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Le");
    slow.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t0 = Clock::now();
  const std::string r = get(f.port(), "/hello");
  const double took = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(status_of(r), 200) << r;
  EXPECT_LT(took, 1.0);
  for (int fd : slow) ::close(fd);
}

TEST(HttpServer, RefusesOversizedHeadersWith431AndBodiesWith413) {
  ServerOptions o;
  o.max_body_bytes = 1000;
  Fixture f(o);
  const std::string big_header = round_trip(
      f.port(), "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(64 * 1024, 'a') +
                    "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(big_header), 431) << big_header.substr(0, 200);
  // A header just under the limit still passes.
  const std::string ok_header = round_trip(
      f.port(), "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(8 * 1024, 'a') +
                    "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(status_of(ok_header), 200);

  const std::string declared = round_trip(
      f.port(),
      "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 5000\r\n\r\n" +
          std::string(5000, 'b'));
  EXPECT_EQ(status_of(declared), 413) << declared.substr(0, 200);
  EXPECT_NE(declared.find("\"error\""), std::string::npos);
  // Chunked: no length up front, so the limit is found while reading.
  std::string chunked =
      "POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) chunked += "200\r\n" + std::string(512, 'c') + "\r\n";
  chunked += "0\r\n\r\n";
  EXPECT_EQ(status_of(round_trip(f.port(), chunked)), 413);
}

// A client that stops reading a stream is dropped after the idle timeout (its work's write()
// turns false) while other requests go on being served.
TEST(HttpServer, DropsAStreamReaderThatStopsReading) {
  ServerOptions o;
  o.idle_timeout_s = 1;
  o.max_stream_backlog = 256 << 20;  // so the idle timeout, not the backlog, drops it
  Fixture f(o);
  const int fd = connect_to(f.port());
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  send_all(fd, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto t0 = Clock::now();
  while (!f.write_failed && Clock::now() - t0 < std::chrono::seconds(20)) {
    EXPECT_EQ(status_of(get(f.port(), "/hello")), 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(f.write_failed);
  ::close(fd);
}

TEST(HttpServer, DeferredWorkSeesTheClientHangUp) {
  Fixture f;
  const int fd = connect_to(f.port());
  send_all(fd, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ::close(fd);
  const auto t0 = Clock::now();
  while (f.finished == 0 && Clock::now() - t0 < std::chrono::seconds(10))
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(f.finished, 1);
  EXPECT_TRUE(f.saw_disconnect);
  EXPECT_EQ(f.server->deferred_running(), 0);
}

TEST(HttpServer, StopEndsRunningWork) {
  Fixture f;
  const int fd = connect_to(f.port());
  send_all(fd, "GET /wait HTTP/1.1\r\nHost: t\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  f.server->stop();
  EXPECT_EQ(f.finished, 1);
  ::close(fd);
}

TEST(HttpServer, RefusesAPortInUse) {
  Fixture f;
  ServerOptions o;
  o.listen = fmt::format("127.0.0.1:{}", f.port());
  o.flag = "--api-listen";
  auto second = Server::start(o, [](const Request&) -> Reply { return Response{}; });
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("--api-listen"), std::string::npos);
  EXPECT_NE(second.error().message.find("in use"), std::string::npos) << second.error().message;
}

}  // namespace
}  // namespace hlm::http
