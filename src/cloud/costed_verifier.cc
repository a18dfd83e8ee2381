// CostedVerifier: modelled compute in a backend's replies, and the batches' measured times.
#include "cloud/costed_verifier.h"

#include <chrono>

namespace hlm {

CostedVerifier::CostedVerifier(std::unique_ptr<BatchVerifier> inner, std::optional<CostLine> line,
                               bool record)
    : inner_(std::move(inner)), line_(std::move(line)), record_(record) {}

std::vector<Result<VerifyReply>> CostedVerifier::verify_batch(
    std::span<const VerifyRequest> requests) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  std::vector<Result<VerifyReply>> replies = inner_->verify_batch(requests);
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  double positions = 0, context = 0, batch = 0;
  for (const auto& r : replies) {
    if (!r || r->positions == 0) continue;
    positions += double(r->positions);
    context += double(r->context);
    batch += 1;
  }
  if (batch == 0) return replies;
  const Work work{positions, context / batch, batch};
  if (record_) {
    std::lock_guard<std::mutex> lock(mu_);
    samples_.push_back({work, seconds});
  }
  if (line_) {
    const double t = line_->seconds(work);
    for (auto& r : replies) {
      if (r && r->positions > 0) r->t_llm_s = t * double(r->positions) / positions;
    }
  }
  return replies;
}

std::vector<CostSample> CostedVerifier::samples() const {
  std::lock_guard<std::mutex> lock(mu_);
  return samples_;
}

}  // namespace hlm
