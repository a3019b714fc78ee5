// The server's configuration: loaded from a YAML file whose schema is the protobuf message
// connwarden.config.v1.Config (YAML -> JSON -> proto), validated, and turned into the plain
// settings the lower layers take. Every error names the field path, e.g.
// "routes[2].cluster: no cluster named \"api\"".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "sidecar/http/http_config.h"
#include "sidecar/network/listener_config.h"

namespace connwarden::server {

struct ServerConfig {
  std::vector<network::ListenerConfig> listeners;
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

// The embedded default's YAML text (shown by --help and used by defaultConfig()).
std::string_view defaultConfigYaml();

}  // namespace connwarden::server
