// Sha256: a small streaming SHA-256 (FIPS 180-4) and a file digest helper, used to verify
// downloaded model files without external dependencies.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "util/result.h"

namespace hlm {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256();
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  // Finishes the hash; the object must not be updated afterwards.
  Digest finish();

  static std::string hex(const Digest& d);
  // Hex digest of a string in one call.
  static std::string of(std::string_view s);

 private:
  void block(const uint8_t* p);

  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_;
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

// Lower-case hex SHA-256 of a file's contents; the error names the file.
Result<std::string> sha256_file(const std::string& path);

}  // namespace hlm
