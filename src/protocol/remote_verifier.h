// RemoteVerifier: the Verifier interface over gRPC (hlm.v1), so the device loop runs unchanged
// against `hlm serve`. Connection failures, deadlines, an overloaded server and a session the
// server no longer knows (it restarted or expired the session) come back as
// ErrorCode::kUnavailable: the device then continues SLM-only and reopens a session with its
// whole context when the cloud answers again. Refusals (bad fields, mismatched vocabulary or
// protocol version, a wrong API key) are ErrorCode::kFailed. Optionally emulates the SPEC §7
// channel by sleeping the uplink and downlink times of the bytes actually sent.
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "cloud/verifier.h"
#include "method/channel.h"

namespace hlm {

struct RemoteOptions {
  // "host:port", or "grpc://host:port"; any gRPC target URI is passed through.
  std::string target = "127.0.0.1:7070";
  std::string api_key;  // sent as "authorization: Bearer <key>" when not empty
  // TLS: on for grpcs:// targets or when roots are given; roots are PEM (empty: the system's).
  bool tls = false;
  std::string tls_roots_pem;
  double timeout_s = 10.0;       // deadline of each Verify and Close, and per streamed token
  double open_timeout_s = 60.0;  // deadline of Open (the server evaluates the prompt)
  // When set, sleep t_ul = (8·bytes + H)/R_ul + RTT/2 before each call and t_dl likewise after
  // it, so wall-clock timings on loopback follow the modelled channel. A Generate stream is
  // delayed as StreamTimeline models it: each token leaves when it arrives from the server and
  // the emulated downlink is free, takes (8·bytes + H)/R_dl, and is delivered RTT/2 later.
  std::optional<ChannelConfig> emulate;
};

struct RemoteHealth {
  bool serving = false;
  uint32_t protocol_version = 0;
  uint64_t vocab_fingerprint = 0;
  int n_vocab = 0;
  int sessions = 0;
  int max_sessions = 0;
  int max_context = 0;
  std::string model;
  std::string cloud_cost;               // the server's cloud cost profile ("measured")
  std::optional<double> cloud_power_w;  // its power while verifying (W); unset: measured
};

// Bytes and emulated delays of everything this client sent and received.
struct RemoteStats {
  uint64_t calls = 0;
  uint64_t sent_bytes = 0;
  uint64_t received_bytes = 0;
  double emulated_s = 0.0;
};

class RemoteVerifier : public Verifier {
 public:
  explicit RemoteVerifier(RemoteOptions options);
  ~RemoteVerifier() override;

  Result<SessionId> open(const SessionParams& params) override;
  Result<VerifyReply> verify(const VerifyRequest& request) override;
  // Calls on a thread of its own; the emulated uplink still sends one request at a time.
  std::future<Result<VerifyReply>> submit(const VerifyRequest& request) override;
  bool asynchronous() const override { return true; }
  Status close(SessionId session) override;
  // One Generate stream; its deadline allows open_timeout_s plus timeout_s per token.
  Status generate(const GenerateRequest& request, const TokenSink& sink) override;
  Result<RemoteHealth> health();

  RemoteStats stats() const;
  const RemoteOptions& options() const { return options_; }

 private:
  struct Impl;
  struct ClientSession {
    uint64_t step = 0;  // VerifyRequest.step of the next request submitted
    int n_vocab = 0;
  };
  template <class Send>
  std::future<Result<VerifyReply>> submit_step(const VerifyRequest& request, Send send);
  Result<VerifyReply> call_verify(const VerifyRequest& request, uint64_t step, int n_vocab);
  RemoteOptions options_;
  std::unique_ptr<Impl> impl_;
  mutable std::mutex mu_;
  std::map<SessionId, ClientSession> sessions_;
  std::set<SessionId> lost_;  // sessions given up after a failed call
  RemoteStats stats_;
  std::chrono::steady_clock::time_point uplink_free_{};  // the emulated radio is busy until then
};

// "grpc://host:port", "host:port" (plaintext) or "grpcs://host:port" (TLS) to a gRPC target.
struct CloudTarget {
  std::string target;
  bool tls = false;
};
Result<CloudTarget> cloud_target(const std::string& url);

}  // namespace hlm
