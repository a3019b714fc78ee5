#include "sidecar/conn/connection_manager.h"

#include <unistd.h>

#include <vector>

#include "sidecar/event/log.h"

namespace connwarden::conn {

// --- ManagedConnection --------------------------------------------------------------------------

ManagedConnection::ManagedConnection(ConnectionManager& manager, uint64_t id,
                                     network::ListenerShared& listener,
                                     network::ConnectionPtr connection)
    : manager_(manager),
      id_(id),
      listener_(listener),
      created_(manager.dispatcher().now()),
      last_activity_(created_) {
  session_ = std::make_unique<http::ServerSession>(manager.httpContext(), listener.config,
                                                   std::move(connection),
                                                   static_cast<http::SessionObserver&>(*this));
}

ManagedConnection::~ManagedConnection() = default;

void ManagedConnection::onSessionStateChanged(http::SessionState) {
  last_activity_ = manager_.dispatcher().now();
}

void ManagedConnection::onRequestRouted(const http::Route* route) {
  if (route == nullptr) {
    route_name_.clear();
  } else if (route_name_ != route->config.name) {
    route_name_ = route->config.name;
  }
}

void ManagedConnection::onRequestComplete() {
  ++requests_served_;
  last_activity_ = manager_.dispatcher().now();
}

void ManagedConnection::onSessionClosed(network::CloseReason reason) {
  manager_.onClosed(*this, reason);  // removes and schedules deletion of this object
}

// --- ConnectionManager --------------------------------------------------------------------------

ConnectionManager::ConnectionManager(event::Dispatcher& dispatcher, uint32_t worker_index,
                                     http::WorkerHttpContext& http_context)
    : dispatcher_(dispatcher), worker_index_(worker_index), http_context_(http_context) {
  CW_ASSERT(worker_index < kMaxWorkers);
}

ConnectionManager::~ConnectionManager() {
  closeAll(network::CloseReason::kShutdown);
}

void ConnectionManager::onAccept(int fd, network::ListenerShared& listener) {
  network::TransportSocketPtr transport =
      listener.tls != nullptr ? listener.tls->newServerSocket()
                              : std::make_unique<network::RawTransportSocket>();
  auto connection = std::make_unique<network::Connection>(dispatcher_, fd, std::move(transport));
  const uint64_t id = (next_sequence_++ << kWorkerIdBits) | worker_index_;
  ++opened_;
  auto managed = std::make_unique<ManagedConnection>(*this, id, listener, std::move(connection));
  connections_.emplace(id, std::move(managed));
}

void ConnectionManager::onClosed(ManagedConnection& connection, network::CloseReason reason) {
  const size_t index = static_cast<size_t>(reason);
  if (index < closes_by_reason_.size()) ++closes_by_reason_[index];
  connection.listener_.open_connections.fetch_sub(1, std::memory_order_relaxed);
  auto it = connections_.find(connection.id());
  CW_ASSERT(it != connections_.end());
  // Out of the registry in the same step that closed the socket; freed after this callback.
  dispatcher_.deferredDelete(std::move(it->second));
  connections_.erase(it);
}

ManagedConnection* ConnectionManager::find(uint64_t id) const {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

void ConnectionManager::forEach(const std::function<void(ManagedConnection&)>& fn) const {
  for (const auto& [id, connection] : connections_) fn(*connection);
}

void ConnectionManager::drainAll(network::CloseReason reason) {
  // Draining may close (and unregister) connections: iterate over a copy of the IDs.
  std::vector<uint64_t> ids;
  ids.reserve(connections_.size());
  for (const auto& [id, connection] : connections_) ids.push_back(id);
  for (uint64_t id : ids) {
    if (ManagedConnection* connection = find(id)) connection->session().drain(reason);
  }
}

void ConnectionManager::closeAll(network::CloseReason reason) {
  std::vector<uint64_t> ids;
  ids.reserve(connections_.size());
  for (const auto& [id, connection] : connections_) ids.push_back(id);
  for (uint64_t id : ids) {
    if (ManagedConnection* connection = find(id)) connection->session().close(reason, false);
  }
}

}  // namespace connwarden::conn
