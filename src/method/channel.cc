// Channel presets, rates, transfer times, per-step energy and totals.
#include "method/channel.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "method/options.h"

namespace hlm {

ChannelConfig ChannelConfig::narrowband() { return ChannelConfig{}; }

ChannelConfig ChannelConfig::lte() {
  ChannelConfig c;
  c.name = "lte";
  c.bandwidth_ul_hz = c.bandwidth_dl_hz = 5e6;
  c.snr_ul_db = c.snr_dl_db = 10.0;
  c.rtt_s = 0.040;
  return c;
}

ChannelConfig ChannelConfig::wifi() {
  ChannelConfig c;
  c.name = "wifi";
  c.bandwidth_ul_hz = c.bandwidth_dl_hz = 20e6;
  c.snr_ul_db = c.snr_dl_db = 25.0;
  c.rtt_s = 0.005;
  c.p_tx_w = 0.8;
  c.p_rx_w = 0.4;
  return c;
}

Result<ChannelConfig> parse_channel(std::string_view text, const ComputePowers& powers) {
  auto opt = parse_option_string(text);
  if (!opt) return opt.error();
  ChannelConfig c;
  if (opt->name == "narrowband") {
    c = ChannelConfig::narrowband();
  } else if (opt->name == "lte") {
    c = ChannelConfig::lte();
  } else if (opt->name == "wifi") {
    c = ChannelConfig::wifi();
  } else {
    return make_error("unknown channel '{}': use narrowband, lte or wifi", opt->name);
  }
  c.p_comp_w = powers.p_comp_w.value_or(c.p_comp_w);
  c.p_idle_w = powers.p_idle_w.value_or(c.p_idle_w);
  c.p_cloud_w = powers.p_cloud_w.value_or(c.p_cloud_w);
  if (!opt->positional.empty()) {
    return make_error("channel '{}': give overrides as {}:key=value,...", text, opt->name);
  }
  for (const auto& [key, value] : opt->keyed) {
    auto v = parse_number(value, fmt::format("channel {}", key));
    if (!v) return v.error();
    const double x = *v;
    if (key == "w") {
      c.bandwidth_ul_hz = c.bandwidth_dl_hz = x;
    } else if (key == "w_ul") {
      c.bandwidth_ul_hz = x;
    } else if (key == "w_dl") {
      c.bandwidth_dl_hz = x;
    } else if (key == "snr_db") {
      c.snr_ul_db = c.snr_dl_db = x;
    } else if (key == "snr_ul_db") {
      c.snr_ul_db = x;
    } else if (key == "snr_dl_db") {
      c.snr_dl_db = x;
    } else if (key == "rtt") {
      c.rtt_s = x;
    } else if (key == "p_comp") {
      c.p_comp_w = x;
    } else if (key == "p_tx") {
      c.p_tx_w = x;
    } else if (key == "p_rx") {
      c.p_rx_w = x;
    } else if (key == "p_idle") {
      c.p_idle_w = x;
    } else if (key == "p_cloud") {
      c.p_cloud_w = x;
    } else if (key == "header_bits") {
      c.header_bits = static_cast<int>(x);
    } else {
      return make_error(
          "channel '{}': unknown key '{}' (valid: w, w_ul, w_dl, snr_db, snr_ul_db, snr_dl_db, "
          "rtt, p_comp, p_tx, p_rx, p_idle, p_cloud, header_bits)",
          text, key);
    }
  }
  if (auto s = validate(c); !s) return s.error();
  return c;
}

Status validate(const ChannelConfig& c) {
  if (!(c.bandwidth_ul_hz > 0.0 && c.bandwidth_dl_hz > 0.0)) {
    return make_error("channel {}: bandwidth must be > 0 Hz", c.name);
  }
  if (!(c.rtt_s >= 0.0)) return make_error("channel {}: rtt must be >= 0 s", c.name);
  if (!(c.p_comp_w >= 0 && c.p_tx_w >= 0 && c.p_rx_w >= 0 && c.p_idle_w >= 0 && c.p_cloud_w >= 0)) {
    return make_error("channel {}: powers must be >= 0 W", c.name);
  }
  if (c.header_bits < 0) return make_error("channel {}: header_bits must be >= 0", c.name);
  return ok_status();
}

double shannon_rate_bps(double bandwidth_hz, double snr_db) {
  return bandwidth_hz * std::log2(1.0 + std::pow(10.0, snr_db / 10.0));
}

double uplink_rate_bps(const ChannelConfig& c) {
  return shannon_rate_bps(c.bandwidth_ul_hz, c.snr_ul_db);
}

double downlink_rate_bps(const ChannelConfig& c) {
  return shannon_rate_bps(c.bandwidth_dl_hz, c.snr_dl_db);
}

uint64_t uplink_bits(const ChannelConfig& c, int64_t n_pending, uint64_t payload_bits,
                     int n_drafts) {
  return static_cast<uint64_t>(c.token_bits) * n_pending +
         static_cast<uint64_t>(n_drafts) * (c.token_bits + payload_bits) + c.header_bits;
}

uint64_t downlink_bits(const ChannelConfig& c) {
  return static_cast<uint64_t>(c.token_bits + c.flag_bits + c.header_bits);
}

uint64_t streamed_token_bits(const ChannelConfig& c) {
  return static_cast<uint64_t>(c.token_bits + c.header_bits);
}

double uplink_time_s(const ChannelConfig& c, uint64_t l_ul_bits) {
  return l_ul_bits / uplink_rate_bps(c) + c.rtt_s / 2;
}

double downlink_time_s(const ChannelConfig& c, uint64_t l_dl_bits) {
  return l_dl_bits / downlink_rate_bps(c) + c.rtt_s / 2;
}

StepRecord account_step(const ChannelConfig& c, const StepInput& in) {
  StepRecord r;
  r.in = in;
  double tx = 0.0, rx = 0.0;
  if (in.uplink) {
    tx = in.ul_bits / uplink_rate_bps(c);
    r.t_ul = tx + c.rtt_s / 2;
  }
  if (in.downlink) {
    rx = in.dl_bits / downlink_rate_bps(c);
    r.t_dl = rx + c.rtt_s / 2;
  }
  r.t_wait = (r.t_ul - tx) + (r.t_dl - rx) + in.t_llm;
  r.latency = in.t_slm + in.t_filter + r.t_ul + in.t_llm + r.t_dl;
  r.e_device =
      c.p_comp_w * (in.t_slm + in.t_filter) + c.p_tx_w * tx + c.p_rx_w * rx + c.p_idle_w * r.t_wait;
  r.e_cloud = c.p_cloud_w * in.t_llm;
  return r;
}

const StepRecord& Ledger::add(const StepInput& in) { return add(account_step(cfg_, in)); }

const StepRecord& Ledger::add(const StepRecord& rec) {
  last_ = rec;
  const StepInput& in = rec.in;
  totals_.steps += 1;
  totals_.tokens += in.tokens;
  totals_.uplinks += in.uplink ? 1 : 0;
  totals_.ul_bits += in.uplink ? in.ul_bits : 0;
  totals_.dl_bits += in.downlink ? in.dl_bits : 0;
  totals_.latency_s += last_.latency;
  totals_.e_device_j += last_.e_device;
  totals_.e_cloud_j += last_.e_cloud;
  if (keep_) records_.push_back(last_);
  return keep_ ? records_.back() : last_;
}

StepRecord StreamTimeline::request(uint64_t ul_bits) {
  StepRecord r;
  r.in.uplink = true;
  r.in.ul_bits = ul_bits;
  r.in.tokens = 0;
  const double tx = ul_bits / uplink_rate_bps(cfg_);
  r.t_ul = tx + cfg_.rtt_s / 2;
  r.latency = tx;  // the propagation delay is paid when the first token arrives
  r.e_device = cfg_.p_tx_w * tx;
  cloud_done_ = link_free_ = r.t_ul;  // the cloud starts when the request arrives
  arrived_ = tx;                      // the device's clock: what the records have billed
  return r;
}

StepRecord StreamTimeline::token(double t_llm, uint64_t dl_bits) {
  StepRecord r;
  r.in.downlink = true;
  r.in.dl_bits = dl_bits;
  r.in.t_llm = t_llm;
  const double rx = dl_bits / downlink_rate_bps(cfg_);
  cloud_done_ += t_llm;
  link_free_ = std::max(cloud_done_, link_free_) + rx;
  const double arrival = link_free_ + cfg_.rtt_s / 2;
  r.t_dl = rx;
  r.latency = arrival - arrived_;
  r.t_wait = r.latency - rx;
  arrived_ = arrival;
  r.e_device = cfg_.p_rx_w * rx + cfg_.p_idle_w * r.t_wait;
  r.e_cloud = cfg_.p_cloud_w * t_llm;
  return r;
}

void Timeline::compute(double t_slm, double t_filter) {
  now_ += t_slm + t_filter;
  compute_s_ += t_slm + t_filter;
}

int Timeline::send(uint64_t ul_bits) {
  const double tx = double(ul_bits) / uplink_rate_bps(cfg_);
  const double begin = std::max(now_, tx_free_);
  tx_free_ = begin + tx;
  radio_.push_back({begin, tx_free_});
  tx_s_ += tx;
  ul_bits_ += ul_bits;
  sends_++;
  at_cloud_.push_back(tx_free_ + cfg_.rtt_s / 2);
  return int(at_cloud_.size()) - 1;
}

double Timeline::reply(int index, double t_llm, uint64_t dl_bits) {
  cloud_free_ = std::max(cloud_free_, at_cloud_.at(size_t(index))) + t_llm;
  llm_s_ += t_llm;
  const double rx = double(dl_bits) / downlink_rate_bps(cfg_);
  const double begin = std::max(cloud_free_ + cfg_.rtt_s / 2, rx_free_);
  rx_free_ = begin + rx;
  radio_.push_back({begin, rx_free_});
  rx_s_ += rx;
  dl_bits_ += dl_bits;
  replies_++;
  last_in_ = std::max(last_in_, rx_free_);
  return rx_free_;
}

void Timeline::received_dropped(uint64_t dl_bits) {
  rx_s_ += double(dl_bits) / downlink_rate_bps(cfg_);
  dl_bits_ += dl_bits;
}

void Timeline::wait_until(double t) {
  if (t <= now_) return;
  waits_.push_back({now_, t});
  now_ = t;
}

Totals Timeline::totals(int64_t tokens) const {
  Totals t;
  t.steps = sends_;
  t.tokens = tokens;
  t.uplinks = sends_;
  t.ul_bits = ul_bits_;
  t.dl_bits = dl_bits_;
  t.latency_s = std::max(now_, last_in_);
  // Idle: waiting time the radio does not fill. Waits are disjoint and in order; radio spans
  // are merged into their union first (sending and receiving may overlap).
  std::vector<Span> waits = waits_;
  if (last_in_ > now_) waits.push_back({now_, last_in_});  // the device waits for the last reply
  std::vector<Span> radio = radio_;
  std::sort(radio.begin(), radio.end(), [](Span a, Span b) { return a.begin < b.begin; });
  std::vector<Span> merged;
  for (Span r : radio) {
    if (!merged.empty() && r.begin <= merged.back().end) {
      merged.back().end = std::max(merged.back().end, r.end);
    } else {
      merged.push_back(r);
    }
  }
  double idle = 0;
  size_t j = 0;
  for (Span w : waits) {
    double covered = 0;
    while (j < merged.size() && merged[j].end <= w.begin) ++j;
    for (size_t k = j; k < merged.size() && merged[k].begin < w.end; ++k) {
      covered += std::min(w.end, merged[k].end) - std::max(w.begin, merged[k].begin);
    }
    idle += (w.end - w.begin) - covered;
  }
  t.e_device_j =
      cfg_.p_comp_w * compute_s_ + cfg_.p_tx_w * tx_s_ + cfg_.p_rx_w * rx_s_ + cfg_.p_idle_w * idle;
  t.e_cloud_j = cfg_.p_cloud_w * llm_s_;
  return t;
}

}  // namespace hlm
