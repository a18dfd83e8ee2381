// Tests for the channel model: presets, and the narrowband accounting of SPEC §7 against a hand
// computation from its constants.
#include "method/channel.h"

#include <gtest/gtest.h>

#include <cmath>

#include "method/upload.h"

namespace hlm {
namespace {

TEST(Channel, Presets) {
  const ChannelConfig nb = ChannelConfig::narrowband();
  EXPECT_EQ(nb.name, "narrowband");
  EXPECT_DOUBLE_EQ(uplink_rate_bps(nb), 100e3 * std::log2(1.0 + 100.0));  // 20 dB = 100
  const ChannelConfig lte = *parse_channel("lte");
  EXPECT_DOUBLE_EQ(downlink_rate_bps(lte), 5e6 * std::log2(1.0 + 10.0));  // 10 dB = 10
  EXPECT_DOUBLE_EQ(lte.rtt_s, 0.040);
  const ChannelConfig wifi = *parse_channel("wifi");
  EXPECT_NEAR(uplink_rate_bps(wifi), 20e6 * std::log2(1.0 + std::pow(10.0, 2.5)), 1e-3);
  EXPECT_DOUBLE_EQ(wifi.rtt_s, 0.005);
  EXPECT_DOUBLE_EQ(wifi.p_tx_w, 0.8);
  EXPECT_DOUBLE_EQ(wifi.p_rx_w, 0.4);
  EXPECT_DOUBLE_EQ(wifi.p_cloud_w, 300.0);
  auto o = parse_channel("lte:rtt=0.03,w_ul=1e6,p_idle=0.2");
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_DOUBLE_EQ(o->rtt_s, 0.03);
  EXPECT_DOUBLE_EQ(o->bandwidth_ul_hz, 1e6);
  EXPECT_DOUBLE_EQ(o->bandwidth_dl_hz, 5e6);
  EXPECT_DOUBLE_EQ(o->p_idle_w, 0.2);
  EXPECT_FALSE(parse_channel("5g").ok());
  EXPECT_FALSE(parse_channel("lte:foo=1").ok());
  EXPECT_FALSE(parse_channel("lte:w=-1").ok());
}

TEST(Channel, ProfilePowersReplaceThePresetsAndOverridesReplaceThem) {
  const ComputePowers powers{2.0, 0.1, 400.0};
  const ChannelConfig w = *parse_channel("wifi", powers);
  EXPECT_DOUBLE_EQ(w.p_comp_w, 2.0);
  EXPECT_DOUBLE_EQ(w.p_idle_w, 0.1);
  EXPECT_DOUBLE_EQ(w.p_cloud_w, 400.0);
  EXPECT_DOUBLE_EQ(w.p_tx_w, 0.8);  // the radio's are the preset's
  const ChannelConfig o = *parse_channel("wifi:p_cloud=250,p_comp=3", powers);
  EXPECT_DOUBLE_EQ(o.p_cloud_w, 250.0);
  EXPECT_DOUBLE_EQ(o.p_comp_w, 3.0);
  EXPECT_DOUBLE_EQ(o.p_idle_w, 0.1);
  const ChannelConfig cloud_only = *parse_channel("lte", ComputePowers{{}, {}, 400.0});
  EXPECT_DOUBLE_EQ(cloud_only.p_comp_w, 5.0);
  EXPECT_DOUBLE_EQ(cloud_only.p_cloud_w, 400.0);
}

TEST(Channel, NarrowbandHandComputed) {
  const ChannelConfig c = ChannelConfig::narrowband();
  const int V = 49152;
  const int pending = 3;
  // R = W·log2(1 + SNR) = 100e3·log2(1 + 10^(20/10)) = 100e3·log2(101) ≈ 665,821 bit/s.
  const double R = 100e3 * std::log2(101.0);
  EXPECT_NEAR(R, 665821.2, 0.1);

  // full: L_ul = 32·|pending| + 32 + 32·V + H = 96 + 32 + 1,572,864 + 320 = 1,573,312 bits.
  const uint64_t l_ul = uplink_bits(c, pending, payload_bits({Encoding::kFull}, V));
  EXPECT_EQ(l_ul, 32u * 3 + 32 + 32u * 49152 + 320);
  EXPECT_EQ(l_ul, 1573312u);
  // L_dl = 32 + 8 + H = 360 bits.
  const uint64_t l_dl = downlink_bits(c);
  EXPECT_EQ(l_dl, 360u);
  // t_ul = L_ul/R + RTT/2 ≈ 2.3630 + 0.05 s: the SPEC's 1.5–2.5 s sanity anchor.
  EXPECT_DOUBLE_EQ(uplink_time_s(c, l_ul), 1573312.0 / R + 0.100 / 2);
  EXPECT_NEAR(uplink_time_s(c, l_ul), 2.4130, 1e-4);
  EXPECT_DOUBLE_EQ(downlink_time_s(c, l_dl), 360.0 / R + 0.100 / 2);

  // topk(32, 8): payload = 32·(8 + 16) = 768; L_ul = 96 + 32 + 768 + 320 = 1216 bits.
  EXPECT_EQ(uplink_bits(c, pending, payload_bits({Encoding::kTopK, 32, 8}, V)), 1216u);
  // spec(4) with topk(32,8): 32·0 + 4·(32 + 768) + 320 = 3520 bits.
  EXPECT_EQ(uplink_bits(c, 0, 768, 4), 3520u);

  // An upload step: t_slm = 0.2 s, t_filter = 0.01 s, t_llm = 0.5 s.
  StepInput in;
  in.t_slm = 0.2;
  in.t_filter = 0.01;
  in.uplink = true;
  in.ul_bits = l_ul;
  in.downlink = true;
  in.dl_bits = l_dl;
  in.t_llm = 0.5;
  const StepRecord r = account_step(c, in);
  const double t_wait = 0.100 / 2 + 0.5 + 0.100 / 2;  // propagation both ways + cloud compute
  const double e_dev = 5.0 * (0.2 + 0.01)             // P_comp·(t_slm + t_filter)
                       + 1.0 * 1573312.0 / R          // P_tx·L_ul/R_ul
                       + 0.5 * 360.0 / R              // P_rx·L_dl/R_dl
                       + 0.5 * t_wait;                // P_idle·waiting
  EXPECT_NEAR(r.t_wait, t_wait, 1e-12);
  EXPECT_NEAR(r.e_device, e_dev, 1e-9);
  EXPECT_NEAR(r.e_device, 1.05 + 2.362963 + 0.000270 + 0.30, 1e-5);
  EXPECT_DOUBLE_EQ(r.e_cloud, 300.0 * 0.5);
  const double latency = 0.2 + 0.01 + (1573312.0 / R + 0.05) + 0.5 + (360.0 / R + 0.05);
  EXPECT_NEAR(r.latency, latency, 1e-12);

  // A skipped step costs only device compute.
  StepInput skip;
  skip.t_slm = 0.2;
  skip.t_filter = 0.01;
  const StepRecord s = account_step(c, skip);
  EXPECT_DOUBLE_EQ(s.e_device, 5.0 * 0.21);
  EXPECT_DOUBLE_EQ(s.e_cloud, 0.0);
  EXPECT_DOUBLE_EQ(s.latency, 0.21);

  Ledger ledger(c);
  ledger.add(in);
  ledger.add(skip);
  const Totals& t = ledger.totals();
  EXPECT_EQ(t.steps, 2);
  EXPECT_EQ(t.tokens, 2);
  EXPECT_EQ(t.uplinks, 1);
  EXPECT_EQ(t.ul_bits, l_ul);
  EXPECT_EQ(t.dl_bits, l_dl);
  EXPECT_NEAR(t.latency_s, latency + 0.21, 1e-12);
  EXPECT_NEAR(t.e_device_j, e_dev + 1.05, 1e-9);
  EXPECT_NEAR(t.e_total_j(), e_dev + 1.05 + 150.0, 1e-9);
  EXPECT_NEAR(t.throughput_tps(), 2.0 / (latency + 0.21), 1e-12);
  EXPECT_EQ(ledger.records().size(), 2u);
}

// Streaming (policy llm): one round trip to the first token, then one token per
// max(cloud step, downlink time of a token), whichever of the cloud and the link is slower.
TEST(Channel, StreamedGenerationPaysOneRoundTrip) {
  const int n = 50;
  const int64_t prompt = 20;
  for (const char* name : {"lte", "narrowband", "lte:w_dl=2e3"}) {
    const ChannelConfig c = *parse_channel(name);
    const uint64_t l_ul = uplink_bits(c, prompt, 0, 0);
    const uint64_t l_dl = streamed_token_bits(c);
    EXPECT_EQ(l_ul, 32u * 20 + 320);
    EXPECT_EQ(l_dl, 32u + 320);
    const double tx = double(l_ul) / uplink_rate_bps(c), rx = double(l_dl) / downlink_rate_bps(c);
    // The first token also carries the prompt's evaluation on the cloud.
    const double prefill = 0.030, step = 0.012;
    Ledger ledger(c);
    StreamTimeline timeline(c);
    ledger.add(timeline.request(l_ul));
    for (int i = 0; i < n; ++i) ledger.add(timeline.token(step + (i == 0 ? prefill : 0.0), l_dl));
    const Totals& t = ledger.totals();
    const double want = c.rtt_s + tx + prefill + step + rx + (n - 1) * std::max(step, rx);
    EXPECT_NEAR(t.latency_s, want, 1e-9) << name;
    EXPECT_EQ(t.tokens, n);
    EXPECT_EQ(t.uplinks, 1);
    EXPECT_EQ(t.ul_bits, l_ul);
    EXPECT_EQ(t.dl_bits, uint64_t(n) * l_dl);
    // The device transmits, receives, and is idle for the rest of the time.
    const double busy = tx + n * rx;
    EXPECT_NEAR(t.e_device_j, c.p_tx_w * tx + c.p_rx_w * n * rx + c.p_idle_w * (want - busy), 1e-9)
        << name;
    EXPECT_NEAR(t.e_cloud_j, c.p_cloud_w * (prefill + n * step), 1e-9) << name;
    // Per-token records carry the time since the previous token arrived.
    EXPECT_NEAR(ledger.records()[2].latency, std::max(step, rx), 1e-12) << name;
    // Against asking for each token in a round trip of its own, streaming saves (n − 1) RTTs
    // at least.
    double per_token = uplink_time_s(c, l_ul) + prefill + downlink_time_s(c, downlink_bits(c));
    for (int i = 0; i < n; ++i) {
      per_token +=
          uplink_time_s(c, uplink_bits(c, 0, 0, 0)) + step + downlink_time_s(c, downlink_bits(c));
    }
    EXPECT_GT(per_token - t.latency_s, (n - 1) * c.rtt_s) << name;
  }
  // A slow downlink bounds the rate: 2 kHz at 10 dB carries a 352-bit token in 51 ms > 12 ms.
  const ChannelConfig slow = *parse_channel("lte:w_dl=2e3");
  EXPECT_GT(double(streamed_token_bits(slow)) / downlink_rate_bps(slow), 0.012);
}

// A channel with round numbers: W = 1 kHz at 0 dB gives R = 1000 bit/s both ways, RTT 0.1 s.
ChannelConfig round_channel() {
  ChannelConfig c;
  c.name = "round";
  c.bandwidth_ul_hz = c.bandwidth_dl_hz = 1000;
  c.snr_ul_db = c.snr_dl_db = 0;
  c.rtt_s = 0.1;
  return c;
}

// Two requests in flight while the device drafts on, by hand:
//   compute 0.01 → send 100 bits: on air [0.01, 0.11], at the cloud 0.16
//   compute 0.01 → send 50 bits: on air [0.11, 0.16] (after the first), at the cloud 0.21
//   cloud: first [0.16, 0.18], second [0.21, 0.23]; replies of 40 bits received
//   [0.23, 0.27] and [0.28, 0.32]
//   compute 0.01 (now 0.03) → wait for the second reply until 0.32.
// Waiting 0.29 s, of which the radio is busy 0.13 + 0.04 + 0.04: idle 0.08 s.
TEST(Timeline, OverlapHandComputed) {
  const ChannelConfig c = round_channel();
  Timeline t(c);
  t.compute(0.01, 0);
  const int a = t.send(100);
  t.compute(0.005, 0.005);
  const int b = t.send(50);
  EXPECT_NEAR(t.reply(a, 0.02, 40), 0.27, 1e-12);
  const double in = t.reply(b, 0.02, 40);
  EXPECT_NEAR(in, 0.32, 1e-12);
  t.compute(0.01, 0);
  t.wait_until(in);
  const Totals s = t.totals(2);
  EXPECT_NEAR(s.latency_s, 0.32, 1e-12);
  EXPECT_EQ(s.ul_bits, 150u);
  EXPECT_EQ(s.dl_bits, 80u);
  EXPECT_EQ(s.uplinks, 2);
  // 5·0.03 compute + 1·0.15 sending + 0.5·0.08 receiving + 0.5·0.08 idle.
  EXPECT_NEAR(s.e_device_j, 0.15 + 0.15 + 0.04 + 0.04, 1e-12);
  EXPECT_NEAR(s.e_cloud_j, 300 * 0.04, 1e-12);
  EXPECT_NEAR(s.throughput_tps(), 2 / 0.32, 1e-9);
}

// A device that waits for each reply before drafting on pays SPEC §7's sum of step latencies
// and energies: the timeline reproduces account_step.
TEST(Timeline, WaitingForEveryReplyIsTheSumOfSteps) {
  for (const ChannelConfig& c :
       {round_channel(), ChannelConfig::narrowband(), ChannelConfig::lte()}) {
    Timeline t(c);
    Ledger ledger(c, false);
    const StepInput steps[] = {
        {0.01, 0.002, true, 1216, true, 360, 0.02, 1},
        {0.012, 0.001, false, 0, false, 0, 0, 1},
        {0.009, 0.003, true, 1280, true, 360, 0.015, 1},
    };
    for (const StepInput& s : steps) {
      t.compute(s.t_slm, s.t_filter);
      if (s.uplink) t.wait_until(t.reply(t.send(s.ul_bits), s.t_llm, s.dl_bits));
      ledger.add(s);
    }
    const Totals a = t.totals(3), b = ledger.totals();
    EXPECT_NEAR(a.latency_s, b.latency_s, 1e-12) << c.name;
    EXPECT_NEAR(a.e_device_j, b.e_device_j, 1e-12) << c.name;
    EXPECT_NEAR(a.e_cloud_j, b.e_cloud_j, 1e-12) << c.name;
    EXPECT_EQ(a.ul_bits, b.ul_bits);
    EXPECT_EQ(a.dl_bits, b.dl_bits);
  }
}

}  // namespace
}  // namespace hlm
