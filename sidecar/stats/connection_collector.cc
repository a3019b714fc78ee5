#include "sidecar/stats/connection_collector.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sidecar/network/close_reason.h"
#include "sidecar/stats/process_stats.h"

namespace connwarden::stats {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr size_t kMemoryBucketCount = std::size(kConnectionMemoryBounds) + 1;
constexpr size_t kCategories = event::kMemoryCategoryCount;
constexpr uint32_t kNoRoute = UINT32_MAX;

struct ConnectionSample {
  uint64_t id;
  int64_t memory;
  http::SessionState state;
  const network::ListenerShared* listener;
  const http::Route* route;
};

struct PoolSample {
  std::string cluster;
  uint64_t active = 0, idle = 0, connect_failures = 0, connects_started = 0;
  uint64_t queued = 0, queue_full = 0, queue_timeouts = 0;
};

// (state, listener index, route index or kNoRoute) -> connections.
using StateKey = std::tuple<http::SessionState, size_t, uint32_t>;

// What one worker holds, copied on its thread.
struct WorkerSample {
  size_t registry = 0;
  std::vector<ConnectionSample> top;  // the worker's own top K by memory
  std::map<StateKey, uint64_t> by_state;
  std::map<size_t, std::string> listener_names;
  std::array<uint64_t, kMemoryBucketCount> memory_buckets{};
  double memory_sum = 0;
  std::array<int64_t, kCategories> memory_by_category{};
  uint64_t opened = 0, hibernations = 0, wakeups = 0, drains = 0, kills = 0;
  size_t dormant = 0;
  double dormant_seconds = 0;
  std::array<uint64_t, 32> closes{};
  std::vector<http::RequestStats::PerRoute> requests;
  std::vector<PoolSample> pools;
  bool io_uring = false;
};

bool moreMemory(const ConnectionSample& a, const ConnectionSample& b) {
  return a.memory != b.memory ? a.memory > b.memory : a.id < b.id;
}

// On the worker's thread.
WorkerSample sampleWorker(const WorkerSource& source, size_t limit) {
  WorkerSample out;
  const conn::ConnectionManager& manager = *source.connections;
  out.registry = manager.size();
  if (limit == 0 || limit > out.registry) limit = out.registry;
  out.top.reserve(limit);
  manager.forEach([&](conn::ManagedConnection& connection) {
    const event::MemoryAccount& account = connection.memoryAccount();
    int64_t total = 0;
    for (size_t c = 0; c < kCategories; ++c) {
      const int64_t bytes = account.bytes(static_cast<event::MemoryCategory>(c));
      out.memory_by_category[c] += bytes;
      total += bytes;
    }
    const size_t bucket = static_cast<size_t>(
        std::lower_bound(std::begin(kConnectionMemoryBounds), std::end(kConnectionMemoryBounds),
                         static_cast<double>(total)) -
        std::begin(kConnectionMemoryBounds));
    ++out.memory_buckets[bucket];
    out.memory_sum += static_cast<double>(total);
    const http::Route* route = connection.route();
    const network::ListenerShared& listener = connection.listener();
    const http::SessionState state = connection.state();
    ++out.by_state[{state, listener.index, route != nullptr ? static_cast<uint32_t>(route->index)
                                                            : kNoRoute}];
    if (out.listener_names.count(listener.index) == 0) {
      out.listener_names.emplace(listener.index, listener.config.name);
    }
    // A min-heap of the `limit` connections holding the most.
    if (limit == 0) return;
    ConnectionSample sample{connection.id(), total, state, &listener, route};
    if (out.top.size() < limit) {
      out.top.push_back(sample);
      std::push_heap(out.top.begin(), out.top.end(), moreMemory);
    } else if (moreMemory(sample, out.top.front())) {
      std::pop_heap(out.top.begin(), out.top.end(), moreMemory);
      out.top.back() = sample;
      std::push_heap(out.top.begin(), out.top.end(), moreMemory);
    }
  });
  out.opened = manager.opened();
  out.hibernations = manager.hibernations();
  out.wakeups = manager.wakeups();
  out.drains = manager.drains();
  out.kills = manager.kills();
  out.dormant = manager.dormant();
  out.dormant_seconds = std::chrono::duration<double>(manager.dormantTime()).count();
  out.closes = manager.closesByReason();
  out.requests = source.requests->byRoute();
  out.io_uring = source.dispatcher->ioBatch().uring();
  for (const auto& pool : *source.pools) {
    out.pools.push_back({pool->config().name, pool->activeCount(), pool->idleCount(),
                         pool->connectFailures(), pool->connectsStarted(), pool->queuedCount(),
                         pool->queueFull(), pool->queueTimeouts()});
  }
  return out;
}

// The answers of the workers, which may come after the scrape stopped waiting: shared, so a
// late answer writes into memory that is still alive.
struct Replies {
  std::mutex mutex;
  std::condition_variable ready;
  std::vector<std::optional<WorkerSample>> samples;
  size_t pending = 0;
};

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily out;
  out.name = std::move(name);
  out.help = std::move(help);
  out.type = type;
  return out;
}

