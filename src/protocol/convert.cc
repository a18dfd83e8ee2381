// Convert implementation: plain field copies one way, checks before copies the other.
#include "protocol/convert.h"

#include <algorithm>
#include <cmath>

namespace hlm::protocol {
namespace {

Status check_ids(const google::protobuf::RepeatedField<int32_t>& ids, std::string_view field,
                 int n_vocab) {
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= n_vocab) {
      return make_error("{}[{}]: token id {} outside the vocabulary [0, {})", field, i, ids[i],
                        n_vocab);
    }
  }
  return ok_status();
}

const char* encoding_name(Encoding e) {
  switch (e) {
    case Encoding::kFull:
      return "full";
    case Encoding::kTopK:
      return "topk";
    case Encoding::kIds:
      return "ids";
  }
  return "?";
}

}  // namespace

size_t max_payload_bytes(int n_vocab) {
  const size_t v = size_t(std::max(n_vocab, 1));
  const size_t full = 4 * v;
  const size_t topk = (v * size_t(24 + index_bits(n_vocab)) + 7) / 8;  // k = V, 24-bit codes
  return 10 + std::max(full, topk);
}

size_t max_verify_request_bytes(const Limits& limits) {
  // Varint ids take at most 5 bytes plus tags; each payload its bytes plus a length prefix.
  return 4096 + size_t(limits.max_context + limits.max_drafts) * 6 +
         size_t(limits.max_drafts) * (max_payload_bytes(limits.n_vocab) + 8);
}

v1::Encoding to_proto(Encoding e) {
  switch (e) {
    case Encoding::kFull:
      return v1::ENCODING_FULL;
    case Encoding::kTopK:
      return v1::ENCODING_TOPK;
    case Encoding::kIds:
      return v1::ENCODING_IDS;
  }
  return v1::ENCODING_FULL;
}

void to_proto(const SessionParams& p, v1::OpenRequest* out) {
  out->Clear();
  out->set_protocol_version(kProtocolVersion);
  out->set_vocab_fingerprint(p.vocab_fingerprint);
  out->set_n_vocab(p.n_vocab);
  auto* s = out->mutable_sampling();
  s->set_temperature(p.sampling.temperature);
  s->set_top_k(p.sampling.top_k);
  s->set_top_p(p.sampling.top_p);
  s->set_seed(p.sampling.seed);
  out->set_encoding(to_proto(p.encoding));
  out->mutable_prompt()->Assign(p.prompt.begin(), p.prompt.end());
}

Status check_compatible(const v1::OpenRequest& in, uint64_t vocab_fingerprint, int n_vocab,
                        std::string_view model_name) {
  if (in.protocol_version() != kProtocolVersion) {
    return make_error(
        "OpenRequest.protocol_version: the device speaks hlm protocol version {}, this server "
        "speaks version {}; run the same hlm release on both sides",
        in.protocol_version(), kProtocolVersion);
  }
  if (in.n_vocab() != n_vocab || in.vocab_fingerprint() != vocab_fingerprint) {
    return make_error(
        "vocabulary mismatch: the device's model has {} tokens (fingerprint {:016x}) but the "
        "cloud's model {} has {} tokens (fingerprint {:016x}); device and cloud must share the "
        "tokenizer — pick a device model from the same family",
        in.n_vocab(), in.vocab_fingerprint(), model_name, n_vocab, vocab_fingerprint);
  }
  return ok_status();
}

