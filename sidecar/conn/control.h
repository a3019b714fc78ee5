// The operator's handle on every connection of the process, for the admin API (and tests): list,
// get, drain, kill (one or by selector), route policies, and a stream of lifecycle events.
//
// Thread-safe. Each call is posted to the worker that owns the connection (the ID says which)
// and waits for its answer at most `timeout`; a worker that does not answer in time gives
// DEADLINE_EXCEEDED, never a hang. Policy changes build a new PolicyTable, hand it to every
// worker (existing connections re-arm their timers at once) and are persisted through the
// callback given at construction, so a restart keeps them.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sidecar/conn/connection_manager.h"
#include "sidecar/conn/policy_table.h"
#include "sidecar/http/http_config.h"

namespace connwarden::conn {

using std::chrono::milliseconds;

class ConnectionControl final : public LifecycleEventSink {
 public:
  struct WorkerHandle {
    event::Dispatcher* dispatcher;
    ConnectionManager* manager;  // touched only on `dispatcher`'s thread
  };
  // Operator overrides by route name, to be stored; an error fails the change.
  using PersistFn = std::function<absl::Status(const std::map<std::string, http::RoutePolicy>&)>;

  // `overrides` are those persisted by an earlier run; ones naming routes that no longer
  // exist are dropped (and logged).
  ConnectionControl(std::vector<http::RoutePolicy> listener_defaults,
                    std::vector<http::RouteConfig> routes,
                    std::map<std::string, http::RoutePolicy> overrides, PersistFn persist);
  // The workers, once they exist (they take policyTable() when built). Call once.
  void attach(std::vector<WorkerHandle> workers);
  PolicyTablePtr policyTable() const;

  enum class SortBy { kId, kMemory, kAge, kIdle };
  struct ListRequest {
    ConnectionSelector selector;
    SortBy sort_by = SortBy::kId;
    bool descending = false;
    size_t offset = 0;
    size_t limit = 100;  // at most kMaxPage
  };
  struct ListResult {
    std::vector<ConnectionSnapshot> connections;
    size_t total = 0;  // matching connections, over all pages
  };
  static constexpr size_t kMaxPage = 10'000;

  absl::StatusOr<ListResult> list(const ListRequest& request, milliseconds timeout) const;
  // NOT_FOUND for an unknown or closed ID.
  absl::StatusOr<ConnectionSnapshot> get(uint64_t id, milliseconds timeout) const;
  // No deadline: the connection's policy's drain_timeout. A deadline of 0 is a kill. An unknown
  // or closed ID is not an error: the result says kNotFound.
  absl::StatusOr<CommandResult> drain(uint64_t id, std::optional<milliseconds> deadline,
                                      milliseconds timeout);
  absl::StatusOr<CommandResult> kill(uint64_t id, milliseconds timeout);
  // Bulk, over every worker: drain (or kill) what `selector` matches.
  absl::StatusOr<std::vector<CommandResult>> drainMatching(const ConnectionSelector& selector,
                                                           std::optional<milliseconds> deadline,
                                                           bool kill, milliseconds timeout);

  // Counts and memory over every worker, for the admin API's server info.
  struct Summary {
    uint32_t workers = 0;
    size_t connections = 0;
    std::map<http::SessionState, size_t> by_state;
    MemoryUsage memory;  // summed over open connections (peak: the sum of their peaks)
    uint64_t opened = 0;
    std::map<network::CloseReason, uint64_t> closes;  // reasons seen so far
  };
  absl::StatusOr<Summary> summary(milliseconds timeout) const;

  struct PolicyView {
    http::RoutePolicy configured;               // from the config file
    std::optional<http::RoutePolicy> override;  // set by an operator
    http::RoutePolicy effective() const { return override.value_or(configured); }
  };
  // NOT_FOUND for an unknown route.
  absl::StatusOr<PolicyView> getPolicy(const std::string& route) const;
  std::vector<std::string> routeNames() const;
  // Replaces the route's policy (unset fields inherit the listener's defaults). INVALID_ARGUMENT
  // naming the field ("policy.idle_timeout: must not be negative"), NOT_FOUND for an unknown
  // route.
  absl::Status setPolicy(const std::string& route, const http::RoutePolicy& policy);
  // Back to the config file's policy.
  absl::Status resetPolicy(const std::string& route);
  static absl::Status validatePolicy(const http::RoutePolicy& policy);

  // Lifecycle events of every worker. `subscriber` runs on worker threads and must not block;
  // it is not called after unsubscribe() returns.
  using Subscriber = std::function<void(const LifecycleEvent&)>;
  uint64_t subscribe(Subscriber subscriber);
  void unsubscribe(uint64_t subscription);

  // LifecycleEventSink
  bool wanted() const override { return subscribers_count_.load(std::memory_order_relaxed) > 0; }
  void publish(LifecycleEvent&& event) override;

 private:
  const WorkerHandle* workerOf(uint64_t id) const;
  PolicyTablePtr buildTable() const;  // REQUIRES(policy_mutex_)
  absl::Status changeOverrides(
      const std::function<void(std::map<std::string, http::RoutePolicy>&)>& change);

  std::vector<WorkerHandle> workers_;
  const std::vector<http::RoutePolicy> listener_defaults_;
  const std::vector<http::RouteConfig> routes_;
  PersistFn persist_;

  mutable std::mutex policy_mutex_;
  std::map<std::string, http::RoutePolicy> overrides_;  // GUARDED_BY(policy_mutex_)
  PolicyTablePtr table_;                                // GUARDED_BY(policy_mutex_)

  mutable std::mutex subscribers_mutex_;
  std::map<uint64_t, Subscriber> subscribers_;  // GUARDED_BY(subscribers_mutex_)
  uint64_t next_subscription_ = 1;              // GUARDED_BY(subscribers_mutex_)
  std::atomic<size_t> subscribers_count_{0};
};

}  // namespace connwarden::conn
