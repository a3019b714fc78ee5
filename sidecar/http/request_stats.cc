#include "sidecar/http/request_stats.h"

#include <algorithm>

#include "sidecar/http/router.h"

namespace connwarden::http {

std::string_view RequestStats::statusClassName(size_t status_class) {
  static constexpr std::string_view kNames[kStatusClasses] = {"1xx", "2xx", "3xx",
                                                              "4xx", "5xx", "other"};
  return status_class < kStatusClasses ? kNames[status_class] : "other";
}

void RequestStats::record(const Route* route, int status, std::chrono::nanoseconds duration) {
  const size_t slot =
      route != nullptr && route->index + 1 < by_route_.size() ? route->index : by_route_.size() - 1;
  PerRoute& stats = by_route_[slot];
  const size_t status_class =
      status >= 100 && status <= 599 ? static_cast<size_t>(status / 100 - 1) : kStatusClasses - 1;
  ++stats.by_status_class[status_class];
  const double seconds = std::chrono::duration<double>(duration).count();
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(kDurationBounds.begin(), kDurationBounds.end(), seconds) -
      kDurationBounds.begin());
  ++stats.duration_buckets[bucket];
  stats.duration_seconds_sum += seconds;
  ++stats.count;
}

}  // namespace connwarden::http
