// Evaluation harness implementation (see harness.h).
#include "eval/harness.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "cloud/cloud_verifier.h"
#include "eval/report.h"
#include "util/hash.h"

namespace hlm {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr std::string_view kMethods[] = {"slm", "llm", "hlm", "rand", "uhlm", "iuhlm", "spec"};
constexpr std::string_view kKeys[] = {"u_th", "lambda", "est", "u_hi", "s", "r", "k"};

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

Result<double> parse_number(std::string_view key, std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v)) {
    return make_error("--sweep: {}={} is not a number", key, text);
  }
  return v;
}

// est values: focus, entropy, received, received(w).
struct EstimatorChoice {
  ImportanceEstimator estimator = ImportanceEstimator::kFocus;
  int lookahead = 0;  // 0: keep the base value
};

Result<EstimatorChoice> parse_est(std::string_view text) {
  EstimatorChoice c;
  std::string_view name = text;
  if (auto open = text.find('('); open != std::string_view::npos) {
    if (text.back() != ')') return make_error("--sweep: est={}: expected received(w)", text);
    name = text.substr(0, open);
    auto w = parse_number("est", text.substr(open + 1, text.size() - open - 2));
    if (!w || *w < 1 || *w != std::floor(*w)) {
      return make_error("--sweep: est={}: w must be a positive integer", text);
    }
    c.lookahead = int(*w);
  }
  auto e = parse_estimator(name);
  if (!e) return make_error("--sweep: est={}: {}", text, e.error().message);
  c.estimator = *e;
  if (c.lookahead > 0 && c.estimator != ImportanceEstimator::kReceived) {
    return make_error("--sweep: est={}: only received takes a look-ahead (w)", text);
  }
  return c;
}

Status check_value(const std::string& key, const std::string& value) {
  if (key == "est") {
    auto e = parse_est(value);
    if (!e) return e.error();
    return ok_status();
  }
  auto v = parse_number(key, value);
  if (!v) return v.error();
  const bool integer = key == "s" || key == "k";
  if (integer && (*v != std::floor(*v) || *v < (key == "k" ? 1 : 0))) {
    return make_error("--sweep: {}={}: expected a {} integer", key, value,
                      key == "k" ? "positive" : "non-negative");
  }
  if ((key == "u_th" || key == "u_hi" || key == "r") && (*v < 0 || *v > 1)) {
    return make_error("--sweep: {}={}: expected a value in [0, 1]", key, value);
  }
  return ok_status();
}

bool uses_key(PolicyKind kind, std::string_view key) {
  switch (kind) {
    case PolicyKind::kUhlm:
      return key == "u_th";
    case PolicyKind::kIuhlm:
      return key == "u_th" || key == "lambda" || key == "est" || key == "u_hi" || key == "s";
    case PolicyKind::kRand:
      return key == "r";
    case PolicyKind::kSpec:
      return key == "k";
    default:
      return false;
  }
}

// Applies the point's keys that `cfg.kind` uses.
Status apply_point(PolicyConfig& cfg, const SweepPoint& point) {
  for (const auto& [key, value] : point) {
    if (!uses_key(cfg.kind, key)) continue;
    if (key == "est") {
      auto e = parse_est(value);
      if (!e) return e.error();
      cfg.importance.estimator = e->estimator;
      if (e->lookahead > 0) cfg.importance.lookahead = e->lookahead;
      continue;
    }
    const double v = *parse_number(key, value);
    if (key == "u_th") cfg.u_th = float(v);
    if (key == "lambda") cfg.importance.lambda = float(v);
    if (key == "u_hi") cfg.u_hi = float(v);
    if (key == "s") cfg.importance.sinks = int(v);
    if (key == "r") cfg.rate = v;
    if (key == "k") cfg.draft = int(v);
  }
  return validate(cfg);
}

std::string estimator_label(const ImportanceConfig& c) {
  if (c.estimator == ImportanceEstimator::kReceived) {
    return fmt::format("received({})", c.lookahead);
  }
  return std::string(to_string(c.estimator));
}

