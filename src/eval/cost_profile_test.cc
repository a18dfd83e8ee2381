// Cost profiles: the model shape of a tiny model, the JSON round trip, errors that name the file
// and field, what --device-cost / --cloud-cost pick (auto by shape, measured, a name, a file),
// and the profiles' powers in the energy of a real run.
#include "eval/cost_profile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cloud/cloud_verifier.h"
#include "device/device.h"
#include "engine/model.h"
#include "engine/model_writer.h"
#include "models/testing.h"

namespace hlm {
namespace {

using testing::contains;
using testing::ScopedEnv;
using testing::ScopedTempDir;

CostProfile device_profile(const ModelShape& shape) {
  CostProfile p;
  p.name = "tiny-device";
  p.role = CostRole::kDevice;
  p.model = shape;
  p.model_file = "tiny.gguf";
  p.hardware = "test CPU";
  p.threads = 2;
  p.method = "by hand";
  p.command = "hlm bench engine --save-cost tiny-device.json";
  p.hlm_version = "test";
  p.power = {4.0, 0.25, "test figures"};
  p.forward = {1e-3, 2e-4, 1e-7, 3e-9, 0, 0.99, 18};
  p.forward_capture = CostLine{1.5e-3, 2.5e-4, 0, 0, 0, 0.98, 18};
  p.uncertainty = CostLine{1e-5, 2e-6, 0, 0, 0, 0.97, 4};
  p.importance = CostLine{2e-6, 0, 1e-8, 0, 0, 0.9, 3};
  return p;
}

ModelShape tiny_shape() { return {"llama", 2, 64, 300, 123456, "Q8_0"}; }

void write(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

TEST(CostProfile, ShapeOfAModel) {
  ScopedTempDir dir;
  TinyModelSpec spec;
  ASSERT_TRUE(write_tiny_model(dir / "a.gguf", spec).ok());
  auto m = Model::load(dir / "a.gguf");
  ASSERT_TRUE(m.ok()) << m.error().message;
  const ModelShape s = model_shape(**m);
  EXPECT_EQ(s.arch, "llama");
  EXPECT_EQ(s.n_layer, 2);
  EXPECT_EQ(s.n_embd, 64);
  EXPECT_EQ(s.weight_type, "Q8_0");
  int64_t params = 0;
  for (const auto& t : (*m)->gguf().tensors()) params += t.n_elements();
  EXPECT_EQ(s.params, params);
  TinyModelSpec deeper = spec;
  deeper.n_layer = 3;
  ASSERT_TRUE(write_tiny_model(dir / "b.gguf", deeper).ok());
  EXPECT_NE(model_shape(**Model::load(dir / "b.gguf")), s);
}

TEST(CostProfile, RoundTrip) {
  ScopedTempDir dir;
  const CostProfile p = device_profile(tiny_shape());
  ASSERT_TRUE(save_cost_profile(p, dir / "sub/p.json").ok());
  auto q = load_cost_profile(dir / "sub/p.json");
  ASSERT_TRUE(q.ok()) << q.error().message;
  EXPECT_EQ(cost_profile_to_json(*q), cost_profile_to_json(p));
  EXPECT_EQ(q->model, p.model);
  EXPECT_EQ(q->forward.per_unit_context_s, 3e-9);
  EXPECT_EQ(q->forward.n_samples, 18);
  ASSERT_TRUE(q->importance);
  EXPECT_EQ(q->importance->per_context_s, 1e-8);

  CostProfile cloud = p;  // a cloud profile needs only the forward
  cloud.role = CostRole::kCloud;
  cloud.forward_capture = cloud.uncertainty = cloud.importance = std::nullopt;
  cloud.power = {400.0, std::nullopt, "a datasheet"};
  auto c = parse_cost_profile(cost_profile_to_json(cloud), "cloud.json");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->role, CostRole::kCloud);
  EXPECT_FALSE(c->uncertainty);
  EXPECT_EQ(c->power, cloud.power);
  EXPECT_EQ(q->power, p.power);
}

TEST(CostProfile, ErrorsNameTheFileAndField) {
  const std::string good = cost_profile_to_json(device_profile(tiny_shape()));
  const auto error_of = [](const std::string& text) {
    auto r = parse_cost_profile(text, "x.json");
    return r.ok() ? std::string("(parsed)") : r.error().message;
  };
  EXPECT_TRUE(contains(error_of("{"), "x.json: not valid JSON"));
  auto j = nlohmann::json::parse(good);
  j["forward"].erase("per_unit_s");
  EXPECT_EQ(error_of(j.dump()), "x.json: field 'forward.per_unit_s' is missing");
  j = nlohmann::json::parse(good);
  j["model"]["n_layer"] = "eight";
  EXPECT_EQ(error_of(j.dump()), "x.json: field 'model.n_layer' must be a number, got string");
  j = nlohmann::json::parse(good);
  j["role"] = "edge";
  EXPECT_TRUE(contains(error_of(j.dump()), "field 'role' is 'edge', expected 'device' or 'cloud'"));
  j = nlohmann::json::parse(good);
  j["format"] = "hlm-cost-profile/0";
  EXPECT_TRUE(contains(error_of(j.dump()), "field 'format'"));
  j = nlohmann::json::parse(good);
  j.erase("uncertainty");
  const std::string e = error_of(j.dump());
  EXPECT_TRUE(contains(e, "field 'uncertainty' is missing")) << e;
  EXPECT_TRUE(contains(e, "filter")) << e;
  // The power section: required, with positive powers, a source, and idle power on devices only.
  j = nlohmann::json::parse(good);
  j.erase("power");
  EXPECT_TRUE(contains(error_of(j.dump()), "x.json: field 'power' is missing"))
      << error_of(j.dump());
  EXPECT_TRUE(contains(error_of(j.dump()), "compute_w, idle_w and source"));
  j = nlohmann::json::parse(good);
  j["power"]["compute_w"] = -5;
  EXPECT_TRUE(contains(error_of(j.dump()), "x.json: field 'power.compute_w' is -5, expected"));
  j = nlohmann::json::parse(good);
  j["power"]["compute_w"] = "5 W";
  EXPECT_EQ(error_of(j.dump()), "x.json: field 'power.compute_w' must be a number, got string");
  j = nlohmann::json::parse(good);
  j["power"].erase("idle_w");
  EXPECT_EQ(error_of(j.dump()), "x.json: field 'power.idle_w' is missing");
  j = nlohmann::json::parse(good);
  j["power"].erase("source");
  EXPECT_EQ(error_of(j.dump()), "x.json: field 'power.source' is missing");
  j["power"]["source"] = "";
  EXPECT_TRUE(contains(error_of(j.dump()), "x.json: field 'power.source' is empty"));
  j = nlohmann::json::parse(good);
  j["role"] = "cloud";
  EXPECT_TRUE(contains(error_of(j.dump()), "x.json: field 'power.idle_w' is for device profiles"));
  auto missing = load_cost_profile("/nonexistent/p.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.error().message, "/nonexistent/p.json: cannot read"));
}

TEST(CostProfile, AutoPicksTheProfileOfTheModelsShape) {
  ScopedTempDir dir;
  ScopedEnv env("HLM_COSTS_DIR", dir.path());
  ModelShape shape = tiny_shape();
  CostProfile dev = device_profile(shape);
  ASSERT_TRUE(save_cost_profile(dev, dir / "device/tiny-device.json").ok());
  CostProfile other = dev;
  other.name = "other";
  other.model.n_layer = 9;
  ASSERT_TRUE(save_cost_profile(other, dir / "device/a-other.json").ok());

  auto c = find_cost_profile("auto", CostRole::kDevice, shape);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->name(), "tiny-device");
  EXPECT_EQ(c->path, dir / "device/tiny-device.json");
  EXPECT_EQ(c->note, "");
  EXPECT_EQ(c->digest.size(), 12u);

  // No cloud profile has this shape: measured, with a note that says where it looked.
  auto cloud = find_cost_profile("auto", CostRole::kCloud, shape);
  ASSERT_TRUE(cloud.ok()) << cloud.error().message;
  EXPECT_EQ(cloud->name(), "measured");
  EXPECT_TRUE(contains(cloud->note, "no cloud cost profile matches")) << cloud->note;
  EXPECT_TRUE(contains(cloud->note, dir / "cloud")) << cloud->note;
  // A remote cloud (its model unseen): measured, silently.
  auto remote = find_cost_profile("auto", CostRole::kCloud, std::nullopt);
  ASSERT_TRUE(remote.ok());
  EXPECT_EQ(remote->name(), "measured");
  EXPECT_EQ(remote->note, "");
  // measured on request.
  EXPECT_EQ(find_cost_profile("measured", CostRole::kDevice, shape)->name(), "measured");

  const CostConfig cfg = cost_config(*c, *cloud);
  ASSERT_TRUE(cfg.device);
  EXPECT_FALSE(cfg.cloud);
  EXPECT_EQ(cfg.device_name, "tiny-device");
  EXPECT_EQ(cfg.cloud_name, "measured");
  EXPECT_EQ(cfg.device_digest, c->digest);
  EXPECT_EQ(cfg.cloud_digest, "");
  // The same name with another line: another digest.
  dev.forward.per_unit_s *= 2;
  ASSERT_TRUE(save_cost_profile(dev, dir / "device/tiny-device.json").ok());
  EXPECT_NE(find_cost_profile("auto", CostRole::kDevice, shape)->digest, c->digest);
  EXPECT_DOUBLE_EQ(cfg.device->slm_s(2, 10, true), 1.5e-3 + 5e-4);
}

TEST(CostProfile, NamesAndFilesAreTakenWhateverTheirModel) {
  ScopedTempDir dir;
  ScopedEnv env("HLM_COSTS_DIR", dir.path());
  CostProfile big = device_profile({"llama", 32, 4096, 32000, 6738415616, "F16"});
  big.name = "big";
  big.role = CostRole::kCloud;
  big.power = default_power(CostRole::kCloud);
  ASSERT_TRUE(save_cost_profile(big, dir / "cloud/big.json").ok());

  auto by_name = find_cost_profile("big", CostRole::kCloud, tiny_shape());
  ASSERT_TRUE(by_name.ok()) << by_name.error().message;
  EXPECT_EQ(by_name->name(), "big");
  EXPECT_TRUE(contains(by_name->note, "while the loaded model is")) << by_name->note;
  auto by_file = find_cost_profile(dir / "cloud/big.json", CostRole::kCloud, tiny_shape());
  ASSERT_TRUE(by_file.ok()) << by_file.error().message;
  EXPECT_EQ(by_file->path, dir / "cloud/big.json");

  auto wrong_role = find_cost_profile(dir / "cloud/big.json", CostRole::kDevice, tiny_shape());
  ASSERT_FALSE(wrong_role.ok());
  EXPECT_TRUE(contains(wrong_role.error().message, "is a cloud cost profile, not a device one"));
  auto unknown = find_cost_profile("nope", CostRole::kCloud, tiny_shape());
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(contains(unknown.error().message, "--cloud-cost nope: no such cloud cost profile"));
  EXPECT_TRUE(contains(unknown.error().message, dir / "cloud"));
  write(dir / "cloud/broken.json", "{\"format\": 3}");
  auto broken = find_cost_profile("broken", CostRole::kCloud, tiny_shape());
  ASSERT_FALSE(broken.ok());
  EXPECT_TRUE(contains(broken.error().message, "broken.json: field 'format' must be a string"));
}

TEST(CostProfile, PowersReachTheLedger) {
  // A device profile at 4 W computing and 0.25 W idle, a cloud one at 400 W with a constant
  // 10 ms forward; hlm uploads every token, so the cloud computes one forward per upload plus
  // the session's open.
  ScopedTempDir dir;
  const CostProfile dev = device_profile(tiny_shape());
  CostProfile cloud = dev;
  cloud.name = "tiny-cloud";
  cloud.role = CostRole::kCloud;
  cloud.power = {400.0, std::nullopt, "a datasheet"};
  cloud.forward = CostLine{1e-2};
  ASSERT_TRUE(save_cost_profile(dev, dir / "dev.json").ok());
  ASSERT_TRUE(save_cost_profile(cloud, dir / "cloud.json").ok());
  auto d = find_cost_profile(dir / "dev.json", CostRole::kDevice, tiny_shape());
  auto c = find_cost_profile(dir / "cloud.json", CostRole::kCloud, tiny_shape());
  ASSERT_TRUE(d.ok() && c.ok());
  const TinyPair pair = make_tiny_pair(2).value();
  const auto run = [&](const CostConfig& cost, const std::string& channel) {
    RunConfig cfg;
    cfg.policy = parse_policy("hlm").value();
    cfg.max_tokens = 12;
    cfg.n_ctx = 64;
    cfg.cost = cost;
    cfg.channel = parse_channel(channel, cost.powers).value();  // as MethodOptions::config does
    ThreadPool pool(1);
    CloudVerifier verifier(pair.llm, pool, {1, 64});
    Device device(pair.slm, pool, cfg);
    auto r = device.generate({1, 270, 275, 265}, &verifier);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return std::pair{cfg.channel, r.ok() ? *r : RunResult{}};
  };
  const CostConfig cost = cost_config(*d, *c);
  const auto [ch, r] = run(cost, "narrowband");
  EXPECT_EQ(ch.p_comp_w, 4.0);
  EXPECT_EQ(ch.p_idle_w, 0.25);
  EXPECT_EQ(ch.p_cloud_w, 400.0);
  EXPECT_EQ(ch.p_tx_w, ChannelConfig{}.p_tx_w);  // the radio's stay with the channel
  ASSERT_GT(r.uploads, 0);
  EXPECT_NEAR(r.totals.e_cloud_j, 400.0 * 1e-2 * double(1 + r.uploads), 1e-9);
  // The device's compute at the profile's 4 W: without the radio and the waiting, what is left
  // is P_comp·(t_slm + t_filter).
  const double radio_and_wait = r.totals.e_device_j - 4.0 * (r.t_slm_s + r.t_filter_s);
  const RunResult r5 = run(cost, "narrowband:p_comp=5").second;
  EXPECT_NEAR(r5.totals.e_device_j - 5.0 * (r5.t_slm_s + r5.t_filter_s), radio_and_wait, 1e-9);

  // An explicit power on --channel overrides the profile's; measured keeps the preset's.
  EXPECT_EQ(run(cost, "narrowband:p_cloud=100").first.p_cloud_w, 100.0);
  EXPECT_NEAR(run(cost, "narrowband:p_cloud=100").second.totals.e_cloud_j,
              100.0 * 1e-2 * double(1 + r.uploads), 1e-9);
  const ChannelConfig ch_m = run(cost_config({}, {}), "narrowband").first;
  EXPECT_EQ(ch_m.p_cloud_w, ChannelConfig{}.p_cloud_w);
  EXPECT_EQ(ch_m.p_comp_w, ChannelConfig{}.p_comp_w);
}

}  // namespace
}  // namespace hlm
