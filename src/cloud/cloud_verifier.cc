// CloudVerifier implementation. Invariant per session: the KV cache holds every context token
// but the last, so a request evaluates [last] + pending + drafts (the last draft only when a bonus
// is asked for) and reads q at each draft.
#include "cloud/cloud_verifier.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace hlm {

CloudVerifier::CloudVerifier(std::shared_ptr<const Model> llm, ThreadPool& pool,
                             CloudOptions options)
    : context_(std::move(llm), options.max_sessions, options.max_context, pool),
      pool_(pool),
      options_(options),
      slot_used_(options.max_sessions, false),
      scratch_(size_t(pool.size())) {}

Result<SessionId> CloudVerifier::open(const SessionParams& params) {
  const Model& m = context_.model();
  if (auto st = check_open(params, m.config().n_vocab, m.tokenizer().fingerprint(), m.path(),
                           options_.max_context);
      !st) {
    return st.error();
  }
  std::lock_guard<std::mutex> lock(mu_);
  int slot = -1;
  for (int i = 0; i < int(slot_used_.size()); ++i) {
    if (!slot_used_[i]) {
      slot = i;
      break;
    }
  }
  if (slot < 0) {
    return make_error("open: all {} sessions are in use (raise --max-sessions)", slot_used_.size());
  }
  Session s{slot, CloudSession(params)};
  context_.clear(slot);
  if (params.prompt.size() > 1) {
    SeqInput in{
        slot, std::span<const int32_t>(params.prompt).first(params.prompt.size() - 1), {}, nullptr};
    auto r = context_.eval(std::span<const SeqInput>(&in, 1));
    if (!r) return r.error();
  }
  slot_used_[slot] = true;
  const SessionId id = next_id_++;
  sessions_.emplace(id, std::move(s));
  return id;
}

Status CloudVerifier::close(SessionId session) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return make_error("close: unknown session {}", session);
  slot_used_[it->second.slot] = false;
  context_.clear(it->second.slot);
  sessions_.erase(it);
  return ok_status();
}

int CloudVerifier::n_sessions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return int(sessions_.size());
}

uint64_t CloudVerifier::n_evaluated() const {
  std::lock_guard<std::mutex> lock(mu_);
  return context_.n_evaluated();
}

Result<std::vector<int32_t>> CloudVerifier::context(SessionId session) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return make_error("unknown session {}", session);
  return it->second.state.tokens;
}

std::vector<Result<VerifyReply>> CloudVerifier::verify_batch(
    std::span<const VerifyRequest> requests) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Result<VerifyReply>> results(requests.size(), Error{"not served"});
  std::vector<std::vector<int32_t>> batch_tokens(requests.size());
  std::vector<SeqInput> inputs;
  std::vector<size_t> input_of;  // request index of each input
  std::vector<SessionId> batch;
  for (size_t i = 0; i < requests.size(); ++i) {
    const VerifyRequest& r = requests[i];
    auto it = sessions_.find(r.session);
    if (auto early = admit(r, it == sessions_.end() ? nullptr : &it->second.state, batch,
                           context_.model().config().n_vocab, options_.max_context)) {
      results[i] = std::move(*early);
      continue;
    }
    Session& s = it->second;
    // q is read before each draft, and after the last one only for a bonus (or when there are
    // no drafts). Without a bonus the last draft's own forward would be wasted: its KV is always
    // dropped, as either it ends the context (whose last token stays uncached) or it was
    // replaced. So n_q queries need [last] + pending + the first n_q - 1 drafts.
    const int P = int(r.pending.size()), n_q = n_queries(r);
    auto& toks = batch_tokens[i];
    toks.push_back(s.state.tokens.back());
    toks.insert(toks.end(), r.pending.begin(), r.pending.end());
    toks.insert(toks.end(), r.drafts.begin(), r.drafts.begin() + (n_q - 1));
    SeqInput in{s.slot, toks, {}, nullptr};
    for (int j = 0; j < n_q; ++j) in.logits_at.push_back(P + j);
    inputs.push_back(std::move(in));
    input_of.push_back(i);
  }
  if (inputs.empty()) return results;
  auto out = context_.eval(inputs);
  if (!out) {
    for (size_t i : input_of) results[i] = out.error();
    return results;
  }
  size_t total_tokens = 0;
  for (const auto& in : inputs) total_tokens += in.tokens.size();
  const double t_forward = std::chrono::duration<double>(Clock::now() - t0).count();
  const int V = context_.model().config().n_vocab;

  // Each request's distributions and verdict touch only its own session (one request per
  // session in a batch), so requests are finished in parallel: a vocabulary-sized softmax,
  // decode and verdict each, which for a full batch would otherwise leave the pool idle.
  const auto finish = [&](size_t b, int worker) {
    const VerifyRequest& r = requests[input_of[b]];
    Session& s = sessions_.at(r.session);
    const std::span<const float> logits = (*out)[b].logits;
    const int n_q = int(inputs[b].logits_at.size());
    VerdictScratch& scr = scratch_[size_t(worker)];
    scr.q.resize(size_t(n_q) * V);
    const std::span<float> q(scr.q);
    const Sampler sampler(s.state.params.sampling);
    for (int j = 0; j < n_q; ++j) {
      sampler.distribution(logits.subspan(size_t(j) * V, V), q.subspan(size_t(j) * V, V));
    }
    const int64_t cached = int64_t(s.state.tokens.size()) - 1;  // the last token is fed again
    VerifyReply reply = decide(r, s.state, q, V, scr.p_hat);
    context_.truncate(s.slot, int(s.state.tokens.size()) - 1);
    reply.t_llm_s = t_forward * double(inputs[b].tokens.size()) / double(total_tokens);
    reply.positions = int64_t(inputs[b].tokens.size());
    reply.context = cached;
    results[input_of[b]] = reply;
  };
  if (inputs.size() < 4) {
    for (size_t b = 0; b < inputs.size(); ++b) finish(b, 0);
  } else {
    pool_.parallel_for(inputs.size(), 1, [&](size_t b0, size_t b1, int worker) {
      for (size_t b = b0; b < b1; ++b) finish(b, worker);
    });
  }
  return results;
}

}  // namespace hlm
