// The registry of one worker's client connections: every accepted connection gets a 64-bit ID,
// a state and timestamps, and leaves the registry in the same step that closes its socket.
//
// IDs are never reused in the life of the process and encode the owning worker in their low
// 8 bits, so any thread can route a lookup to the right worker in O(1).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "sidecar/event/dispatcher.h"
#include "sidecar/http/server_session.h"
#include "sidecar/network/close_reason.h"
#include "sidecar/network/listener.h"

namespace connwarden::conn {

constexpr int kWorkerIdBits = 8;
constexpr uint32_t kMaxWorkers = 1u << kWorkerIdBits;
inline uint32_t workerOfConnectionId(uint64_t id) { return id & (kMaxWorkers - 1); }

class ConnectionManager;

// One registered client connection: its session and what the operator sees of it.
class ManagedConnection : public event::DeferredDeletable, private http::SessionObserver {
 public:
  ManagedConnection(ConnectionManager& manager, uint64_t id, network::ListenerShared& listener,
                    network::ConnectionPtr connection);
  ~ManagedConnection() override;

  uint64_t id() const { return id_; }
  http::ServerSession& session() { return *session_; }
  http::SessionState state() const { return session_->state(); }
  const std::string& routeName() const { return route_name_; }
  event::MonotonicTime createdAt() const { return created_; }
  event::MonotonicTime lastActivity() const { return last_activity_; }
  uint64_t requestsServed() const { return requests_served_; }
  const network::ListenerShared& listener() const { return listener_; }

 private:
  friend class ConnectionManager;
  // http::SessionObserver
  void onSessionStateChanged(http::SessionState state) override;
  void onRequestRouted(const http::Route* route) override;
  void onRequestComplete() override;
  void onSessionClosed(network::CloseReason reason) override;

  ConnectionManager& manager_;
  const uint64_t id_;
  network::ListenerShared& listener_;
  std::unique_ptr<http::ServerSession> session_;
  std::string route_name_;
  event::MonotonicTime created_;
  event::MonotonicTime last_activity_;
  uint64_t requests_served_ = 0;
};

class ConnectionManager {
 public:
  ConnectionManager(event::Dispatcher& dispatcher, uint32_t worker_index,
                    http::WorkerHttpContext& http_context);
  ~ConnectionManager();

  // Takes ownership of an accepted socket on `listener`: transport (TLS when configured),
  // session, registry entry.
  void onAccept(int fd, network::ListenerShared& listener);

  size_t size() const { return connections_.size(); }
  ManagedConnection* find(uint64_t id) const;
  void forEach(const std::function<void(ManagedConnection&)>& fn) const;
  // Drains every connection (shutdown): see ServerSession::drain().
  void drainAll(network::CloseReason reason);
  // Closes every connection now.
  void closeAll(network::CloseReason reason);

  // Closes since start, by reason (index: CloseReason value).
  const std::array<uint64_t, 32>& closesByReason() const { return closes_by_reason_; }
  uint64_t opened() const { return opened_; }
  event::Dispatcher& dispatcher() { return dispatcher_; }
  http::WorkerHttpContext& httpContext() { return http_context_; }

 private:
  friend class ManagedConnection;
  void onClosed(ManagedConnection& connection, network::CloseReason reason);

  event::Dispatcher& dispatcher_;
  const uint32_t worker_index_;
  http::WorkerHttpContext& http_context_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<ManagedConnection>> connections_;
  uint64_t next_sequence_ = 1;
  uint64_t opened_ = 0;
  std::array<uint64_t, 32> closes_by_reason_{};
};

}  // namespace connwarden::conn
