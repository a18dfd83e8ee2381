// Report: JSON forms of a run's summary and of its per-token trace (shared by `hlm run`,
// `hlm eval` and the network client so every tool reports the same fields).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "device/device.h"

namespace hlm {

// {text, n_tokens, uploads, upload_rate, accepted, resampled, tsr, llm_calls, uplink_bytes,
//  downlink_bytes, energy_j: {device, cloud, total}, latency_s, tokens_per_s, filter_overhead,
//  wall_s}
nlohmann::json summary_json(const RunResult& r);
// One trace line: position, token, piece, draft, u, I, tau, uploaded, accepted, resampled,
// from_cloud, slm_only, ul_bytes, dl_bytes, t_slm, t_filter, t_llm, t_ul, t_dl, e_device, e_cloud;
// draft_piece too when the cloud replaced the draft.
nlohmann::json trace_json(const TokenTrace& t);
// Bytes for people: "812 B", "1.2 KB", "10.4 MB" (decimal units, as a radio's rate is).
std::string format_bytes(uint64_t bytes);

// `hlm run`'s summary in plain words, a few lines without a trailing newline: what went up to
// the cloud and what came back, what was kept on the device unverified, and what that saved on
// the uplink and in LLM calls against standard HLM (every token uploaded with its full float32
// distribution, the same channel header) for the same number of tokens; then the modelled
// energy and throughput, the wall-clock rate and the filter's share of the SLM time.
// `via` is appended to the first line (e.g. " via 10.0.0.2:7070").
std::string summary_text(const RunResult& r, const RunConfig& cfg, int n_vocab, double wall_tps,
                         std::string_view via = "");

// The upload figures summary_text states, for the JSON summary too.
struct UploadAccount {
  // Per-token policies: tokens the policy chose not to upload (kept as drafted, unverified);
  // tokens it wanted verified while the cloud was unreachable are RunResult::slm_only instead.
  int64_t skipped = 0;
  // Mean bytes of one verification request (pending ids, drafts, p̂, header); 0 without uploads.
  uint64_t uplink_bytes_per_upload = 0;
  // What standard HLM (every token uploaded with its full float32 distribution) would send for
  // the same prompt and number of tokens on the same channel: the session's prompt plus one
  // request per token.
  uint64_t standard_hlm_uplink_bytes = 0;
};
UploadAccount upload_account(const RunResult& r, const RunConfig& cfg, int n_vocab);

}  // namespace hlm
