// Cost profiles: model shapes, JSON reading and writing, and the choice behind --device-cost and
// --cloud-cost.
#include "eval/cost_profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/model.h"
#include "eval/harness.h"
#include "eval/json_fields.h"
#include "eval/profile.h"
#include "models/sha256.h"

namespace hlm {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

// The coefficients of a line in file order, with their JSON names.
template <class Line, class F>
void for_each_coefficient(Line& line, F&& f) {
  f("intercept_s", line.intercept_s);
  f("per_unit_s", line.per_unit_s);
  f("per_context_s", line.per_context_s);
  f("per_unit_context_s", line.per_unit_context_s);
  f("per_batch_s", line.per_batch_s);
}

ojson line_json(const CostLine& line, const char* units) {
  ojson j;
  j["units"] = units;
  for_each_coefficient(line, [&](const char* key, double v) { j[key] = v; });
  j["r2"] = line.r2;
  j["n_samples"] = line.n_samples;
  return j;
}

Result<CostLine> parse_line(const FieldReader& r, const json& parent, const char* key) {
  auto o = r.object(parent, "", key);
  if (!o) return o.error();
  CostLine line;
  Status st = ok_status();
  for_each_coefficient(line, [&](const char* name, double& out) {
    if (!st) return;
    auto x = r.number(**o, key, name);
    if (!x)
      st = x.error();
    else
      out = *x;
  });
  if (!st) return st.error();
  auto r2 = r.number(**o, key, "r2", -1e300, 1);
  if (!r2) return r2.error();
  line.r2 = *r2;
  auto n = r.number(**o, key, "n_samples", 0);
  if (!n) return n.error();
  line.n_samples = int64_t(*n);
  return line;
}

Result<ProfilePower> parse_power(const FieldReader& r, const json& j, CostRole role,
                                 const std::string& source) {
  auto o = r.object(j, "", "power");
  if (!o) {
    return make_error(
        "{} (a profile gives the power its times are multiplied by: {})", o.error().message,
        role == CostRole::kDevice ? "compute_w, idle_w and source" : "compute_w and source");
  }
  ProfilePower p;
  auto compute = r.number(**o, "power", "compute_w", 1e-6, 1e6);
  if (!compute) return compute.error();
  p.compute_w = *compute;
  if (role == CostRole::kDevice) {
    auto idle = r.number(**o, "power", "idle_w", 0, 1e6);
    if (!idle) return idle.error();
    p.idle_w = *idle;
  } else if (r.has(**o, "idle_w")) {
    return make_error(
        "{}: field 'power.idle_w' is for device profiles (the device waits; the cloud's idle "
        "time is not modelled): remove it",
        source);
  }
  auto src = r.string(**o, "power", "source");
  if (!src) return src.error();
  if (src->empty()) {
    return make_error(
        "{}: field 'power.source' is empty: say where the powers come from (a "
        "datasheet, or the assumption and its reason)",
        source);
  }
  p.source = *src;
  return p;
}

constexpr const char* kForwardUnits =
    "n = positions evaluated in one forward, context = positions already cached, batch = "
    "sequences in the forward";

}  // namespace

std::string ModelShape::describe() const {
  return fmt::format("{}, {} layers, n_embd {}, n_vocab {}, {:.1f}M parameters {}", arch, n_layer,
                     n_embd, n_vocab, double(params) / 1e6, weight_type);
}

ModelShape model_shape(const Model& m) {
  const ModelConfig& c = m.config();
  ModelShape s{c.arch, c.n_layer, c.n_embd, c.n_vocab, 0, ""};
  std::map<std::string, int64_t> by_type;
  for (const auto& t : m.gguf().tensors()) {
    s.params += t.n_elements();
    by_type[std::string(info(t.type).name)] += t.n_elements();
  }
  int64_t most = -1;
  for (const auto& [type, n] : by_type) {
    if (n > most) {
      most = n;
      s.weight_type = type;
    }
  }
  return s;
}

const char* to_string(CostRole r) { return r == CostRole::kDevice ? "device" : "cloud"; }

ProfilePower default_power(CostRole role) {
  if (role == CostRole::kDevice) {
    return {5.0, 0.5,
            "assumption: SPEC §7's device powers, P_comp 5 W (a smartphone SoC under sustained "
            "load) and P_idle 0.5 W (waiting for the cloud), as every channel preset uses; the "
            "times are this CPU's, the powers the phone's they stand in for"};
  }
  return {300.0, std::nullopt,
          "assumption: SPEC §7's P_cloud 300 W (a datacenter accelerator while it verifies), as "
          "every channel preset uses; the times are this CPU's, which stands in for the cloud's "
          "accelerator, not its share of the CPU package's power"};
}

