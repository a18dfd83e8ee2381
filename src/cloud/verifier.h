// Verifier: the transport-neutral interface between the device loop and the cloud. The same
// messages travel in-process (CloudVerifier) or over gRPC (the network client), so the device
// loop never knows which it talks to.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <optional>
#include <vector>

#include "engine/sampler.h"
#include "method/upload.h"
#include "util/result.h"

namespace hlm {

using SessionId = uint64_t;

struct SessionParams {
  uint64_t vocab_fingerprint = 0;  // must equal the cloud model's
  int n_vocab = 0;
  SamplingParams sampling;  // shared by both sides: T, top-k, top-p; seed for the cloud
  Encoding encoding = Encoding::kFull;
  std::vector<int32_t> prompt;  // the context the session starts from (at least one token)
};

// One exchange. drafts.size() is 0 (the cloud generates the next token itself: one step of a
// streamed generation), 1 (one drafted token: hlm, uhlm, iuhlm, rand) or k (spec(k)). p_hat holds
// one payload per draft (none for the ids encoding).
struct VerifyRequest {
  SessionId session = 0;
  std::vector<int32_t> pending;  // tokens the device kept since the cloud last saw its context
  std::vector<int32_t> drafts;
  std::vector<Payload> p_hat;
  bool want_bonus = false;  // spec(k): when every draft is accepted, also return a token from q
  // Pipelined drafting: the number of replies that replaced a draft in this session which the
  // device had seen when it built the request. A request sent while an earlier one was in flight
  // assumes that one's draft survives; if it was replaced instead, the cloud's epoch has moved
  // on and the request is answered `stale` without touching the session (no forward, no random
  // draw). Unset: the device waits for every reply, nothing to check.
  std::optional<uint64_t> epoch;
};

struct VerifyReply {
  int n_accepted = 0;     // accepted prefix of the drafts
  bool has_next = false;  // a token follows the accepted prefix: a replacement after a
                          // rejection, a bonus (spec), or the generated token (no drafts)
  int32_t next = -1;
  double t_llm_s = 0.0;  // cloud compute time for this request (its share of a batch)
  // The forward's work for this request, what cost lines price (method/cost.h): `positions`
  // evaluated after `context` cached ones; 0 when answered without a forward. Not on the wire.
  int64_t positions = 0, context = 0;
  // The request's epoch was behind the session's: it was built on a draft an earlier reply
  // replaced, so nothing was evaluated and the device drops it.
  bool stale = false;
};

// Cloud-only generation (policy llm): the prompt goes up once in `session` (its encoding is
// unused), the cloud decodes every token from its own distribution (greedy at T = 0, else
// sampled with the session's seed) and hands each down as soon as it is produced.
struct GenerateRequest {
  SessionParams session;
  int max_tokens = 0;       // at least 1; prompt + max_tokens must fit the cloud's context
  bool stop_at_eog = true;  // end after an end-of-generation token (it is still delivered)
};

struct GeneratedToken {
  int32_t token = -1;
  double t_llm_s = 0.0;  // cloud compute for this token: its share of a batched decode step, plus
                         // the prompt's evaluation for the first token
};

// Receives each generated token in order; returning false cancels the generation.
using TokenSink = std::function<bool(const GeneratedToken&)>;
// Whether a reply to a one-draft request replaces the draft, i.e. moves the session's epoch on.
// Both sides apply this rule: a rejection that redraws the draft itself changes nothing.
inline bool replaces_draft(const VerifyRequest& request, const VerifyReply& reply) {
  return !reply.stale && !request.drafts.empty() && !request.want_bonus &&
         reply.n_accepted < int(request.drafts.size()) && reply.has_next &&
         reply.next != request.drafts[size_t(reply.n_accepted)];
}

class Verifier {
 public:
  virtual ~Verifier() = default;
  virtual Result<SessionId> open(const SessionParams& params) = 0;
  virtual Result<VerifyReply> verify(const VerifyRequest& request) = 0;
  virtual Status close(SessionId session) = 0;
  // Streams a cloud-only generation into `sink` and returns when it has ended (max_tokens, an
  // end-of-generation token, or the sink cancelled it). The session it opens lives only for
  // the call. An error after some tokens were delivered means the stream broke off there.
  virtual Status generate(const GenerateRequest& request, const TokenSink& sink) = 0;

  // Sends a request without waiting for its reply, so the device can draft on (pipelined
  // drafting). A session's requests are served in the order they were submitted. The default
  // serves it at once in the caller's thread and returns a ready future.
  virtual std::future<Result<VerifyReply>> submit(const VerifyRequest& request);
  // True when submit() returns before the reply exists (a network client): the device then
  // takes replies as they arrive. Otherwise replies are taken when the modelled channel says
  // they would have arrived.
  virtual bool asynchronous() const { return false; }
};

inline std::future<Result<VerifyReply>> Verifier::submit(const VerifyRequest& request) {
  std::promise<Result<VerifyReply>> reply;
  reply.set_value(verify(request));
  return reply.get_future();
}

}  // namespace hlm
