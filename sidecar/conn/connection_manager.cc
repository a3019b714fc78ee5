#include "sidecar/conn/connection_manager.h"

#include <malloc.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "sidecar/event/log.h"

namespace connwarden::conn {

namespace {

// Hibernations within this interval share one event::trimHeap().
constexpr std::chrono::milliseconds kTrimInterval{200};
// A worker that completed no request and closed no connection for this long trims its heap too:
// with hibernate off, the spare evbuffer chains (up to 384 KiB) and the heap a burst of big
// responses freed stayed resident for as long as the process ran (idle_bench, hibernate off: 66
// KiB per connection "10 MB retained", against nginx's 15 and HAProxy's 26). Under load the
// timer fires once per interval and finds activity: no trim.
constexpr std::chrono::milliseconds kQuietInterval{500};
// Stale entries of the dormant heap may grow to this many plus as many as there are live ones.
constexpr size_t kDormantHeapSlack = 1024;

// Registry records live as long as their connections: out of the general heap (see SlabPool).
event::SlabPool& recordPool() {
  return event::SlabPool::immortal<ManagedConnection,
                                   sizeof(ManagedConnection) + event::kPooledHeaderSize>();
}

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
  session_ = new http::ServerSession(manager.httpContext(), listener.config,
                                     manager.policies().policy(listener.index, nullptr),
                                     std::move(connection), static_cast<http::SessionObserver&>(*this));
}

ManagedConnection::~ManagedConnection() {
  if (dormant()) {
    ::close(dormant_fd_);  // which also takes it out of the poll
    delete dormant_transport_;
  } else {
    delete session_;
  }
}

void* ManagedConnection::operator new(size_t size) {
  return event::allocatePooled(recordPool(), size);
}

void ManagedConnection::operator delete(void* ptr) { event::deallocatePooled(ptr); }

http::ServerSession& ManagedConnection::session() {
  if (dormant()) wake();
  return *session_;
}

ConnectionSnapshot ManagedConnection::snapshot() const {
  return snapshot(manager_.dispatcher().now());
}

ConnectionSnapshot ManagedConnection::snapshot(event::MonotonicTime now) const {
  ConnectionSnapshot out;
  out.id = id_;
  out.worker = manager_.workerIndex();
  out.listener = listener_.config.name;
  out.state = state();
  out.bytes_in = bytes_in_before_;
  out.bytes_out = bytes_out_before_;
  if (dormant()) {
    out.peer = network::Address::peerOf(dormant_fd_).toString();
    out.local = network::Address::localOf(dormant_fd_).toString();
    out.tls = dormant_transport_ != nullptr;
    if (out.tls) out.tls_info = dormant_transport_->tlsInfo();
  } else {
    network::Connection& connection = session_->connection();
    out.peer = connection.peerAddress().toString();
    out.local = connection.localAddress().toString();
    out.tls = connection.transport().isTls();
    if (out.tls) out.tls_info = connection.transport().tlsInfo();
    out.bytes_in += connection.bytesRead();
    out.bytes_out += connection.bytesWritten();
  }
  out.protocol = out.state == http::SessionState::kTunnel ? "tunnel" : "http/1.1";
  if (route_ != nullptr) out.route = route_->config.name;
  out.created = wallClockOf(created_, now);
  out.last_activity = wallClockOf(last_activity_, now);
  out.age = since(created_, now);
  out.idle = since(last_activity_, now);
  out.requests = requests_served_;
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
  if (selector.state && state() != *selector.state) return false;
  if (selector.idle_at_least && since(last_activity_, now) < *selector.idle_at_least) {
    return false;
  }
  if (selector.age_at_least && since(created_, now) < *selector.age_at_least) return false;
  if (selector.peer &&
      !selector.peer->contains(dormant() ? network::Address::peerOf(dormant_fd_)
                                         : session_->connection().peerAddress())) {
    return false;
  }
  return true;
}

void ManagedConnection::refreshPolicy() {
  if (dormant()) {
    manager_.scheduleDormant(*this);
    return;
  }
  const http::ConnectionPolicy& policy = manager_.policies().policy(listener_.index, route_);
  if (&policy != &session_->policy()) session_->setPolicy(policy);
}

void ManagedConnection::onSessionStateChanged(http::SessionState state) {
  // Falling asleep is not activity: `idle` keeps counting from the last exchange.
  if (state != http::SessionState::kHibernating) last_activity_ = manager_.dispatcher().now();
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
  manager_.noteActivity();
}

void ManagedConnection::onHibernated() {
  manager_.onHibernated();
  if (session_->state() == http::SessionState::kHibernating) sleep();
}

void ManagedConnection::onSessionClosed(network::CloseReason reason) {
  manager_.onClosed(*this, reason);  // removes and schedules deletion of this object
}

void ManagedConnection::sleep() {
  network::Connection& connection = session_->connection();
  if (!connection.quiet()) return;
  manager_.accrueDormantTime();
  // Should the kernel refuse, the connection hibernates with its session, as it is now.
  if (!manager_.dormant_poll_.add(connection.fd(), id_)) return;
  const uint64_t bytes_in = connection.bytesRead();
  const uint64_t bytes_out = connection.bytesWritten();
  const uint64_t requests_started = session_->history().requests_started;
  network::Connection::DetachedSocket socket = session_->detachSocket();
  CW_ASSERT(socket.fd >= 0);
  bytes_in_before_ += bytes_in;
  bytes_out_before_ += bytes_out;
  requests_started_ = static_cast<uint32_t>(std::min<uint64_t>(requests_started, UINT32_MAX));
  // We are inside the session's own timer callback: it is freed after it returns.
  manager_.dispatcher().deferredDelete(std::unique_ptr<http::ServerSession>(session_));
  dormant_transport_ = socket.transport->isTls() ? socket.transport.release() : nullptr;
  dormant_fd_ = socket.fd;
  manager_.scheduleDormant(*this);
}

void ManagedConnection::wake() {
  CW_ASSERT(dormant());
  manager_.accrueDormantTime();
  manager_.dormant_poll_.remove(dormant_fd_);
  ++manager_.wakeups_;
  event::MemoryAccount::Scope scope(account_.get());
  network::TransportSocketPtr transport(dormant_transport_);
  dormant_transport_ = nullptr;
  if (transport == nullptr) transport = std::make_unique<network::RawTransportSocket>();
  auto connection = std::make_unique<network::Connection>(
      manager_.dispatcher(), std::exchange(dormant_fd_, -1), std::move(transport),
      network::Connection::Resumed{});
  connection->setMemoryAccount(account_.get());
  const http::ServerSession::History history{created_, requests_started_};
  session_ = new http::ServerSession(
      manager_.httpContext(), listener_.config, manager_.policies().policy(listener_.index, route_),
      std::move(connection), static_cast<http::SessionObserver&>(*this), &history);
  manager_.publish(LifecycleEvent::Kind::kStateChanged, *this);
}

std::pair<event::MonotonicTime, network::CloseReason> ManagedConnection::dormantDeadline()
    const {
  // The deadlines ServerSession keeps for a hibernating connection, and max age.
  const http::ConnectionPolicy& policy = manager_.policies().policy(listener_.index, route_);
  std::pair<event::MonotonicTime, network::CloseReason> earliest{
      event::MonotonicTime::max(), network::CloseReason::kNone};
  auto consider = [&](std::chrono::milliseconds timeout, event::MonotonicTime since,
                      network::CloseReason why) {
    if (timeout.count() > 0 && since + timeout < earliest.first) earliest = {since + timeout, why};
  };
  // Hibernating is not activity, so the last activity is when it last became idle.
  if (requests_started_ == 0) {
    consider(policy.request_header_timeout, created_, network::CloseReason::kHeaderTimeout);
  }
  consider(policy.idle_timeout, last_activity_, network::CloseReason::kIdleTimeout);
  consider(policy.max_connection_age, created_, network::CloseReason::kMaxAge);
  return earliest;
}

bool ManagedConnection::closesAsleep() const {
  // TLS wakes, to say close_notify; and so does a socket with bytes the peer sent since it
  // slept, so that the session reads them (closing over unread bytes would reset the peer).
  if (!dormant() || dormant_transport_ != nullptr) return false;
  int unread = 0;
  return ::ioctl(dormant_fd_, FIONREAD, &unread) == 0 && unread == 0;
}

void ManagedConnection::closeDormant(network::CloseReason reason, bool abort) {
  CW_ASSERT(dormant());
  manager_.accrueDormantTime();
  manager_.dormant_poll_.remove(dormant_fd_);
  if (abort) {
    const linger abortive{1, 0};
    setsockopt(dormant_fd_, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
  }
  // Reported (with its addresses) before the socket goes; this object is freed later.
  manager_.onClosed(*this, reason);
  ::close(std::exchange(dormant_fd_, -1));
  delete dormant_transport_;
  dormant_transport_ = nullptr;
}

// --- ConnectionManager --------------------------------------------------------------------------

ConnectionManager::ConnectionManager(event::Dispatcher& dispatcher, uint32_t worker_index,
                                     http::WorkerHttpContext& http_context,
                                     PolicyTablePtr policies)
    : dispatcher_(dispatcher),
      worker_index_(worker_index),
      http_context_(http_context),
      policies_(std::move(policies)),
      dormant_poll_(dispatcher, [this](uint64_t id) {
        ManagedConnection* connection = find(id);
        if (connection != nullptr && connection->dormant()) connection->wake();
      }) {
  CW_ASSERT(worker_index < kMaxWorkers);
  CW_ASSERT(policies_ != nullptr);
  trim_timer_ = dispatcher_.createTimer([] { event::trimHeap(); });
  quiet_timer_ = dispatcher_.createTimer([this] { onQuietTimer(); });
  dormant_timer_ = dispatcher_.createTimer([this] { onDormantTimer(); });
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
  noteActivity();
  publish(LifecycleEvent::Kind::kClosed, connection, reason);
  auto it = connections_.find(connection.id());
  CW_ASSERT(it != connections_.end());
  // Out of the registry in the same step that closed the socket; freed after this callback.
  dispatcher_.deferredDelete(std::move(it->second));
  connections_.erase(it);
}

void ConnectionManager::accrueDormantTime() {
  const event::MonotonicTime now = dispatcher_.now();
  if (dormant_time_at_ != event::MonotonicTime{}) {
    dormant_time_ += (now - dormant_time_at_) * static_cast<int64_t>(dormant_poll_.size());
  }
  dormant_time_at_ = now;
}

std::chrono::nanoseconds ConnectionManager::dormantTime() const {
  if (dormant_time_at_ == event::MonotonicTime{}) return dormant_time_;
  return dormant_time_ +
         (dispatcher_.now() - dormant_time_at_) * static_cast<int64_t>(dormant_poll_.size());
}

void ConnectionManager::onHibernated() {
  ++hibernations_;
  if (!trim_timer_->enabled()) trim_timer_->enable(kTrimInterval);
}

void ConnectionManager::noteActivity() {
  ++activity_;
  if (!quiet_timer_->enabled()) {
    activity_seen_ = activity_;
    quiet_timer_->enable(kQuietInterval);
  }
}

void ConnectionManager::onQuietTimer() {
  if (activity_ != activity_seen_) {  // busy since: look again one interval on
    activity_seen_ = activity_;
    quiet_timer_->enable(kQuietInterval);
    return;
  }
  event::trimHeap();
}

void ConnectionManager::scheduleDormant(ManagedConnection& connection) {
  const event::MonotonicTime at = connection.dormantDeadline().first;
  if (at == event::MonotonicTime::max()) return;
  event::MemoryAccount::Scope nobody(nullptr);  // the heap is the worker's, not a connection's
  if (dormant_heap_.size() >= 2 * dormant_poll_.size() + kDormantHeapSlack) {
    // Mostly stale: rebuild from the connections that are dormant now (this one included).
    dormant_heap_.clear();
    for (const auto& [id, managed] : connections_) {
      if (!managed->dormant()) continue;
      const event::MonotonicTime deadline = managed->dormantDeadline().first;
      if (deadline != event::MonotonicTime::max()) dormant_heap_.push_back({deadline, id});
    }
    std::make_heap(dormant_heap_.begin(), dormant_heap_.end(), std::greater<>());
    armDormantTimer();
    return;
  }
  dormant_heap_.push_back({at, connection.id()});
  std::push_heap(dormant_heap_.begin(), dormant_heap_.end(), std::greater<>());
  if (dormant_heap_.front().id == connection.id()) armDormantTimer();
}

void ConnectionManager::armDormantTimer() {
  if (dormant_heap_.empty()) {
    dormant_timer_->disable();
    return;
  }
  const event::MonotonicTime now = dispatcher_.now();
  const event::MonotonicTime at = dormant_heap_.front().at;
  dormant_timer_->enable(at <= now ? std::chrono::milliseconds(0)
                                   : std::chrono::ceil<std::chrono::milliseconds>(at - now));
}

void ConnectionManager::onDormantTimer() {
  const event::MonotonicTime now = dispatcher_.now();
  while (!dormant_heap_.empty() && dormant_heap_.front().at <= now) {
    std::pop_heap(dormant_heap_.begin(), dormant_heap_.end(), std::greater<>());
    const DormantEntry entry = dormant_heap_.back();
    dormant_heap_.pop_back();
    ManagedConnection* connection = find(entry.id);
    if (connection == nullptr || !connection->dormant()) continue;  // stale
    const auto [at, reason] = connection->dormantDeadline();
    if (at != entry.at) continue;  // stale: rescheduled since
    if (reason == network::CloseReason::kMaxAge) {
      // As an awake one would: drained, which for an idle connection is a graceful close now.
      http::ServerSession& session = connection->session();
      event::MemoryAccount::Scope scope(session.connection().memoryAccount());
      session.drain(network::CloseReason::kMaxAge, session.policy().drain_timeout);
    } else {
      connection->closeDormant(reason, /*abort=*/false);
    }
  }
  armDormantTimer();
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
  // The map's slots are visited in hash order, but the records and their accounts lie in slab
  // chunks in accept order: each visit would wait for two cache misses in a row (a scrape or a
  // list walks every connection on this thread). Asking for records a few slots ahead, and for
  // the accounts of records already on their way, overlaps those misses.
  constexpr int kRecordsAhead = 16;
  constexpr int kAccountsAhead = 8;
  auto record_ahead = connections_.begin();
  auto account_ahead = connections_.begin();
  const auto end = connections_.end();
  for (int i = 0; i < kRecordsAhead && record_ahead != end; ++i) {
    __builtin_prefetch(record_ahead->second.get());
    ++record_ahead;
    if (i >= kRecordsAhead - kAccountsAhead) {
      __builtin_prefetch(account_ahead->second->account_.get());
      ++account_ahead;
    }
  }
  for (auto it = connections_.begin(); it != end; ++it) {
    if (record_ahead != end) {
      __builtin_prefetch(record_ahead->second.get());
      ++record_ahead;
    }
    if (account_ahead != end) {
      __builtin_prefetch(account_ahead->second->account_.get());
      ++account_ahead;
    }
    fn(*it->second);
  }
}

CommandResult ConnectionManager::drain(uint64_t id,
                                       std::optional<std::chrono::milliseconds> deadline,
                                       network::CloseReason reason) {
  CommandResult result;
  result.id = id;
  ManagedConnection* connection = find(id);
  if (connection == nullptr) return result;
  ++drains_;
  result.state_before = connection->state();
  if (connection->closesAsleep()) {
    // What waking it would come to (an idle connection closes at once), without making a
    // session only to close it: a drain by selector over many thousands held the worker 37 µs
    // per connection that way.
    connection->closeDormant(reason, /*abort=*/false);
    result.outcome = CommandResult::Outcome::kClosed;
    return result;
  }
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
  ++kills_;
  result.state_before = connection->state();
  if (connection->dormant()) {
    connection->closeDormant(network::CloseReason::kKilled, /*abort=*/true);
  } else {
    event::MemoryAccount::Scope scope(connection->session().connection().memoryAccount());
    connection->session().close(network::CloseReason::kKilled, /*abort=*/true);
  }
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

void ConnectionManager::endAll(network::CloseReason reason,
                               const std::function<void(uint64_t, ManagedConnection&)>& awake) {
  for (uint64_t id : idsMatching({})) {
    ManagedConnection* connection = find(id);
    if (connection == nullptr) continue;
    // Asleep: closed as they lie, rather than all woken at once to be closed.
    if (connection->dormant()) {
      connection->closeDormant(reason, /*abort=*/false);
    } else {
      awake(id, *connection);
    }
  }
}

void ConnectionManager::drainAll(network::CloseReason reason,
                                 std::chrono::milliseconds deadline) {
  endAll(reason, [&](uint64_t id, ManagedConnection&) { drain(id, deadline, reason); });
}

void ConnectionManager::closeAll(network::CloseReason reason) {
  endAll(reason, [&](uint64_t, ManagedConnection& connection) {
    event::MemoryAccount::Scope scope(connection.session().connection().memoryAccount());
    connection.session().close(reason, false);
  });
}

void ConnectionManager::setPolicies(PolicyTablePtr policies) {
  CW_ASSERT(policies != nullptr);
  // The old table stays alive until every connection points into the new one.
  PolicyTablePtr previous = std::move(policies_);
  policies_ = std::move(policies);
  for (const auto& [id, connection] : connections_) {
    if (connection->dormant()) {
      connection->refreshPolicy();
      continue;
    }
    event::MemoryAccount::Scope scope(connection->session().connection().memoryAccount());
    connection->refreshPolicy();
  }
}

}  // namespace connwarden::conn
