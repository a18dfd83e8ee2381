// The device loop: draft → decide → upload or skip → apply the reply → account.
#include "device/device.h"

#include <chrono>
#include <deque>
#include <optional>

#include "method/importance.h"

namespace hlm {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

std::vector<int32_t> RunResult::context() const {
  std::vector<int32_t> c = prompt;
  c.insert(c.end(), tokens.begin(), tokens.end());
  return c;
}

// A drafted token not yet committed, with what the policy needs to judge it.
struct Device::Draft {
  int32_t d = -1;
  std::vector<float> z;      // SLM logits that predicted d
  AttentionRows rows;        // attention of the query that predicted d
  Payload payload;           // p̂ as it would be uploaded
  bool evaluated = false;    // d has been fed to the SLM
  AttentionRows rows_after;  // attention of d's own query (received(w) look-ahead)
};

Device::Device(std::shared_ptr<const Model> slm, ThreadPool& pool, RunConfig config)
    : slm_(std::move(slm)), pool_(pool), config_(std::move(config)) {}

Result<RunResult> Device::generate(const std::vector<int32_t>& prompt, Verifier* verifier,
                                   const TokenCallback& on_token) {
  if (auto st = validate(config_.policy); !st) return st.error();
  if (auto st = hlm::validate(config_.channel); !st) return st.error();
  if (prompt.empty()) return make_error("the prompt is empty: nothing to continue from");
  if (config_.pipeline_depth < 1 || config_.pipeline_depth > kMaxPipelineDepth) {
    return make_error("--pipeline-depth {}: expected 1 to {} requests", config_.pipeline_depth,
                      kMaxPipelineDepth);
  }
  if (config_.pipeline_ahead < 1) {
    return make_error("--pipeline-ahead {}: expected at least 1 token", config_.pipeline_ahead);
  }
  const int lookahead = config_.policy.importance.lookahead + 1;
  if (int(prompt.size()) + config_.max_tokens + lookahead + config_.policy.draft > config_.n_ctx) {
    return make_error(
        "prompt ({} tokens) + --max-tokens {} does not fit the context of {}; raise --ctx",
        prompt.size(), config_.max_tokens, config_.n_ctx);
  }
  pending_.clear();
  session_ = 0;
  const PolicyKind kind = config_.policy.kind;
  if (kind != PolicyKind::kSlm && !verifier) {
    return make_error("policy {} needs a cloud verifier", to_string(kind));
  }
  const auto t0 = Clock::now();
  Result<RunResult> r = kind == PolicyKind::kLlm    ? run_llm(prompt, *verifier, on_token)
                        : kind == PolicyKind::kSpec ? run_spec(prompt, *verifier, on_token)
                                                    : run_per_token(prompt, verifier, on_token);
  if (r.ok()) {
    r->wall_s = seconds_since(t0);
    r->text = slm_->tokenizer().decode(r->tokens);
  }
  return r;
}

namespace {

// The SLM side of the loop: one sequence, the newest logits and attention, and the SLM time
// not yet charged to a step (modelled by the device's cost profile when there is one).
struct SlmState {
  Context ctx;
  const DeviceCost* cost;
  AttentionRequest request;
  std::vector<float> z;
  AttentionRows rows;
  double unbilled_s = 0;

  SlmState(std::shared_ptr<const Model> m, ThreadPool& pool, const RunConfig& cfg)
      : ctx(std::move(m), 1, cfg.n_ctx, pool),
        cost(cfg.cost.device ? &*cfg.cost.device : nullptr) {}

