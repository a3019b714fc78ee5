// Fuzzes the config loader (YAML -> JSON -> the protobuf schema -> checked settings) with any
// text an operator's file could hold. An invalid file must come back as an error that says
// where (the file, a line, or a field path), never as a crash, an exception or a hang; a valid
// one must hold what the server needs to start: listeners, and routes that name clusters.
#include <cstdint>
#include <string>
#include <string_view>

#include "sidecar/server/config.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto config = connwarden::server::parseConfig(text, "fuzz.yaml");
  if (!config.ok()) {
    FUZZ_CHECK(!config.status().message().empty(), "an error without a message");
    return 0;
  }
  FUZZ_CHECK(!config->listeners.empty(), "a valid config without a listener");
  FUZZ_CHECK(config->listener_policies.size() == config->listeners.size(),
             "a listener without its defaults");
  FUZZ_CHECK(!config->routes.empty(), "a valid config without a route");
  for (const auto& route : config->routes) {
    bool found = false;
    for (const auto& cluster : config->clusters) found = found || cluster.name == route.cluster;
    FUZZ_CHECK(found, "route " + route.name + " names no cluster");
  }
  return 0;
}
