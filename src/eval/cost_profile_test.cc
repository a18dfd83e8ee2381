// Cost profiles: the model shape of a tiny model, the JSON round trip, errors that name the file
// and field, and what --device-cost / --cloud-cost pick (auto by shape, measured, a name, a file).
#include "eval/cost_profile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

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
  auto c = parse_cost_profile(cost_profile_to_json(cloud), "cloud.json");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->role, CostRole::kCloud);
  EXPECT_FALSE(c->uncertainty);
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

}  // namespace
}  // namespace hlm