  Status eval(std::span<const int32_t> tokens) {
    const auto t = Clock::now();
    const int64_t context = ctx.n_past(0);
    const bool capture = !request.layers.empty();
    auto r = ctx.eval_last(0, tokens, capture ? &request : nullptr, &rows);
    unbilled_s += cost ? cost->slm_s(int64_t(tokens.size()), context, capture) : seconds_since(t);
    if (!r) return r.error();
    z = std::move(r).value();
    return ok_status();
  }
  double take_time() { return std::exchange(unbilled_s, 0.0); }
};

// Evaluates the prompt on the SLM and charges it as a step that adds no tokens.
Status prefill(SlmState& slm, const std::vector<int32_t>& prompt, Ledger& ledger, RunResult& res) {
  if (auto st = slm.eval(prompt); !st) return st;
  StepInput step;
  step.t_slm = slm.take_time();
  step.tokens = 0;
  ledger.add(step);
  res.t_slm_s += step.t_slm;
  return ok_status();
}

// Session open: the prompt goes up once; `priced` gets the exchange (a step adding no tokens).
Result<SessionId> open_session(Verifier& v, const Model& m, const RunConfig& cfg,
                               const std::vector<int32_t>& prompt, StepInput& priced) {
  SessionParams sp;
  sp.vocab_fingerprint = m.tokenizer().fingerprint();
  sp.n_vocab = m.config().n_vocab;
  sp.sampling = cfg.sampling;
  sp.encoding = cfg.encoding.kind;
  sp.prompt = prompt;
  const auto t = Clock::now();
  auto id = v.open(sp);
  if (!id) return id.error();
  priced.uplink = priced.downlink = true;
  priced.ul_bits = uplink_bits(cfg.channel, int64_t(prompt.size()), 0, 0);
  priced.dl_bits = downlink_bits(cfg.channel);
  // The cloud evaluates all of the prompt but its last token (Verifier::open).
  priced.t_llm = cfg.cost.cloud_s(seconds_since(t), int64_t(prompt.size()) - 1, 0);
  priced.tokens = 0;
  return id;
}

Result<SessionId> open_session(Verifier& v, const Model& m, const RunConfig& cfg,
                               const std::vector<int32_t>& prompt, Ledger& ledger) {
  StepInput in;
  auto id = open_session(v, m, cfg, prompt, in);
  if (id) ledger.add(in);
  return id;
}

// Reachability of the cloud, with exponential backoff between reconnection attempts.
struct CloudLink {
  bool lost = false;
  double backoff_s = 0;
  Clock::time_point retry_at;
  std::string last_error;
  void fail(const RunConfig& cfg, const Error& why) {
    last_error = why.message;
    backoff_s = lost ? std::min(cfg.retry_max_s, backoff_s * 2) : cfg.retry_initial_s;
    lost = true;
    retry_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(backoff_s));
  }
};

void fill_trace(TokenTrace& t, const StepRecord& rec) {
  t.ul_bytes = (rec.in.ul_bits + 7) / 8;
  t.dl_bytes = (rec.in.dl_bits + 7) / 8;
  t.t_slm = rec.in.t_slm;
  t.t_filter = rec.in.t_filter;
  t.t_llm = rec.in.t_llm;
  t.t_ul = rec.t_ul;
  t.t_dl = rec.t_dl;
  t.e_device = rec.e_device;
  t.e_cloud = rec.e_cloud;
}

}  // namespace

