// Settings of upstream clusters and routes, as the server layer hands them down.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "sidecar/http/policy.h"
#include "sidecar/network/address.h"

namespace connwarden::http {

struct ClusterConfig {
  std::string name;
  std::vector<network::Address> addresses;
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds response_timeout{60'000};
  // Once the response head is in: the longest silence between two reads of its body (0 = none).
  std::chrono::milliseconds response_idle_timeout{300'000};
  uint32_t max_idle_connections = 128;  // per worker
  // All workers together: connections open at once (0 = no limit), requests waiting for one,
  // and how long one may wait.
  uint32_t max_connections = 0;
  uint32_t max_queued_requests = 1024;
  std::chrono::milliseconds queue_timeout{5'000};
  std::chrono::milliseconds idle_timeout{60'000};
};

struct RouteConfig {
  std::string name;
  std::string host;  // "" = any; "api.example.com"; "*.example.com" (lower case)
  std::string path_prefix;
  std::string cluster;
  RoutePolicy policy;
};

}  // namespace connwarden::http
