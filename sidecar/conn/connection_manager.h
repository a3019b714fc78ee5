// The registry of one worker's client connections: every accepted connection gets a 64-bit ID,
// a state, timestamps and a memory account, and leaves the registry in the same step that closes
// its socket. It also carries out the operator's commands on them (drain, kill, policy changes)
// and reports what happens to them as lifecycle events. Worker thread only.
//
// IDs are never reused in the life of the process and encode the owning worker in their low
// 8 bits, so any thread can route a lookup to the right worker in O(1).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "sidecar/conn/policy_table.h"
#include "sidecar/event/dispatcher.h"
#include "sidecar/event/dormant_poll.h"
#include "sidecar/event/memory_account.h"
#include "sidecar/http/server_session.h"
#include "sidecar/network/close_reason.h"
#include "sidecar/network/listener.h"

namespace connwarden::conn {

constexpr int kWorkerIdBits = 8;
constexpr uint32_t kMaxWorkers = 1u << kWorkerIdBits;
inline uint32_t workerOfConnectionId(uint64_t id) { return id & (kMaxWorkers - 1); }

struct MemoryUsage {
  int64_t total = 0;
  int64_t buffers = 0;
  int64_t tls = 0;
  int64_t codec = 0;
  int64_t other = 0;
  int64_t peak = 0;
};

// What an operator sees of one connection, copied on its worker.
struct ConnectionSnapshot {
  uint64_t id = 0;
  uint32_t worker = 0;
  std::string listener;
  std::string peer;
  std::string local;
  bool tls = false;
  network::TlsInfo tls_info;
  std::string protocol;  // "http/1.1", or "tunnel" after an upgrade
  http::SessionState state = http::SessionState::kIdle;
  std::string route;     // of the latest request; empty before the first
  std::chrono::system_clock::time_point created;
  std::chrono::system_clock::time_point last_activity;
  std::chrono::milliseconds age{0};
  std::chrono::milliseconds idle{0};  // since the last activity
  uint64_t requests = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  MemoryUsage memory;
  network::CloseReason close_reason = network::CloseReason::kNone;  // set in "closed" events
};

// Which connections a bulk command or a list applies to. Unset fields match everything.
struct ConnectionSelector {
  std::optional<std::string> route;
  std::optional<std::string> listener;
  std::optional<http::SessionState> state;
  std::optional<std::chrono::milliseconds> idle_at_least;
  std::optional<std::chrono::milliseconds> age_at_least;
  std::optional<network::Cidr> peer;
  std::optional<int64_t> memory_at_least;  // bytes charged to its memory account
};

// What a drain or kill did to one connection.
struct CommandResult {
  enum class Outcome { kNotFound, kClosed, kDraining };
  uint64_t id = 0;
  Outcome outcome = Outcome::kNotFound;
  http::SessionState state_before = http::SessionState::kIdle;
};
std::string_view commandOutcomeName(CommandResult::Outcome outcome);

struct LifecycleEvent {
  enum class Kind { kOpened, kStateChanged, kClosed };
  Kind kind = Kind::kOpened;
  ConnectionSnapshot connection;  // full for opened and closed; id, worker, state and route else
};

// Receives lifecycle events on the worker's thread: must not block. wanted() is asked first so
// that nothing is copied when nobody listens.
class LifecycleEventSink {
 public:
  virtual ~LifecycleEventSink() = default;
  virtual bool wanted() const = 0;
  virtual void publish(LifecycleEvent&& event) = 0;
};

class ConnectionManager;

// One registered client connection: its session and what the operator sees of it.
//
// A hibernated HTTP connection goes dormant: its session, Connection and raw transport are
// freed, and the socket (with its TLS state, if any) waits in the manager's DormantPoll, its
// deadlines in the manager's heap. What is left is this record and the account, both from slab
// pools kept apart from the general heap. The next bytes (or the peer's FIN) wake it into a new
// session. Kill, timeouts and shutdown close it as it lies; so does an operator's drain when it
// is plain and nothing has arrived since it slept (otherwise the drain wakes it first).
class ManagedConnection : public event::DeferredDeletable, private http::SessionObserver {
 public:
  // Takes ownership of `account` (retired when this is destroyed).
  ManagedConnection(ConnectionManager& manager, uint64_t id, network::ListenerShared& listener,
                    network::ConnectionPtr connection, event::MemoryAccount* account);
  ~ManagedConnection() override;
  // From a slab pool, charged to the current account (see event::SlabPool).
  static void* operator new(size_t size);
  static void operator delete(void* ptr);

