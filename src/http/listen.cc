// Listen address parsing and listening sockets (see listen.h).
#include "http/listen.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>

namespace hlm::http {

Result<ListenAddress> parse_listen_address(std::string_view text, std::string_view flag) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return make_error("{} {}: expected host:port (e.g. 127.0.0.1:8080)", flag, text);
  }
  ListenAddress a;
  std::string_view host = text.substr(0, colon);
  const std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return make_error("{} {}: an IPv6 host goes in brackets, as in [::1]:8080", flag, text);
  }
  a.host = std::string(host);
  int value = -1;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value < 0 ||
      value > 65535) {
    return make_error("{} {}: the port must be a number from 0 to 65535 (0 picks a free one)", flag,
                      text);
  }
  a.port = value;
  return a;
}

Result<ListenSocket> open_listen_socket(const ListenAddress& address, std::string_view flag,
                                        int backlog) {
  const std::string where = fmt::format(
      "{} {}:{}", flag,
      address.host.find(':') != std::string::npos ? "[" + address.host + "]" : address.host,
      address.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(address.port);
  if (int rc = getaddrinfo(address.host.empty() ? nullptr : address.host.c_str(), port.c_str(),
                           &hints, &res);
      rc != 0) {
    return make_error("{}: cannot resolve the host: {}", where, gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  ListenSocket s;
  s.fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s.fd < 0) return make_error("{}: socket: {}", where, std::strerror(errno));
  const int one = 1;
  setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(s.fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(s.fd, backlog) != 0) {
    const int err = errno;
    ::close(s.fd);
    return make_error("{}: cannot listen: {}{}", where, std::strerror(err),
                      err == EADDRINUSE ? " (another process holds the port)" : "");
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(s.fd, reinterpret_cast<sockaddr*>(&bound), &len);
  s.port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                             : reinterpret_cast<sockaddr_in&>(bound).sin_port);
  return s;
}

}  // namespace hlm::http
