// Listen addresses: strict ports, bracketed IPv6, and a port already held is refused.
#include "http/listen.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace hlm::http {
namespace {

TEST(ListenAddress, ParsesHostAndPort) {
  auto a = parse_listen_address("127.0.0.1:8080", "--listen");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  auto b = parse_listen_address("[::1]:0", "--listen");
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  auto c = parse_listen_address(":65535", "--listen");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->host, "");
}

TEST(ListenAddress, RefusesPortsOutOfRangeAndJunk) {
  for (const char* bad : {"127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:-1",
                          "127.0.0.1:", "127.0.0.1:80x", "127.0.0.1", "::1:80"}) {
    auto a = parse_listen_address(bad, "--metrics-listen");
    ASSERT_FALSE(a) << bad;
    EXPECT_NE(a.error().message.find("--metrics-listen"), std::string::npos) << a.error().message;
    EXPECT_NE(a.error().message.find(bad), std::string::npos) << a.error().message;
  }
}

TEST(ListenSocket, RefusesAPortAnotherSocketHolds) {
  auto first = open_listen_socket({"127.0.0.1", 0}, "--listen");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_GT(first->port, 0);
  auto second = open_listen_socket({"127.0.0.1", first->port}, "--listen");
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("another process holds the port"), std::string::npos)
      << second.error().message;
  ::close(first->fd);
}

TEST(ListenSocket, NamesAHostThatDoesNotResolve) {
  auto s = open_listen_socket({"no-such-host.invalid", 0}, "--listen");
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("no-such-host.invalid"), std::string::npos);
}

}  // namespace
}  // namespace hlm::http