// The label of a configured setting: the keys the method uses, with their effective values.
std::string setting_label(const PolicyConfig& cfg, const SweepPoint& point) {
  switch (cfg.kind) {
    case PolicyKind::kUhlm:
      return fmt::format("u_th={:g}", cfg.u_th);
    case PolicyKind::kIuhlm: {
      std::string s = fmt::format("u_th={:g},lambda={:g},est={}", cfg.u_th,
                                  cfg.importance.lambda_value(), estimator_label(cfg.importance));
      if (point.count("u_hi")) s += fmt::format(",u_hi={:g}", cfg.u_hi);
      if (point.count("s")) s += fmt::format(",s={}", cfg.importance.sinks);
      return s;
    }
    case PolicyKind::kRand:
      return fmt::format("r={:g}", cfg.rate);
    case PolicyKind::kSpec:
      return fmt::format("k={}", cfg.draft);
    default:
      return "default";
  }
}

int method_rank(std::string_view m) {
  for (size_t i = 0; i < std::size(kMethods); ++i) {
    if (kMethods[i] == m) return int(i);
  }
  return int(std::size(kMethods));
}

double number_or_nan(const json& j, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nan("");
  return it->get<double>();
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--";
  const long t = std::lround(s);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

// Drops a partial last line (an interrupted write) so appending starts on a fresh line.
Status repair_tail(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return ok_status();
  std::ifstream in(path, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (content.empty() || content.back() == '\n') return ok_status();
  const size_t keep = content.rfind('\n') == std::string::npos ? 0 : content.rfind('\n') + 1;
  fs::resize_file(path, keep, ec);
  if (ec) return make_error("{}: cannot drop its partial last line: {}", path, ec.message());
  return ok_status();
}

std::string dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

// config.json: the first run records the fingerprint; later runs must match it.
Status check_fingerprint(const std::string& dir, const json& fingerprint) {
  const std::string path = dir + "/config.json";
  std::error_code ec;
  if (fs::exists(path, ec)) {
    std::ifstream in(path);
    json old = json::parse(in, nullptr, false);
    if (old.is_discarded() || !old.is_object()) {
      return make_error("{}: not a JSON object; delete it or use another --out", path);
    }
    std::vector<std::string> diffs;
    for (const auto& [key, value] : fingerprint.items()) {
      if (!old.contains(key) || old[key] != value) {
        diffs.push_back(fmt::format("{} was {} and is now {}", key,
                                    old.contains(key) ? dump(old[key]) : "unset", dump(value)));
      }
    }
    if (!diffs.empty()) {
      std::string all;
      for (const auto& d : diffs) all += (all.empty() ? "" : "; ") + d;
      return make_error(
          "{} holds results of a different configuration ({}); use another --out, or delete "
          "the directory to start over",
          dir, all);
    }
    return ok_status();
  }
  return write_text(path, dump(fingerprint, 2) + "\n");
}

// prompts.jsonl: the union of the prompts this directory's runs used (id, prompt, reference).
Status write_prompts(const std::string& dir, const std::vector<EvalPrompt>& prompts) {
  const std::string path = dir + "/prompts.jsonl";
  auto old = read_jsonl(path);
  if (!old) return old.error();
  std::vector<json> all = std::move(*old);
  std::set<std::string> seen;
  for (const auto& j : all) seen.insert(j.value("id", ""));
  for (const auto& p : prompts) {
    if (seen.insert(p.id).second) {
      all.push_back({{"id", p.id}, {"prompt", p.text}, {"reference", p.reference}});
    }
  }
  std::string text;
  for (const auto& j : all) text += dump(j) + "\n";
  return write_text(path, text);
}

}  // namespace

// ---------------------------------------------------------------------------------- settings

Result<std::vector<SweepPoint>> parse_sweep(std::string_view text) {
  std::vector<SweepPoint> points;
  if (trim(text).empty()) return std::vector<SweepPoint>{SweepPoint{}};
  for (std::string_view grid : split(text, '|')) {
    std::vector<SweepPoint> product = {SweepPoint{}};
    std::set<std::string> keys;
    for (std::string_view axis : split(grid, ';')) {
      axis = trim(axis);
      if (axis.empty()) continue;
      const size_t eq = axis.find('=');
      if (eq == std::string_view::npos) {
        return make_error(
            "--sweep: '{}' is not key=v1,v2,... (keys: u_th, lambda, est, u_hi, "
            "s, r, k)",
            axis);
      }
      const std::string key(trim(axis.substr(0, eq)));
      if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys)) {
        return make_error("--sweep: unknown key '{}' (keys: u_th, lambda, est, u_hi, s, r, k)",
                          key);
      }
      if (!keys.insert(key).second) return make_error("--sweep: key '{}' given twice", key);
      // est values may hold parentheses but no commas, so ',' splits values everywhere.
      std::vector<std::string> values;
      for (std::string_view v : split(axis.substr(eq + 1), ',')) {
        v = trim(v);
        if (v.empty()) return make_error("--sweep: empty value for '{}'", key);
        if (auto st = check_value(key, std::string(v)); !st) return st.error();
        values.emplace_back(v);
      }
      std::vector<SweepPoint> next;
      for (const auto& p : product) {
        for (const auto& v : values) {
          SweepPoint q = p;
          q[key] = v;
          next.push_back(std::move(q));
        }
      }
      product = std::move(next);
    }
    points.insert(points.end(), product.begin(), product.end());
  }
  return points;
}

