#include "sidecar/server/metrics.h"

#include <utility>
#include <vector>

#include "sidecar/stats/connection_collector.h"

#ifndef CONNWARDEN_VERSION
#define CONNWARDEN_VERSION "unknown"
#endif

namespace connwarden::server {

absl::StatusOr<std::unique_ptr<stats::MetricsServer>> startMetrics(Server& server,
                                                                   const std::string& address,
                                                                   size_t connection_limit) {
  std::vector<stats::WorkerSource> workers;
  stats::CollectorOptions options;
  options.connection_limit = connection_limit;
  options.version = CONNWARDEN_VERSION;
  for (uint32_t i = 0; i < server.concurrency(); ++i) {
    Worker& worker = server.worker(i);
    workers.push_back({&worker.dispatcher(), &worker.connections(), &worker.pools(),
                       &worker.requestStats()});
    if (i == 0) {
      for (const http::Route& route : worker.connections().httpContext().router.routes()) {
        options.route_names.push_back(route.config.name);
      }
    }
  }
  auto collector =
      std::make_shared<stats::ConnectionCollector>(std::move(workers), std::move(options));
  return stats::MetricsServer::start(address, std::move(collector),
                                     [&server] { return !server.draining(); });
}

}  // namespace connwarden::server
