#include "sidecar/http/router.h"

#include <gtest/gtest.h>

namespace connwarden::http {
namespace {

TEST(RouterTest, FirstMatchWins) {
  std::vector<ClusterConfig> clusters(2);
  clusters[0].name = "api";
  clusters[1].name = "web";
  std::vector<RouteConfig> routes = {
      {"exact-api", "api.example.com", "/v1", "api", {}},
      {"wildcard", "*.example.com", "", "web", {}},
      {"static", "", "/static/", "web", {}},
      {"any", "*", "", "api", {}},
  };
  Router router(routes, clusters);
  struct Case {
    const char* host;
    const char* path;
    const char* route;  // nullptr: no match
  };
  const Case cases[] = {
      {"api.example.com", "/v1/users", "exact-api"},
      {"api.example.com", "/v2", "wildcard"},
      {"a.b.example.com", "/", "wildcard"},
      {"example.com", "/static/x.css", "static"},
      {"example.com", "/", "any"},
      {"evil-example.com", "/", "any"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.host) + c.path);
    const Route* route = router.match(c.host, c.path);
    ASSERT_NE(route, nullptr);
    EXPECT_EQ(route->config.name, c.route);
  }
  EXPECT_EQ(router.match("api.example.com", "/v1")->cluster_index, 0u);

  Router narrow({{"only", "*.example.com", "/api", "api", {}}}, clusters);
  EXPECT_EQ(narrow.match("example.com", "/api"), nullptr);  // the suffix needs a label before it
  EXPECT_EQ(narrow.match("x.example.com", "/ap"), nullptr);
  EXPECT_NE(narrow.match("x.example.com", "/api/x"), nullptr);
}

}  // namespace
}  // namespace connwarden::http
