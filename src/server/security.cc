// Security implementation.
#include "server/security.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <iterator>
#include <utility>

#include "models/sha256.h"

namespace hlm::server {

std::string host_of(std::string_view address) {
  // gRPC peers percent-encode IPv6 brackets: "ipv6:%5B::1%5D:54321".
  std::string decoded(address);
  for (auto [from, to] : {std::pair{"%5B", "["}, {"%5D", "]"}, {"%5b", "["}, {"%5d", "]"}}) {
    for (size_t p; (p = decoded.find(from)) != std::string::npos;) decoded.replace(p, 3, to);
  }
  std::string_view a = decoded;
  for (std::string_view scheme : {"ipv4:", "ipv6:", "dns:///", "dns:"}) {
    if (a.substr(0, scheme.size()) == scheme) a.remove_prefix(scheme.size());
  }
  if (a.substr(0, 5) == "unix:") return std::string(a);
  if (!a.empty() && a.front() == '[') {
    const size_t close = a.find(']');
    return std::string(close == std::string_view::npos ? a : a.substr(1, close - 1));
  }
  const size_t colon = a.rfind(':');
  // A bare IPv6 address has several colons and no port.
  if (colon != std::string_view::npos && a.find(':') == colon) a = a.substr(0, colon);
  return std::string(a);
}

bool is_loopback(std::string_view listen_address) {
  const std::string h = host_of(listen_address);
  if (h.rfind("unix:", 0) == 0) return true;
  std::string l = h;
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return std::tolower(c); });
  if (l == "localhost" || l == "::1" || l == "0:0:0:0:0:0:0:1") return true;
  // 127.0.0.0/8 in dotted quad form.
  if (l.rfind("127.", 0) == 0) {
    int dots = 0;
    for (char c : l) {
      if (c == '.') {
        ++dots;
      } else if (!std::isdigit(static_cast<unsigned char>(c))) {
        return false;
      }
    }
    return dots == 3;
  }
  return false;
}

Result<std::string> read_api_key_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) return make_error("--api-key-file: cannot read {}", path);
  std::string line;
  std::getline(f, line);
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  line.erase(line.begin(), std::find_if(line.begin(), line.end(), not_space));
  line.erase(std::find_if(line.rbegin(), line.rend(), not_space).base(), line.end());
  if (line.empty()) return make_error("--api-key-file: {} holds no key on its first line", path);
  if (line.size() < 16) {
    return make_error(
        "--api-key-file: the key in {} has {} characters; use at least 16 (e.g. "
        "`head -c 24 /dev/urandom | base64 > {}`)",
        path, line.size(), path);
  }
  return line;
}

Result<std::string> read_pem_file(const std::string& path, std::string_view flag) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error("{}: cannot read {}", flag, path);
  std::string pem((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return make_error("{}: {} is not PEM (no \"-----BEGIN \" line)", flag, path);
  }
  return pem;
}

bool keys_equal(std::string_view presented, std::string_view key) {
  Sha256 a, b;
  a.update(presented);
  b.update(key);
  const Sha256::Digest da = a.finish(), db = b.finish();
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < da.size(); ++i) diff = diff | uint8_t(da[i] ^ db[i]);
  return diff == 0 && !key.empty();
}

std::string_view bearer_token(std::string_view v) {
  constexpr std::string_view kScheme = "bearer ";
  if (v.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(v[i])) != kScheme[i]) return {};
  }
  v.remove_prefix(kScheme.size());
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\r' || v.back() == '\n')) {
    v.remove_suffix(1);
  }
  return v;
}

RateLimiter::RateLimiter(double rate, double burst)
    : rate_(rate), burst_(std::max(burst, rate > 0 ? 1.0 : 0.0)) {}

bool RateLimiter::allow(const std::string& client, Clock::time_point now) {
  if (rate_ <= 0) return true;
  std::lock_guard<std::mutex> lock(mu_);
  // Forget clients idle long enough for their bucket to be full again.
  if (now - last_prune_ > std::chrono::seconds(60)) {
    const auto refill = std::chrono::duration<double>(burst_ / rate_ + 1.0);
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      it = now - it->second.last > refill ? buckets_.erase(it) : std::next(it);
    }
    last_prune_ = now;
  }
  auto [it, fresh] = buckets_.try_emplace(client, Bucket{burst_, now});
  Bucket& b = it->second;
  if (!fresh) {
    const double dt = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(burst_, b.tokens + std::max(0.0, dt) * rate_);
    b.last = now;
  }
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

}  // namespace hlm::server
