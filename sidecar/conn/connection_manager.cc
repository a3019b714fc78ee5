#include "sidecar/conn/connection_manager.h"

#include <malloc.h>

#include <vector>

#include "sidecar/event/log.h"

namespace connwarden::conn {

namespace {

// Hibernations within this interval share one malloc_trim().
constexpr std::chrono::milliseconds kTrimInterval{200};

std::chrono::system_clock::time_point wallClockOf(event::MonotonicTime at,
                                                  event::MonotonicTime now) {
  return std::chrono::system_clock::now() -
         std::chrono::duration_cast<std::chrono::system_clock::duration>(now - at);
}

std::chrono::milliseconds since(event::MonotonicTime at, event::MonotonicTime now) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now - at);
}

}  // namespace

std::string_view commandOutcomeName(CommandResult::Outcome outcome) {
  switch (outcome) {
    case CommandResult::Outcome::kNotFound: return "not_found";
    case CommandResult::Outcome::kClosed: return "closed";
    case CommandResult::Outcome::kDraining: return "draining";
  }
  return "unknown";
}

// --- ManagedConnection --------------------------------------------------------------------------

ManagedConnection::ManagedConnection(ConnectionManager& manager, uint64_t id,
                                     network::ListenerShared& listener,
                                     network::ConnectionPtr connection,
                                     event::MemoryAccount* account)
    : account_(account),
      manager_(manager),
      id_(id),
      listener_(listener),
      created_(manager.dispatcher().now()),
      last_activity_(created_) {
  session_ = std::make_unique<http::ServerSession>(
      manager.httpContext(), listener.config, manager.policies().policy(listener.index, nullptr),
      std::move(connection), static_cast<http::SessionObserver&>(*this));
}

ManagedConnection::~ManagedConnection() = default;

ConnectionSnapshot ManagedConnection::snapshot() const {
  const event::MonotonicTime now = manager_.dispatcher().now();
  network::Connection& connection = session_->connection();
  ConnectionSnapshot out;
  out.id = id_;
  out.worker = manager_.workerIndex();
  out.listener = listener_.config.name;
  out.peer = connection.peerAddress().toString();
  out.local = connection.localAddress().toString();
  out.tls = connection.transport().isTls();
  if (out.tls) out.tls_info = connection.transport().tlsInfo();
  out.state = session_->state();
  out.protocol = out.state == http::SessionState::kTunnel ? "tunnel" : "http/1.1";
  if (route_ != nullptr) out.route = route_->config.name;
  out.created = wallClockOf(created_, now);
  out.last_activity = wallClockOf(last_activity_, now);
  out.age = since(created_, now);
  out.idle = since(last_activity_, now);
  out.requests = requests_served_;
  out.bytes_in = connection.bytesRead();
  out.bytes_out = connection.bytesWritten();
  const event::MemoryAccount& account = *account_;
  out.memory.total = account.total();
  out.memory.buffers = account.bytes(event::MemoryCategory::kBuffers);
  out.memory.tls = account.bytes(event::MemoryCategory::kTls);
  out.memory.codec = account.bytes(event::MemoryCategory::kCodec);
  out.memory.other = account.bytes(event::MemoryCategory::kOther);
  out.memory.peak = account.peak();
  return out;
}

bool ManagedConnection::matches(const ConnectionSelector& selector,
                                event::MonotonicTime now) const {
  if (selector.memory_at_least && account_->total() < *selector.memory_at_least) return false;
  if (selector.route && (route_ == nullptr || route_->config.name != *selector.route)) {
    return false;
  }
  if (selector.listener && listener_.config.name != *selector.listener) return false;
  if (selector.state && session_->state() != *selector.state) return false;
  if (selector.idle_at_least && since(last_activity_, now) < *selector.idle_at_least) {
    return false;
  }
  if (selector.age_at_least && since(created_, now) < *selector.age_at_least) return false;
  if (selector.peer && !selector.peer->contains(session_->connection().peerAddress())) {
    return false;
  }
  return true;
}

void ManagedConnection::refreshPolicy() {
  const http::ConnectionPolicy& policy = manager_.policies().policy(listener_.index, route_);
  if (&policy != &session_->policy()) session_->setPolicy(policy);
}

void ManagedConnection::onSessionStateChanged(http::SessionState) {
  last_activity_ = manager_.dispatcher().now();
  manager_.publish(LifecycleEvent::Kind::kStateChanged, *this);
}

void ManagedConnection::onRequestRouted(const http::Route* route) {
  // A connection is governed by the route of its latest request.
  route_ = route;
  refreshPolicy();
}

void ManagedConnection::onRequestComplete() {
  ++requests_served_;
  last_activity_ = manager_.dispatcher().now();
}

void ManagedConnection::onHibernated() { manager_.onHibernated(); }

void ManagedConnection::onSessionClosed(network::CloseReason reason) {
  manager_.onClosed(*this, reason);  // removes and schedules deletion of this object
}

// --- ConnectionManager --------------------------------------------------------------------------

ConnectionManager::ConnectionManager(event::Dispatcher& dispatcher, uint32_t worker_index,
                                     http::WorkerHttpContext& http_context,
                                     PolicyTablePtr policies)
    : dispatcher_(dispatcher),
      worker_index_(worker_index),
      http_context_(http_context),
      policies_(std::move(policies)) {
  CW_ASSERT(worker_index < kMaxWorkers);
  CW_ASSERT(policies_ != nullptr);
  trim_timer_ = dispatcher_.createTimer([] { malloc_trim(0); });
}

ConnectionManager::~ConnectionManager() {
  sink_ = nullptr;
  closeAll(network::CloseReason::kShutdown);
}

