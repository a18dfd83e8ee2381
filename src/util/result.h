// Result<T>: a value or an error message that names the file, field or peer and what was expected.
#pragma once

#include <fmt/format.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace hlm {

// kUnavailable and kDeadlineExceeded mark transient failures (a peer that cannot be reached, or
// did not answer in time): callers may retry.
enum class ErrorCode { kFailed, kUnavailable, kDeadlineExceeded };

struct Error {
  std::string message;
  ErrorCode code = ErrorCode::kFailed;
};

template <class... Args>
Error make_error(fmt::format_string<Args...> f, Args&&... args) {
  return Error{fmt::format(f, std::forward<Args>(args)...)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error e) : v_(std::move(e)) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Status: a Result with no value.
struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

}  // namespace hlm
