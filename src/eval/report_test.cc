// Tests of the run summaries: the plain-words summary states the counts, the bytes and the
// savings against standard HLM that follow from the run's own figures.
#include "eval/report.h"

#include <gtest/gtest.h>

#include <string>

#include "method/upload.h"

namespace hlm {
namespace {

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

constexpr int kVocab = 49152;

// A per-token run of n tokens over a 5-token prompt where tokens 0, 3, 6, ... were uploaded, each
// request priced by the channel model for `encoding` with no pending tokens before it.
RunResult per_token_run(int n, const RunConfig& cfg) {
  RunResult r;
  r.prompt = {1, 2, 3, 4, 5};
  const uint64_t request = uplink_bits(cfg.channel, 0, payload_bits(cfg.encoding, kVocab), 1);
  r.totals.ul_bits = uplink_bits(cfg.channel, 5, 0, 0);  // the session's prompt
  for (int i = 0; i < n; ++i) {
    r.tokens.push_back(100 + i);
    TokenTrace t;
    if (i % 3 == 0) {
      t.uploaded = true;
      t.ul_bytes = (request + 7) / 8;
      r.uploads++;
      r.llm_calls++;
      r.drafts_sent++;
      r.totals.ul_bits += request;
      if (i % 2 == 0) {
        r.accepted++;
      } else {
        r.resampled++;
      }
    }
    r.trace.push_back(t);
  }
  r.totals.tokens = n;
  return r;
}

TEST(Report, FormatBytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(999), "999 B");
  EXPECT_EQ(format_bytes(1200), "1.2 KB");
  EXPECT_EQ(format_bytes(10'400'000), "10.4 MB");
}

TEST(Report, SummarySaysWhatWasUploadedAndSaved) {
  RunConfig cfg;
  cfg.policy.kind = PolicyKind::kUhlm;
  cfg.encoding = parse_encoding("topk(32,8)").value();
  const RunResult r = per_token_run(10, cfg);  // uploads at 0, 3, 6, 9: 4 of 10
  ASSERT_EQ(r.uploads, 4);
  const UploadAccount a = upload_account(r, cfg, kVocab);
  EXPECT_EQ(a.skipped, 6);
  const uint64_t request =
      (uplink_bits(cfg.channel, 0, payload_bits(cfg.encoding, kVocab), 1) + 7) / 8;
  EXPECT_EQ(a.uplink_bytes_per_upload, request);
  const uint64_t full_request = uplink_bits(cfg.channel, 0, 32ull * kVocab, 1);
  EXPECT_EQ(a.standard_hlm_uplink_bytes,
            (uplink_bits(cfg.channel, 5, 0, 0) + 10 * full_request + 7) / 8);

  const std::string s = summary_text(r, cfg, kVocab, 3.5, " via somewhere");
  EXPECT_TRUE(contains(s, "10 tokens")) << s;
  EXPECT_TRUE(contains(s, "via somewhere")) << s;
  EXPECT_TRUE(contains(s, "uploaded 4 of 10 tokens (40%)")) << s;
  EXPECT_TRUE(contains(s, "2 accepted, 2 replaced")) << s;
  EXPECT_TRUE(contains(s, "skipped 6")) << s;
  EXPECT_TRUE(contains(s, format_bytes(request) + " per request")) << s;
  EXPECT_TRUE(contains(s, "would have sent " + format_bytes(a.standard_hlm_uplink_bytes))) << s;
  EXPECT_TRUE(contains(s, "6 fewer cloud calls")) << s;
  const double saved =
      100.0 * (1.0 - double((r.totals.ul_bits + 7) / 8) / double(a.standard_hlm_uplink_bytes));
  EXPECT_TRUE(contains(s, fmt::format("{:.1f}% less uplink", saved))) << s;
  EXPECT_NE(s.back(), '\n');
}

TEST(Report, SummaryOfAnUnreachableCloud) {
  RunConfig cfg;
  cfg.policy.kind = PolicyKind::kHlm;
  RunResult r = per_token_run(9, cfg);  // uploads at 0, 3, 6; the others wanted but not sent
  r.slm_only = 6;
  EXPECT_EQ(upload_account(r, cfg, kVocab).skipped, 0);
  const std::string s = summary_text(r, cfg, kVocab, 1.0);
  EXPECT_TRUE(contains(s, "uploaded 3 of 9 tokens (33%)")) << s;
  EXPECT_TRUE(contains(s, "6 more were kept unverified because the cloud was unreachable")) << s;
}

TEST(Report, SummaryOfTheBaselines) {
  RunConfig cfg;
  RunResult r;
  r.prompt = {1, 2};
  r.tokens = {7, 8, 9};
  cfg.policy.kind = PolicyKind::kSlm;
  std::string s = summary_text(r, cfg, kVocab, 1.0);
  EXPECT_TRUE(contains(s, "uploaded nothing")) << s;
  EXPECT_TRUE(contains(s, "no radio traffic")) << s;
  cfg.policy.kind = PolicyKind::kLlm;
  r.llm_calls = 3;
  s = summary_text(r, cfg, kVocab, 1.0);
  EXPECT_TRUE(contains(s, "the cloud model generated all 3 tokens")) << s;
  EXPECT_FALSE(contains(s, "standard HLM")) << s;
}

}  // namespace
}  // namespace hlm
