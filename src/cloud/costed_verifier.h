// CostedVerifier: a cloud backend whose replies report the compute a cost line models
// (method/cost.h) instead of the clock, so that what `hlm serve --cloud-cost` tells devices does
// not follow the server's load; and that can keep every batch's measured work and time, from
// which `hlm bench serve --save-cost` fits the cloud's line.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "cloud/batch_verifier.h"
#include "method/cost.h"

namespace hlm {

class CostedVerifier : public BatchVerifier {
 public:
  // `line` unset: replies keep the measured time. `record`: keep one sample per batch.
  CostedVerifier(std::unique_ptr<BatchVerifier> inner, std::optional<CostLine> line, bool record);

  Result<SessionId> open(const SessionParams& params) override { return inner_->open(params); }
  Status close(SessionId session) override { return inner_->close(session); }
  // The inner backend's replies; under a line, a batch of B requests whose forwards evaluate
  // n positions in all after a mean of c cached ones costs line(n, c, B), shared by positions.
  std::vector<Result<VerifyReply>> verify_batch(std::span<const VerifyRequest> requests) override;
  const Tokenizer& tokenizer() const override { return inner_->tokenizer(); }
  int max_context() const override { return inner_->max_context(); }

  // The batches served so far (with `record`): their work as the line's terms take it
  // (n = positions over the batch, context = their mean, batch = requests with a forward) and
  // the measured seconds of the backend's call (forward and verdicts).
  std::vector<CostSample> samples() const;

 private:
  std::unique_ptr<BatchVerifier> inner_;
  std::optional<CostLine> line_;
  bool record_;
  mutable std::mutex mu_;
  std::vector<CostSample> samples_;
};

}  // namespace hlm