  uint64_t id() const { return id_; }
  bool dormant() const { return dormant_fd_ >= 0; }
  // The session, made again first if the connection is dormant (it resumes idle).
  http::ServerSession& session();
  http::SessionState state() const {
    return session_ == nullptr || dormant() ? http::SessionState::kHibernating : session_->state();
  }
  const http::Route* route() const { return route_; }
  event::MonotonicTime createdAt() const { return created_; }
  event::MonotonicTime lastActivity() const { return last_activity_; }
  uint64_t requestsServed() const { return requests_served_; }
  const network::ListenerShared& listener() const { return listener_; }
  const event::MemoryAccount& memoryAccount() const { return *account_; }
  ConnectionSnapshot snapshot() const;
  // As of `now`: a list takes every snapshot at the instant it ranked them by, so that the ages
  // and idle times it shows agree with its order.
  ConnectionSnapshot snapshot(event::MonotonicTime now) const;
  bool matches(const ConnectionSelector& selector, event::MonotonicTime now) const;
  // Re-reads this connection's policy from the manager's current table.
  void refreshPolicy();

 private:
  friend class ConnectionManager;
  // http::SessionObserver
  void onSessionStateChanged(http::SessionState state) override;
  void onRequestRouted(const http::Route* route) override;
  void onRequestComplete() override;
  void onHibernated() override;
  void onSessionClosed(network::CloseReason reason) override;

  // Hands the quiet socket of a hibernated session to the DormantPoll and frees the session.
  void sleep();
  void wake();
  // The earliest deadline of a dormant connection under its current policy, and what it is.
  std::pair<event::MonotonicTime, network::CloseReason> dormantDeadline() const;
  // Dormant, plain, and nothing unread on its socket: a drain may close it as it lies.
  bool closesAsleep() const;
  // Closes a dormant connection as it lies (abortive with `abort`); it leaves the registry.
  void closeDormant(network::CloseReason reason, bool abort);

  struct RetireAccount {
    void operator()(event::MemoryAccount* account) const { account->retire(); }
  };
  // First member, so destroyed last: everything below is charged to it.
  std::unique_ptr<event::MemoryAccount, RetireAccount> account_;
  ConnectionManager& manager_;
  const uint64_t id_;
  network::ListenerShared& listener_;
  // One pointer for what it holds besides this record, both owned: awake, its session; dormant
  // (dormant_fd_ >= 0), its TLS transport, or null for a raw one (made anew on waking). Null
  // once a dormant connection is closed.
  union {
    http::ServerSession* session_ = nullptr;
    network::TransportSocket* dormant_transport_;
  };
  const http::Route* route_ = nullptr;
  event::MonotonicTime created_;
  event::MonotonicTime last_activity_;
  uint64_t requests_served_ = 0;
  uint64_t bytes_in_before_ = 0;  // through earlier sessions (before a sleep)
  uint64_t bytes_out_before_ = 0;
  // Kept small on purpose (it is most of what a dormant connection costs): the addresses of a
  // dormant one are asked of the kernel, its deadline is recomputed from the policy.
  uint32_t requests_started_ = 0;  // while dormant (max_requests_per_connection goes on)
  int dormant_fd_ = -1;
};

class ConnectionManager {
 public:
  ConnectionManager(event::Dispatcher& dispatcher, uint32_t worker_index,
                    http::WorkerHttpContext& http_context, PolicyTablePtr policies);
  ~ConnectionManager();

  // Takes ownership of an accepted socket on `listener`: transport (TLS when configured),
  // session, registry entry.
  void onAccept(int fd, network::ListenerShared& listener);

  size_t size() const { return connections_.size(); }
  ManagedConnection* find(uint64_t id) const;
  void forEach(const std::function<void(ManagedConnection&)>& fn) const;

  // Drains one connection (see ServerSession::drain); no deadline: its policy's drain_timeout.
  CommandResult drain(uint64_t id, std::optional<std::chrono::milliseconds> deadline,
                      network::CloseReason reason = network::CloseReason::kDrained);
  // Abortive close now; its request in flight is cancelled, its upstream connection discarded.
  CommandResult kill(uint64_t id);
  // The same for every connection the selector matches.
  std::vector<CommandResult> drainMatching(const ConnectionSelector& selector,
                                           std::optional<std::chrono::milliseconds> deadline);
  std::vector<CommandResult> killMatching(const ConnectionSelector& selector);
  // Drains every connection (shutdown).
  void drainAll(network::CloseReason reason, std::chrono::milliseconds deadline);
  // Closes every connection now.
  void closeAll(network::CloseReason reason);

