// Channel: the wireless link, latency and energy model of SPEC §7 (presets narrowband, lte,
// wifi; every constant overridable), per-step accounting and running totals.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace hlm {

struct ChannelConfig {
  std::string name = "narrowband";
  double bandwidth_ul_hz = 100e3;  // W, uplink
  double bandwidth_dl_hz = 100e3;  // W, downlink
  double snr_ul_db = 20.0;
  double snr_dl_db = 20.0;
  double rtt_s = 0.100;
  double p_comp_w = 5.0;     // device compute (SLM + filter)
  double p_tx_w = 1.0;       // device transmitting
  double p_rx_w = 0.5;       // device receiving
  double p_idle_w = 0.5;     // device waiting for the cloud
  double p_cloud_w = 300.0;  // cloud while verifying
  int header_bits = 320;     // H
  int token_bits = 32;       // one token id on the wire
  int flag_bits = 8;         // the reply's accepted flag / count

  static ChannelConfig narrowband();
  static ChannelConfig lte();
  static ChannelConfig wifi();
};

// The powers of the machines rather than the radio: the device's computing and idle, the cloud's
// computing. Cost profiles set them (docs/energy.md); unset: the channel preset's.
struct ComputePowers {
  std::optional<double> p_comp_w, p_idle_w, p_cloud_w;
};

// "narrowband", "lte" or "wifi", optionally with overrides in the option-string form
// "lte:rtt=0.03,snr_db=15". Keys: w (both directions, Hz), w_ul, w_dl, snr_db (both), snr_ul_db,
// snr_dl_db, rtt (s), p_comp, p_tx, p_rx, p_idle, p_cloud (W), header_bits. `powers` replace the
// preset's before the overrides apply: an explicit p_comp, p_idle or p_cloud still wins.
Result<ChannelConfig> parse_channel(std::string_view text, const ComputePowers& powers = {});
Status validate(const ChannelConfig& cfg);

// R = W·log2(1 + SNR) in bit/s, SNR from dB.
double shannon_rate_bps(double bandwidth_hz, double snr_db);
double uplink_rate_bps(const ChannelConfig& cfg);
double downlink_rate_bps(const ChannelConfig& cfg);

// L_ul = 32·|pending| + n_drafts·(32 + payload) + H: SPEC §7 with n_drafts = 1; spec(k) sends
// k drafts each with its p̂.
uint64_t uplink_bits(const ChannelConfig& cfg, int64_t n_pending, uint64_t payload_bits,
                     int n_drafts = 1);
// L_dl = 32 + 8 + H: the reply token and the accepted flag (spec(k): the accepted count).
uint64_t downlink_bits(const ChannelConfig& cfg);
// One streamed token (policy llm): 32 + H, its id in a message of its own.
uint64_t streamed_token_bits(const ChannelConfig& cfg);
// t_ul = L_ul/R_ul + RTT/2; t_dl = L_dl/R_dl + RTT/2.
double uplink_time_s(const ChannelConfig& cfg, uint64_t l_ul_bits);
double downlink_time_s(const ChannelConfig& cfg, uint64_t l_dl_bits);

// What one decoding step did. Times are measured (t_llm may come from a cloud profile).
struct StepInput {
  double t_slm = 0.0;     // device SLM forward(s)
  double t_filter = 0.0;  // uncertainty + importance
  bool uplink = false;    // the device sent something this step
  uint64_t ul_bits = 0;   // L_ul
  bool downlink = false;  // the cloud replied this step
  uint64_t dl_bits = 0;   // L_dl
  double t_llm = 0.0;     // cloud compute (verification or generation)
  int tokens = 1;         // tokens this step added to the output
};

struct StepRecord {
  StepInput in;
  double t_ul = 0.0;     // 0 without uplink
  double t_dl = 0.0;     // 0 without downlink
  double t_wait = 0.0;   // device idle: the RTT/2 of each transfer + t_llm
  double latency = 0.0;  // t_slm + t_filter + t_ul + t_llm + t_dl
  double e_device = 0.0;
  double e_cloud = 0.0;
};

// Device energy = P_comp·(t_slm + t_filter) + P_tx·L_ul/R_ul + P_rx·L_dl/R_dl + P_idle·t_wait,
// where t_wait = (RTT/2 per transfer) + t_llm: the device sits idle while bits propagate and
// while the cloud computes. Cloud energy = P_cloud·t_llm.
StepRecord account_step(const ChannelConfig& cfg, const StepInput& in);

