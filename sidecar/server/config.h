// The server's configuration: loaded from a YAML file whose schema is the protobuf message
// connwarden.config.v1.Config (YAML -> JSON -> proto), validated, and turned into the plain
// settings the lower layers take. Every error names the field path, e.g.
// "routes[2].cluster: no cluster named \"api\"".
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "sidecar/http/http_config.h"
#include "sidecar/network/listener_config.h"

namespace connwarden::config::v1 {
class RoutePolicy;
}

namespace connwarden::server {

struct ServerConfig {
  std::vector<network::ListenerConfig> listeners;
  // listener_policies[i]: the `defaults` of listeners[i].
  std::vector<http::RoutePolicy> listener_policies;
  std::vector<http::ClusterConfig> clusters;
  std::vector<http::RouteConfig> routes;
};

// Reads and validates the file at `path`. The status message starts with the path of the field
// at fault (or the file name, for unreadable files and YAML syntax errors).
absl::StatusOr<ServerConfig> loadConfigFile(const std::string& path);

// The same, from text; `source` names it in messages.
absl::StatusOr<ServerConfig> parseConfig(std::string_view yaml, std::string_view source);

// With no file: listen on 0.0.0.0:8080, forward everything to 127.0.0.1:8081.
ServerConfig defaultConfig();

// What the config asks that depends on the number of workers: every cluster's max_connections
// must give each worker one at least.
absl::Status checkForWorkers(const ServerConfig& config, uint32_t workers);

// A RoutePolicy message (from the file or the admin API) checked and converted; errors start
// with `path` (e.g. "routes[2].policy").
absl::Status convertRoutePolicy(const config::v1::RoutePolicy& in, const std::string& path,
                                http::RoutePolicy* out);

// The reverse, for the admin API and the state file.
void routePolicyToProto(const http::RoutePolicy& in, config::v1::RoutePolicy* out);

// Route policies set at runtime, kept in `<state_dir>/policies.json` across restarts. A missing
// file is an empty map; an unreadable or malformed one is an error naming the file.
absl::StatusOr<std::map<std::string, http::RoutePolicy>> loadStoredPolicies(
    const std::string& state_dir);
// Written to a temporary file and renamed over the old one: a crash leaves one or the other.
absl::Status storePolicies(const std::string& state_dir,
                           const std::map<std::string, http::RoutePolicy>& policies);

// The embedded default's YAML text (shown by --help and used by defaultConfig()).
std::string_view defaultConfigYaml();

}  // namespace connwarden::server
