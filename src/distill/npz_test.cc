#include "distill/npz.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

namespace hlm {
namespace {

uint32_t le32(const std::vector<uint8_t>& b, size_t at) {
  return uint32_t(b[at]) | uint32_t(b[at + 1]) << 8 | uint32_t(b[at + 2]) << 16 |
         uint32_t(b[at + 3]) << 24;
}
uint32_t le16(const std::vector<uint8_t>& b, size_t at) {
  return uint32_t(b[at]) | uint32_t(b[at + 1]) << 8;
}

std::string header_of(const std::vector<uint8_t>& npy) {
  return std::string(npy.begin() + 10, npy.begin() + 10 + le16(npy, 8));
}

TEST(Npy, HeaderSaysDtypeAndShapeAndAlignsTheData) {
  const int32_t v[6] = {1, 2, 3, 4, 5, 6};
  const int64_t one = 7;
  struct Case {
    npz::Array a;
    std::string shape;
  } cases[] = {
      {{"m", "<i4", {3, 2}, npz::bytes_of(std::span(v))}, "'shape': (3, 2), "},
      {{"v", "<i4", {6}, npz::bytes_of(std::span(v))}, "'shape': (6,), "},
      {{"s", "<i8", {}, npz::bytes_of(std::span(&one, 1))}, "'shape': (), "},
  };
  for (const auto& c : cases) {
    const std::vector<uint8_t> b = npz::npy(c.a);
    ASSERT_GT(b.size(), 10u);
    EXPECT_EQ(std::memcmp(b.data(), "\x93NUMPY\x01\x00", 8), 0);
    const std::string h = header_of(b);
    EXPECT_NE(h.find("'descr': '" + c.a.dtype + "'"), std::string::npos) << h;
    EXPECT_NE(h.find("'fortran_order': False"), std::string::npos) << h;
    EXPECT_NE(h.find(c.shape), std::string::npos) << h;
    EXPECT_EQ(h.back(), '\n');
    EXPECT_EQ((10 + h.size()) % 64, 0u) << "the data starts 64-byte aligned";
    EXPECT_EQ(b.size(), 10 + h.size() + c.a.data.size());
    EXPECT_EQ(std::memcmp(b.data() + 10 + h.size(), c.a.data.data(), c.a.data.size()), 0);
  }
}

TEST(Npz, ArchiveListsEveryArrayStoredWithItsCrc) {
  const auto path = (std::filesystem::temp_directory_path() / "hlm_npz_test.npz").string();
  const int32_t toks[3] = {5, 6, 7};
  const uint16_t half[6] = {0x3c00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600};
  const npz::Array arrays[] = {{"toks", "<i4", {3}, npz::bytes_of(std::span(toks))},
                               {"val", "<f2", {3, 2}, npz::bytes_of(std::span(half))}};
  ASSERT_TRUE(npz::write(path, arrays).ok());
  std::ifstream f(path, std::ios::binary);
  const std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), {});
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  // The end record: two entries, and where the central directory starts.
  ASSERT_GE(b.size(), 22u);
  const size_t end = b.size() - 22;
  ASSERT_EQ(le32(b, end), 0x06054b50u);
  EXPECT_EQ(le16(b, end + 10), 2u);
  size_t cd = le32(b, end + 16);
  std::map<std::string, std::vector<uint8_t>> members;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(le32(b, cd), 0x02014b50u);
    const uint32_t crc = le32(b, cd + 16), size = le32(b, cd + 20);
    EXPECT_EQ(le16(b, cd + 10), 0u) << "stored, not compressed";
    const std::string name(b.begin() + long(cd + 46), b.begin() + long(cd + 46 + le16(b, cd + 28)));
    const size_t local = le32(b, cd + 42);
    ASSERT_EQ(le32(b, local), 0x04034b50u);
    const size_t data = local + 30 + le16(b, local + 26);
    std::vector<uint8_t> body(b.begin() + long(data), b.begin() + long(data + size));
    EXPECT_EQ(crc, uint32_t(crc32(0L, body.data(), uInt(body.size())))) << name;
    members[name] = body;
    cd += 46 + le16(b, cd + 28);
  }
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members["toks.npy"], npz::npy(arrays[0]));
  EXPECT_EQ(members["val.npy"], npz::npy(arrays[1]));
  std::filesystem::remove(path);
}

TEST(Npz, ErrorsNameTheArrayOrTheFile) {
  const int32_t v[3] = {1, 2, 3};
  const npz::Array wrong[] = {{"idx", "<i4", {2, 2}, npz::bytes_of(std::span(v))}};
  auto st = npz::write("/tmp/hlm_npz_wrong.npz", wrong);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("'idx'"), std::string::npos) << st.error().message;
  const npz::Array right[] = {{"idx", "<i4", {3}, npz::bytes_of(std::span(v))}};
  st = npz::write("/nonexistent-dir/x.npz", right);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("/nonexistent-dir/x.npz"), std::string::npos);
}

}  // namespace
}  // namespace hlm