Result<std::vector<std::string>> parse_methods(std::string_view csv) {
  std::vector<std::string> out;
  for (std::string_view m : split(csv, ',')) {
    m = trim(m);
    if (m.empty()) continue;
    if (method_rank(m) == int(std::size(kMethods))) {
      return make_error("--methods: unknown method '{}' (slm, llm, hlm, rand, uhlm, iuhlm, spec)",
                        m);
    }
    if (std::find(out.begin(), out.end(), m) != out.end()) {
      return make_error("--methods: '{}' given twice", m);
    }
    out.emplace_back(m);
  }
  if (out.empty()) return make_error("--methods: no method given");
  return out;
}

Result<std::vector<EvalSetting>> expand_settings(const std::vector<std::string>& methods,
                                                 const std::vector<SweepPoint>& sweep,
                                                 const PolicyConfig& base) {
  std::vector<std::string> order = methods;
  const auto rand_it = std::find(order.begin(), order.end(), "rand");
  const auto iuhlm_it = std::find(order.begin(), order.end(), "iuhlm");
  const bool match = rand_it != order.end() && iuhlm_it != order.end();
  if (match && rand_it < iuhlm_it) {
    order.erase(rand_it);
    order.insert(std::find(order.begin(), order.end(), "iuhlm") + 1, "rand");
  }
  const std::vector<SweepPoint> points = sweep.empty() ? std::vector<SweepPoint>{{}} : sweep;

  std::vector<EvalSetting> out;
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& method : order) {
    auto kind = parse_policy(method);
    if (!kind) return kind.error();
    for (const auto& point : points) {
      EvalSetting s;
      s.method = method;
      s.policy = base;
      s.policy.kind = kind->kind;
      const bool explicit_rate = point.count("r") > 0;
      if (s.policy.kind == PolicyKind::kRand && match && !explicit_rate) {
        // Matched to iuhlm at this point: rand takes iuhlm's label and, later, its rate.
        PolicyConfig twin = base;
        twin.kind = PolicyKind::kIuhlm;
        if (auto st = apply_point(twin, point); !st) {
          return make_error("setting {}: {}", setting_label(twin, point), st.error().message);
        }
        s.label = setting_label(twin, point);
        s.match_iuhlm = s.label;
      } else {
        if (auto st = apply_point(s.policy, point); !st) {
          return make_error("method {}: {}", method, st.error().message);
        }
        s.label = setting_label(s.policy, point);
      }
      if (seen.insert({s.method, s.label}).second) out.push_back(std::move(s));
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------ running

// The sampling seed of one (seed, prompt) run: the same for every method on that prompt (so
// methods are compared on common random numbers) but different across prompts, so that one
// prompt's random stream (rand's upload pattern, the draws) does not repeat on every other.
// FNV-1a of the id, mixed with the seed by splitmix64's finaliser: stable across platforms.
uint64_t run_seed(uint64_t seed, const std::string& prompt_id) {
  const uint64_t h = fnv1a(kFnvBasis, prompt_id.data(), prompt_id.size());
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (h | 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string run_key(const std::string& prompt_id, const std::string& method,
                    const std::string& label, uint64_t seed) {
  return fmt::format("{}|{}|{}|{}", prompt_id, method, label, seed);
}

json result_line(const EvalPrompt& prompt, const EvalSetting& setting, uint64_t seed,
                 const RunConfig& config, const RunResult& result) {
  json j = summary_json(result);
  const double n = double(result.tokens.size());
  const Totals& t = result.totals;
  auto per_token = [&](double x) { return n > 0 ? json(x / n) : json(nullptr); };
  j["key"] = run_key(prompt.id, setting.method, setting.label, seed);
  j["id"] = prompt.id;
  j["method"] = setting.method;
  j["setting"] = setting.label;
  j["seed"] = seed;
  j["run_seed"] = config.sampling.seed;
  j["policy"] = to_string(config.policy);
  j["output_ids"] = result.tokens;
  j["acceptance_rate"] =
      result.drafts_sent > 0 ? json(double(result.accepted) / double(result.drafts_sent)) : json();
  j["llm_calls_per_token"] = per_token(double(result.llm_calls));
  j["uplink_bytes_per_token"] = per_token(double((t.ul_bits + 7) / 8));
  j["e_per_token_j"] = per_token(t.e_total_j());
  j["e_device_per_token_j"] = per_token(t.e_device_j);
  j["e_cloud_per_token_j"] = per_token(t.e_cloud_j);
  j["e_total_j"] = t.e_total_j();
  j["wall_tokens_per_s"] = result.wall_s > 0 ? n / result.wall_s : 0.0;
  return j;
}

std::string progress_bar(const EvalProgress& p, int width) {
  const double frac = p.total > 0 ? double(p.done) / double(p.total) : 1.0;
  const int fill = std::clamp(int(std::lround(frac * width)), 0, width);
  std::string bar = "[" + std::string(fill, '#') + std::string(width - fill, '.') + "]";
  std::string s = fmt::format("{} {}/{} {:3.0f}% {} ETA {}", bar, p.done, p.total, 100.0 * frac,
                              format_duration(p.elapsed_s),
                              p.ran > 0 || p.done == p.total ? format_duration(p.eta_s) : "--");
  if (p.skipped > 0) s += fmt::format(" ({} resumed)", p.skipped);
  if (p.setting && p.prompt) {
    s += fmt::format(" | {} {} | {}", p.setting->method, p.setting->label, p.prompt->id);
  }
  return s;
}

Result<EvalStats> run_eval(std::shared_ptr<const Model> slm, std::shared_ptr<const Model> llm,
                           ThreadPool& pool, const EvalConfig& config,
                           const std::vector<EvalPrompt>& prompts,
                           const std::function<void(const EvalProgress&)>& on_progress) {
  if (prompts.empty()) return make_error("no prompts to evaluate");
  if (config.settings.empty()) return make_error("no method settings to evaluate");
  if (config.seeds.empty()) return make_error("no seeds given");
  std::set<std::string> ids;
  for (const auto& p : prompts) {
    if (!ids.insert(p.id).second) {
      return make_error("prompt id '{}' appears twice; ids must be unique", p.id);
    }
  }
  std::error_code ec;
  fs::create_directories(config.out_dir, ec);
  if (ec) return make_error("--out {}: cannot create: {}", config.out_dir, ec.message());
  if (auto st = check_fingerprint(config.out_dir, config.fingerprint); !st) return st.error();
  if (auto st = write_prompts(config.out_dir, prompts); !st) return st.error();

  const std::string results_path = config.out_dir + "/results.jsonl";
  if (auto st = repair_tail(results_path); !st) return st.error();
  auto existing = read_jsonl(results_path);
  if (!existing) return existing.error();
  std::set<std::string> done;
  std::map<std::string, std::vector<double>> iuhlm_rates;  // label -> upload rates
  for (const auto& j : *existing) {
    done.insert(j.value("key", ""));
    if (j.value("method", "") == "iuhlm") {
      iuhlm_rates[j.value("setting", "")].push_back(number_or_nan(j, "upload_rate"));
    }
  }

  EvalStats stats;
  stats.total = config.settings.size() * config.seeds.size() * prompts.size();
  size_t to_run = 0;
  for (const auto& s : config.settings) {
    for (uint64_t seed : config.seeds) {
      for (const auto& p : prompts)
        to_run += done.count(run_key(p.id, s.method, s.label, seed)) ? 0 : 1;
    }
  }

  std::ofstream out(results_path, std::ios::app | std::ios::binary);
  if (!out) return make_error("{}: cannot append", results_path);
  CloudOptions cloud_options;
  cloud_options.max_sessions = 2;
  cloud_options.max_context = config.base.n_ctx;
  CloudVerifier cloud(llm, pool, cloud_options);

  const auto t0 = Clock::now();
  double run_seconds = 0;
  EvalProgress progress;
  progress.total = stats.total;
  auto report = [&](const EvalSetting* s, const EvalPrompt* p) {
    if (!on_progress) return;
    progress.done = stats.skipped + stats.ran;
    progress.skipped = stats.skipped;
    progress.ran = stats.ran;
    progress.elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
    progress.eta_s = stats.ran > 0 ? run_seconds / double(stats.ran) * double(to_run - stats.ran)
                                   : (to_run == 0 ? 0.0 : -1.0);
    progress.setting = s;
    progress.prompt = p;
    on_progress(progress);
  };

  // Two phases: every setting except matched rand, interleaved prompt by prompt (so that a
  // drift in machine load touches every method alike); then matched rand, whose rate needs
  // the finished iuhlm runs.
  auto run_one = [&](const EvalSetting& setting, const EvalPrompt& prompt,
                     uint64_t seed) -> Status {
    const std::string key = run_key(prompt.id, setting.method, setting.label, seed);
    if (done.count(key)) {
      ++stats.skipped;
      return ok_status();
    }
    RunConfig cfg = config.base;
    cfg.policy = setting.policy;
    cfg.keep_trace = false;
    cfg.sampling.seed = run_seed(seed, prompt.id);
    std::string rate_source;
    if (setting.policy.kind == PolicyKind::kRand) {
      rate_source = "given";
      if (!setting.match_iuhlm.empty()) {
        const MeanCi m = mean_ci95(iuhlm_rates[setting.match_iuhlm]);
        if (m.n > 0 && std::isfinite(m.mean)) {
          cfg.policy.rate = m.mean;
          rate_source = fmt::format("iuhlm {} (mean over {} runs)", setting.match_iuhlm, m.n);
        } else {
          rate_source = "flag (no iuhlm runs at this setting)";
        }
      }
    }
    report(&setting, &prompt);
    const auto t_run = Clock::now();
    Device device(slm, pool, cfg);
    auto r = device.generate(prompt.ids, &cloud);
    if (device.session() != 0) (void)cloud.close(device.session());
    if (!r) {
      return make_error("{} {} on prompt {} (seed {}): {}", setting.method, setting.label,
                        prompt.id, seed, r.error().message);
    }
    json line = result_line(prompt, setting, seed, cfg, *r);
    if (!rate_source.empty()) {
      line["rate"] = cfg.policy.rate;
      line["rate_source"] = rate_source;
    }
    out << dump(line) << '\n';
    out.flush();
    if (!out) return make_error("{}: write failed", results_path);
    done.insert(key);
    if (setting.method == "iuhlm") {
      iuhlm_rates[setting.label].push_back(line["upload_rate"].get<double>());
    }
    run_seconds += std::chrono::duration<double>(Clock::now() - t_run).count();
    ++stats.ran;
    return ok_status();
  };
  for (int phase = 0; phase < 2; ++phase) {
    for (uint64_t seed : config.seeds) {
      for (const auto& prompt : prompts) {
        for (const auto& setting : config.settings) {
          if ((phase == 1) != !setting.match_iuhlm.empty()) continue;
          if (auto st = run_one(setting, prompt, seed); !st) return st.error();
        }
      }
    }
  }
  report(nullptr, nullptr);
  return stats;
}

// ---------------------------------------------------------------------------------- summaries

double student_t975(int df) {
  static constexpr double kTable[] = {
      12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
      2.2010,  2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
      2.0796,  2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423};
  if (df < 1) return std::nan("");
  if (df <= 30) return kTable[df - 1];
  // Cornish-Fisher expansion around the normal quantile: error < 1e-4 for df > 30.
  const double z = 1.959963984540054, d = double(df);
  const double z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z;
  return z + (z3 + z) / (4 * d) + (5 * z5 + 16 * z3 + 3 * z) / (96 * d * d) +
         (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * d * d * d);
}

MeanCi mean_ci95(const std::vector<double>& values) {
  MeanCi m;
  double sum = 0;
  for (double v : values) {
    if (std::isfinite(v)) {
      sum += v;
      ++m.n;
    }
  }
  if (m.n == 0) {
    m.mean = std::nan("");
    return m;
  }
  m.mean = sum / double(m.n);
  if (m.n < 2) return m;
  double ss = 0;
  for (double v : values) {
    if (std::isfinite(v)) ss += (v - m.mean) * (v - m.mean);
  }
  m.sd = std::sqrt(ss / double(m.n - 1));
  m.ci95 = student_t975(int(m.n) - 1) * m.sd / std::sqrt(double(m.n));
  return m;
}

const std::vector<std::string>& summary_metrics() {
  static const std::vector<std::string> kMetrics = {"bertscore_f1_llm",
                                                    "bertscore_f1_ref",
                                                    "rougeL_f1_llm",
                                                    "rougeL_f1_ref",
                                                    "n_tokens",
                                                    "upload_rate",
                                                    "tsr",
                                                    "acceptance_rate",
                                                    "llm_calls_per_token",
                                                    "uplink_bytes_per_token",
                                                    "e_per_token_j",
                                                    "e_device_per_token_j",
                                                    "e_cloud_per_token_j",
                                                    "energy_saving_vs_hlm",
                                                    "e_total_j",
                                                    "tokens_per_s",
                                                    "latency_s",
                                                    "filter_overhead",
                                                    "wall_s",
                                                    "wall_tokens_per_s"};
  return kMetrics;
}

Result<std::vector<json>> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::error_code ec;
  if (!fs::exists(path, ec)) return out;
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("{}: cannot read", path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t start = 0;
  for (int n = 1; start < content.size(); ++n) {
    size_t end = content.find('\n', start);
    const bool complete = end != std::string::npos;
    if (!complete) end = content.size();
    std::string_view line(content.data() + start, end - start);
    start = end + 1;
    if (trim(line).empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      if (!complete) break;  // a partial last line from an interrupted write
      return make_error("{}:{}: not a JSON object; fix or delete that line", path, n);
    }
    out.push_back(std::move(j));
  }
  return out;
}

Result<json> write_summary(const std::string& out_dir) {
  auto lines = read_jsonl(out_dir + "/results.jsonl");
  if (!lines) return lines.error();
  if (lines->empty()) return make_error("{}/results.jsonl: no results to summarise", out_dir);
  auto scores = read_jsonl(out_dir + "/scores.jsonl");
  if (!scores) return scores.error();
  std::map<std::string, json> score_of;
  for (auto& s : *scores) {
    const std::string key = s.value("key", "");
    score_of[key] = std::move(s);
  }

  // E per token of the hlm run of each (prompt, seed): the baseline of the energy saving.
  std::map<std::pair<std::string, uint64_t>, double> hlm_energy;
  for (const auto& j : *lines) {
    if (j.value("method", "") == "hlm") {
      hlm_energy[{j.value("id", ""), j.value("seed", uint64_t(0))}] =
          number_or_nan(j, "e_per_token_j");
    }
  }

  struct Group {
    std::string method, label, policy;
    std::set<uint64_t> seeds;
    std::string rate_source;
    size_t runs = 0;
    std::vector<std::string> prompt_order;
    std::map<std::string, std::map<std::string, std::vector<double>>> by_prompt;  // id -> metric
  };
  std::vector<Group> groups;
  std::map<std::pair<std::string, std::string>, size_t> index;
  const auto& metrics = summary_metrics();
  for (const auto& j : *lines) {
    const std::string method = j.value("method", ""), label = j.value("setting", "");
    auto [it, fresh] = index.try_emplace({method, label}, groups.size());
    if (fresh) {
      groups.emplace_back();
      groups.back().method = method;
      groups.back().label = label;
      groups.back().policy = j.value("policy", "");
    }
    Group& g = groups[it->second];
    const std::string id = j.value("id", "");
    const uint64_t seed = j.value("seed", uint64_t(0));
    g.seeds.insert(seed);
    ++g.runs;
    if (j.contains("rate_source")) g.rate_source = j["rate_source"].get<std::string>();
    if (!g.by_prompt.count(id)) g.prompt_order.push_back(id);
    json merged = j;
    if (auto s = score_of.find(j.value("key", "")); s != score_of.end()) merged.update(s->second);
    if (auto h = hlm_energy.find({id, seed}); h != hlm_energy.end() && h->second > 0) {
      merged["energy_saving_vs_hlm"] = 1.0 - number_or_nan(j, "e_per_token_j") / h->second;
    }
    auto& per = g.by_prompt[id];
    for (const auto& m : metrics) per[m].push_back(number_or_nan(merged, m));
  }
  std::stable_sort(groups.begin(), groups.end(), [](const Group& a, const Group& b) {
    return method_rank(a.method) < method_rank(b.method);
  });

  json summary = json::object();
  json rows = json::array();
  std::string csv = "method,setting,n_prompts,n_runs";
  for (const auto& m : metrics) csv += fmt::format(",{0},{0}_ci95", m);
  csv += "\n";
  auto csv_num = [](double v) {
    return std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string();
  };
  for (const auto& g : groups) {
    json row = {{"method", g.method}, {"setting", g.label},
                {"policy", g.policy}, {"n_prompts", g.by_prompt.size()},
                {"n_runs", g.runs},   {"seeds", g.seeds}};
    if (!g.rate_source.empty()) row["rate_source"] = g.rate_source;
    json ms = json::object();
    csv += fmt::format("{},\"{}\",{},{}", g.method, g.label, g.by_prompt.size(), g.runs);
    for (const auto& m : metrics) {
      std::vector<double> per_prompt;
      for (const auto& id : g.prompt_order) {
        per_prompt.push_back(mean_ci95(g.by_prompt.at(id).at(m)).mean);
      }
      const MeanCi c = mean_ci95(per_prompt);
      if (c.n > 0) ms[m] = {{"mean", c.mean}, {"ci95", c.ci95}, {"n", c.n}};
      csv += "," + (c.n > 0 ? csv_num(c.mean) : "") + "," + (c.n > 1 ? csv_num(c.ci95) : "");
    }
    csv += "\n";
    row["metrics"] = std::move(ms);
    rows.push_back(std::move(row));
  }
  summary["groups"] = std::move(rows);
  summary["ci"] =
      "mean over prompts (each prompt first averaged over seeds) ± half-width of the "
      "two-sided 95% Student-t interval";
  summary["energy_saving"] = "1 - E/E_hlm on total energy per token, paired per prompt and seed";
  {
    std::ifstream in(out_dir + "/config.json");
    json cfg = in ? json::parse(in, nullptr, false) : json();
    if (!cfg.is_discarded()) summary["config"] = cfg;
  }
  {
    std::ifstream in(out_dir + "/scores_meta.json");
    json meta = in ? json::parse(in, nullptr, false) : json();
    if (!meta.is_discarded() && !meta.is_null()) summary["scoring"] = meta;
  }
  if (auto st = write_text(out_dir + "/summary.json", dump(summary, 2) + "\n"); !st) {
    return st.error();
  }
  if (auto st = write_text(out_dir + "/summary.csv", csv); !st) return st.error();
  return summary;
}

Status write_text(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    if (!out) return make_error("{}: cannot write", tmp);
    out << text;
    if (!out) return make_error("{}: write failed", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return make_error("{}: cannot replace: {}", path, ec.message());
  return ok_status();
}

std::vector<std::string> source_roots() {
  std::vector<std::string> roots;
  if (const char* env = std::getenv("HLM_SOURCE_DIR"); env && *env) roots.emplace_back(env);
#ifdef HLM_SOURCE_ROOT
  roots.emplace_back(HLM_SOURCE_ROOT);
#endif
  roots.emplace_back(".");
  return roots;
}

std::string find_source_file(const std::string& relative) {
  std::error_code ec;
  for (const auto& root : source_roots()) {
    const fs::path p = fs::path(root) / relative;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return {};
}

}  // namespace hlm