struct Totals {
  int64_t steps = 0;
  int64_t tokens = 0;
  int64_t uplinks = 0;
  uint64_t ul_bits = 0;
  uint64_t dl_bits = 0;
  double latency_s = 0.0;
  double e_device_j = 0.0;
  double e_cloud_j = 0.0;
  double e_total_j() const { return e_device_j + e_cloud_j; }
  double throughput_tps() const { return latency_s > 0.0 ? tokens / latency_s : 0.0; }
  double e_per_token_j() const { return tokens > 0 ? e_total_j() / tokens : 0.0; }
};

// Accumulates steps under one channel; keeps every record when asked to.
class Ledger {
 public:
  explicit Ledger(ChannelConfig cfg = {}, bool keep_records = true)
      : cfg_(std::move(cfg)), keep_(keep_records) {}

  const StepRecord& add(const StepInput& in);
  // A step priced elsewhere (StreamTimeline).
  const StepRecord& add(const StepRecord& rec);
  const Totals& totals() const { return totals_; }
  const std::vector<StepRecord>& records() const { return records_; }
  const ChannelConfig& channel() const { return cfg_; }

 private:
  ChannelConfig cfg_;
  bool keep_;
  Totals totals_;
  StepRecord last_;
  std::vector<StepRecord> records_;
};

// The streaming cloud-only baseline (policy llm). The request (the prompt, L_ul bits) goes up
// once; the cloud then decodes token after token and sends each in a message of its own as soon
// as it is produced. The downlink is a FIFO: a token leaves when it is decoded and the link has
// sent the one before, takes L_dl/R_dl on the link and RTT/2 to arrive. So the first token
// arrives after t_ul + t_llm,1 + L_dl/R_dl + RTT/2 (one round trip in all), and each later one
// max(t_llm,i, L_dl/R_dl) after the one before when the cloud and the link keep pace: no round
// trip per token. Each token's record carries the time since the previous arrival as its
// latency; the device receives for L_dl/R_dl of it and is idle for the rest.
class StreamTimeline {
 public:
  explicit StreamTimeline(ChannelConfig cfg) : cfg_(std::move(cfg)) {}
  // The request: a step that adds no tokens, priced as its uplink alone.
  StepRecord request(uint64_t ul_bits);
  // The next token, decoded in t_llm seconds of cloud compute and sent as dl_bits.
  StepRecord token(double t_llm, uint64_t dl_bits);

 private:
  ChannelConfig cfg_;
  double cloud_done_ = 0;  // when the cloud finished the last token (s since the request left)
  double link_free_ = 0;   // when the downlink finished sending the last token
  double arrived_ = 0;     // when the device got the last token (or finished sending)
};

// The device's modelled clock when it overlaps drafting with verification (pipelined drafting),
// SPEC §7 without the one-step-at-a-time assumption. The device computes, or waits for a reply
// it needs; its radio sends one request at a time while the device computes on; each request
// propagates RTT/2 to the cloud, which serves a session's requests one after another, and its
// reply propagates RTT/2 back and is received one at a time. Throughput is tokens over the time
// until the last reply is in; device energy is P_comp·compute + P_tx·sending + P_rx·receiving +
// P_idle·(waiting while the radio is quiet). A device that waits for every reply right after
// sending reproduces account_step's latency and energy summed over steps.
class Timeline {
 public:
  explicit Timeline(ChannelConfig cfg) : cfg_(std::move(cfg)) {}

  // The device computes for t seconds.
  void compute(double t_slm, double t_filter);
  // Sends ul_bits now (after any earlier sending); returns the request's index.
  int send(uint64_t ul_bits);
  // The cloud's answer to request `index` (requests answered in order): it computed for t_llm
  // and replied dl_bits. Returns the time the reply is in on the device.
  double reply(int index, double t_llm, uint64_t dl_bits);
  // A reply to a request the device had already dropped (sent ahead of a draft that was then
  // replaced; the cloud did nothing for it), taken off the air whenever it came.
  void received_dropped(uint64_t dl_bits);
  // The device waits, idle, until t (nothing when t has passed).
  void wait_until(double t);
  double now() const { return now_; }

  // The run so far: tokens output, every transfer, the time until the last reply is in, energy.
  Totals totals(int64_t tokens) const;

 private:
  struct Span {
    double begin, end;
  };
  ChannelConfig cfg_;
  double now_ = 0, tx_free_ = 0, rx_free_ = 0, cloud_free_ = 0, last_in_ = 0;
  double compute_s_ = 0, tx_s_ = 0, rx_s_ = 0, llm_s_ = 0;
  std::vector<double> at_cloud_;  // per request: when it reached the cloud
  std::vector<Span> radio_, waits_;
  int64_t sends_ = 0, replies_ = 0;
  uint64_t ul_bits_ = 0, dl_bits_ = 0;
};

}  // namespace hlm
