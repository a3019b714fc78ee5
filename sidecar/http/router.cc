#include "sidecar/http/router.h"

#include "sidecar/event/dispatcher.h"

namespace connwarden::http {

namespace {
bool hostMatches(std::string_view pattern, std::string_view host) {
  if (pattern.empty() || pattern == "*") return true;
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
    const std::string_view suffix = pattern.substr(1);
    return host.size() > suffix.size() &&
           host.substr(host.size() - suffix.size()) == suffix;
  }
  return pattern == host;
}
}  // namespace

Router::Router(const std::vector<RouteConfig>& routes, const std::vector<ClusterConfig>& clusters) {
  for (const RouteConfig& route : routes) {
    size_t index = clusters.size();
    for (size_t i = 0; i < clusters.size(); ++i) {
      if (clusters[i].name == route.cluster) index = i;
    }
    CW_ASSERT(index < clusters.size());
    routes_.push_back({route, index, routes_.size()});
  }
}

const Route* Router::match(std::string_view host, std::string_view path) const {
  for (const Route& route : routes_) {
    if (hostMatches(route.config.host, host) &&
        path.substr(0, route.config.path_prefix.size()) == route.config.path_prefix) {
      return &route;
    }
  }
  return nullptr;
}

}  // namespace connwarden::http
