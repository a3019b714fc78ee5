// A worker: one thread running one Dispatcher, with its own listening sockets (SO_REUSEPORT),
// its client connections, its upstream pools and its shard of the registry. Other threads reach
// it only through post().
#pragma once

#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "sidecar/conn/connection_manager.h"
#include "sidecar/event/dispatcher.h"
#include "sidecar/http/router.h"
#include "sidecar/http/upstream_pool.h"
#include "sidecar/network/listener.h"

namespace connwarden::server {

class Worker {
 public:
  // `listeners` and `router` outlive the worker. `listen_fds[i]` is this worker's socket for
  // `listeners[i]` (owned from here on).
  // Worker `index` of `workers` (for its shares of the clusters' connection limits).
  Worker(uint32_t index, uint32_t workers, std::vector<network::ListenerShared*> listeners,
         std::vector<int> listen_fds, const http::Router& router,
         const std::vector<http::ClusterConfig>& clusters, conn::PolicyTablePtr policies);
  ~Worker();

  void start();
  // Thread-safe. Stops the event loop after closing every connection; joins the thread.
  void stop();

  // Thread-safe: runs `fn` on the worker's thread.
  void post(std::function<void()> fn) { dispatcher_.post(std::move(fn)); }
  uint32_t index() const { return index_; }

  // Worker thread only (or before start()).
  conn::ConnectionManager& connections() { return *connections_; }
  event::Dispatcher& dispatcher() { return dispatcher_; }
  const std::vector<std::unique_ptr<http::UpstreamPool>>& pools() const { return pools_; }
  const http::RequestStats& requestStats() const { return request_stats_; }
  void stopListening();

 private:
  struct ListenerBinding : network::ListenerCallbacks {
    ListenerBinding(Worker& worker, network::ListenerShared& shared)
        : worker(worker), shared(shared) {}
    void onAccept(int fd) override { worker.connections_->onAccept(fd, shared); }
    Worker& worker;
    network::ListenerShared& shared;
  };

  const uint32_t index_;
  event::Dispatcher dispatcher_;
  std::vector<std::unique_ptr<http::UpstreamPool>> pools_;
  http::RequestStats request_stats_;
  http::WorkerHttpContext http_context_;
  std::unique_ptr<conn::ConnectionManager> connections_;
  std::vector<std::unique_ptr<ListenerBinding>> bindings_;
  std::vector<std::unique_ptr<network::Listener>> listeners_;
  std::thread thread_;
};

}  // namespace connwarden::server
