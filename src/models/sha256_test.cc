// Tests for Sha256: NIST test vectors, chunked updates and file hashing.
#include "models/sha256.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace hlm {
namespace {

TEST(Sha256, NistVectors) {
  EXPECT_EQ(Sha256::of(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256::of("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256::of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256::of("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnop"
                       "jklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(Sha256::of(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, PaddingBoundaries) {
  // Lengths around the 55/56/64-byte padding edges, checked against one-shot hashing in pieces.
  for (size_t n : {55u, 56u, 57u, 63u, 64u, 65u, 119u, 120u, 128u}) {
    const std::string s(n, 'x');
    Sha256 h;
    for (char c : s) h.update(&c, 1);
    EXPECT_EQ(Sha256::hex(h.finish()), Sha256::of(s)) << n;
  }
  EXPECT_EQ(Sha256::of(std::string(64, 'a')),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(Sha256, ChunkedUpdatesMatchOneShot) {
  std::string s;
  for (int i = 0; i < 5000; ++i) s.push_back(static_cast<char>(i * 31 + 7));
  const std::string want = Sha256::of(s);
  for (size_t chunk : {1u, 3u, 63u, 64u, 65u, 1000u}) {
    Sha256 h;
    for (size_t i = 0; i < s.size(); i += chunk)
      h.update(s.data() + i, std::min(chunk, s.size() - i));
    EXPECT_EQ(Sha256::hex(h.finish()), want) << chunk;
  }
}

TEST(Sha256, File) {
  char path[] = "/tmp/hlm_sha256_XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  { std::ofstream(path, std::ios::binary) << "abc"; }
  auto h = sha256_file(path);
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(*h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::remove(path);
  auto missing = sha256_file(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find(path), std::string::npos);
}

}  // namespace
}  // namespace hlm
