// Security helpers: loopback detection, peer parsing, bearer tokens, constant-time key checks,
// API key files and the per-client token bucket.
#include "server/security.h"

#include <gtest/gtest.h>

#include <fstream>

#include "models/testing.h"

namespace hlm::server {
namespace {

TEST(Security, LoopbackAddresses) {
  for (const char* a : {"127.0.0.1:7070", "127.1.2.3:0", "localhost:80", "[::1]:7070",
                        "LOCALHOST:1", "unix:/tmp/hlm.sock"}) {
    EXPECT_TRUE(is_loopback(a)) << a;
  }
  for (const char* a : {"0.0.0.0:7070", "[::]:7070", "10.0.0.1:7070", "example.com:7070",
                        "127.0.0.1.evil.com:80", ":7070", "128.0.0.1:1"}) {
    EXPECT_FALSE(is_loopback(a)) << a;
  }
}

TEST(Security, PeerHosts) {
  EXPECT_EQ(host_of("ipv4:127.0.0.1:54321"), "127.0.0.1");
  EXPECT_EQ(host_of("ipv6:%5B::1%5D:54321"), "::1");
  EXPECT_EQ(host_of("ipv6:[::1]:54321"), "::1");
  EXPECT_EQ(host_of("10.1.2.3:80"), "10.1.2.3");
  EXPECT_EQ(host_of("unix:/tmp/x"), "unix:/tmp/x");
}

TEST(Security, BearerTokens) {
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer   abc "), "abc");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token("Bearer"), "");
  EXPECT_EQ(bearer_token(""), "");
}

TEST(Security, KeysCompareExactly) {
  const std::string key = "0123456789abcdef-secret";
  EXPECT_TRUE(keys_equal(key, key));
  EXPECT_FALSE(keys_equal(key + "x", key));
  EXPECT_FALSE(keys_equal(key.substr(0, key.size() - 1), key));
  EXPECT_FALSE(keys_equal("", key));
  EXPECT_FALSE(keys_equal("", ""));  // an empty configured key never matches
  std::string flipped = key;
  flipped[0] ^= 1;
  EXPECT_FALSE(keys_equal(flipped, key));
}

TEST(Security, ApiKeyFiles) {
  hlm::testing::ScopedTempDir dir;
  const std::string good = dir / "key", shortk = dir / "short", empty = dir / "empty";
  std::ofstream(good) << "  abcdefghijklmnopqrstuvwx  \nsecond line ignored\n";
  std::ofstream(shortk) << "abc\n";
  std::ofstream(empty) << "\n";
  auto k = read_api_key_file(good);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(*k, "abcdefghijklmnopqrstuvwx");
  EXPECT_FALSE(read_api_key_file(shortk).ok());
  EXPECT_FALSE(read_api_key_file(empty).ok());
  auto missing = read_api_key_file(dir / "nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("cannot read"), std::string::npos);
}

TEST(Security, TokenBucketPerClient) {
  RateLimiter limiter(10, 3);  // 10/s, bursts of 3
  const auto t0 = RateLimiter::Clock::now();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.allow("a", t0));
  EXPECT_FALSE(limiter.allow("a", t0));
  EXPECT_TRUE(limiter.allow("b", t0)) << "clients have separate buckets";
  EXPECT_TRUE(limiter.allow("a", t0 + std::chrono::milliseconds(100)));  // one token refilled
  EXPECT_FALSE(limiter.allow("a", t0 + std::chrono::milliseconds(110)));
  EXPECT_TRUE(limiter.allow("a", t0 + std::chrono::seconds(5)));
  RateLimiter off(0, 0);
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(off.allow("a", t0));
}

}  // namespace
}  // namespace hlm::server
