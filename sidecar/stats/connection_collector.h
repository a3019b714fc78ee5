// The Prometheus collectable of connwarden: at each scrape it posts to every worker, which
// copies what its registry, request counters and upstream pools hold right now (a WorkerSample),
// merges the copies and turns them into metric families. Nothing is kept between scrapes, so no
// series outlives its connection, and the data path takes no lock: workers count in plain
// members on their own thread.
//
// Per-connection memory series are bounded to the `connection_limit` connections holding the
// most memory (0: all); connwarden_connections_omitted says how many were left out. A worker
// that does not answer within `worker_timeout` is left out of the scrape (counted in
// connwarden_metrics_workers_unanswered); the scrape still answers.
//
// Collect() is thread-safe (scrapes may run concurrently). The workers (their dispatchers,
// registries, pools and request counters) must outlive this object, and the listener and route
// objects its samples point at must stay valid (they are the Server's).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "sidecar/conn/connection_manager.h"
#include "sidecar/event/dispatcher.h"
#include "sidecar/http/request_stats.h"
#include "sidecar/http/router.h"
#include "sidecar/http/upstream_pool.h"

namespace connwarden::stats {

// What the collector reads of one worker; each pointer is touched only on `dispatcher`'s thread.
struct WorkerSource {
  event::Dispatcher* dispatcher;
  const conn::ConnectionManager* connections;
  const std::vector<std::unique_ptr<http::UpstreamPool>>* pools;
  const http::RequestStats* requests;
};

struct CollectorOptions {
  size_t connection_limit = 100;  // per-connection memory series; 0 = no bound
  std::chrono::milliseconds worker_timeout{1000};
  std::vector<std::string> route_names;  // by Route::index
  std::string version;                   // for connwarden_build_info
};

// Upper bounds of the per-connection memory histogram, in bytes.
inline constexpr double kConnectionMemoryBounds[] = {
    512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144,
    524288, 1048576, 4194304, 16777216};

class ConnectionCollector final : public prometheus::Collectable {
 public:
  ConnectionCollector(std::vector<WorkerSource> workers, CollectorOptions options);
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::vector<WorkerSource> workers_;
  const CollectorOptions options_;
};

}  // namespace connwarden::stats
