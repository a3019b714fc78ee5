// The resolved policy of every (listener, route) pair, built once per change and shared
// read-only by the workers: a connection holds a pointer into the table of its worker, and a new
// table re-points every connection in one loop iteration.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sidecar/http/policy.h"
#include "sidecar/http/router.h"

namespace connwarden::conn {

class PolicyTable {
 public:
  // `route_policies[r]` is routes[r]'s policy in effect (the config's, or an operator's).
  PolicyTable(const std::vector<http::RoutePolicy>& listener_defaults,
              const std::vector<http::RoutePolicy>& route_policies)
      : routes_(route_policies.size()) {
    const http::ConnectionPolicy built_in;
    for (const http::RoutePolicy& defaults : listener_defaults) {
      const http::ConnectionPolicy listener = defaults.over(built_in);
      policies_.push_back(listener);
      for (const http::RoutePolicy& route : route_policies) policies_.push_back(route.over(listener));
    }
  }

  // Before the first request, or when no route matched: the listener's defaults.
  const http::ConnectionPolicy& policy(size_t listener, const http::Route* route) const {
    return policies_[listener * (routes_ + 1) + (route == nullptr ? 0 : route->index + 1)];
  }

 private:
  size_t routes_;
  std::vector<http::ConnectionPolicy> policies_;  // [listener][0: defaults, 1 + route]
};

using PolicyTablePtr = std::shared_ptr<const PolicyTable>;

}  // namespace connwarden::conn