ClientMetric& add(MetricFamily& family, std::vector<ClientMetric::Label> labels = {}) {
  family.metric.emplace_back();
  family.metric.back().label = std::move(labels);
  return family.metric.back();
}

void addGauge(std::vector<MetricFamily>& out, std::string name, std::string help, double value) {
  MetricFamily f = family(std::move(name), std::move(help), MetricType::Gauge);
  add(f).gauge.value = value;
  out.push_back(std::move(f));
}

void addCounter(std::vector<MetricFamily>& out, std::string name, std::string help,
                double value) {
  MetricFamily f = family(std::move(name), std::move(help), MetricType::Counter);
  add(f).counter.value = value;
  out.push_back(std::move(f));
}

template <typename Bounds, typename Counts>
ClientMetric::Histogram histogram(const Bounds& bounds, const Counts& counts, double sum) {
  ClientMetric::Histogram out;
  uint64_t cumulative = 0;
  size_t i = 0;
  for (double bound : bounds) {
    cumulative += counts[i++];
    out.bucket.push_back({cumulative, bound});
  }
  cumulative += counts[i];
  out.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  out.sample_count = cumulative;
  out.sample_sum = sum;
  return out;
}

}  // namespace

ConnectionCollector::ConnectionCollector(std::vector<WorkerSource> workers,
                                         CollectorOptions options)
    : workers_(std::move(workers)), options_(std::move(options)) {}

