// Listen: parses a "host:port" listen address strictly and opens its listening socket, so every
// listener (gRPC, metrics, API) refuses what it cannot honour: a port outside 0..65535, a host
// that does not resolve, or a port another process already holds (no SO_REUSEPORT sharing).
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace hlm::http {

struct ListenAddress {
  std::string host;  // without brackets for IPv6; empty means every interface
  int port = 0;      // 0 picks a free port
};

// "127.0.0.1:8080", "[::1]:8080", "localhost:0", ":8080". `flag` names the option in errors.
Result<ListenAddress> parse_listen_address(std::string_view text, std::string_view flag);

// A bound, listening TCP socket (SO_REUSEADDR so a restart can take the port back from
// TIME_WAIT; never SO_REUSEPORT). The error names the flag, the address and the cause.
struct ListenSocket {
  int fd = -1;
  int port = 0;  // the port actually bound
};
Result<ListenSocket> open_listen_socket(const ListenAddress& address, std::string_view flag,
                                        int backlog = 128);

}  // namespace hlm::http
