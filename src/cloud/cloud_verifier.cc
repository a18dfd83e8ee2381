// CloudVerifier implementation. Invariant per session: the KV cache holds every context token
// but the last, so a request evaluates [last] + pending + drafts (the last draft only when a bonus
// is asked for) and reads q at each draft.
#include "cloud/cloud_verifier.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "method/verify.h"

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
  if (params.vocab_fingerprint != m.tokenizer().fingerprint() ||
      params.n_vocab != m.config().n_vocab) {
    return make_error(
        "vocabulary mismatch: the device's model has {} tokens (fingerprint {:016x}), the cloud's "
        "model {} has {} tokens (fingerprint {:016x}); both sides must use the same tokenizer",
        params.n_vocab, params.vocab_fingerprint, m.path(), m.config().n_vocab,
        m.tokenizer().fingerprint());
  }
  if (params.prompt.empty()) return make_error("open: the prompt must hold at least one token");
  if (int(params.prompt.size()) >= options_.max_context) {
    return make_error("open: prompt of {} tokens does not fit the cloud's context of {}",
                      params.prompt.size(), options_.max_context);
  }
  for (int32_t t : params.prompt) {
    if (t < 0 || t >= m.config().n_vocab)
      return make_error("open: prompt token {} out of range", t);
  }
  if (params.sampling.temperature < 0 || params.sampling.top_p <= 0 || params.sampling.top_p > 1 ||
      params.sampling.top_k < 0) {
    return make_error(
        "open: invalid sampling settings (temperature >= 0, top_k >= 0, 0 < top_p <= 1)");
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
  Session s{slot, params, params.prompt, dist::Rng(params.sampling.seed ^ 0x9e3779b97f4a7c15ull)};
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

Result<SessionId> CloudVerifier::open_generation(const GenerateRequest& request) {
  const size_t n_prompt = request.session.prompt.size();
  if (request.max_tokens < 1) {
    return make_error("generate: max_tokens is {}; ask for at least 1 token", request.max_tokens);
  }
  if (n_prompt + size_t(request.max_tokens) > size_t(options_.max_context)) {
    return make_error(
        "generate: prompt of {} tokens + max_tokens {} exceeds the cloud's context of {}; ask "
        "for at most {} tokens",
        n_prompt, request.max_tokens, options_.max_context,
        std::max<int64_t>(0, int64_t(options_.max_context) - int64_t(n_prompt)));
  }
  return open(request.session);
}

Status CloudVerifier::generate(const GenerateRequest& request, const TokenSink& sink) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto id = open_generation(request);
  if (!id) return id.error();
  // The prompt's evaluation is billed to the first token.
  double prefill_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const Tokenizer& tok = context_.model().tokenizer();
  Status status = ok_status();
  for (int i = 0; i < request.max_tokens; ++i) {
    VerifyRequest step;
    step.session = *id;
    auto reply = verify(step);
    if (!reply) {
      status = reply.error();
      break;
    }
    const GeneratedToken g{reply->next, reply->t_llm_s + std::exchange(prefill_s, 0.0)};
    if (!sink(g) || (request.stop_at_eog && tok.is_eog(g.token))) break;
  }
  (void)close(*id);
  return status;
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
  return it->second.tokens;
}

Status CloudVerifier::check(const VerifyRequest& r, const Session& s) const {
  const int V = context_.model().config().n_vocab;
  for (int32_t t : r.pending) {
    if (t < 0 || t >= V)
      return make_error("session {}: pending token {} out of range [0, {})", r.session, t, V);
  }
  for (int32_t t : r.drafts) {
    if (t < 0 || t >= V)
      return make_error("session {}: draft token {} out of range [0, {})", r.session, t, V);
  }
  const bool ids = s.params.encoding == Encoding::kIds;
  if (!ids && r.p_hat.size() != r.drafts.size()) {
    return make_error("session {}: {} drafts but {} distributions", r.session, r.drafts.size(),
                      r.p_hat.size());
  }
  for (const Payload& p : r.p_hat) {
    if (p.n_vocab != V || p.kind != s.params.encoding) {
      return make_error("session {}: distribution has {} entries in encoding {}, expected {} in {}",
                        r.session, p.n_vocab, int(p.kind), V, int(s.params.encoding));
    }
  }
  const size_t need = s.tokens.size() + r.pending.size() + r.drafts.size() + 1;
  if (need > size_t(options_.max_context)) {
    return make_error("session {}: context would reach {} tokens, over the cloud's limit of {}",
                      r.session, need, options_.max_context);
  }
  return ok_status();
}

