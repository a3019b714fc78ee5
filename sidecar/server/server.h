// The whole data plane: listening sockets, TLS contexts, the router and N workers. Built from
// a validated ServerConfig; started and stopped by main (or by a test).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "sidecar/conn/control.h"
#include "sidecar/http/router.h"
#include "sidecar/network/listener.h"
#include "sidecar/server/config.h"
#include "sidecar/server/worker.h"

namespace connwarden::server {

class Server {
 public:
  // Binds every listener (so port conflicts fail here, with the address named) and loads TLS
  // material. `concurrency` workers, 1..256. With a `state_dir`, route policies set at runtime
  // are kept there and restored from there.
  static absl::StatusOr<std::unique_ptr<Server>> create(const ServerConfig& config,
                                                        uint32_t concurrency,
                                                        const std::string& state_dir = "");
  ~Server();

  void start();
  // Graceful stop: listeners close, every connection drains (a request in flight completes with
  // `Connection: close`, idle ones close at once, tunnels are left to their peers); whatever is
  // still open after `drain_timeout` is closed. Returns the number of connections that had to be
  // closed at the deadline.
  size_t shutdown(std::chrono::milliseconds drain_timeout);
  // True from the moment shutdown() begins (readiness fails from then on). Thread-safe.
  bool draining() const { return draining_.load(std::memory_order_acquire); }

  // The address each listener is bound to, in config order (the real port for port 0).
  std::vector<network::Address> listenerAddresses() const;
  // Open client connections across workers (asks each worker; waits at most `timeout`).
  size_t connectionCount(std::chrono::milliseconds timeout = std::chrono::seconds(2));
  uint32_t concurrency() const { return static_cast<uint32_t>(workers_.size()); }
  // The operator's handle on every connection (thread-safe).
  conn::ConnectionControl& control() { return *control_; }
  Worker& worker(uint32_t index) { return *workers_[index]; }
  const std::vector<std::unique_ptr<network::ListenerShared>>& listeners() const {
    return listeners_;
  }

 private:
  Server() = default;

  ServerConfig config_;
  std::vector<std::unique_ptr<network::ListenerShared>> listeners_;
  std::unique_ptr<http::Router> router_;
  std::unique_ptr<conn::ConnectionControl> control_;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool stopped_ = false;
  std::atomic<bool> draining_{false};
};

}  // namespace connwarden::server
