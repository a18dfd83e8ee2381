// HttpClient: JSON requests to vLLM's HTTP API on libcurl. One call runs a batch of requests
// concurrently on one multi handle, whose connection cache keeps connections to each replica
// alive between batches; at most max_per_host requests are in flight per host:port, the rest
// wait their turn inside libcurl.
#pragma once

#include <cstddef>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "util/result.h"

namespace hlm::vllm {

struct HttpOptions {
  double connect_timeout_s = 2;
  double timeout_s = 30;                          // the whole request, queueing in libcurl included
  size_t max_response_bytes = size_t(256) << 20;  // a full-vocabulary spec(k) reply is ~2 MB a row
  int max_per_host = 4;                           // requests in flight per replica
};

struct HttpRequest {
  std::string url;
  std::string body;  // JSON; empty: a GET
};

struct HttpResponse {
  std::string body;
  double seconds = 0;  // from the start of the batch to the last byte
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Runs the requests concurrently and returns one result each, in order. A peer that cannot be
  // reached or answers 5xx is ErrorCode::kUnavailable, a timeout kDeadlineExceeded, a 4xx or an
  // oversized reply kFailed; every error names the URL. Thread-safe (batches run one at a time).
  std::vector<Result<HttpResponse>> perform(std::span<const HttpRequest> requests);
  Result<HttpResponse> get(const std::string& url);
  Result<HttpResponse> post(const std::string& url, std::string body);

 private:
  HttpOptions options_;
  std::mutex mu_;
  void* multi_ = nullptr;       // CURLM*
  std::vector<void*> handles_;  // CURL* kept for reuse (their buffers and settings)
};

}  // namespace hlm::vllm