Result<VerifyReply> CloudVerifier::verify(const VerifyRequest& request) {
  return std::move(verify_batch(std::span<const VerifyRequest>(&request, 1)).front());
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
  std::vector<int> seen_slots;
  for (size_t i = 0; i < requests.size(); ++i) {
    const VerifyRequest& r = requests[i];
    auto it = sessions_.find(r.session);
    if (it == sessions_.end()) {
      results[i] = make_error("unknown session {} (expired or never opened)", r.session);
      continue;
    }
    Session& s = it->second;
    if (r.epoch && *r.epoch != s.epoch) {
      if (*r.epoch > s.epoch) {
        results[i] = make_error("session {}: request epoch {} is ahead of the session's {}",
                                r.session, *r.epoch, s.epoch);
      } else {
        VerifyReply stale;
        stale.stale = true;
        results[i] = stale;
      }
      continue;
    }
    if (std::find(seen_slots.begin(), seen_slots.end(), s.slot) != seen_slots.end()) {
      results[i] = make_error("session {}: two requests in one batch", r.session);
      continue;
    }
    if (auto st = check(r, s); !st) {
      results[i] = st.error();
      continue;
    }
    seen_slots.push_back(s.slot);
    // q is read before each draft, and after the last one only for a bonus (or when there are
    // no drafts). Without a bonus the last draft's own forward would be wasted: its KV is always
    // dropped, as either it ends the context (whose last token stays uncached) or it was
    // replaced. So n_q queries need [last] + pending + the first n_q - 1 drafts.
    const int P = int(r.pending.size()), k = int(r.drafts.size());
    const int n_q = k + ((k == 0 || r.want_bonus) ? 1 : 0);
    auto& toks = batch_tokens[i];
    toks.push_back(s.tokens.back());
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
    const int n_q = int(inputs[b].logits_at.size()), k = int(r.drafts.size());
    VerdictScratch& scr = scratch_[size_t(worker)];
    scr.q.resize(size_t(n_q) * V);
    const std::span<float> q(scr.q);
    const Sampler sampler(s.params.sampling);
    for (int j = 0; j < n_q; ++j) {
      sampler.distribution(logits.subspan(size_t(j) * V, V), q.subspan(size_t(j) * V, V));
    }
    const VerifyMode mode = s.params.encoding == Encoding::kIds  ? VerifyMode::kIds
                            : s.params.sampling.temperature <= 0 ? VerifyMode::kGreedy
                                                                 : VerifyMode::kSpeculative;
    // p̂ rows side by side; a single full distribution is used where it arrived.
    std::span<const float> p_hat;
    if (mode == VerifyMode::kSpeculative) {
      if (k == 1 && r.p_hat[0].kind == Encoding::kFull) {
        p_hat = r.p_hat[0].probs;
      } else {
        scr.p_hat.resize(size_t(k) * V);
        for (int j = 0; j < k; ++j) {
          decode_into(r.p_hat[size_t(j)], std::span<float>(scr.p_hat).subspan(size_t(j) * V, V));
        }
        p_hat = scr.p_hat;
      }
    }
    VerifyReply reply;
    if (k == 0) {
      reply.has_next = true;
      reply.next = mode == VerifyMode::kGreedy ? dist::argmax(q) : dist::sample(q, s.rng);
    } else if (r.want_bonus) {
      DraftVerdict v = verify_drafts(mode, q, p_hat, r.drafts, V, s.rng);
      reply.n_accepted = v.n_accepted;
      reply.has_next = true;
      reply.next = v.tokens.back();
    } else {
      // One or more drafts without a bonus: check them in order, stop at the first rejection.
      for (int j = 0; j < k; ++j) {
        auto qj = std::span<const float>(q).subspan(size_t(j) * V, V);
        auto pj = p_hat.empty() ? std::span<const float>() : p_hat.subspan(size_t(j) * V, V);
        Verdict v = verify_token(mode, qj, pj, r.drafts[j], s.rng);
        if (!v.accepted) {
          reply.has_next = true;
          reply.next = v.token;
          break;
        }
        reply.n_accepted++;
      }
    }
    s.tokens.insert(s.tokens.end(), r.pending.begin(), r.pending.end());
    s.tokens.insert(s.tokens.end(), r.drafts.begin(), r.drafts.begin() + reply.n_accepted);
    if (reply.has_next) s.tokens.push_back(reply.next);
    if (replaces_draft(r, reply)) s.epoch++;
    context_.truncate(s.slot, int(s.tokens.size()) - 1);
    reply.t_llm_s = t_forward * double(inputs[b].tokens.size()) / double(total_tokens);
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
