// One worker's counts of completed requests, by route and status class, and how long they took
// (a histogram per route), for the metrics. Plain members touched only on the worker's thread:
// the data path takes no lock and makes no allocation to count; the metrics read a copy made
// on the worker (posted to it) at scrape time.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace connwarden::http {

struct Route;

class RequestStats {
 public:
  // Upper bounds of the duration buckets, in seconds (the last, +Inf, is implicit).
  static constexpr std::array<double, 14> kDurationBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  // 1xx .. 5xx, and anything else (a status an application made up).
  static constexpr size_t kStatusClasses = 6;
  static std::string_view statusClassName(size_t status_class);

  struct PerRoute {
    std::array<uint64_t, kStatusClasses> by_status_class{};
    // Not cumulative: buckets[i] counts durations in (bounds[i-1], bounds[i]]; the last, above
    // every bound.
    std::array<uint64_t, kDurationBounds.size() + 1> duration_buckets{};
    double duration_seconds_sum = 0;
    uint64_t count = 0;
  };

  // `routes`: how many routes the router has; one more slot counts requests that matched none.
  explicit RequestStats(size_t routes) : by_route_(routes + 1) {}

  // A request/response exchange completed with `status` after `duration` (first byte of the
  // request to the end of the response). `route` null: no route matched. Worker thread only.
  void record(const Route* route, int status, std::chrono::nanoseconds duration);

  // Index: Route::index; the last entry is "no route".
  const std::vector<PerRoute>& byRoute() const { return by_route_; }

 private:
  std::vector<PerRoute> by_route_;
};

}  // namespace connwarden::http