// The per-token loop of SPEC §2 with pipelined drafting: after an upload the device drafts,
// decides and uploads on as if the draft were accepted, with at most config.pipeline_depth
// uploads in flight and config.pipeline_ahead tokens drafted past the oldest of them. Tokens
// are output once every upload before them is answered. A reply that replaces its draft rolls
// the device back to that token: the SLM's cache, the generators (so every draw happens as in
// the loop without pipelining), `pending` and the tokens after it; the requests sent after it
// carry the old epoch, so the cloud answers them `stale` without touching its context, and the
// device drops them. Without pipelining the device waits for each reply before drafting on.
Result<RunResult> Device::run_per_token(const std::vector<int32_t>& prompt, Verifier* verifier,
                                        const TokenCallback& on_token) {
  const RunConfig& cfg = config_;
  const Model& m = *slm_;
  const int V = m.config().n_vocab;
  const bool uses_importance = cfg.policy.kind == PolicyKind::kIuhlm || cfg.measure_importance;
  const bool received =
      uses_importance && cfg.policy.importance.estimator == ImportanceEstimator::kReceived;
  const int w = received ? cfg.policy.importance.lookahead : 0;
  const size_t depth = cfg.pipeline ? size_t(cfg.pipeline_depth) : 0;
  const size_t ahead_max = size_t(cfg.pipeline_ahead);
  const bool async = verifier && verifier->asynchronous();

  SlmState slm(slm_, pool_, cfg);
  if (uses_importance) {
    slm.request = cfg.policy.importance.layers.empty()
                      ? AttentionRequest::all(m.config().n_layer)
                      : AttentionRequest{cfg.policy.importance.layers};
  }
  Sampler sampler(cfg.sampling);
  // Every random draw of the device; copied at each upload and restored when its draft is
  // replaced, so the draws after a replacement are those of the loop without pipelining.
  struct Generators {
    dist::Rng draft, unc, policy;
  } rng{dist::Rng(cfg.sampling.seed), dist::Rng(cfg.sampling.seed + 1),
        dist::Rng(cfg.sampling.seed + 2)};
  UncertaintyEstimator unc(cfg.uncertainty);
  Timeline timeline(cfg.channel);
  RunResult res;
  res.prompt = prompt;

  if (auto st = slm.eval(prompt); !st) return st.error();
  res.t_slm_s += slm.unbilled_s;
  timeline.compute(slm.take_time(), 0);
  // Opens (or reopens) the session on `context`; the device waits for it.
  const auto open = [&](const std::vector<int32_t>& context) -> Result<SessionId> {
    StepInput in;
    auto id = open_session(*verifier, m, cfg, context, in);
    if (!id) return id;
    timeline.wait_until(timeline.reply(timeline.send(in.ul_bits), in.t_llm, in.dl_bits));
    return id;
  };
  CloudLink cloud;
  if (cfg.policy.kind != PolicyKind::kSlm) {
    auto id = open(prompt);
    if (id) {
      session_ = *id;
    } else if (id.error().code == ErrorCode::kUnavailable) {
      cloud.fail(cfg, id.error());  // start SLM-only; the session opens when the cloud answers
    } else {
      return id.error();
    }
  }

  std::deque<Draft> queue;
  std::vector<int32_t> to_eval;  // tokens decided on that the SLM has not seen yet
  auto draft_next = [&]() -> Status {
    if (!queue.empty() && !queue.back().evaluated) {
      const int32_t d = queue.back().d;
      if (auto st = slm.eval(std::span<const int32_t>(&d, 1)); !st) return st;
      queue.back().evaluated = true;
      queue.back().rows_after = slm.rows;
    } else if (queue.empty() && !to_eval.empty()) {
      if (auto st = slm.eval(to_eval); !st) return st;
      to_eval.clear();
    }
    Draft nd;
    nd.z = slm.z;
    nd.rows = slm.rows;
    std::vector<float> p = sampler.distribution(nd.z);
    nd.payload = encode(p, cfg.encoding);
    if (cfg.encoding.kind == Encoding::kTopK) p = decode(nd.payload);  // draw from p̂ itself
    nd.d = cfg.sampling.temperature <= 0 ? dist::argmax(p) : dist::sample(p, rng.draft);
    queue.push_back(std::move(nd));
    return ok_status();
  };

  // An upload whose reply the device has not taken yet.
  struct InFlight {
    size_t index = 0;  // the uploaded token's place in res.tokens
    VerifyRequest request;
    std::future<Result<VerifyReply>> future;
    std::optional<Result<VerifyReply>> reply;  // taken from the future
    double t_llm = 0;                          // the cloud's compute for it (CostConfig)
    int sent = 0;                              // the Timeline's request index
    double arrives = 0;                        // modelled time the reply is in
    Generators after;                          // the generators after this token's draws
  };
  std::deque<InFlight> flight;
  // Uploads whose replies are ignored: sent past a replaced draft (answered stale), or in flight
  // when the cloud was lost or the generation stopped. Joined at the end.
  std::vector<InFlight> dropped;
  std::vector<TokenTrace> ahead;       // traces of res.tokens[n_final..], not output yet
  std::vector<StepInput> ahead_steps;  // what each of them cost, priced when output
  size_t n_final = 0;
  uint64_t epoch = 0;  // replies that replaced a draft
  bool stopped = false;
  const uint64_t payload = payload_bits(cfg.encoding, V);

  const auto price = [&](TokenTrace& tr, const StepInput& step) {
    StepRecord rec = account_step(cfg.channel, step);
    rec.e_device -= cfg.channel.p_idle_w * rec.t_wait;  // waiting belongs to the run's totals
    fill_trace(tr, rec);
  };
  const auto resolve = [&](InFlight& f) {
    if (f.reply) return;
    f.reply = f.future.get();
    if (!f.reply->ok()) {
      f.arrives = timeline.now();  // nothing came back
    } else if ((*f.reply)->stale) {
      timeline.received_dropped(downlink_bits(cfg.channel));
      f.arrives = timeline.now();
    } else {
      // The cloud evaluates the last token it has, the pending ones and none of the draft.
      const int64_t n_pending = int64_t(f.request.pending.size());
      const int64_t first = int64_t(prompt.size() + f.index) - n_pending - 1;
      f.t_llm = cfg.cost.cloud_s((*f.reply)->t_llm_s, n_pending + 1, first);
      f.arrives = timeline.reply(f.sent, f.t_llm, downlink_bits(cfg.channel));
    }
  };
  const auto drop_flight = [&] {
    for (auto& f : flight) dropped.push_back(std::move(f));
    flight.clear();
  };
  // Outputs the tokens no unanswered upload precedes (ahead[k] is res.tokens[n_final + k]).
  const auto finalize = [&] {
    const size_t limit = flight.empty() ? res.tokens.size() : flight.front().index;
    size_t k = 0;
    while (n_final + k < limit && !stopped) {
      TokenTrace& tr = ahead[k];
      price(tr, ahead_steps[k]);
      if (cfg.keep_trace) res.trace.push_back(tr);
      k++;
      if (on_token && !on_token(tr)) stopped = true;
    }
    n_final += k;
    ahead.erase(ahead.begin(), ahead.begin() + long(k));
    ahead_steps.erase(ahead_steps.begin(), ahead_steps.begin() + long(k));
    if (stopped) {
      res.tokens.resize(n_final);
      ahead.clear();
      ahead_steps.clear();
      drop_flight();
    }
  };
  // Takes the oldest reply (it must be in): applies the verdict, rolls back after a
  // replacement, falls back to SLM-only when the cloud is unreachable.
  const auto take = [&]() -> Status {
    InFlight f = std::move(flight.front());
    flight.pop_front();
    const size_t first_ahead = n_final;
    TokenTrace& tr = ahead[f.index - first_ahead];
    StepInput& step = ahead_steps[f.index - first_ahead];
    if (!f.reply->ok()) {
      if (f.reply->error().code != ErrorCode::kUnavailable) {
        return make_error("verification failed: {}", f.reply->error().message);
      }
      cloud.fail(cfg, f.reply->error());
      // This upload and every one after it stay as drafted, unverified.
      flight.push_front(std::move(f));
      for (auto& g : flight) {
        ahead[g.index - first_ahead].slm_only = true;
        ahead[g.index - first_ahead].uploaded = false;
        res.slm_only++;
      }
      drop_flight();
      return ok_status();
    }
    const VerifyReply& reply = **f.reply;
    if (reply.stale) {
      return make_error(
          "verification failed: the cloud answered the upload at position {} as stale, but no "
          "earlier draft was replaced: the device and the cloud disagree on the session's epoch",
          tr.position);
    }
    tr.uploaded = true;
    tr.accepted = reply.n_accepted == 1;
    if (!tr.accepted) {
      tr.resampled = reply.next != tr.draft;
      tr.accepted = !tr.resampled;  // a rejection that redraws d itself keeps d
    }
    res.uploads++;
    res.drafts_sent++;
    res.llm_calls++;
    res.accepted += tr.accepted;
    res.resampled += tr.resampled;
    step.uplink = step.downlink = true;
    step.dl_bits = downlink_bits(cfg.channel);
    step.t_llm = f.t_llm;
    if (replaces_draft(f.request, reply)) {
      // The device learns of it when the reply is in; everything drafted after d goes.
      timeline.wait_until(f.arrives);
      epoch++;
      tr.token = reply.next;
      tr.draft_piece = std::move(tr.piece);
      tr.piece = m.tokenizer().token_to_piece(reply.next);
      res.tokens.resize(f.index + 1);
      res.tokens.back() = reply.next;
      ahead.resize(f.index + 1 - first_ahead);
      ahead_steps.resize(f.index + 1 - first_ahead);
      slm.ctx.truncate(0, tr.position);
      queue.clear();
      to_eval = {reply.next};
      pending_.clear();
      rng = f.after;
      drop_flight();
    }
    return ok_status();
  };
  // Takes the replies that are in: by the modelled clock for an in-process cloud, as they
  // arrive for a network one.
  const auto poll = [&]() -> Status {
    while (!flight.empty()) {
      InFlight& f = flight.front();
      if (async && !f.reply &&
          f.future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        break;
      }
      resolve(f);
      if (!async && f.arrives > timeline.now()) break;
      if (auto st = take(); !st) return st;
    }
    return ok_status();
  };
  const auto wait_oldest = [&]() -> Status {
    resolve(flight.front());
    timeline.wait_until(flight.front().arrives);
    return take();
  };

  for (;;) {
    if (auto st = poll(); !st) return st.error();
    finalize();
    if (stopped) break;
    const bool ended = !res.tokens.empty() && m.tokenizer().is_eog(res.tokens.back());
    const bool room = int(res.tokens.size()) < cfg.max_tokens && !ended;
    if (!flight.empty() && (!room || res.tokens.size() - n_final > ahead_max)) {
      if (auto st = wait_oldest(); !st) return st.error();
      continue;
    }
    if (!room) break;

    const int remaining = cfg.max_tokens - int(res.tokens.size());
    if (queue.empty()) {
      if (auto st = draft_next(); !st) return st.error();
    }
    Draft& e = queue.front();
    const int position = int(prompt.size() + res.tokens.size());
    TokenTrace tr;
    tr.position = position;
    tr.draft = e.d;
    tr.token = e.d;
    tr.piece = m.tokenizer().token_to_piece(e.d);

    const auto tf = Clock::now();
    double lookahead_s = 0;
    float u = -1.0f;
    if (needs_uncertainty(cfg.policy) || cfg.measure_uncertainty) u = unc(e.z, e.d, rng.unc);
    std::optional<Importance> imp;
    if (uses_importance && (cfg.measure_importance || needs_importance(cfg.policy, u))) {
      if (received) {
        const int want = std::min(w, remaining - 1);
        const double before = slm.unbilled_s;
        while (int(queue.size()) < 1 + want) {
          if (auto st = draft_next(); !st) return st.error();
        }
        if (want > 0 && !queue.back().evaluated && int(queue.size()) == 1 + want) {
          const int32_t d = queue.back().d;
          if (auto st = slm.eval(std::span<const int32_t>(&d, 1)); !st) return st.error();
          queue.back().evaluated = true;
          queue.back().rows_after = slm.rows;
        }
        lookahead_s = slm.unbilled_s - before;
        std::vector<AttentionRows> later;
        for (int j = 1; j <= want; ++j) later.push_back(queue[size_t(j)].rows_after);
        imp = received_importance(later, position, cfg.policy.importance);
      } else {
        imp = importance(e.rows, cfg.policy.importance);
      }
    }
    const bool upload = decide_upload(cfg.policy, u, imp ? &*imp : nullptr, rng.policy);
    double t_filter = seconds_since(tf) - lookahead_s;
    if (cfg.cost.device) {
      const DeviceCost& dc = *cfg.cost.device;
      t_filter = (u >= 0 ? dc.uncertainty.seconds({double(cfg.uncertainty.samples), 0, 1}) : 0) +
                 (imp ? dc.importance.seconds({1, double(position), 1}) : 0);
    }
    tr.u = u;
    if (imp) {
      tr.importance = imp->value;
      tr.tau = imp->threshold;
      tr.lambda_flip = imp->lambda_flip;
    }
    StepInput step;
    step.t_filter = t_filter;
    step.t_slm = slm.take_time();
    res.t_slm_s += step.t_slm;
    res.t_filter_s += t_filter;
    timeline.compute(step.t_slm, t_filter);

    if (upload && cloud.lost && Clock::now() >= cloud.retry_at) {
      // Reconnect when the backoff allows: a new session starts from the whole context (no
      // upload is in flight while the cloud is lost).
      auto id = open(res.context());
      if (id) {
        session_ = *id;
        pending_.clear();
        epoch = 0;
        cloud.lost = false;
        cloud.backoff_s = cfg.retry_initial_s;
        res.reconnects++;
      } else {
        if (id.error().code != ErrorCode::kUnavailable) return id.error();
        cloud.fail(cfg, id.error());
      }
    }
    if (upload && !cloud.lost && depth > 0 && flight.size() >= depth) {
      // As many uploads in flight as allowed: wait for the oldest reply. If it replaces its
      // draft, this token was drafted past it and goes too (its draws are undone with it).
      const uint64_t before = epoch;
      while (flight.size() >= depth && epoch == before && !cloud.lost) {
        if (auto st = wait_oldest(); !st) return st.error();
      }
      if (epoch != before) continue;
    }
    const size_t index = res.tokens.size();
    if (upload && !cloud.lost) {
      InFlight f;
      f.index = index;
      f.request.session = session_;
      f.request.pending = std::exchange(pending_, {});
      f.request.drafts = {e.d};
      if (cfg.encoding.kind != Encoding::kIds) f.request.p_hat = {e.payload};
      f.request.epoch = epoch;
      step.uplink = true;
      step.ul_bits = uplink_bits(cfg.channel, int64_t(f.request.pending.size()), payload, 1);
      f.sent = timeline.send(step.ul_bits);
      f.future = verifier->submit(f.request);
      f.after = rng;
      flight.push_back(std::move(f));
      if (!async) resolve(flight.back());
    } else {
      tr.slm_only = upload;  // wanted verification but the cloud was unreachable
      res.slm_only += upload;
      pending_.push_back(e.d);
    }
    res.tokens.push_back(e.d);
    ahead.push_back(std::move(tr));
    ahead_steps.push_back(step);
    if (!e.evaluated) to_eval = {e.d};
    queue.pop_front();
    if (depth == 0 && !flight.empty()) {  // not pipelined: wait for the reply at once
      if (auto st = wait_oldest(); !st) return st.error();
    }
  }
  // Requests dropped ahead of a replaced draft: their replies (stale) are in or still coming.
  for (auto& f : dropped) {
    if (!f.reply && f.future.get().ok()) timeline.received_dropped(downlink_bits(cfg.channel));
    res.discarded++;
  }
  res.totals = timeline.totals(int64_t(res.tokens.size()));
  res.cloud_error = cloud.last_error;
  return res;
}