void ConnectionManager::onAccept(int fd, network::ListenerShared& listener) {
  const uint64_t id = (next_sequence_++ << kWorkerIdBits) | worker_index_;
  ++opened_;
  event::MemoryAccount* account = event::MemoryAccount::create();
  std::unique_ptr<ManagedConnection> managed;
  {
    event::MemoryAccount::Scope scope(account);
    network::TransportSocketPtr transport =
        listener.tls != nullptr ? listener.tls->newServerSocket()
                                : std::make_unique<network::RawTransportSocket>();
    auto connection =
        std::make_unique<network::Connection>(dispatcher_, fd, std::move(transport));
    connection->setMemoryAccount(account);
    managed = std::make_unique<ManagedConnection>(*this, id, listener, std::move(connection),
                                                  account);
  }
  // The registry's own storage is nobody's connection.
  ManagedConnection& registered = *connections_.emplace(id, std::move(managed)).first->second;
  publish(LifecycleEvent::Kind::kOpened, registered);
}

void ConnectionManager::onClosed(ManagedConnection& connection, network::CloseReason reason) {
  const size_t index = static_cast<size_t>(reason);
  if (index < closes_by_reason_.size()) ++closes_by_reason_[index];
  connection.listener_.open_connections.fetch_sub(1, std::memory_order_relaxed);
  publish(LifecycleEvent::Kind::kClosed, connection, reason);
  auto it = connections_.find(connection.id());
  CW_ASSERT(it != connections_.end());
  // Out of the registry in the same step that closed the socket; freed after this callback.
  dispatcher_.deferredDelete(std::move(it->second));
  connections_.erase(it);
}

void ConnectionManager::onHibernated() {
  ++hibernations_;
  if (!trim_timer_->enabled()) trim_timer_->enable(kTrimInterval);
}

void ConnectionManager::publish(LifecycleEvent::Kind kind, const ManagedConnection& connection,
                                network::CloseReason reason) {
  if (sink_ == nullptr || !sink_->wanted()) return;
  LifecycleEvent event;
  event.kind = kind;
  if (kind == LifecycleEvent::Kind::kStateChanged) {
    event.connection.id = connection.id();
    event.connection.worker = worker_index_;
    event.connection.state = connection.state();
    if (connection.route() != nullptr) event.connection.route = connection.route()->config.name;
  } else {
    event.connection = connection.snapshot();
    event.connection.close_reason = reason;
  }
  sink_->publish(std::move(event));
}

ManagedConnection* ConnectionManager::find(uint64_t id) const {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

void ConnectionManager::forEach(const std::function<void(ManagedConnection&)>& fn) const {
  for (const auto& [id, connection] : connections_) fn(*connection);
}

CommandResult ConnectionManager::drain(uint64_t id,
                                       std::optional<std::chrono::milliseconds> deadline,
                                       network::CloseReason reason) {
  CommandResult result;
  result.id = id;
  ManagedConnection* connection = find(id);
  if (connection == nullptr) return result;
  result.state_before = connection->state();
  http::ServerSession& session = connection->session();
  event::MemoryAccount::Scope scope(session.connection().memoryAccount());
  session.drain(reason, deadline.value_or(session.policy().drain_timeout));
  // An idle connection closes at once, and leaves the registry in the same step.
  connection = find(id);
  result.outcome = connection == nullptr ||
                           connection->session().connection().state() !=
                               network::Connection::State::kOpen
                       ? CommandResult::Outcome::kClosed
                       : CommandResult::Outcome::kDraining;
  return result;
}

CommandResult ConnectionManager::kill(uint64_t id) {
  CommandResult result;
  result.id = id;
  ManagedConnection* connection = find(id);
  if (connection == nullptr) return result;
  result.state_before = connection->state();
  event::MemoryAccount::Scope scope(connection->session().connection().memoryAccount());
  connection->session().close(network::CloseReason::kKilled, /*abort=*/true);
  result.outcome = CommandResult::Outcome::kClosed;
  return result;
}

std::vector<uint64_t> ConnectionManager::idsMatching(const ConnectionSelector& selector) const {
  // Commands may close (and unregister) connections: they work on a copy of the IDs.
  const event::MonotonicTime now = dispatcher_.now();
  std::vector<uint64_t> ids;
  for (const auto& [id, connection] : connections_) {
    if (connection->matches(selector, now)) ids.push_back(id);
  }
  return ids;
}

std::vector<CommandResult> ConnectionManager::drainMatching(
    const ConnectionSelector& selector, std::optional<std::chrono::milliseconds> deadline) {
  std::vector<CommandResult> results;
  for (uint64_t id : idsMatching(selector)) results.push_back(drain(id, deadline));
  return results;
}

std::vector<CommandResult> ConnectionManager::killMatching(const ConnectionSelector& selector) {
  std::vector<CommandResult> results;
  for (uint64_t id : idsMatching(selector)) results.push_back(kill(id));
  return results;
}

void ConnectionManager::drainAll(network::CloseReason reason,
                                 std::chrono::milliseconds deadline) {
  for (uint64_t id : idsMatching({})) drain(id, deadline, reason);
}

void ConnectionManager::closeAll(network::CloseReason reason) {
  for (uint64_t id : idsMatching({})) {
    if (ManagedConnection* connection = find(id)) connection->session().close(reason, false);
  }
}

void ConnectionManager::setPolicies(PolicyTablePtr policies) {
  CW_ASSERT(policies != nullptr);
  // The old table stays alive until every connection points into the new one.
  PolicyTablePtr previous = std::move(policies_);
  policies_ = std::move(policies);
  for (const auto& [id, connection] : connections_) {
    event::MemoryAccount::Scope scope(connection->session().connection().memoryAccount());
    connection->refreshPolicy();
  }
}

}  // namespace connwarden::conn
