// Report implementation.
#include "eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "method/upload.h"

namespace hlm {
namespace {

double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }
uint64_t to_bytes(uint64_t bits) { return (bits + 7) / 8; }

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
      {"discarded", r.discarded},
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
  if (t.resampled && t.draft >= 0) j["draft_piece"] = t.draft_piece;
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

std::string format_bytes(uint64_t bytes) {
  if (bytes < 1000) return fmt::format("{} B", bytes);
  if (bytes < 1000 * 1000) return fmt::format("{:.1f} KB", bytes / 1e3);
  if (bytes < 1000 * 1000 * 1000) return fmt::format("{:.1f} MB", bytes / 1e6);
  return fmt::format("{:.2f} GB", bytes / 1e9);
}

UploadAccount upload_account(const RunResult& r, const RunConfig& cfg, int n_vocab) {
  UploadAccount a;
  const int64_t n = static_cast<int64_t>(r.tokens.size());
  if (is_per_token(cfg.policy.kind)) a.skipped = std::max<int64_t>(0, n - r.uploads - r.slm_only);
  if (r.uploads > 0) {
    // The traced steps carry the requests' bytes; the session opens (the prompt) are not traced.
    uint64_t traced = 0;
    for (const TokenTrace& t : r.trace) traced += t.ul_bytes;
    if (r.trace.empty()) traced = to_bytes(r.totals.ul_bits);
    a.uplink_bytes_per_upload = traced / static_cast<uint64_t>(r.uploads);
  }
  const EncodingConfig full{Encoding::kFull};
  a.standard_hlm_uplink_bytes = to_bytes(
      uplink_bits(cfg.channel, static_cast<int64_t>(r.prompt.size()), 0, 0) +
      static_cast<uint64_t>(n) * uplink_bits(cfg.channel, 0, payload_bits(full, n_vocab), 1));
  return a;
}

std::string summary_text(const RunResult& r, const RunConfig& cfg, int n_vocab, double wall_tps,
                         std::string_view via) {
  const int64_t n = static_cast<int64_t>(r.tokens.size());
  const Totals& t = r.totals;
  const uint64_t up = to_bytes(t.ul_bits), down = to_bytes(t.dl_bits);
  const UploadAccount a = upload_account(r, cfg, n_vocab);
  const PolicyKind kind = cfg.policy.kind;
  std::string s = fmt::format(
      "hlm run [{}, {}, {}]: {} tokens in {:.2f} s ({:.2f} tokens/s on "
      "this machine){}\n",
      to_string(cfg.policy), to_string(cfg.encoding), cfg.channel.name, n, r.wall_s, wall_tps, via);
  // What went where.
  if (kind == PolicyKind::kSlm) {
    s += "  uploaded nothing: every token is the device model's own draft (policy slm)\n";
  } else if (kind == PolicyKind::kLlm) {
    s += fmt::format(
        "  the cloud model generated all {} tokens and streamed each down as it was made; the "
        "prompt ({} tokens) went up once\n",
        n, r.prompt.size());
  } else if (kind == PolicyKind::kSpec) {
    s += fmt::format(
        "  uploaded {} drafted tokens in {} requests of up to {}: {} accepted, {} "
        "replaced by the cloud; each reply also brought one token of the cloud's\n",
        r.drafts_sent, r.uploads, cfg.policy.draft, r.accepted, r.resampled);
  } else {
    s += fmt::format(
        "  uploaded {} of {} tokens ({:.0f}%) for the cloud to verify: {} accepted, "
        "{} replaced; skipped {}, kept as drafted without verification",
        r.uploads, n, 100.0 * ratio(double(r.uploads), double(n)), r.accepted, r.resampled,
        a.skipped);
    if (r.slm_only > 0) {
      s += fmt::format("; {} more were kept unverified because the cloud was unreachable",
                       r.slm_only);
    }
    if (r.discarded > 0) {
      s += fmt::format(
          "; {} requests sent ahead while drafting on (pipelining) were dropped, as a draft "
          "before them was replaced",
          r.discarded);
    }
    s += "\n";
  }
  // What it cost on the radio and what that saved against standard HLM.
  if (kind == PolicyKind::kSlm) {
    s += "  no radio traffic and no cloud compute\n";
  } else {
    s += fmt::format("  sent {} up", format_bytes(up));
    if (r.uploads > 0 && kind != PolicyKind::kLlm) {
      s += fmt::format(" ({} per request)", format_bytes(a.uplink_bytes_per_upload));
    }
    s += fmt::format(", {} down", format_bytes(down));
    if (kind != PolicyKind::kLlm && n > 0) {
      const double saved = 1.0 - ratio(double(up), double(a.standard_hlm_uplink_bytes));
      s += fmt::format(
          "; standard HLM (every token uploaded in full) would have sent {} up in {} "
          "cloud calls: {:.1f}% less uplink, {} fewer cloud calls",
          format_bytes(a.standard_hlm_uplink_bytes), n, 100.0 * saved,
          std::max<int64_t>(0, n - r.llm_calls));
    }
    s += "\n";
  }
  // The modelled cost.
  s += fmt::format(
      "  modelled on {} (compute times: device {}, cloud {}): {:.2f} tokens/s, {:.2f} J ({:.2f} J "
      "device, {:.2f} J cloud)",
      cfg.channel.name, cfg.cost.device_name, cfg.cost.cloud_name, t.throughput_tps(),
      t.e_total_j(), t.e_device_j, t.e_cloud_j);
  if (r.t_filter_s > 0) {
    s += fmt::format("; the filter (uncertainty, importance) took {:.1f}% of the SLM's time",
                     100.0 * ratio(r.t_filter_s, r.t_slm_s));
  }
  return s;
}

}  // namespace hlm