Result<RunResult> Device::run_spec(const std::vector<int32_t>& prompt, Verifier& verifier,
                                   const TokenCallback& on_token) {
  const RunConfig& cfg = config_;
  const Model& m = *slm_;
  const int V = m.config().n_vocab;
  SlmState slm(slm_, pool_, cfg);
  Sampler sampler(cfg.sampling);
  dist::Rng draft_rng(cfg.sampling.seed);
  Ledger ledger(cfg.channel, false);
  RunResult res;
  res.prompt = prompt;
  if (auto st = prefill(slm, prompt, ledger, res); !st) return st.error();
  auto id = open_session(verifier, m, cfg, prompt, ledger);
  if (!id) return id.error();
  session_ = *id;

  bool done = false;
  while (!done && int(res.tokens.size()) < cfg.max_tokens) {
    const int base = int(prompt.size() + res.tokens.size());
    const int remaining = cfg.max_tokens - int(res.tokens.size());
    const int k = std::min(cfg.policy.draft, remaining);
    VerifyRequest req;
    req.session = session_;
    // A bonus past --max-tokens would be appended in the cloud but dropped here: ask for one
    // only when it fits, so the cloud's context stays the device's.
    req.want_bonus = k < remaining;
    for (int i = 0; i < k; ++i) {
      if (i > 0) {
        const int32_t prev = req.drafts.back();
        if (auto st = slm.eval(std::span<const int32_t>(&prev, 1)); !st) return st.error();
      }
      std::vector<float> p = sampler.distribution(slm.z);
      Payload pl = encode(p, cfg.encoding);
      if (cfg.encoding.kind == Encoding::kTopK) p = decode(pl);
      req.drafts.push_back(cfg.sampling.temperature <= 0 ? dist::argmax(p)
                                                         : dist::sample(p, draft_rng));
      if (cfg.encoding.kind != Encoding::kIds) req.p_hat.push_back(std::move(pl));
    }
    auto reply = verifier.verify(req);
    if (!reply) return make_error("verification failed: {}", reply.error().message);
    const int j = reply->n_accepted;
    res.uploads++;
    res.llm_calls++;
    res.drafts_sent += k;
    res.accepted += j;
    res.resampled += j < k ? 1 : 0;

    StepInput step;
    step.t_slm = slm.take_time();
    step.uplink = step.downlink = true;
    step.ul_bits = uplink_bits(cfg.channel, 0, payload_bits(cfg.encoding, V), k);
    step.dl_bits = downlink_bits(cfg.channel);
    // The cloud evaluates the last token it has and every draft but the last (all of them
    // when it returns a bonus): one query per draft, plus the bonus's.
    const int n_q = k + (req.want_bonus ? 1 : 0);
    step.t_llm = cfg.cost.cloud_s(reply->t_llm_s, n_q, base - 1);
    step.tokens = j + (reply->has_next ? 1 : 0);
    res.t_slm_s += step.t_slm;
    const StepRecord& rec = ledger.add(step);

    std::vector<int32_t> round(req.drafts.begin(), req.drafts.begin() + j);
    if (reply->has_next) round.push_back(reply->next);
    for (size_t i = 0; i < round.size() && !done; ++i) {
      TokenTrace tr;
      tr.position = base + int(i);
      tr.token = round[i];
      tr.draft = i < size_t(k) ? req.drafts[i] : -1;
      tr.uploaded = i < size_t(k);
      tr.accepted = i < size_t(j);
      tr.resampled = i == size_t(j) && j < k;
      tr.from_cloud = i == size_t(j);
      tr.piece = m.tokenizer().token_to_piece(round[i]);
      if (tr.resampled) tr.draft_piece = m.tokenizer().token_to_piece(tr.draft);
      if (i + 1 == round.size()) fill_trace(tr, rec);
      res.tokens.push_back(round[i]);
      if (cfg.keep_trace) res.trace.push_back(tr);
      done = (on_token && !on_token(tr)) || m.tokenizer().is_eog(round[i]) ||
             int(res.tokens.size()) >= cfg.max_tokens;
    }
    // The SLM evaluated drafts 0..k-2; keep the accepted ones and feed the rest plus the reply.
    const int kept = std::min(j, k - 1);
    slm.ctx.truncate(0, base + kept);
    if (!done) {
      std::vector<int32_t> feed(req.drafts.begin() + kept, req.drafts.begin() + j);
      feed.push_back(reply->next);
      if (auto st = slm.eval(feed); !st) return st.error();
    }
  }
  res.totals = ledger.totals();
  return res;
}