std::string cost_profile_to_json(const CostProfile& p) {
  ojson j;
  j["format"] = kCostProfileFormat;
  j["name"] = p.name;
  j["role"] = to_string(p.role);
  j["source"] = p.source;
  j["model"] = {{"file", p.model_file},
                {"arch", p.model.arch},
                {"n_layer", p.model.n_layer},
                {"n_embd", p.model.n_embd},
                {"n_vocab", p.model.n_vocab},
                {"params", p.model.params},
                {"weight_type", p.model.weight_type}};
  j["hardware"] = {{"name", p.hardware}, {"threads", p.threads}};
  j["method"] = p.method;
  j["command"] = p.command;
  j["hlm_version"] = p.hlm_version;
  j["power"] = {{"compute_w", p.power.compute_w}};
  if (p.power.idle_w) j["power"]["idle_w"] = *p.power.idle_w;
  j["power"]["source"] = p.power.source;
  j["forward"] = line_json(p.forward, kForwardUnits);
  if (p.forward_capture) {
    j["forward_capture"] = line_json(*p.forward_capture, "as forward, with attention capture");
  }
  if (p.uncertainty) j["uncertainty"] = line_json(*p.uncertainty, "n = K samples drawn");
  if (p.importance) j["importance"] = line_json(*p.importance, "context = positions attended");
  return j.dump(2) + "\n";
}

Result<CostProfile> parse_cost_profile(const std::string& text, const std::string& source) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error("{}: not valid JSON (expected a cost profile)", source);
  if (!j.is_object()) return make_error("{}: expected a JSON object (a cost profile)", source);
  const FieldReader r(source);
  CostProfile p;
  auto format = r.string(j, "", "format");
  if (!format) return format.error();
  if (*format != kCostProfileFormat) {
    return make_error("{}: field 'format' is '{}', expected '{}'", source, *format,
                      kCostProfileFormat);
  }
  for (auto [key, out] : {std::pair{"name", &p.name},
                          {"source", &p.source},
                          {"method", &p.method},
                          {"command", &p.command},
                          {"hlm_version", &p.hlm_version}}) {
    auto s = r.string(j, "", key);
    if (!s) return s.error();
    *out = *s;
  }
  auto role = r.string(j, "", "role");
  if (!role) return role.error();
  if (*role == "device") {
    p.role = CostRole::kDevice;
  } else if (*role == "cloud") {
    p.role = CostRole::kCloud;
  } else {
    return make_error("{}: field 'role' is '{}', expected 'device' or 'cloud'", source, *role);
  }
  auto model = r.object(j, "", "model");
  if (!model) return model.error();
  for (auto [key, out] : {std::pair{"file", &p.model_file},
                          {"arch", &p.model.arch},
                          {"weight_type", &p.model.weight_type}}) {
    auto s = r.string(**model, "model", key);
    if (!s) return s.error();
    *out = *s;
  }
  for (auto [key, out] : {std::pair{"n_layer", &p.model.n_layer},
                          {"n_embd", &p.model.n_embd},
                          {"n_vocab", &p.model.n_vocab}}) {
    auto x = r.number(**model, "model", key, 1, 1e9);
    if (!x) return x.error();
    *out = int(*x);
  }
  auto params = r.number(**model, "model", "params", 1, 1e15);
  if (!params) return params.error();
  p.model.params = int64_t(*params);
  auto hw = r.object(j, "", "hardware");
  if (!hw) return hw.error();
  auto hw_name = r.string(**hw, "hardware", "name");
  if (!hw_name) return hw_name.error();
  p.hardware = *hw_name;
  auto threads = r.number(**hw, "hardware", "threads", 0, 1 << 20);
  if (!threads) return threads.error();
  p.threads = int(*threads);
  auto power = parse_power(r, j, p.role, source);
  if (!power) return power.error();
  p.power = *power;
  auto forward = parse_line(r, j, "forward");
  if (!forward) return forward.error();
  p.forward = *forward;
  for (auto [key, out] : {std::pair{"forward_capture", &p.forward_capture},
                          {"uncertainty", &p.uncertainty},
                          {"importance", &p.importance}}) {
    const bool required = p.role == CostRole::kDevice && std::string_view(key) != "forward_capture";
    if (!required && !r.has(j, key)) continue;
    auto line = parse_line(r, j, key);
    if (!line) {
      return required ? make_error("{} (a device profile models the filter's time as well)",
                                   line.error().message)
                      : line.error();
    }
    *out = *line;
  }
  return p;
}

