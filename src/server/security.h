// Security: who may talk to the server and how often. Loopback detection for the listen
// address (a non-loopback listener needs an API key), API keys read from a file and checked in
// constant time from "authorization: Bearer <key>", and a token bucket per client address.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "util/result.h"

namespace hlm::server {

// The host part of "host:port", "[v6]:port" or "ipv4:host:port" (gRPC peer strings).
std::string host_of(std::string_view address);
// 127.0.0.0/8, ::1, localhost, and unix sockets are loopback; anything else (0.0.0.0, [::],
// a public name) is not.
bool is_loopback(std::string_view listen_address);

// Reads an API key: the file's first line, surrounding whitespace removed. Refuses an empty
// key and keys shorter than 16 characters.
Result<std::string> read_api_key_file(const std::string& path);

// Reads a PEM file (a TLS certificate chain, key or roots) for `flag`; refuses a missing file
// and one without a "-----BEGIN " block, naming both.
Result<std::string> read_pem_file(const std::string& path, std::string_view flag);

// Compares `presented` with the key without data-dependent branches or early exits: both are
// hashed (SHA-256) and the digests compared with an OR-accumulated XOR, so the time depends
// neither on where they differ nor on the key's length.
bool keys_equal(std::string_view presented, std::string_view key);

// The key from an "authorization" metadata value "Bearer <key>" (case-insensitive scheme);
// empty when absent or malformed.
std::string_view bearer_token(std::string_view authorization);

// Token buckets keyed by client address: `rate` requests per second with bursts of `burst`.
// rate <= 0 disables limiting. Thread-safe.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  RateLimiter(double rate, double burst);
  // True when the client may make one more request now (and charges it).
  bool allow(const std::string& client, Clock::time_point now = Clock::now());
  bool enabled() const { return rate_ > 0; }

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point last;
  };
  double rate_, burst_;
  std::mutex mu_;
  std::map<std::string, Bucket> buckets_;
  Clock::time_point last_prune_{};
};

}  // namespace hlm::server