  // Every connection obeys `policies` from now on; timers are re-armed at once.
  void setPolicies(PolicyTablePtr policies);
  const PolicyTable& policies() const { return *policies_; }
  void setEventSink(LifecycleEventSink* sink) { sink_ = sink; }

  // Closes since start, by reason (index: CloseReason value).
  const std::array<uint64_t, 32>& closesByReason() const { return closes_by_reason_; }
  uint64_t opened() const { return opened_; }
  uint64_t hibernations() const { return hibernations_; }
  // Connections that woke from dormancy, and those dormant now.
  uint64_t wakeups() const { return wakeups_; }
  size_t dormant() const { return dormant_poll_.size(); }
  // Drain and kill commands carried out on an open connection (an operator's, one or bulk, and
  // shutdown's drain of the awake ones).
  uint64_t drains() const { return drains_; }
  uint64_t kills() const { return kills_; }
  // Time connections have spent dormant since start, all added up (up to now).
  std::chrono::nanoseconds dormantTime() const;
  uint32_t workerIndex() const { return worker_index_; }
  event::Dispatcher& dispatcher() { return dispatcher_; }
  http::WorkerHttpContext& httpContext() { return http_context_; }

 private:
  friend class ManagedConnection;
  void onClosed(ManagedConnection& connection, network::CloseReason reason);
  // Shutdown: every dormant connection closes as it lies; `awake` ends each of the others.
  void endAll(network::CloseReason reason,
              const std::function<void(uint64_t, ManagedConnection&)>& awake);
  void onHibernated();
  // A request completed or a connection closed: memory may have been freed.
  void noteActivity();
  void onQuietTimer();
  // Puts a dormant connection's deadline (again) in the heap.
  void scheduleDormant(ManagedConnection& connection);
  void onDormantTimer();
  void armDormantTimer();
  void publish(LifecycleEvent::Kind kind, const ManagedConnection& connection,
               network::CloseReason reason = network::CloseReason::kNone);
  std::vector<uint64_t> idsMatching(const ConnectionSelector& selector) const;

  event::Dispatcher& dispatcher_;
  const uint32_t worker_index_;
  http::WorkerHttpContext& http_context_;
  PolicyTablePtr policies_;
  LifecycleEventSink* sink_ = nullptr;
  absl::flat_hash_map<uint64_t, std::unique_ptr<ManagedConnection>> connections_;
  // Gives memory freed by hibernation back to the system, at most once per interval.
  std::unique_ptr<event::Timer> trim_timer_;
  // And what a burst left once the worker has gone quiet, hibernation or not: armed by activity,
  // it trims when a whole interval passed without any (activity_ is what it saw last).
  std::unique_ptr<event::Timer> quiet_timer_;
  uint64_t activity_ = 0;
  uint64_t activity_seen_ = 0;
  // Dormant connections: their sockets, and their deadlines as a min-heap (an entry is stale
  // when its connection is gone, awake or rescheduled; stale ones are dropped when popped or
  // when they outnumber the live ones).
  event::DormantPoll dormant_poll_;
  struct DormantEntry {
    event::MonotonicTime at;
    uint64_t id;
    bool operator>(const DormantEntry& other) const { return at > other.at; }
  };
  std::vector<DormantEntry> dormant_heap_;
  std::unique_ptr<event::Timer> dormant_timer_;
  uint64_t next_sequence_ = 1;
  uint64_t wakeups_ = 0;
  uint64_t opened_ = 0;
  uint64_t hibernations_ = 0;
  uint64_t drains_ = 0;
  uint64_t kills_ = 0;
  // The integral of dormant_poll_.size() over time, up to dormant_time_at_: brought up to date
  // just before every change of the dormant count (no per-connection state needed).
  void accrueDormantTime();
  std::chrono::nanoseconds dormant_time_{0};
  event::MonotonicTime dormant_time_at_{};
  std::array<uint64_t, 32> closes_by_reason_{};
};

}  // namespace connwarden::conn