Result<SessionParams> from_proto(const v1::OpenRequest& in, const Limits& limits) {
  SessionParams p;
  p.vocab_fingerprint = in.vocab_fingerprint();
  p.n_vocab = in.n_vocab();
  if (p.n_vocab != limits.n_vocab) {
    return make_error("OpenRequest.n_vocab: {} but this server's model has {}", p.n_vocab,
                      limits.n_vocab);
  }
  const auto& s = in.sampling();
  if (!std::isfinite(s.temperature()) || s.temperature() < 0 || s.temperature() > 100) {
    return make_error("OpenRequest.sampling.temperature: {} outside [0, 100]", s.temperature());
  }
  if (s.top_k() < 0 || s.top_k() > limits.n_vocab) {
    return make_error("OpenRequest.sampling.top_k: {} outside [0, n_vocab = {}]", s.top_k(),
                      limits.n_vocab);
  }
  if (!std::isfinite(s.top_p()) || s.top_p() <= 0 || s.top_p() > 1) {
    return make_error("OpenRequest.sampling.top_p: {} outside (0, 1]", s.top_p());
  }
  p.sampling = {s.temperature(), s.top_k(), s.top_p(), s.seed()};
  switch (in.encoding()) {
    case v1::ENCODING_FULL:
      p.encoding = Encoding::kFull;
      break;
    case v1::ENCODING_TOPK:
      p.encoding = Encoding::kTopK;
      break;
    case v1::ENCODING_IDS:
      p.encoding = Encoding::kIds;
      break;
    default:
      return make_error("OpenRequest.encoding: unknown value {} (0 full, 1 topk, 2 ids)",
                        int(in.encoding()));
  }
  if (in.prompt_size() < 1) return make_error("OpenRequest.prompt: empty, need at least 1 token");
  if (in.prompt_size() >= limits.max_context) {
    return make_error("OpenRequest.prompt: {} tokens do not fit the server's context of {}",
                      in.prompt_size(), limits.max_context);
  }
  if (auto st = check_ids(in.prompt(), "OpenRequest.prompt", limits.n_vocab); !st) {
    return st.error();
  }
  p.prompt.assign(in.prompt().begin(), in.prompt().end());
  return p;
}

void to_proto(const VerifyRequest& r, uint64_t step, v1::VerifyRequest* out) {
  out->Clear();
  out->set_session(r.session);
  out->set_step(step);
  out->mutable_pending()->Assign(r.pending.begin(), r.pending.end());
  out->mutable_drafts()->Assign(r.drafts.begin(), r.drafts.end());
  for (const Payload& p : r.p_hat) serialize(p, *out->add_p_hat());
  out->set_want_bonus(r.want_bonus);
  if (r.epoch) out->set_epoch(*r.epoch);
}

Result<VerifyRequest> from_proto(const v1::VerifyRequest& in, const Limits& limits,
                                 Encoding session_encoding) {
  VerifyRequest r;
  r.session = in.session();
  if (in.pending_size() > limits.max_context) {
    return make_error("VerifyRequest.pending: {} tokens, more than the context of {}",
                      in.pending_size(), limits.max_context);
  }
  if (in.drafts_size() > limits.max_drafts) {
    return make_error("VerifyRequest.drafts: {} drafts, this server takes at most {}",
                      in.drafts_size(), limits.max_drafts);
  }
  if (auto st = check_ids(in.pending(), "VerifyRequest.pending", limits.n_vocab); !st) {
    return st.error();
  }
  if (auto st = check_ids(in.drafts(), "VerifyRequest.drafts", limits.n_vocab); !st) {
    return st.error();
  }
  const int want_payloads = session_encoding == Encoding::kIds ? 0 : in.drafts_size();
  if (in.p_hat_size() != want_payloads) {
    return make_error(
        "VerifyRequest.p_hat: {} distributions for {} drafts in encoding {} (expected {})",
        in.p_hat_size(), in.drafts_size(), encoding_name(session_encoding), want_payloads);
  }
  if (in.want_bonus() && in.drafts_size() == 0) {
    return make_error("VerifyRequest.want_bonus: set without drafts");
  }
  const size_t max_bytes = max_payload_bytes(limits.n_vocab);
  for (int i = 0; i < in.p_hat_size(); ++i) {
    const std::string& b = in.p_hat(i);
    if (b.size() > max_bytes) {
      return make_error(
          "VerifyRequest.p_hat[{}]: {} bytes, more than the {} a distribution over "
          "{} tokens can take",
          i, b.size(), max_bytes, limits.n_vocab);
    }
    auto p =
        deserialize(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(b.data()), b.size()),
                    limits.n_vocab);
    if (!p) return make_error("VerifyRequest.p_hat[{}]: {}", i, p.error().message);
    if (p->kind != session_encoding) {
      return make_error("VerifyRequest.p_hat[{}]: encoding {} but the session was opened with {}",
                        i, encoding_name(p->kind), encoding_name(session_encoding));
    }
    r.p_hat.push_back(std::move(p).value());
  }
  r.pending.assign(in.pending().begin(), in.pending().end());
  r.drafts.assign(in.drafts().begin(), in.drafts().end());
  r.want_bonus = in.want_bonus();
  if (in.has_epoch()) r.epoch = in.epoch();
  return r;
}

