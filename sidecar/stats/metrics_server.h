// The operator's HTTP listener for Prometheus and the kubelet (--metrics-address):
//   GET /metrics            the collectable's families in the text exposition format
//   GET /healthz, /livez    200 while the process serves (liveness)
//   GET /readyz             200 while ready, 503 once `ready` says no (shutdown began)
// Served by its own threads (civetweb); it touches the data plane only through the
// collectable, which posts to the workers.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"

class CivetServer;

namespace connwarden::stats {

class MetricsServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks one). UNAVAILABLE naming the address when
  // it cannot (port in use), INVALID_ARGUMENT for an address that is not host:port. `ready`
  // is called from the listener's threads.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> start(
      const std::string& address, std::shared_ptr<prometheus::Collectable> collectable,
      std::function<bool()> ready);
  // Stops listening; waits for scrapes in progress.
  ~MetricsServer();

  // The port it listens on (the real one when asked for 0).
  int port() const { return port_; }

 private:
  class Handler;
  MetricsServer() = default;

  std::shared_ptr<prometheus::Collectable> collectable_;
  std::function<bool()> ready_;
  std::unique_ptr<Handler> metrics_handler_, live_handler_, ready_handler_;
  std::unique_ptr<CivetServer> server_;
  std::string host_;
  int port_ = 0;
};

}  // namespace connwarden::stats
