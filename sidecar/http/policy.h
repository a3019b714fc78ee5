// How a client connection is governed: timeouts, limits and hibernation (DESIGN §4). A
// RoutePolicy is what a config file or an operator says, with unset fields; a ConnectionPolicy is
// what a connection obeys, every field resolved (route's policy over the listener's defaults over
// the built-in defaults).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace connwarden::http {

using std::chrono::milliseconds;

struct ConnectionPolicy {
  bool hibernate = false;
  milliseconds hibernate_after{0};
  milliseconds idle_timeout{60'000};              // 0 = off, as for every duration below
  milliseconds request_header_timeout{10'000};
  milliseconds request_timeout{300'000};
  milliseconds write_timeout{60'000};
  milliseconds max_connection_age{0};
  uint32_t max_requests_per_connection = 0;       // 0 = unlimited
  milliseconds drain_timeout{30'000};
  milliseconds tunnel_idle_timeout{3'600'000};

};

struct RoutePolicy {
  std::optional<bool> hibernate;
  std::optional<milliseconds> hibernate_after;
  std::optional<milliseconds> idle_timeout;
  std::optional<milliseconds> request_header_timeout;
  std::optional<milliseconds> request_timeout;
  std::optional<milliseconds> write_timeout;
  std::optional<milliseconds> max_connection_age;
  std::optional<uint32_t> max_requests_per_connection;
  std::optional<milliseconds> drain_timeout;
  std::optional<milliseconds> tunnel_idle_timeout;


  // This policy's fields where set, `base`'s elsewhere.
  ConnectionPolicy over(const ConnectionPolicy& base) const {
    ConnectionPolicy out = base;
    if (hibernate) out.hibernate = *hibernate;
    if (hibernate_after) out.hibernate_after = *hibernate_after;
    if (idle_timeout) out.idle_timeout = *idle_timeout;
    if (request_header_timeout) out.request_header_timeout = *request_header_timeout;
    if (request_timeout) out.request_timeout = *request_timeout;
    if (write_timeout) out.write_timeout = *write_timeout;
    if (max_connection_age) out.max_connection_age = *max_connection_age;
    if (max_requests_per_connection) {
      out.max_requests_per_connection = *max_requests_per_connection;
    }
    if (drain_timeout) out.drain_timeout = *drain_timeout;
    if (tunnel_idle_timeout) out.tunnel_idle_timeout = *tunnel_idle_timeout;
    return out;
  }
};

}  // namespace connwarden::http