// The cloud-only baseline: one request carries the prompt up, the cloud generates every token
// and streams each down as it is produced (StreamTimeline prices it: no round trip per token).
Result<RunResult> Device::run_llm(const std::vector<int32_t>& prompt, Verifier& verifier,
                                  const TokenCallback& on_token) {
  const RunConfig& cfg = config_;
  const Model& m = *slm_;
  Ledger ledger(cfg.channel, false);
  StreamTimeline timeline(cfg.channel);
  RunResult res;
  res.prompt = prompt;
  GenerateRequest req;
  req.session.vocab_fingerprint = m.tokenizer().fingerprint();
  req.session.n_vocab = m.config().n_vocab;
  req.session.sampling = cfg.sampling;
  req.session.encoding = cfg.encoding.kind;
  req.session.prompt = prompt;
  req.max_tokens = cfg.max_tokens;
  ledger.add(timeline.request(uplink_bits(cfg.channel, int64_t(prompt.size()), 0, 0)));
  const uint64_t dl_bits = streamed_token_bits(cfg.channel);
  auto st = verifier.generate(req, [&](const GeneratedToken& g) {
    res.llm_calls++;
    TokenTrace tr;
    tr.position = int(prompt.size() + res.tokens.size());
    tr.token = g.token;
    tr.from_cloud = true;
    tr.piece = m.tokenizer().token_to_piece(g.token);
    // Each token is one position after the ones before; the first also pays for the prompt.
    const int64_t context = int64_t(prompt.size()) - 1 + int64_t(res.tokens.size());
    const double t_llm = cfg.cost.cloud
                             ? cfg.cost.cloud_s(0, 1, context) +
                                   (res.tokens.empty() ? cfg.cost.cloud_s(0, context, 0) : 0.0)
                             : g.t_llm_s;
    fill_trace(tr, ledger.add(timeline.token(t_llm, dl_bits)));
    res.tokens.push_back(g.token);
    if (cfg.keep_trace) res.trace.push_back(tr);
    return !on_token || on_token(tr);
  });
  if (!st) return make_error("cloud generation failed: {}", st.error().message);
  res.totals = ledger.totals();
  return res;
}

}  // namespace hlm
