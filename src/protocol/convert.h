// Convert: between the Verifier structs (src/cloud/verifier.h) and the hlm.v1 protobuf
// messages, checking every received field against the receiver's limits before use. Errors name
// the field ("VerifyRequest.drafts[2]: ...") so a peer can tell exactly what it got wrong.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cloud/verifier.h"
#include "protocol/hlm.pb.h"
#include "util/result.h"

namespace hlm::protocol {

// The version this build speaks. Bump on any incompatible change to hlm.proto's meaning.
inline constexpr uint32_t kProtocolVersion = 1;

// What a receiver accepts. n_vocab and max_context come from the cloud model and the server's
// options; the rest bound the work and memory one message can ask for.
struct Limits {
  int n_vocab = 0;
  int max_context = 2048;
  int max_drafts = 16;
};

// The largest serialised Payload for V entries (a full distribution plus its header).
size_t max_payload_bytes(int n_vocab);
// The largest VerifyRequest a server with these limits must accept, with some slack for
// protobuf framing: used as the gRPC receive limit.
size_t max_verify_request_bytes(const Limits& limits);

// Open. The sender fills protocol_version with kProtocolVersion.
void to_proto(const SessionParams& params, v1::OpenRequest* out);
// Version and vocabulary agreement (the server answers FAILED_PRECONDITION when this fails);
// the message says what each side has and what to do.
Status check_compatible(const v1::OpenRequest& in, uint64_t vocab_fingerprint, int n_vocab,
                        std::string_view model_name);
// Every other field (INVALID_ARGUMENT when this fails): sampling ranges and finiteness, a known
// encoding, a prompt of 1 .. max_context − 1 tokens with ids in [0, n_vocab).
Result<SessionParams> from_proto(const v1::OpenRequest& in, const Limits& limits);

// Verify. Serialises each Payload (bit-packed, src/method/upload.h).
void to_proto(const VerifyRequest& request, uint64_t step, v1::VerifyRequest* out);
// Checks counts (pending <= max_context, drafts <= max_drafts, one p̂ per draft unless the
// session's encoding is ids, then none), token ids in range, each payload's size before
// decoding it, then decodes and checks it against n_vocab and the session's encoding.
Result<VerifyRequest> from_proto(const v1::VerifyRequest& in, const Limits& limits,
                                 Encoding session_encoding);

void to_proto(const VerifyReply& reply, v1::VerifyReply* out);
// The client's check of a reply to a request with n_drafts drafts: n_accepted in
// [0, n_drafts], a next token in [0, n_vocab) whenever one is required (after a rejection, or
// always when there were no drafts), a finite non-negative t_llm.
Result<VerifyReply> from_proto(const v1::VerifyReply& in, int n_drafts, int n_vocab,
                               bool want_bonus);

// Generate. The server checks the session as Open does (check_compatible, then every field),
// then max_tokens in [1, max_context − prompt]; errors name the GenerateRequest field.
void to_proto(const GenerateRequest& request, v1::GenerateRequest* out);
Result<GenerateRequest> from_proto(const v1::GenerateRequest& in, const Limits& limits);
// The client's check of one streamed token: an id in [0, n_vocab), a finite non-negative t_llm.
Result<GeneratedToken> from_proto(const v1::GenerateChunk& in, int n_vocab);

v1::Encoding to_proto(Encoding e);

}  // namespace hlm::protocol
