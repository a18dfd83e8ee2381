// libFuzzer target: every message a server or client decodes from the network. The first byte
// picks the message; the rest is parsed as protobuf and run through the checked conversion.
// Whatever is accepted must satisfy the limits and survive a round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "protocol/convert.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hlm;
  if (size < 1) return 0;
  const protocol::Limits limits{300, 64, 4};
  const uint8_t which = data[0] % 5;
  const uint8_t* body = data + 1;
  const int n = int(size - 1);
  switch (which) {
    case 0: {
      v1::OpenRequest m;
      if (!m.ParseFromArray(body, n)) return 0;
      (void)protocol::check_compatible(m, 7, limits.n_vocab, "fuzz");
      auto p = protocol::from_proto(m, limits);
      if (!p) return 0;
      check(!p->prompt.empty() && int(p->prompt.size()) < limits.max_context);
      for (int32_t t : p->prompt) check(t >= 0 && t < limits.n_vocab);
      v1::OpenRequest again;
      protocol::to_proto(*p, &again);
      auto q = protocol::from_proto(again, limits);
      check(q.ok() && q->prompt == p->prompt && q->encoding == p->encoding);
      break;
    }
    case 1:
    case 2: {
      v1::VerifyRequest m;
      if (!m.ParseFromArray(body, n)) return 0;
      for (Encoding e : {Encoding::kFull, Encoding::kTopK, Encoding::kIds}) {
        auto r = protocol::from_proto(m, limits, e);
        if (!r) continue;
        check(r->drafts.size() <= size_t(limits.max_drafts));
        for (int32_t t : r->pending) check(t >= 0 && t < limits.n_vocab);
        for (int32_t t : r->drafts) check(t >= 0 && t < limits.n_vocab);
        for (const Payload& p : r->p_hat) {
          check(p.n_vocab == limits.n_vocab && p.kind == e);
          check(decode(p).size() == size_t(e == Encoding::kIds ? 0 : limits.n_vocab));
        }
        v1::VerifyRequest again;
        protocol::to_proto(*r, m.step(), &again);
        auto s = protocol::from_proto(again, limits, e);
        check(s.ok() && s->drafts == r->drafts && s->pending == r->pending &&
              s->p_hat.size() == r->p_hat.size());
      }
      break;
    }
    case 3: {
      v1::VerifyReply m;
      if (!m.ParseFromArray(body, n)) return 0;
      for (int k = 0; k <= 3; ++k) {
        auto r = protocol::from_proto(m, k, limits.n_vocab, k % 2 == 1);
        if (!r) continue;
        check(r->n_accepted >= 0 && r->n_accepted <= k);
        if (r->has_next) check(r->next >= 0 && r->next < limits.n_vocab);
      }
      break;
    }
    case 4: {
      auto p = deserialize(std::span<const uint8_t>(body, size_t(n)), limits.n_vocab);
      if (!p) return 0;
      const auto bytes = serialize(*p);
      check(bytes.size() == size_t(n));
      break;
    }
  }
  return 0;
}
