// Report implementation.
#include "eval/report.h"

#include <fmt/format.h>

#include <cmath>

namespace hlm {
namespace {

double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

}  // namespace

nlohmann::json summary_json(const RunResult& r) {
  const double n = double(r.tokens.size());
  const Totals& t = r.totals;
  return {
      {"text", r.text},
      {"n_prompt_tokens", r.prompt.size()},
      {"n_tokens", r.tokens.size()},
      {"uploads", r.uploads},
      {"upload_rate", ratio(double(r.uploads), n)},
      {"drafts_sent", r.drafts_sent},
      {"accepted", r.accepted},
      {"resampled", r.resampled},
      {"tsr", n > 0 ? 1.0 - double(r.resampled) / n : 1.0},
      {"llm_calls", r.llm_calls},
      {"uplink_bytes", (t.ul_bits + 7) / 8},
      {"downlink_bytes", (t.dl_bits + 7) / 8},
      {"energy_j", {{"device", t.e_device_j}, {"cloud", t.e_cloud_j}, {"total", t.e_total_j()}}},
      {"latency_s", t.latency_s},
      {"tokens_per_s", t.throughput_tps()},
      {"filter_overhead", ratio(r.t_filter_s, r.t_slm_s)},
      {"wall_s", r.wall_s},
  };
}

nlohmann::json trace_json(const TokenTrace& t) {
  nlohmann::json j = {
      {"position", t.position},   {"token", t.token},           {"piece", t.piece},
      {"draft", t.draft},         {"uploaded", t.uploaded},     {"accepted", t.accepted},
      {"resampled", t.resampled}, {"from_cloud", t.from_cloud}, {"slm_only", t.slm_only},
      {"ul_bytes", t.ul_bytes},   {"dl_bytes", t.dl_bytes},     {"t_slm", t.t_slm},
      {"t_filter", t.t_filter},   {"t_llm", t.t_llm},           {"t_ul", t.t_ul},
      {"t_dl", t.t_dl},           {"e_device", t.e_device},     {"e_cloud", t.e_cloud}};
  j["u"] = t.u >= 0 ? nlohmann::json(t.u) : nlohmann::json(nullptr);
  j["I"] = t.importance >= 0 || t.tau >= 0 ? nlohmann::json(t.importance) : nlohmann::json(nullptr);
  j["tau"] = t.tau >= 0 || t.importance >= 0 ? nlohmann::json(t.tau) : nlohmann::json(nullptr);
  // +inf (no evidence: important at any λ) has no JSON spelling; "inf" keeps it distinct from
  // "not computed" (null).
  if (std::isnan(t.lambda_flip)) {
    j["lambda_flip"] = nullptr;
  } else {
    j["lambda_flip"] =
        std::isinf(t.lambda_flip) ? nlohmann::json("inf") : nlohmann::json(t.lambda_flip);
  }
  return j;
}

std::string summary_line(const RunResult& r) {
  const auto j = summary_json(r);
  return fmt::format(
      "{} tokens | uploads {} ({:.1f}%) | accepted {} resampled {} | TSR {:.3f} | up {} B down {} B"
      " | energy {:.2f} J (device {:.2f}, cloud {:.2f}) | modelled {:.2f} tokens/s | filter "
      "{:.2f}% of SLM",
      r.tokens.size(), r.uploads, 100.0 * j["upload_rate"].get<double>(), r.accepted, r.resampled,
      j["tsr"].get<double>(), j["uplink_bytes"].get<uint64_t>(),
      j["downlink_bytes"].get<uint64_t>(), r.totals.e_total_j(), r.totals.e_device_j,
      r.totals.e_cloud_j, r.totals.throughput_tps(), 100.0 * j["filter_overhead"].get<double>());
}

}  // namespace hlm