Result<CostProfile> load_cost_profile(const std::string& path) {
  auto text = read_text_file(path, "the cost profile");
  if (!text) return text.error();
  return parse_cost_profile(*text, path);
}

Status save_cost_profile(const CostProfile& p, const std::string& path) {
  return save_text_file(path, cost_profile_to_json(p));
}

std::vector<std::string> cost_dirs(CostRole role) {
  std::vector<std::string> dirs = search_dirs("HLM_COSTS_DIR", "costs");
  for (auto& d : dirs) d = (fs::path(d) / to_string(role)).string();
  return dirs;
}

Result<CostChoice> find_cost_profile(const std::string& setting, CostRole role,
                                     const std::optional<ModelShape>& shape) {
  const std::string flag = role == CostRole::kDevice ? "--device-cost" : "--cloud-cost";
  CostChoice c;
  if (setting == "measured" || (setting == "auto" && !shape)) return c;
  const std::vector<std::string> dirs = cost_dirs(role);
  std::string searched;
  for (const auto& d : dirs) searched += fmt::format("{}{}", searched.empty() ? "" : ", ", d);
  const auto take = [&](std::string path, CostProfile p) -> Result<CostChoice> {
    if (p.role != role) {
      return make_error("{} {}: {} is a {} cost profile, not a {} one", flag, setting, path,
                        to_string(p.role), to_string(role));
    }
    if (setting != "auto" && shape && p.model != *shape) {
      c.note = fmt::format("hlm: {} {}: modelling the {} as {} ({}) while the loaded model is {}",
                           flag, setting, to_string(role), p.model_file, p.model.describe(),
                           shape->describe());
    }
    c.path = std::move(path);
    c.digest = Sha256::of(cost_profile_to_json(p)).substr(0, 12);
    c.profile = std::move(p);
    return c;
  };
  if (setting == "auto") {
    for (const auto& dir : dirs) {
      for (const auto& f : json_files_in(dir)) {
        auto p = load_cost_profile(f);
        if (!p) return p.error();
        if (p->role == role && p->model == *shape) return take(f, std::move(*p));
      }
    }
    c.note = fmt::format(
        "hlm: no {} cost profile matches the {} model ({}; searched {}): its compute times are "
        "measured on this machine (`hlm bench engine --save-cost` makes a profile)",
        to_string(role), to_string(role), shape->describe(), searched);
    return c;
  }
  const bool is_file =
      setting.find('/') != std::string::npos || (setting.size() > 5 && setting.ends_with(".json"));
  if (is_file) {
    auto p = load_cost_profile(setting);
    if (!p) return make_error("{}: {}", flag, p.error().message);
    return take(setting, std::move(*p));
  }
  std::error_code ec;
  for (const auto& dir : dirs) {
    const fs::path f = fs::path(dir) / (setting + ".json");
    if (!fs::is_regular_file(f, ec)) continue;
    auto p = load_cost_profile(f.string());
    if (!p) return make_error("{}: {}", flag, p.error().message);
    return take(f.string(), std::move(*p));
  }
  return make_error(
      "{} {}: no such {} cost profile (looked for {}.json in {}); give measured, auto, a profile "
      "name or a file",
      flag, setting, to_string(role), setting, searched);
}

CostConfig cost_config(const CostChoice& device, const CostChoice& cloud) {
  CostConfig c;
  if (device.profile) {
    const CostProfile& p = *device.profile;
    c.device = DeviceCost{p.forward, p.forward_capture, p.uncertainty.value_or(CostLine{}),
                          p.importance.value_or(CostLine{})};
    c.device_name = p.name;
    c.device_digest = device.digest;
    c.powers.p_comp_w = p.power.compute_w;
    c.powers.p_idle_w = p.power.idle_w;
  }
  if (cloud.profile) {
    c.cloud = cloud.profile->forward;
    c.cloud_name = cloud.profile->name;
    c.cloud_digest = cloud.digest;
    c.powers.p_cloud_w = cloud.profile->power.compute_w;
  }
  return c;
}

}  // namespace hlm
