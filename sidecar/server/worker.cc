#include "sidecar/server/worker.h"

#include <string>

#include "sidecar/network/tls_transport_socket.h"

namespace connwarden::server {

Worker::Worker(uint32_t index, uint32_t workers, std::vector<network::ListenerShared*> listeners,
               std::vector<int> listen_fds, const http::Router& router,
               const std::vector<http::ClusterConfig>& clusters, conn::PolicyTablePtr policies)
    : index_(index),
      dispatcher_("worker" + std::to_string(index)),
      request_stats_(router.routes().size()),
      http_context_{dispatcher_, router, pools_, &request_stats_} {
  for (const http::ClusterConfig& cluster : clusters) {
    pools_.push_back(std::make_unique<http::UpstreamPool>(dispatcher_, cluster, index, workers));
  }
  connections_ = std::make_unique<conn::ConnectionManager>(dispatcher_, index, http_context_,
                                                           std::move(policies));
  for (size_t i = 0; i < listeners.size(); ++i) {
    bindings_.push_back(std::make_unique<ListenerBinding>(*this, *listeners[i]));
    listeners_.push_back(std::make_unique<network::Listener>(dispatcher_, listen_fds[i],
                                                             *listeners[i], *bindings_.back()));
  }
}

Worker::~Worker() {
  stop();
  // Teardown order: connections (their streams give upstream connections back), then what
  // they queued for deletion, then the pools.
  listeners_.clear();
  connections_.reset();
  dispatcher_.clearDeferredDeletes();
  pools_.clear();
  dispatcher_.clearDeferredDeletes();
}

void Worker::start() {
  thread_ = std::thread([this] {
    network::warmUpTlsForThisThread();
    dispatcher_.run();
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  dispatcher_.post([this] {
    for (auto& listener : listeners_) listener->stop();
    connections_->closeAll(network::CloseReason::kShutdown);
  });
  dispatcher_.exit();
  thread_.join();
}

void Worker::stopListening() {
  for (auto& listener : listeners_) listener->stop();
}

}  // namespace connwarden::server
