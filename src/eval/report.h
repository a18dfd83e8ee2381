// Report: JSON forms of a run's summary and of its per-token trace (shared by `hlm run`,
// `hlm eval` and the network client so every tool reports the same fields).
#pragma once

#include <nlohmann/json.hpp>

#include "device/device.h"

namespace hlm {

// {text, n_tokens, uploads, upload_rate, accepted, resampled, tsr, llm_calls, uplink_bytes,
//  downlink_bytes, energy_j: {device, cloud, total}, latency_s, tokens_per_s, filter_overhead,
//  wall_s}
nlohmann::json summary_json(const RunResult& r);
// One trace line: position, token, piece, draft, u, I, tau, uploaded, accepted, resampled,
// from_cloud, slm_only, ul_bytes, dl_bytes, t_slm, t_filter, t_llm, t_ul, t_dl, e_device, e_cloud.
nlohmann::json trace_json(const TokenTrace& t);
// A one-line human summary.
std::string summary_line(const RunResult& r);

}  // namespace hlm