std::vector<MetricFamily> ConnectionCollector::Collect() const {
  auto replies = std::make_shared<Replies>();
  replies->samples.resize(workers_.size());
  replies->pending = workers_.size();
  const size_t limit = options_.connection_limit;
  for (size_t i = 0; i < workers_.size(); ++i) {
    const WorkerSource source = workers_[i];
    source.dispatcher->post([replies, source, limit, i] {
      WorkerSample sample = sampleWorker(source, limit);
      std::lock_guard<std::mutex> lock(replies->mutex);
      replies->samples[i] = std::move(sample);
      --replies->pending;
      replies->ready.notify_all();
    });
  }
  std::vector<WorkerSample> samples;
  {
    std::unique_lock<std::mutex> lock(replies->mutex);
    replies->ready.wait_for(lock, options_.worker_timeout, [&] { return replies->pending == 0; });
    for (auto& sample : replies->samples) {
      if (sample.has_value()) samples.push_back(std::move(*sample));
    }
  }
  const size_t unanswered = workers_.size() - samples.size();

  auto route_name = [this](uint32_t index) -> std::string {
    return index < options_.route_names.size() ? options_.route_names[index] : "none";
  };
  std::vector<MetricFamily> out;

  // --- Per connection, bounded to the top K by memory ---------------------------------------
  std::vector<ConnectionSample> top;
  size_t registry = 0;
  for (const WorkerSample& sample : samples) {
    registry += sample.registry;
    top.insert(top.end(), sample.top.begin(), sample.top.end());
  }
  std::sort(top.begin(), top.end(), moreMemory);
  if (limit != 0 && top.size() > limit) top.resize(limit);
  {
    MetricFamily f = family("connwarden_connection_memory_bytes",
                            "Heap bytes held for one client connection (its memory account), for "
                            "the connections holding the most (see connwarden_connections_omitted)",
                            MetricType::Gauge);
    for (const ConnectionSample& c : top) {
      add(f, {{"id", absl::StrCat(c.id)},
              {"listener", c.listener->config.name},
              {"route", c.route != nullptr ? c.route->config.name : "none"},
              {"state", std::string(http::sessionStateName(c.state))}})
          .gauge.value = static_cast<double>(c.memory);
    }
    out.push_back(std::move(f));
  }
  addGauge(out, "connwarden_connections_omitted",
           "Open connections left out of connwarden_connection_memory_bytes by "
           "--metrics-connection-limit",
           static_cast<double>(registry - top.size()));

  // --- All connections --------------------------------------------------------------------------
  {
    std::array<uint64_t, kMemoryBucketCount> buckets{};
    double sum = 0;
    std::array<int64_t, kCategories> by_category{};
    for (const WorkerSample& sample : samples) {
      for (size_t b = 0; b < kMemoryBucketCount; ++b) buckets[b] += sample.memory_buckets[b];
      sum += sample.memory_sum;
      for (size_t c = 0; c < kCategories; ++c) by_category[c] += sample.memory_by_category[c];
    }
    MetricFamily distribution = family(
        "connwarden_connection_memory_distribution_bytes",
        "Heap bytes held per open client connection, over all connections (recomputed at each "
        "scrape)",
        MetricType::Histogram);
    add(distribution).histogram = histogram(kConnectionMemoryBounds, buckets, sum);
    out.push_back(std::move(distribution));
    MetricFamily components = family("connwarden_connections_memory_bytes",
                                     "Heap bytes held for all open client connections, by "
                                     "component (buffers, tls, codec, other)",
                                     MetricType::Gauge);
    for (size_t c = 0; c < kCategories; ++c) {
      add(components,
          {{"component",
            std::string(event::memoryCategoryName(static_cast<event::MemoryCategory>(c)))}})
          .gauge.value = static_cast<double>(by_category[c]);
    }
    out.push_back(std::move(components));
  }
  {
    std::map<std::tuple<std::string, std::string, std::string>, uint64_t> counts;
    for (const WorkerSample& sample : samples) {
      for (const auto& [key, count] : sample.by_state) {
        const auto& [state, listener, route] = key;
        counts[{std::string(http::sessionStateName(state)), sample.listener_names.at(listener),
                route_name(route)}] += count;
      }
    }
    MetricFamily f = family("connwarden_connections",
                            "Open client connections by state, listener and route (of their "
                            "latest request; none before the first)",
                            MetricType::Gauge);
    for (const auto& [key, count] : counts) {
      const auto& [state, listener, route] = key;
      add(f, {{"listener", listener}, {"route", route}, {"state", state}}).gauge.value =
          static_cast<double>(count);
    }
    out.push_back(std::move(f));
  }
  addGauge(out, "connwarden_registry_connections",
           "Entries in the connection registry (compare with connwarden_process_open_sockets: "
           "an entry without a socket is a leak)",
           static_cast<double>(registry));

  WorkerSample totals;
  for (const WorkerSample& sample : samples) {
    totals.opened += sample.opened;
    totals.hibernations += sample.hibernations;
    totals.wakeups += sample.wakeups;
    totals.drains += sample.drains;
    totals.kills += sample.kills;
    totals.dormant += sample.dormant;
    totals.dormant_seconds += sample.dormant_seconds;
    for (size_t r = 0; r < totals.closes.size(); ++r) totals.closes[r] += sample.closes[r];
  }
  addCounter(out, "connwarden_connections_opened_total", "Client connections accepted",
             static_cast<double>(totals.opened));
  {
    MetricFamily f = family("connwarden_connections_closed_total",
                            "Client connections closed, by close reason", MetricType::Counter);
    for (int r = static_cast<int>(network::CloseReason::kPeerClosed);
         r <= static_cast<int>(network::CloseReason::kOverload); ++r) {
      add(f, {{"reason",
               std::string(network::closeReasonName(static_cast<network::CloseReason>(r)))}})
          .counter.value = static_cast<double>(totals.closes[r]);
    }
    out.push_back(std::move(f));
  }
  addCounter(out, "connwarden_connection_hibernations_total",
             "Times a connection hibernated (released its buffers)",
             static_cast<double>(totals.hibernations));
  addCounter(out, "connwarden_connection_wakeups_total",
             "Times a dormant connection woke (bytes or a drain came)",
             static_cast<double>(totals.wakeups));
  addGauge(out, "connwarden_connections_dormant",
           "Connections asleep now: hibernated, their session released",
           static_cast<double>(totals.dormant));
  addCounter(out, "connwarden_connection_dormant_seconds_total",
             "Time connections have spent dormant (hibernated with their session released), "
             "added up over connections",
             totals.dormant_seconds);
  addCounter(out, "connwarden_connection_drains_total",
             "Drains carried out on an open connection (operator's, bulk, shutdown)",
             static_cast<double>(totals.drains));
  addCounter(out, "connwarden_connection_kills_total",
             "Kills carried out on an open connection", static_cast<double>(totals.kills));

  // --- Requests ---------------------------------------------------------------------------------
  {
    const size_t routes = options_.route_names.size() + 1;
    std::vector<http::RequestStats::PerRoute> by_route(routes);
    for (const WorkerSample& sample : samples) {
      for (size_t r = 0; r < sample.requests.size() && r < routes; ++r) {
        const auto& from = sample.requests[r];
        auto& to = by_route[r];
        for (size_t c = 0; c < from.by_status_class.size(); ++c) {
          to.by_status_class[c] += from.by_status_class[c];
        }
        for (size_t b = 0; b < from.duration_buckets.size(); ++b) {
          to.duration_buckets[b] += from.duration_buckets[b];
        }
        to.duration_seconds_sum += from.duration_seconds_sum;
        to.count += from.count;
      }
    }
    MetricFamily requests = family("connwarden_http_requests_total",
                                   "Requests completed, by route (none: no route matched) and "
                                   "status class of the response",
                                   MetricType::Counter);
    MetricFamily durations = family(
        "connwarden_http_request_duration_seconds",
        "Time from a request's first byte to the end of its response, by route",
        MetricType::Histogram);
    for (size_t r = 0; r < routes; ++r) {
      const std::string route = route_name(static_cast<uint32_t>(r));
      for (size_t c = 0; c < http::RequestStats::kStatusClasses; ++c) {
        add(requests, {{"route", route},
                       {"status_class", std::string(http::RequestStats::statusClassName(c))}})
            .counter.value = static_cast<double>(by_route[r].by_status_class[c]);
      }
      add(durations, {{"route", route}}).histogram =
          histogram(http::RequestStats::kDurationBounds, by_route[r].duration_buckets,
                    by_route[r].duration_seconds_sum);
    }
    out.push_back(std::move(requests));
    out.push_back(std::move(durations));
  }

  // --- Upstream pools ---------------------------------------------------------------------------
  {
    std::map<std::string, PoolSample> pools;
    for (const WorkerSample& sample : samples) {
      for (const PoolSample& pool : sample.pools) {
        PoolSample& to =
            pools.try_emplace(pool.cluster, PoolSample{pool.cluster, 0, 0, 0, 0, 0, 0, 0})
                .first->second;
        to.active += pool.active;
        to.idle += pool.idle;
        to.connect_failures += pool.connect_failures;
        to.connects_started += pool.connects_started;
        to.queued += pool.queued;
        to.queue_full += pool.queue_full;
        to.queue_timeouts += pool.queue_timeouts;
      }
    }
    MetricFamily sizes = family("connwarden_upstream_connections",
                                "Connections to the application, by cluster and state (active: "
                                "carrying a request; idle: pooled)",
                                MetricType::Gauge);
    MetricFamily failures = family("connwarden_upstream_connect_failures_total",
                                   "Connects to the application that failed (refused, "
                                   "unreachable, timed out), by cluster",
                                   MetricType::Counter);
    MetricFamily connects = family("connwarden_upstream_connects_total",
                                   "Connects to the application started, by cluster",
                                   MetricType::Counter);
    MetricFamily queued = family("connwarden_upstream_queued_requests",
                                 "Requests waiting for a connection to the application (the "
                                 "cluster's max_connections are in use), by cluster",
                                 MetricType::Gauge);
    MetricFamily rejected = family("connwarden_upstream_queue_rejections_total",
                                   "Requests answered 503 because no connection to the "
                                   "application was free, by cluster and reason (full: the "
                                   "queue was at max_queued_requests; timeout: none came "
                                   "within queue_timeout)",
                                   MetricType::Counter);
    for (const auto& [cluster, pool] : pools) {
      add(sizes, {{"cluster", cluster}, {"state", "active"}}).gauge.value =
          static_cast<double>(pool.active);
      add(sizes, {{"cluster", cluster}, {"state", "idle"}}).gauge.value =
          static_cast<double>(pool.idle);
      add(failures, {{"cluster", cluster}}).counter.value =
          static_cast<double>(pool.connect_failures);
      add(connects, {{"cluster", cluster}}).counter.value =
          static_cast<double>(pool.connects_started);
      add(queued, {{"cluster", cluster}}).gauge.value = static_cast<double>(pool.queued);
      add(rejected, {{"cluster", cluster}, {"reason", "full"}}).counter.value =
          static_cast<double>(pool.queue_full);
      add(rejected, {{"cluster", cluster}, {"reason", "timeout"}}).counter.value =
          static_cast<double>(pool.queue_timeouts);
    }
    out.push_back(std::move(sizes));
    out.push_back(std::move(failures));
    out.push_back(std::move(connects));
    out.push_back(std::move(queued));
    out.push_back(std::move(rejected));
  }

  // --- Process ----------------------------------------------------------------------------------
  const ProcessStats process = readProcessStats();
  addGauge(out, "process_resident_memory_bytes", "Resident memory of the process",
           static_cast<double>(process.resident_bytes));
  addGauge(out, "process_open_fds", "Open file descriptors of the process",
           static_cast<double>(process.open_fds));
  addGauge(out, "connwarden_process_open_sockets",
           "Open sockets of the process (listeners, clients, upstreams, metrics); recounted at "
           "most every 10 s",
           static_cast<double>(process.open_sockets));
  {
    MetricFamily f = family("connwarden_heap_bytes",
                            "The allocator's heap (glibc mallinfo2): in_use (handed out), free "
                            "(kept in the arenas), mmapped (large blocks)",
                            MetricType::Gauge);
    add(f, {{"kind", "in_use"}}).gauge.value = static_cast<double>(process.heap_in_use_bytes);
    add(f, {{"kind", "free"}}).gauge.value = static_cast<double>(process.heap_free_bytes);
    add(f, {{"kind", "mmapped"}}).gauge.value = static_cast<double>(process.heap_mmapped_bytes);
    out.push_back(std::move(f));
  }
  addGauge(out, "connwarden_slab_chunk_bytes",
           "Bytes of the slab pools' chunks (connection records, accounts), outside the heap",
           static_cast<double>(process.slab_chunk_bytes));
  addGauge(out, "connwarden_memory_accounts",
           "Memory accounts alive (one per open connection, plus those still charged after it "
           "closed, plus the upstream pools')",
           static_cast<double>(process.memory_accounts));
  {
    MetricFamily f = family("connwarden_build_info", "Always 1; the labels say which build",
                            MetricType::Gauge);
    add(f, {{"version", options_.version}}).gauge.value = 1;
    out.push_back(std::move(f));
  }
  {
    size_t io_uring = 0;
    for (const WorkerSample& sample : samples) io_uring += sample.io_uring ? 1 : 0;
    addGauge(out, "connwarden_io_uring_workers",
             "Workers whose socket reads and sends go through io_uring, a few system calls per "
             "loop pass; the others make one recv/send per connection (io_uring refused by the "
             "kernel or a seccomp profile, or --io-uring=false)",
             static_cast<double>(io_uring));
  }
  addGauge(out, "connwarden_metrics_workers_unanswered",
           "Workers that did not answer this scrape in time (their figures are left out)",
           static_cast<double>(unanswered));
  return out;
}

}  // namespace connwarden::stats
