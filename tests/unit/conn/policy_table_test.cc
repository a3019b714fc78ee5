// Policy resolution: a route's fields over its listener's defaults over the built-in defaults.
#include "sidecar/conn/policy_table.h"

#include "gtest/gtest.h"

namespace connwarden::conn {
namespace {

using std::chrono::milliseconds;

TEST(PolicyTableTest, RouteOverListenerOverBuiltIn) {
  http::RoutePolicy listener0;
  listener0.idle_timeout = milliseconds(5000);
  listener0.hibernate = true;
  http::RoutePolicy listener1;  // nothing set: built-in defaults
  http::RoutePolicy api;
  api.idle_timeout = milliseconds(100);
  api.max_requests_per_connection = 10;
  http::RoutePolicy rest;  // nothing set: the listener's defaults

  const PolicyTable table({listener0, listener1}, {api, rest});
  http::Route api_route;
  api_route.index = 0;
  http::Route rest_route;
  rest_route.index = 1;
  const http::ConnectionPolicy built_in;

  EXPECT_EQ(table.policy(0, nullptr).idle_timeout, milliseconds(5000));
  EXPECT_TRUE(table.policy(0, nullptr).hibernate);
  EXPECT_EQ(table.policy(0, nullptr).request_timeout, built_in.request_timeout);

  EXPECT_EQ(table.policy(0, &api_route).idle_timeout, milliseconds(100));
  EXPECT_EQ(table.policy(0, &api_route).max_requests_per_connection, 10u);
  EXPECT_TRUE(table.policy(0, &api_route).hibernate);  // inherited from listener 0
  EXPECT_EQ(table.policy(0, &rest_route).idle_timeout, milliseconds(5000));

  EXPECT_EQ(table.policy(1, nullptr).idle_timeout, built_in.idle_timeout);
  EXPECT_FALSE(table.policy(1, &api_route).hibernate);
  EXPECT_EQ(table.policy(1, &api_route).idle_timeout, milliseconds(100));
  EXPECT_EQ(table.policy(1, &rest_route).drain_timeout, built_in.drain_timeout);
}

}  // namespace
}  // namespace connwarden::conn
