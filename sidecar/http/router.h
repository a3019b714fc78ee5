// Chooses the route of a request: host (exact or "*.suffix", any if empty) and path prefix,
// first match wins. Built once from config; immutable, so one instance serves every worker.
#pragma once

#include <string_view>
#include <vector>

#include "sidecar/http/http_config.h"

namespace connwarden::http {

struct Route {
  RouteConfig config;
  size_t cluster_index;  // into the server's cluster list
  size_t index;          // in the route list
};

class Router {
 public:
  // `routes[i].cluster` must name one of `clusters` (the config loader checks).
  Router(const std::vector<RouteConfig>& routes, const std::vector<ClusterConfig>& clusters);

  // `host` lower-case without port. Null when nothing matches.
  const Route* match(std::string_view host, std::string_view path) const;
  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

}  // namespace connwarden::http
