// RequestStats: which status class and duration bucket each completed request lands in, and
// requests without a route.
#include "sidecar/http/request_stats.h"

#include "gtest/gtest.h"
#include "sidecar/http/router.h"

namespace connwarden::http {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

TEST(RequestStatsTest, StatusClassAndDurationBucket) {
  struct Case {
    int status;
    nanoseconds duration;
    size_t status_class;
    size_t bucket;  // index into duration_buckets
  };
  const Case cases[] = {
      {200, microseconds(100), 1, 0},   // below the first bound
      {204, microseconds(500), 1, 0},   // on a bound: that bucket (le)
      {101, microseconds(501), 0, 1},
      {301, milliseconds(7), 2, 4},     // (5 ms, 10 ms]
      {404, milliseconds(100), 3, 7},
      {503, milliseconds(10'000), 4, 13},
      {599, milliseconds(10'001), 4, 14},  // above every bound: +Inf
      {600, milliseconds(1), 5, 1},        // not a real class: "other"
      {0, milliseconds(1), 5, 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << c.status << " " << c.duration.count() << " ns");
    RequestStats stats(1);
    Route route{RouteConfig{}, 0, 0};
    stats.record(&route, c.status, c.duration);
    const RequestStats::PerRoute& counted = stats.byRoute()[0];
    EXPECT_EQ(counted.count, 1u);
    for (size_t i = 0; i < RequestStats::kStatusClasses; ++i) {
      EXPECT_EQ(counted.by_status_class[i], i == c.status_class ? 1u : 0u) << i;
    }
    for (size_t i = 0; i < counted.duration_buckets.size(); ++i) {
      EXPECT_EQ(counted.duration_buckets[i], i == c.bucket ? 1u : 0u) << i;
    }
    EXPECT_DOUBLE_EQ(counted.duration_seconds_sum,
                     std::chrono::duration<double>(c.duration).count());
    EXPECT_EQ(stats.byRoute()[1].count, 0u);
  }
}

TEST(RequestStatsTest, NoRouteCountsInTheLastSlot) {
  RequestStats stats(2);
  Route second{RouteConfig{}, 0, 1};
  stats.record(nullptr, 404, milliseconds(1));
  stats.record(nullptr, 404, milliseconds(1));
  stats.record(&second, 200, milliseconds(1));
  ASSERT_EQ(stats.byRoute().size(), 3u);
  EXPECT_EQ(stats.byRoute()[0].count, 0u);
  EXPECT_EQ(stats.byRoute()[1].by_status_class[1], 1u);
  EXPECT_EQ(stats.byRoute()[2].by_status_class[3], 2u);
  EXPECT_EQ(RequestStats::statusClassName(3), "4xx");
  EXPECT_EQ(RequestStats::statusClassName(5), "other");
}

}  // namespace
}  // namespace connwarden::http
