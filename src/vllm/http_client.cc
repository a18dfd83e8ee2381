// HttpClient implementation on libcurl's multi interface.
#include "vllm/http_client.h"

#include <curl/curl.h>

#include <chrono>
#include <mutex>

namespace hlm::vllm {
namespace {

struct Transfer {
  const HttpRequest* request = nullptr;
  std::string body;
  size_t cap = 0;
  bool too_big = false;
  curl_slist* headers = nullptr;
};

size_t on_data(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (t->body.size() + bytes > t->cap) {
    t->too_big = true;
    return 0;  // makes libcurl fail the transfer with CURLE_WRITE_ERROR
  }
  t->body.append(data, bytes);
  return bytes;
}

// A short excerpt of an error body (vLLM explains its 4xx refusals there).
std::string excerpt(const std::string& body) {
  constexpr size_t kMax = 300;
  return body.size() <= kMax ? body : body.substr(0, kMax) + "...";
}

}  // namespace

HttpClient::HttpClient(HttpOptions options) : options_(options) {
  static std::once_flag global;
  std::call_once(global, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURLM* m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, long(std::max(1, options_.max_per_host)));
  multi_ = m;
}

HttpClient::~HttpClient() {
  for (void* h : handles_) curl_easy_cleanup(static_cast<CURL*>(h));
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

std::vector<Result<HttpResponse>> HttpClient::perform(std::span<const HttpRequest> requests) {
  using Clock = std::chrono::steady_clock;
  std::lock_guard<std::mutex> lock(mu_);
  CURLM* multi = static_cast<CURLM*>(multi_);
  const auto t0 = Clock::now();
  std::vector<Transfer> transfers(requests.size());
  std::vector<CURL*> easy(requests.size());
  std::vector<double> seconds(requests.size(), 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    if (handles_.size() <= i) handles_.push_back(curl_easy_init());
    CURL* h = static_cast<CURL*>(handles_[i]);
    curl_easy_reset(h);
    Transfer& t = transfers[i];
    t.request = &requests[i];
    t.cap = options_.max_response_bytes;
    curl_easy_setopt(h, CURLOPT_URL, requests[i].url.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_PRIVATE, &t);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, long(options_.connect_timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, long(options_.timeout_s * 1000));
    if (!requests[i].body.empty()) {
      t.headers = curl_slist_append(nullptr, "Content-Type: application/json");
      curl_easy_setopt(h, CURLOPT_HTTPHEADER, t.headers);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, requests[i].body.c_str());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, long(requests[i].body.size()));
    }
    easy[i] = h;
    curl_multi_add_handle(multi, h);
  }
  std::vector<Result<HttpResponse>> results(requests.size(), Error{"not run"});
  std::vector<CURLcode> codes(requests.size(), CURLE_OK);
  int running = int(requests.size());
  while (running > 0) {
    curl_multi_perform(multi, &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      for (size_t i = 0; i < easy.size(); ++i) {
        if (easy[i] == msg->easy_handle) {
          codes[i] = msg->data.result;
          seconds[i] = std::chrono::duration<double>(Clock::now() - t0).count();
        }
      }
    }
    if (running > 0) curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    Transfer& t = transfers[i];
    const std::string& url = requests[i].url;
    long status = 0;
    curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(multi, easy[i]);
    curl_slist_free_all(t.headers);
    const CURLcode c = codes[i];
    if (t.too_big) {
      results[i] = make_error("{}: the reply exceeds {} bytes", url, options_.max_response_bytes);
    } else if (c == CURLE_OPERATION_TIMEDOUT) {
      Error e = make_error("{}: no reply within {} s (vLLM stalled or overloaded)", url,
                           options_.timeout_s);
      e.code = ErrorCode::kDeadlineExceeded;
      results[i] = e;
    } else if (c != CURLE_OK) {
      Error e = make_error("{}: {} (is vLLM running there?)", url, curl_easy_strerror(c));
      e.code = ErrorCode::kUnavailable;
      results[i] = e;
    } else if (status >= 400) {
      Error e = make_error("{}: HTTP {}: {}", url, status, excerpt(t.body));
      if (status >= 500) e.code = ErrorCode::kUnavailable;
      results[i] = e;
    } else {
      results[i] = HttpResponse{std::move(t.body), seconds[i]};
    }
  }
  return results;
}

Result<HttpResponse> HttpClient::get(const std::string& url) {
  const HttpRequest r{url, {}};
  return std::move(perform(std::span<const HttpRequest>(&r, 1)).front());
}

Result<HttpResponse> HttpClient::post(const std::string& url, std::string body) {
  const HttpRequest r{url, std::move(body)};
  return std::move(perform(std::span<const HttpRequest>(&r, 1)).front());
}

}  // namespace hlm::vllm
