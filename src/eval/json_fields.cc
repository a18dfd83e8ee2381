// JSON field readers (see json_fields.h).
#include "eval/json_fields.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval/harness.h"

namespace hlm {

Result<const FieldReader::json*> FieldReader::object(const json& parent, const std::string& path,
                                                     const char* key) const {
  auto v = get(parent, path, key);
  if (!v) return v.error();
  if (!(*v)->is_object()) return expected(path, key, "an object", **v);
  return *v;
}

Result<std::string> FieldReader::string(const json& parent, const std::string& path,
                                        const char* key) const {
  auto v = get(parent, path, key);
  if (!v) return v.error();
  if (!(*v)->is_string()) return expected(path, key, "a string", **v);
  return (*v)->get<std::string>();
}

Result<double> FieldReader::number(const json& parent, const std::string& path, const char* key,
                                   double lo, double hi) const {
  auto v = get(parent, path, key);
  if (!v) return v.error();
  if (!(*v)->is_number()) return expected(path, key, "a number", **v);
  const double x = (*v)->get<double>();
  if (!(x >= lo && x <= hi)) {
    return make_error("{}: field '{}' is {}, expected a number in [{}, {}]", source_,
                      name(path, key), x, lo, hi);
  }
  return x;
}

std::string FieldReader::name(const std::string& path, const char* key) {
  return path.empty() ? std::string(key) : path + "." + key;
}

Result<const FieldReader::json*> FieldReader::get(const json& parent, const std::string& path,
                                                  const char* key) const {
  if (!parent.contains(key)) {
    return make_error("{}: field '{}' is missing", source_, name(path, key));
  }
  return &parent[key];
}

Error FieldReader::expected(const std::string& path, const char* key, const char* what,
                            const json& got) const {
  return make_error("{}: field '{}' must be {}, got {}", source_, name(path, key), what,
                    got.type_name());
}

Result<std::string> read_text_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("{}: cannot read {}", path, what);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Status save_text_file(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (ec) return make_error("{}: cannot create the directory: {}", parent.string(), ec.message());
  return write_text(path, text);
}

std::vector<std::string> json_files_in(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return files;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".json" && e.is_regular_file(ec)) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace hlm
