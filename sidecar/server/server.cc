#include "sidecar/server/server.h"

#include <unistd.h>

#include <future>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sidecar/conn/connection_manager.h"
#include "sidecar/event/log.h"

namespace connwarden::server {

absl::StatusOr<std::unique_ptr<Server>> Server::create(const ServerConfig& config,
                                                       uint32_t concurrency,
                                                       const std::string& state_dir) {
  if (concurrency < 1 || concurrency > conn::kMaxWorkers) {
    return absl::InvalidArgumentError(
        absl::StrCat("concurrency: must be 1..", conn::kMaxWorkers, ", not ", concurrency));
  }
  if (absl::Status s = checkForWorkers(config, concurrency); !s.ok()) return s;
  std::map<std::string, http::RoutePolicy> stored;
  conn::ConnectionControl::PersistFn persist;
  if (!state_dir.empty()) {
    auto loaded = loadStoredPolicies(state_dir);
    if (!loaded.ok()) return loaded.status();
    stored = *std::move(loaded);
    persist = [state_dir](const std::map<std::string, http::RoutePolicy>& policies) {
      return storePolicies(state_dir, policies);
    };
  }
  std::unique_ptr<Server> server(new Server());
  server->config_ = config;
  server->router_ = std::make_unique<http::Router>(config.routes, config.clusters);
  std::vector<http::RoutePolicy> listener_policies = config.listener_policies;
  listener_policies.resize(config.listeners.size());  // a config built in code may leave them out
  server->control_ = std::make_unique<conn::ConnectionControl>(
      std::move(listener_policies), config.routes, std::move(stored), std::move(persist));

  // fds[worker][listener]. The first socket of each listener is bound on the address as
  // configured; the others reuse its real port, which matters when the config asked for 0.
  std::vector<std::vector<int>> fds(concurrency);
  auto close_all = [&fds] {
    for (auto& row : fds) {
      for (int fd : row) ::close(fd);
    }
  };
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const network::ListenerConfig& listener = config.listeners[i];
    auto shared = std::make_unique<network::ListenerShared>();
    shared->config = listener;
    shared->index = i;
    if (listener.tls.has_value()) {
      auto tls = network::TlsContext::create(*listener.tls, {"http/1.1"});
      if (!tls.ok()) {
        close_all();
        return absl::InvalidArgumentError(
            absl::StrCat("listeners[", i, "].tls.", tls.status().message()));
      }
      shared->tls = *std::move(tls);
    }
    network::Address address = listener.address;
    for (uint32_t w = 0; w < concurrency; ++w) {
      auto fd = network::Listener::bindSocket(address);
      if (!fd.ok()) {
        close_all();
        return absl::UnavailableError(
            absl::StrCat("listeners[", i, "] (", listener.name, "): ", fd.status().message()));
      }
      if (w == 0) address = network::Address::localOf(*fd);
      fds[w].push_back(*fd);
    }
    shared->bound_address = address;
    server->listeners_.push_back(std::move(shared));
  }

  std::vector<network::ListenerShared*> shared_ptrs;
  for (auto& shared : server->listeners_) shared_ptrs.push_back(shared.get());
  std::vector<conn::ConnectionControl::WorkerHandle> handles;
  for (uint32_t w = 0; w < concurrency; ++w) {
    auto worker =
        std::make_unique<Worker>(w, concurrency, shared_ptrs, std::move(fds[w]), *server->router_,
                                 config.clusters, server->control_->policyTable());
    worker->connections().setEventSink(server->control_.get());
    handles.push_back({&worker->dispatcher(), &worker->connections()});
    server->workers_.push_back(std::move(worker));
  }
  server->control_->attach(std::move(handles));
  return server;
}

Server::~Server() {
  for (auto& worker : workers_) worker->stop();
  workers_.clear();
}

void Server::start() {
  for (auto& worker : workers_) worker->start();
  for (const auto& listener : listeners_) {
    CW_LOG(kInfo, "listener %s on %s (%s)", listener->config.name,
           listener->bound_address.toString(), listener->tls != nullptr ? "tls" : "plain");
  }
}

std::vector<network::Address> Server::listenerAddresses() const {
  std::vector<network::Address> out;
  for (const auto& listener : listeners_) out.push_back(listener->bound_address);
  return out;
}

size_t Server::connectionCount(std::chrono::milliseconds timeout) {
  size_t total = 0;
  for (auto& worker : workers_) {
    auto promise = std::make_shared<std::promise<size_t>>();
    std::future<size_t> future = promise->get_future();
    Worker* w = worker.get();
    w->post([w, promise] { promise->set_value(w->connections().size()); });
    if (future.wait_for(timeout) == std::future_status::ready) total += future.get();
  }
  return total;
}

size_t Server::shutdown(std::chrono::milliseconds drain_timeout) {
  if (stopped_) return 0;
  stopped_ = true;
  draining_.store(true, std::memory_order_release);
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->post([w, drain_timeout] {
      w->stopListening();
      w->connections().drainAll(network::CloseReason::kShutdown, drain_timeout);
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + drain_timeout;
  size_t open = connectionCount();
  while (open > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    open = connectionCount();
  }
  if (open > 0) {
    CW_LOG(kWarn, "shutdown: %d connections still open after %d ms; closing them", open,
           drain_timeout.count());
  }
  for (auto& worker : workers_) worker->stop();
  return open;
}

}  // namespace connwarden::server
