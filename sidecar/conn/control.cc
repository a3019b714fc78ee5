#include "sidecar/conn/control.h"

#include <algorithm>
#include <condition_variable>
#include <memory>

#include "absl/strings/str_cat.h"
#include "sidecar/event/log.h"

namespace connwarden::conn {

namespace {

constexpr milliseconds kMaxDuration{365LL * 24 * 3600 * 1000};

// One answer from a worker, which may come after the caller stopped waiting: the state is
// shared so that a late answer writes into memory that is still alive.
template <typename T>
struct Reply {
  std::mutex mutex;
  std::condition_variable ready;
  std::vector<std::optional<T>> values;
  size_t pending = 0;
};

// Runs `fn` on each of `workers` and collects the answers; DEADLINE_EXCEEDED names a worker that
// did not answer within `timeout`.
template <typename T>
absl::StatusOr<std::vector<T>> askWorkers(
    const std::vector<const ConnectionControl::WorkerHandle*>& workers,
    std::function<T(ConnectionManager&)> fn, milliseconds timeout) {
  auto reply = std::make_shared<Reply<T>>();
  reply->values.resize(workers.size());
  reply->pending = workers.size();
  for (size_t i = 0; i < workers.size(); ++i) {
    ConnectionManager* manager = workers[i]->manager;
    workers[i]->dispatcher->post([reply, fn, manager, i] {
      T value = fn(*manager);
      std::lock_guard<std::mutex> lock(reply->mutex);
      reply->values[i] = std::move(value);
      if (--reply->pending == 0) reply->ready.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(reply->mutex);
  if (!reply->ready.wait_for(lock, timeout, [&] { return reply->pending == 0; })) {
    for (size_t i = 0; i < workers.size(); ++i) {
      if (!reply->values[i].has_value()) {
        return absl::DeadlineExceededError(absl::StrCat(
            "worker ", workers[i]->manager->workerIndex(), " did not answer within ",
            timeout.count(), " ms"));
      }
    }
  }
  std::vector<T> out;
  out.reserve(workers.size());
  for (auto& value : reply->values) out.push_back(std::move(*value));
  return out;
}

absl::Status checkDuration(const std::optional<milliseconds>& value, const std::string& field) {
  if (!value) return absl::OkStatus();
  if (value->count() < 0) return absl::InvalidArgumentError(field + ": must not be negative");
  if (*value > kMaxDuration) {
    return absl::InvalidArgumentError(field + ": must be at most 1 year (31536000s)");
  }
  return absl::OkStatus();
}

int64_t sortKey(const ConnectionSnapshot& c, ConnectionControl::SortBy by) {
  switch (by) {
    case ConnectionControl::SortBy::kId: return static_cast<int64_t>(c.id >> kWorkerIdBits);
    case ConnectionControl::SortBy::kMemory: return c.memory.total;
    case ConnectionControl::SortBy::kAge: return c.age.count();
    case ConnectionControl::SortBy::kIdle: return c.idle.count();
  }
  return 0;
}

// The same key, read from the connection itself (what its snapshot at `now` would say), so that a
// worker can rank every match without copying anything out of it.
int64_t sortKey(const ManagedConnection& c, ConnectionControl::SortBy by,
                event::MonotonicTime now) {
  using std::chrono::duration_cast;
  switch (by) {
    case ConnectionControl::SortBy::kId: return static_cast<int64_t>(c.id() >> kWorkerIdBits);
    case ConnectionControl::SortBy::kMemory: return c.memoryAccount().total();
    case ConnectionControl::SortBy::kAge:
      return duration_cast<milliseconds>(now - c.createdAt()).count();
    case ConnectionControl::SortBy::kIdle:
      return duration_cast<milliseconds>(now - c.lastActivity()).count();
  }
  return 0;
}

// Whether a connection with (key_a, id_a) comes before one with (key_b, id_b) in a list.
bool listedBefore(int64_t key_a, uint64_t id_a, int64_t key_b, uint64_t id_b, bool descending) {
  if (key_a != key_b) return descending ? key_a > key_b : key_a < key_b;
  return id_a < id_b;  // a stable order across pages
}

void sortSnapshots(std::vector<ConnectionSnapshot>& list, ConnectionControl::SortBy by,
                   bool descending) {
  std::sort(list.begin(), list.end(), [by, descending](const auto& a, const auto& b) {
    return listedBefore(sortKey(a, by), a.id, sortKey(b, by), b.id, descending);
  });
}

}  // namespace

ConnectionControl::ConnectionControl(std::vector<http::RoutePolicy> listener_defaults,
                                     std::vector<http::RouteConfig> routes,
                                     std::map<std::string, http::RoutePolicy> overrides,
                                     PersistFn persist)
    : listener_defaults_(std::move(listener_defaults)),
      routes_(std::move(routes)),
      persist_(std::move(persist)) {
  for (auto& [route, policy] : overrides) {
    const std::string& name = route;  // a structured binding cannot be captured before C++20
    const bool known = std::any_of(routes_.begin(), routes_.end(),
                                   [&](const http::RouteConfig& r) { return r.name == name; });
    if (!known) {
      CW_LOG(kWarn, "stored policy for route \"%s\" dropped: no such route in the config", route);
    } else if (absl::Status s = validatePolicy(policy); !s.ok()) {
      CW_LOG(kWarn, "stored policy for route \"%s\" dropped: %s", route, s.message());
    } else {
      overrides_.emplace(route, policy);
    }
  }
  table_ = buildTable();
}

void ConnectionControl::attach(std::vector<WorkerHandle> workers) {
  CW_ASSERT(workers_.empty());
  workers_ = std::move(workers);
}

PolicyTablePtr ConnectionControl::policyTable() const {
  std::lock_guard<std::mutex> lock(policy_mutex_);
  return table_;
}

PolicyTablePtr ConnectionControl::buildTable() const {
  std::vector<http::RoutePolicy> route_policies;
  for (const http::RouteConfig& route : routes_) {
    auto it = overrides_.find(route.name);
    route_policies.push_back(it != overrides_.end() ? it->second : route.policy);
  }
  return std::make_shared<const PolicyTable>(listener_defaults_, route_policies);
}

const ConnectionControl::WorkerHandle* ConnectionControl::workerOf(uint64_t id) const {
  const uint32_t worker = workerOfConnectionId(id);
  return worker < workers_.size() ? &workers_[worker] : nullptr;
}

absl::StatusOr<ConnectionControl::ListResult> ConnectionControl::list(
    const ListRequest& request, milliseconds timeout) const {
  if (request.limit > kMaxPage) {
    return absl::InvalidArgumentError(absl::StrCat("limit: at most ", kMaxPage));
  }
  // Each worker ranks its matches by a key read in place, and snapshots only the first
  // offset + limit of them: a snapshot copies strings and, for a dormant connection, asks the
  // kernel for its addresses, which for every one of 100 000 connections would stall the worker's
  // data plane for a fraction of a second. With one worker its ranking is the final one, so it
  // also skips the pages before the offset.
  const size_t wanted = request.offset + request.limit;
  const size_t skip = workers_.size() == 1 ? request.offset : 0;
  struct Part {
    std::vector<ConnectionSnapshot> connections;
    size_t total = 0;
  };
  std::vector<const WorkerHandle*> all;
  for (const WorkerHandle& worker : workers_) all.push_back(&worker);
  auto parts = askWorkers<Part>(
      all,
      [request, wanted, skip](ConnectionManager& manager) {
        struct Ranked {
          int64_t key;
          uint64_t id;
          const ManagedConnection* connection;
        };
        const event::MonotonicTime now = manager.dispatcher().now();
        std::vector<Ranked> ranked;
        ranked.reserve(manager.size());
        manager.forEach([&](ManagedConnection& connection) {
          if (!connection.matches(request.selector, now)) return;
          ranked.push_back(
              {sortKey(connection, request.sort_by, now), connection.id(), &connection});
        });
        const auto before = [descending = request.descending](const Ranked& a, const Ranked& b) {
          return listedBefore(a.key, a.id, b.key, b.id, descending);
        };
        const size_t keep = std::min(wanted, ranked.size());
        if (keep < ranked.size()) {
          std::nth_element(ranked.begin(), ranked.begin() + keep, ranked.end(), before);
        }
        std::sort(ranked.begin(), ranked.begin() + keep, before);
        Part part;
        part.total = ranked.size();
        for (size_t i = skip; i < keep; ++i) {
          part.connections.push_back(ranked[i].connection->snapshot(now));
        }
        return part;
      },
      timeout);
  if (!parts.ok()) return parts.status();
  ListResult result;
  std::vector<ConnectionSnapshot> merged;
  for (Part& part : *parts) {
    result.total += part.total;
    std::move(part.connections.begin(), part.connections.end(), std::back_inserter(merged));
  }
  // One worker's part is in order already; several are merged.
  if (parts->size() > 1) sortSnapshots(merged, request.sort_by, request.descending);
  for (size_t i = request.offset - skip; i < merged.size() && i < wanted - skip; ++i) {
    result.connections.push_back(std::move(merged[i]));
  }
  return result;
}

absl::StatusOr<ConnectionSnapshot> ConnectionControl::get(uint64_t id,
                                                          milliseconds timeout) const {
  const WorkerHandle* worker = workerOf(id);
  if (worker == nullptr) return absl::NotFoundError(absl::StrCat("no connection ", id));
  auto answer = askWorkers<std::optional<ConnectionSnapshot>>(
      {worker},
      [id](ConnectionManager& manager) -> std::optional<ConnectionSnapshot> {
        ManagedConnection* connection = manager.find(id);
        if (connection == nullptr) return std::nullopt;
        return connection->snapshot();
      },
      timeout);
  if (!answer.ok()) return answer.status();
  if (!(*answer)[0].has_value()) return absl::NotFoundError(absl::StrCat("no connection ", id));
  return *std::move((*answer)[0]);
}

absl::StatusOr<CommandResult> ConnectionControl::drain(uint64_t id,
                                                       std::optional<milliseconds> deadline,
                                                       milliseconds timeout) {
  if (absl::Status s = checkDuration(deadline, "deadline"); !s.ok()) return s;
  const WorkerHandle* worker = workerOf(id);
  if (worker == nullptr) return CommandResult{id, CommandResult::Outcome::kNotFound, {}};
  auto answer = askWorkers<CommandResult>(
      {worker}, [id, deadline](ConnectionManager& manager) { return manager.drain(id, deadline); },
      timeout);
  if (!answer.ok()) return answer.status();
  return (*answer)[0];
}

absl::StatusOr<CommandResult> ConnectionControl::kill(uint64_t id, milliseconds timeout) {
  const WorkerHandle* worker = workerOf(id);
  if (worker == nullptr) return CommandResult{id, CommandResult::Outcome::kNotFound, {}};
  auto answer = askWorkers<CommandResult>(
      {worker}, [id](ConnectionManager& manager) { return manager.kill(id); }, timeout);
  if (!answer.ok()) return answer.status();
  return (*answer)[0];
}

absl::StatusOr<std::vector<CommandResult>> ConnectionControl::drainMatching(
    const ConnectionSelector& selector, std::optional<milliseconds> deadline, bool kill,
    milliseconds timeout) {
  if (absl::Status s = checkDuration(deadline, "deadline"); !s.ok()) return s;
  std::vector<const WorkerHandle*> all;
  for (const WorkerHandle& worker : workers_) all.push_back(&worker);
  auto answers = askWorkers<std::vector<CommandResult>>(
      all,
      [selector, deadline, kill](ConnectionManager& manager) {
        return kill ? manager.killMatching(selector) : manager.drainMatching(selector, deadline);
      },
      timeout);
  if (!answers.ok()) return answers.status();
  std::vector<CommandResult> out;
  for (auto& part : *answers) std::move(part.begin(), part.end(), std::back_inserter(out));
  return out;
}

absl::StatusOr<ConnectionControl::Summary> ConnectionControl::summary(
    milliseconds timeout) const {
  std::vector<const WorkerHandle*> all;
  for (const WorkerHandle& worker : workers_) all.push_back(&worker);
  auto parts = askWorkers<Summary>(
      all,
      [](ConnectionManager& manager) {
        Summary part;
        part.connections = manager.size();
        manager.forEach([&](ManagedConnection& connection) {
          ++part.by_state[connection.state()];
          const event::MemoryAccount& account = connection.memoryAccount();
          part.memory.total += account.total();
          part.memory.buffers += account.bytes(event::MemoryCategory::kBuffers);
          part.memory.tls += account.bytes(event::MemoryCategory::kTls);
          part.memory.codec += account.bytes(event::MemoryCategory::kCodec);
          part.memory.other += account.bytes(event::MemoryCategory::kOther);
          part.memory.peak += account.peak();
        });
        part.opened = manager.opened();
        const auto& closes = manager.closesByReason();
        for (size_t i = 0; i < closes.size(); ++i) {
          if (closes[i] > 0) part.closes[static_cast<network::CloseReason>(i)] = closes[i];
        }
        return part;
      },
      timeout);
  if (!parts.ok()) return parts.status();
  Summary out;
  out.workers = static_cast<uint32_t>(workers_.size());
  for (const Summary& part : *parts) {
    out.connections += part.connections;
    for (const auto& [state, n] : part.by_state) out.by_state[state] += n;
    out.memory.total += part.memory.total;
    out.memory.buffers += part.memory.buffers;
    out.memory.tls += part.memory.tls;
    out.memory.codec += part.memory.codec;
    out.memory.other += part.memory.other;
    out.memory.peak += part.memory.peak;
    out.opened += part.opened;
    for (const auto& [reason, n] : part.closes) out.closes[reason] += n;
  }
  return out;
}

absl::StatusOr<ConnectionControl::PolicyView> ConnectionControl::getPolicy(
    const std::string& route) const {
  std::lock_guard<std::mutex> lock(policy_mutex_);
  for (const http::RouteConfig& config : routes_) {
    if (config.name != route) continue;
    PolicyView view;
    view.configured = config.policy;
    if (auto it = overrides_.find(route); it != overrides_.end()) view.override = it->second;
    return view;
  }
  return absl::NotFoundError(absl::StrCat("route: no route named \"", route, "\""));
}

std::vector<std::string> ConnectionControl::routeNames() const {
  std::vector<std::string> names;
  for (const http::RouteConfig& config : routes_) names.push_back(config.name);
  return names;
}

absl::Status ConnectionControl::validatePolicy(const http::RoutePolicy& policy) {
  for (absl::Status s : {
           checkDuration(policy.hibernate_after, "policy.hibernate.after"),
           checkDuration(policy.idle_timeout, "policy.idle_timeout"),
           checkDuration(policy.request_header_timeout, "policy.request_header_timeout"),
           checkDuration(policy.request_timeout, "policy.request_timeout"),
           checkDuration(policy.write_timeout, "policy.write_timeout"),
           checkDuration(policy.max_connection_age, "policy.max_connection_age"),
           checkDuration(policy.drain_timeout, "policy.drain_timeout"),
           checkDuration(policy.tunnel_idle_timeout, "policy.tunnel_idle_timeout"),
       }) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ConnectionControl::setPolicy(const std::string& route,
                                          const http::RoutePolicy& policy) {
  if (absl::Status s = validatePolicy(policy); !s.ok()) return s;
  if (absl::StatusOr<PolicyView> known = getPolicy(route); !known.ok()) return known.status();
  return changeOverrides([&](auto& overrides) { overrides[route] = policy; });
}

absl::Status ConnectionControl::resetPolicy(const std::string& route) {
  if (absl::StatusOr<PolicyView> known = getPolicy(route); !known.ok()) return known.status();
  return changeOverrides([&](auto& overrides) { overrides.erase(route); });
}

absl::Status ConnectionControl::changeOverrides(
    const std::function<void(std::map<std::string, http::RoutePolicy>&)>& change) {
  std::lock_guard<std::mutex> lock(policy_mutex_);
  std::map<std::string, http::RoutePolicy> overrides = overrides_;
  change(overrides);
  // Stored first: a change that cannot survive a restart is refused, not half made.
  if (persist_) {
    if (absl::Status s = persist_(overrides); !s.ok()) {
      return absl::UnavailableError(absl::StrCat("storing the policy: ", s.message()));
    }
  }
  overrides_ = std::move(overrides);
  table_ = buildTable();
  // Posted under the lock, so that every worker receives the tables in the order they were made.
  for (const WorkerHandle& worker : workers_) {
    ConnectionManager* manager = worker.manager;
    worker.dispatcher->post([manager, table = table_] { manager->setPolicies(table); });
  }
  return absl::OkStatus();
}

uint64_t ConnectionControl::subscribe(Subscriber subscriber) {
  std::lock_guard<std::mutex> lock(subscribers_mutex_);
  const uint64_t id = next_subscription_++;
  subscribers_.emplace(id, std::move(subscriber));
  subscribers_count_.store(subscribers_.size(), std::memory_order_relaxed);
  return id;
}

void ConnectionControl::unsubscribe(uint64_t subscription) {
  std::lock_guard<std::mutex> lock(subscribers_mutex_);
  subscribers_.erase(subscription);
  subscribers_count_.store(subscribers_.size(), std::memory_order_relaxed);
}

void ConnectionControl::publish(LifecycleEvent&& event) {
  std::lock_guard<std::mutex> lock(subscribers_mutex_);
  for (const auto& [id, subscriber] : subscribers_) subscriber(event);
}

}  // namespace connwarden::conn
