// BatchVerifier's generation loop and the session checks and verdict both backends share.
#include "cloud/batch_verifier.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "method/verify.h"

namespace hlm {

Result<VerifyReply> BatchVerifier::verify(const VerifyRequest& request) {
  return std::move(verify_batch(std::span<const VerifyRequest>(&request, 1)).front());
}

Result<SessionId> BatchVerifier::open_generation(const GenerateRequest& request) {
  const size_t n_prompt = request.session.prompt.size();
  if (request.max_tokens < 1) {
    return make_error("generate: max_tokens is {}; ask for at least 1 token", request.max_tokens);
  }
  const int limit = max_context();
  if (n_prompt + size_t(request.max_tokens) > size_t(limit)) {
    return make_error(
        "generate: prompt of {} tokens + max_tokens {} exceeds the cloud's context of {}; ask "
        "for at most {} tokens",
        n_prompt, request.max_tokens, limit,
        std::max<int64_t>(0, int64_t(limit) - int64_t(n_prompt)));
  }
  return open(request.session);
}

Status BatchVerifier::generate(const GenerateRequest& request, const TokenSink& sink) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto id = open_generation(request);
  if (!id) return id.error();
  // The prompt's evaluation is billed to the first token.
  double prefill_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const Tokenizer& tok = tokenizer();
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

CloudSession::CloudSession(SessionParams p)
    : params(std::move(p)),
      tokens(params.prompt),
      rng(params.sampling.seed ^ 0x9e3779b97f4a7c15ull) {}

Status check_open(const SessionParams& params, int n_vocab, uint64_t fingerprint,
                  std::string_view model, int max_context) {
  if (params.vocab_fingerprint != fingerprint || params.n_vocab != n_vocab) {
    return make_error(
        "vocabulary mismatch: the device's model has {} tokens (fingerprint {:016x}), the cloud's "
        "model {} has {} tokens (fingerprint {:016x}); both sides must use the same tokenizer",
        params.n_vocab, params.vocab_fingerprint, model, n_vocab, fingerprint);
  }
  if (params.prompt.empty()) return make_error("open: the prompt must hold at least one token");
  if (int(params.prompt.size()) >= max_context) {
    return make_error("open: prompt of {} tokens does not fit the cloud's context of {}",
                      params.prompt.size(), max_context);
  }
  for (int32_t t : params.prompt) {
    if (t < 0 || t >= n_vocab) return make_error("open: prompt token {} out of range", t);
  }
  if (params.sampling.temperature < 0 || params.sampling.top_p <= 0 || params.sampling.top_p > 1 ||
      params.sampling.top_k < 0) {
    return make_error(
        "open: invalid sampling settings (temperature >= 0, top_k >= 0, 0 < top_p <= 1)");
  }
  return ok_status();
}

namespace {

std::optional<Result<VerifyReply>> check_epoch(const VerifyRequest& r, const CloudSession& s) {
  if (!r.epoch || *r.epoch == s.epoch) return std::nullopt;
  if (*r.epoch > s.epoch) {
    return make_error("session {}: request epoch {} is ahead of the session's {}", r.session,
                      *r.epoch, s.epoch);
  }
  VerifyReply stale;
  stale.stale = true;
  return stale;
}

Status check_request(const VerifyRequest& r, const CloudSession& s, int V, int max_context) {
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
  if (need > size_t(max_context)) {
    return make_error("session {}: context would reach {} tokens, over the cloud's limit of {}",
                      r.session, need, max_context);
  }
  return ok_status();
}

}  // namespace

std::optional<Result<VerifyReply>> admit(const VerifyRequest& r, const CloudSession* s,
                                         std::vector<SessionId>& batch, int n_vocab,
                                         int max_context) {
  if (!s) return make_error("unknown session {} (expired or never opened)", r.session);
  if (auto early = check_epoch(r, *s)) return early;
  if (std::find(batch.begin(), batch.end(), r.session) != batch.end()) {
    return make_error("session {}: two requests in one batch", r.session);
  }
  if (auto st = check_request(r, *s, n_vocab, max_context); !st) return st.error();
  batch.push_back(r.session);
  return std::nullopt;
}

int n_queries(const VerifyRequest& r) {
  const int k = int(r.drafts.size());
  return k + ((k == 0 || r.want_bonus) ? 1 : 0);
}

VerifyReply decide(const VerifyRequest& r, CloudSession& s, std::span<const float> q, int V,
                   std::vector<float>& p_hat_scratch) {
  const int k = int(r.drafts.size());
  const VerifyMode mode = s.params.encoding == Encoding::kIds  ? VerifyMode::kIds
                          : s.params.sampling.temperature <= 0 ? VerifyMode::kGreedy
                                                               : VerifyMode::kSpeculative;
  // p̂ rows side by side; a single full distribution is used where it arrived.
  std::span<const float> p_hat;
  if (mode == VerifyMode::kSpeculative) {
    if (k == 1 && r.p_hat[0].kind == Encoding::kFull) {
      p_hat = r.p_hat[0].probs;
    } else {
      p_hat_scratch.resize(size_t(k) * V);
      for (int j = 0; j < k; ++j) {
        decode_into(r.p_hat[size_t(j)], std::span<float>(p_hat_scratch).subspan(size_t(j) * V, V));
      }
      p_hat = p_hat_scratch;
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
      auto qj = q.subspan(size_t(j) * V, V);
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
  return reply;
}

}  // namespace hlm