void to_proto(const VerifyReply& r, v1::VerifyReply* out) {
  out->Clear();
  out->set_n_accepted(r.n_accepted);
  out->set_has_next(r.has_next);
  out->set_next(r.has_next ? r.next : -1);
  out->set_t_llm_s(r.t_llm_s);
  out->set_stale(r.stale);
}

Result<VerifyReply> from_proto(const v1::VerifyReply& in, int n_drafts, int n_vocab,
                               bool want_bonus) {
  VerifyReply r;
  if (in.stale()) {
    if (in.n_accepted() != 0 || in.has_next()) {
      return make_error("VerifyReply.stale: set with a verdict ({} accepted, has_next {})",
                        in.n_accepted(), in.has_next());
    }
    r.stale = true;
    return r;
  }
  if (in.n_accepted() < 0 || in.n_accepted() > n_drafts) {
    return make_error("VerifyReply.n_accepted: {} outside [0, {}]", in.n_accepted(), n_drafts);
  }
  const bool rejected = in.n_accepted() < n_drafts;
  const bool need_next = n_drafts == 0 || (n_drafts > 0 && (rejected || want_bonus));
  if (need_next && !in.has_next()) {
    return make_error("VerifyReply.has_next: false, but a token must follow {} of {} drafts",
                      in.n_accepted(), n_drafts);
  }
  if (in.has_next() && (in.next() < 0 || in.next() >= n_vocab)) {
    return make_error("VerifyReply.next: token id {} outside the vocabulary [0, {})", in.next(),
                      n_vocab);
  }
  if (!std::isfinite(in.t_llm_s()) || in.t_llm_s() < 0) {
    return make_error("VerifyReply.t_llm_s: {} is not a finite time >= 0", in.t_llm_s());
  }
  r.n_accepted = in.n_accepted();
  r.has_next = in.has_next();
  r.next = in.has_next() ? in.next() : -1;
  r.t_llm_s = in.t_llm_s();
  return r;
}

void to_proto(const GenerateRequest& r, v1::GenerateRequest* out) {
  out->Clear();
  to_proto(r.session, out->mutable_session());
  out->set_max_tokens(r.max_tokens);
  out->set_ignore_eos(!r.stop_at_eog);
}

Result<GenerateRequest> from_proto(const v1::GenerateRequest& in, const Limits& limits) {
  GenerateRequest r;
  if (!in.has_session()) {
    return make_error("GenerateRequest.session: missing (the vocabulary, sampling and prompt)");
  }
  auto session = from_proto(in.session(), limits);
  if (!session) return make_error("GenerateRequest.session: {}", session.error().message);
  r.session = std::move(session).value();
  const int room = limits.max_context - int(r.session.prompt.size());
  if (in.max_tokens() < 1 || in.max_tokens() > room) {
    return make_error(
        "GenerateRequest.max_tokens: {} outside [1, {}]: a prompt of {} tokens leaves {} of the "
        "server's context of {}",
        in.max_tokens(), room, r.session.prompt.size(), room, limits.max_context);
  }
  r.max_tokens = in.max_tokens();
  r.stop_at_eog = !in.ignore_eos();
  return r;
}

Result<GeneratedToken> from_proto(const v1::GenerateChunk& in, int n_vocab) {
  if (in.token() < 0 || in.token() >= n_vocab) {
    return make_error("GenerateChunk.token: token id {} outside the vocabulary [0, {})", in.token(),
                      n_vocab);
  }
  if (!std::isfinite(in.t_llm_s()) || in.t_llm_s() < 0) {
    return make_error("GenerateChunk.t_llm_s: {} is not a finite time >= 0", in.t_llm_s());
  }
  return GeneratedToken{in.token(), in.t_llm_s()};
}

}  // namespace hlm::protocol
