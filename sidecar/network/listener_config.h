// Settings of one listener, as the server layer hands them down from the config file.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "sidecar/network/address.h"

namespace connwarden::network {

struct TlsConfig {
  std::string cert_file;
  std::string key_file;
  bool min_tls13 = false;  // TLS 1.2 is the floor otherwise
};

struct ListenerConfig {
  std::string name;
  Address address;
  std::optional<TlsConfig> tls;
  uint32_t max_connections = 0;  // 0 = unlimited
  uint32_t no_route_status = 404;
  uint32_t buffer_high_watermark = 64 * 1024;
};

}  // namespace connwarden::network
