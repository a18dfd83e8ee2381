// Sha256: streaming SHA-256 from OpenSSL's libcrypto and a file digest helper, used to verify
// downloaded model files and to compare API keys.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "util/result.h"

namespace hlm {

class Sha256 {
 public:
  using Digest = std::array<uint8_t, 32>;

  Sha256();
  ~Sha256();
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  // Finishes the hash; the object must not be updated afterwards.
  Digest finish();

  static std::string hex(const Digest& d);
  // Hex digest of a string in one call.
  static std::string of(std::string_view s);

 private:
  struct Ctx;  // OpenSSL's EVP_MD_CTX
  std::unique_ptr<Ctx> ctx_;
};

// Lower-case hex SHA-256 of a file's contents; the error names the file.
Result<std::string> sha256_file(const std::string& path);

}  // namespace hlm
