// JSON field readers (see json_fields.h).
#include "eval/json_fields.h"

#include <fstream>
#include <sstream>

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

}  // namespace hlm
