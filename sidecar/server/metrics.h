// Wires the metrics listener (stats/) to a running Server's workers: --metrics-address and
// --metrics-connection-limit in main, and the tests.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "sidecar/server/server.h"
#include "sidecar/stats/metrics_server.h"

namespace connwarden::server {

// Serves /metrics, /healthz, /livez and /readyz (503 once `server` begins shutdown) on
// `address`. At most `connection_limit` per-connection series (0: no bound). `server` must
// outlive the result.
absl::StatusOr<std::unique_ptr<stats::MetricsServer>> startMetrics(Server& server,
                                                                   const std::string& address,
                                                                   size_t connection_limit);

}  // namespace connwarden::server
