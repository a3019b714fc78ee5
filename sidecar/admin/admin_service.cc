#include "sidecar/admin/admin_service.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sidecar/event/log.h"
#include "sidecar/server/config.h"

namespace connwarden::admin {

using std::chrono::milliseconds;

namespace {

grpc::Status toGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode and grpc::StatusCode share their numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

grpc::Status invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

bool sameToken(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

bool knownToken(const std::vector<std::string>& tokens, absl::string_view token) {
  bool found = false;
  for (const std::string& t : tokens) found |= sameToken(t, token);
  return found;
}

// The RoutePolicy fields an update mask may name, and how to copy each.
using PolicyField = std::function<void(const http::RoutePolicy& from, http::RoutePolicy& to)>;
const std::map<std::string, PolicyField>& policyFields() {
  static const auto* fields = new std::map<std::string, PolicyField>{
      {"hibernate",
       [](const auto& f, auto& t) {
         t.hibernate = f.hibernate;
         t.hibernate_after = f.hibernate_after;
       }},
      {"hibernate.enabled", [](const auto& f, auto& t) { t.hibernate = f.hibernate; }},
      {"hibernate.after", [](const auto& f, auto& t) { t.hibernate_after = f.hibernate_after; }},
      {"idle_timeout", [](const auto& f, auto& t) { t.idle_timeout = f.idle_timeout; }},
      {"request_header_timeout",
       [](const auto& f, auto& t) { t.request_header_timeout = f.request_header_timeout; }},
      {"request_timeout", [](const auto& f, auto& t) { t.request_timeout = f.request_timeout; }},
      {"write_timeout", [](const auto& f, auto& t) { t.write_timeout = f.write_timeout; }},
      {"max_connection_age",
       [](const auto& f, auto& t) { t.max_connection_age = f.max_connection_age; }},
      {"max_requests_per_connection",
       [](const auto& f, auto& t) {
         t.max_requests_per_connection = f.max_requests_per_connection;
       }},
      {"drain_timeout", [](const auto& f, auto& t) { t.drain_timeout = f.drain_timeout; }},
      {"tunnel_idle_timeout",
       [](const auto& f, auto& t) { t.tunnel_idle_timeout = f.tunnel_idle_timeout; }},
  };
  return *fields;
}

// Without a mask: the fields set in `given` replace those of `current`.
http::RoutePolicy mergeSetFields(http::RoutePolicy current, const http::RoutePolicy& given) {
  auto take = [](auto& to, const auto& from) {
    if (from) to = from;
  };
  take(current.hibernate, given.hibernate);
  take(current.hibernate_after, given.hibernate_after);
  take(current.idle_timeout, given.idle_timeout);
  take(current.request_header_timeout, given.request_header_timeout);
  take(current.request_timeout, given.request_timeout);
  take(current.write_timeout, given.write_timeout);
  take(current.max_connection_age, given.max_connection_age);
  take(current.max_requests_per_connection, given.max_requests_per_connection);
  take(current.drain_timeout, given.drain_timeout);
  take(current.tunnel_idle_timeout, given.tunnel_idle_timeout);
  return current;
}

// What a watcher wants to see; checked on the worker thread, so cheap.
struct WatchFilter {
  std::optional<http::SessionState> state;
  std::optional<std::string> route;
  std::optional<std::string> listener;
  std::optional<network::Cidr> peer;

  bool matches(const conn::LifecycleEvent& event) const {
    const conn::ConnectionSnapshot& c = event.connection;
    if (state && c.state != *state) return false;
    if (route && c.route != *route) return false;
    if (event.kind == conn::LifecycleEvent::Kind::kStateChanged) return true;
    if (listener && c.listener != *listener) return false;
    if (peer) {
      auto address = network::Address::parse(c.peer);
      if (!address.ok() || !peer->contains(*address)) return false;
    }
    return true;
  }
};

}  // namespace

// ---- AdminExecutor ------------------------------------------------------------------------------

AdminExecutor::AdminExecutor(size_t threads) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

AdminExecutor::~AdminExecutor() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

void AdminExecutor::post(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.push_back(std::move(task));
  }
  ready_.notify_one();
}

void AdminExecutor::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

// ---- Watch --------------------------------------------------------------------------------------

class ConnectionAdminService::WatchReactor final
    : public grpc::ServerWriteReactor<pb::ConnectionEvent>,
      public std::enable_shared_from_this<WatchReactor> {
 public:
  WatchReactor(conn::ConnectionControl& control, AdminExecutor& executor, WatchFilter filter,
               size_t capacity)
      : control_(control), executor_(executor), filter_(std::move(filter)), capacity_(capacity) {}

  // Keeps itself alive until OnDone and starts listening.
  // The client sees the response headers once the subscription is in place. Events that come
  // meanwhile wait in the queue: the headers count as the write in flight.
  void begin() {
    self_ = shared_from_this();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      writing_ = true;
    }
    // Called on worker threads; `this` is alive until unsubscribe() returns (in OnDone).
    const uint64_t subscription =
        control_.subscribe([this](const conn::LifecycleEvent& event) { offer(event); });
    {
      std::lock_guard<std::mutex> lock(mutex_);
      subscription_ = subscription;
    }
    StartSendInitialMetadata();
  }

  // Refuses the call before it starts.
  void refuse(const grpc::Status& status) {
    self_ = shared_from_this();
    finished_ = true;
    Finish(status);
  }

  void cancel() { finish(grpc::Status::CANCELLED); }

  void OnSendInitialMetadataDone(bool ok) override { OnWriteDone(ok); }
  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      writing_ = false;
    }
    if (!ok) {
      finish(grpc::Status::CANCELLED);
      return;
    }
    pump();
  }
  void OnCancel() override { finish(grpc::Status::CANCELLED); }
  void OnDone() override {
    unsubscribe();
    std::shared_ptr<WatchReactor> last = std::move(self_);  // may free this on return
  }

 private:
  // Worker thread: queue the event, never block, never call into gRPC.
  void offer(const conn::LifecycleEvent& event) {
    if (!filter_.matches(event)) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (finished_ || overflowed_) return;
      if (queue_.size() >= capacity_) {
        overflowed_ = true;
        queue_.clear();
      } else {
        queue_.push_back({event, std::chrono::system_clock::now()});
      }
      if (scheduled_ || writing_) return;
      scheduled_ = true;
    }
    executor_.post([self = shared_from_this()] { self->pump(); });
  }

  // Executor or gRPC thread: write the next event, or end an overflowed stream.
  void pump() {
    bool unsubscribe_now = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      scheduled_ = false;
      if (finished_) return;
      if (overflowed_) {
        unsubscribe_now = true;
      } else if (!writing_ && !queue_.empty()) {
        Queued next = std::move(queue_.front());
        queue_.pop_front();
        writing_ = true;
        response_.Clear();
        response_.set_sequence(++sequence_);
        switch (next.event.kind) {
          case conn::LifecycleEvent::Kind::kOpened:
            response_.set_kind(pb::ConnectionEvent::KIND_OPENED);
            break;
          case conn::LifecycleEvent::Kind::kStateChanged:
            response_.set_kind(pb::ConnectionEvent::KIND_STATE_CHANGED);
            break;
          case conn::LifecycleEvent::Kind::kClosed:
            response_.set_kind(pb::ConnectionEvent::KIND_CLOSED);
            break;
        }
        toProto(next.event.connection, response_.mutable_connection());
        toProto(next.time, response_.mutable_time());
      } else {
        return;
      }
    }
    if (unsubscribe_now) {
      unsubscribe();
      bool idle;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        idle = !writing_;
      }
      // With a write still pending, the status goes out after it (OnWriteDone pumps again).
      if (idle) {
        finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            absl::StrCat("watch: the client read too slowly: more than ",
                                         capacity_, " events were waiting; watch again")));
      }
      return;
    }
    StartWrite(&response_);
  }

  void finish(const grpc::Status& status) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (finished_) return;
      finished_ = true;
      queue_.clear();
    }
    Finish(status);
  }

  void unsubscribe() {
    uint64_t subscription;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      subscription = subscription_;
      subscription_ = 0;
    }
    if (subscription != 0) control_.unsubscribe(subscription);
  }

  struct Queued {
    conn::LifecycleEvent event;
    std::chrono::system_clock::time_point time;
  };

  conn::ConnectionControl& control_;
  AdminExecutor& executor_;
  const WatchFilter filter_;
  const size_t capacity_;
  std::shared_ptr<WatchReactor> self_;  // until OnDone

  std::mutex mutex_;
  uint64_t subscription_ = 0;   // GUARDED_BY(mutex_)
  std::deque<Queued> queue_;    // GUARDED_BY(mutex_)
  bool scheduled_ = false;      // a pump() is posted; GUARDED_BY(mutex_)
  bool writing_ = false;        // GUARDED_BY(mutex_)
  bool overflowed_ = false;     // GUARDED_BY(mutex_)
  bool finished_ = false;       // Finish() called; GUARDED_BY(mutex_)
  uint64_t sequence_ = 0;       // GUARDED_BY(mutex_)
  pb::ConnectionEvent response_;  // the write in flight
};

// ---- The service --------------------------------------------------------------------------------

ConnectionAdminService::ConnectionAdminService(conn::ConnectionControl& control,
                                               const AdminOptions& options, Tokens tokens,
                                               std::string instance_id)
    : control_(control),
      options_(options),
      tokens_(std::move(tokens)),
      instance_id_(std::move(instance_id)),
      started_(std::chrono::system_clock::now()),
      started_steady_(std::chrono::steady_clock::now()),
      executor_(2) {
  names_.routes = control_.routeNames();
  for (const AdminOptions::Listener& listener : options_.listeners) {
    names_.listeners.push_back(listener.name);
  }
}

ConnectionAdminService::~ConnectionAdminService() = default;

void ConnectionAdminService::stopWatches() {
  std::vector<std::shared_ptr<WatchReactor>> open;
  {
    std::lock_guard<std::mutex> lock(watches_mutex_);
    for (auto& weak : watches_) {
      if (auto watch = weak.lock()) open.push_back(std::move(watch));
    }
    watches_.clear();
  }
  for (auto& watch : open) watch->cancel();
}

grpc::Status ConnectionAdminService::authorize(const grpc::CallbackServerContext& context,
                                               Scope scope, const char* method) const {
  if (!tokens_.required()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing bearer token: send the metadata \"authorization: Bearer "
                        "<token>\"");
  }
  absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "bearer ";
  if (value.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(value.substr(0, kBearer.size()), kBearer)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization: expected \"Bearer <token>\"");
  }
  const absl::string_view token = absl::StripAsciiWhitespace(value.substr(kBearer.size()));
  if (knownToken(tokens_.admin, token)) return grpc::Status::OK;
  if (knownToken(tokens_.read, token)) {
    if (scope == Scope::kRead) return grpc::Status::OK;
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat(method, " needs an admin token; this token is read-only"));
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bearer token not recognized");
}

milliseconds ConnectionAdminService::timeoutFor(const grpc::CallbackServerContext& context) const {
  const auto left = std::chrono::duration_cast<milliseconds>(context.deadline() -
                                                             std::chrono::system_clock::now());
  return std::min(left, options_.call_timeout);
}

grpc::ServerUnaryReactor* ConnectionAdminService::unary(
    grpc::CallbackServerContext* context, Scope scope, const char* method,
    std::function<grpc::Status(milliseconds)> work) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status denied = authorize(*context, scope, method); !denied.ok()) {
    reactor->Finish(denied);
    return reactor;
  }
  const milliseconds timeout = timeoutFor(*context);
  if (timeout.count() <= 0) {
    reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                                 "the call's deadline passed before it started"));
    return reactor;
  }
  executor_.post([reactor, work = std::move(work), timeout] { reactor->Finish(work(timeout)); });
  return reactor;
}

grpc::ServerUnaryReactor* ConnectionAdminService::ListConnections(
    grpc::CallbackServerContext* context, const pb::ListConnectionsRequest* request,
    pb::ListConnectionsResponse* response) {
  return unary(context, Scope::kRead, "ListConnections", [=](milliseconds timeout) {
    conn::ConnectionControl::ListRequest list;
    auto selector = fromProto(request->selector(), names_, "selector");
    if (!selector.ok()) return toGrpc(selector.status());
    list.selector = *selector;
    switch (request->sort_by()) {
      case pb::ListConnectionsRequest::SORT_BY_UNSPECIFIED:
      case pb::ListConnectionsRequest::SORT_BY_ID:
        list.sort_by = conn::ConnectionControl::SortBy::kId;
        break;
      case pb::ListConnectionsRequest::SORT_BY_MEMORY:
        list.sort_by = conn::ConnectionControl::SortBy::kMemory;
        break;
      case pb::ListConnectionsRequest::SORT_BY_AGE:
        list.sort_by = conn::ConnectionControl::SortBy::kAge;
        break;
      case pb::ListConnectionsRequest::SORT_BY_IDLE:
        list.sort_by = conn::ConnectionControl::SortBy::kIdle;
        break;
      default:
        return invalid(absl::StrCat("sort_by: unknown value ", request->sort_by()));
    }
    list.descending = request->descending();
    if (request->page_size() > conn::ConnectionControl::kMaxPage) {
      return invalid(absl::StrCat("page_size: at most ", conn::ConnectionControl::kMaxPage));
    }
    list.limit = request->page_size() == 0 ? 100 : request->page_size();
    const uint64_t hash = queryHash(*request, instance_id_);
    if (!request->page_token().empty()) {
      auto offset = decodePageToken(request->page_token(), hash);
      if (!offset.ok()) return toGrpc(offset.status());
      list.offset = *offset;
    }
    auto result = control_.list(list, timeout);
    if (!result.ok()) return toGrpc(result.status());
    for (const conn::ConnectionSnapshot& snapshot : result->connections) {
      toProto(snapshot, response->add_connections());
    }
    const size_t next = list.offset + result->connections.size();
    if (!result->connections.empty() && next < result->total) {
      response->set_next_page_token(encodePageToken(next, hash));
    }
    response->set_total_size(result->total);
    response->set_instance_id(instance_id_);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* ConnectionAdminService::GetConnection(
    grpc::CallbackServerContext* context, const pb::GetConnectionRequest* request,
    pb::Connection* response) {
  return unary(context, Scope::kRead, "GetConnection", [=](milliseconds timeout) {
    auto snapshot = control_.get(request->id(), timeout);
    if (!snapshot.ok()) {
      if (absl::IsNotFound(snapshot.status())) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            absl::StrCat("id: no open connection ", request->id()));
      }
      return toGrpc(snapshot.status());
    }
    toProto(*snapshot, response);
    return grpc::Status::OK;
  });
}

grpc::Status ConnectionAdminService::command(const google::protobuf::RepeatedField<uint64_t>& ids,
                                             const pb::ConnectionSelector& selector,
                                             std::optional<milliseconds> deadline, bool kill,
                                             milliseconds timeout, pb::CommandResponse* response) {
  const bool by_selector = !selectsEverything(selector) || selector.all();
  if (!ids.empty() && by_selector) {
    return invalid("ids: give either connection IDs or a selector, not both");
  }
  if (ids.empty() && !by_selector) {
    return invalid(
        "selector: give connection IDs or a selector (selector.all = true for every "
        "connection)");
  }
  if (ids.size() > static_cast<int>(conn::ConnectionControl::kMaxPage)) {
    return invalid(absl::StrCat("ids: at most ", conn::ConnectionControl::kMaxPage, " at once"));
  }
  std::vector<conn::CommandResult> results;
  if (by_selector) {
    auto matched = fromProto(selector, names_, "selector");
    if (!matched.ok()) return toGrpc(matched.status());
    auto done = control_.drainMatching(*matched, deadline, kill, timeout);
    if (!done.ok()) return toGrpc(done.status());
    results = *std::move(done);
  } else {
    const auto start = std::chrono::steady_clock::now();
    std::set<uint64_t> seen;
    for (uint64_t id : ids) {
      if (!seen.insert(id).second) continue;
      const milliseconds left =
          timeout - std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() -
                                                             start);
      if (left.count() <= 0) {
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            absl::StrCat("the call's deadline passed after ", results.size(),
                                         " of ", ids.size(), " connections"));
      }
      auto done = kill ? control_.kill(id, left) : control_.drain(id, deadline, left);
      if (!done.ok()) return toGrpc(done.status());
      results.push_back(*done);
    }
  }
  std::vector<uint64_t> unknown;
  for (const conn::CommandResult& result : results) {
    pb::CommandResult* out = response->add_results();
    out->set_id(result.id);
    out->set_outcome(toProto(result.outcome));
    switch (result.outcome) {
      case conn::CommandResult::Outcome::kNotFound:
        response->set_not_found(response->not_found() + 1);
        unknown.push_back(result.id);
        break;
      case conn::CommandResult::Outcome::kClosed:
        response->set_closed(response->closed() + 1);
        out->set_state_before(toProto(result.state_before));
        break;
      case conn::CommandResult::Outcome::kDraining:
        response->set_draining(response->draining() + 1);
        out->set_state_before(toProto(result.state_before));
        break;
    }
  }
  if (!by_selector && unknown.size() == results.size()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("ids: no open connection ", absl::StrJoin(unknown, ", ")));
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ConnectionAdminService::DrainConnections(
    grpc::CallbackServerContext* context, const pb::DrainConnectionsRequest* request,
    pb::CommandResponse* response) {
  return unary(context, Scope::kAdmin, "DrainConnections", [=](milliseconds timeout) {
    std::optional<milliseconds> deadline;
    if (request->has_deadline()) {
      auto parsed = fromProto(request->deadline(), "deadline");
      if (!parsed.ok()) return toGrpc(parsed.status());
      deadline = *parsed;
    }
    return command(request->ids(), request->selector(), deadline, false, timeout, response);
  });
}

grpc::ServerUnaryReactor* ConnectionAdminService::KillConnections(
    grpc::CallbackServerContext* context, const pb::KillConnectionsRequest* request,
    pb::CommandResponse* response) {
  return unary(context, Scope::kAdmin, "KillConnections", [=](milliseconds timeout) {
    return command(request->ids(), request->selector(), std::nullopt, true, timeout, response);
  });
}

grpc::ServerWriteReactor<pb::ConnectionEvent>* ConnectionAdminService::WatchConnections(
    grpc::CallbackServerContext* context, const pb::WatchConnectionsRequest* request) {
  WatchFilter filter;
  grpc::Status status = authorize(*context, Scope::kRead, "WatchConnections");
  const pb::ConnectionSelector& selector = request->selector();
  if (status.ok()) {
    if (selector.has_min_idle() || selector.has_min_age() || selector.min_memory_bytes() > 0) {
      status = invalid(
          "selector: min_idle, min_age and min_memory_bytes do not apply to watch (events "
          "carry no such figures); use state, route, listener or peer_cidr");
    } else if (auto parsed = fromProto(selector, names_, "selector"); !parsed.ok()) {
      status = toGrpc(parsed.status());
    } else {
      filter.state = parsed->state;
      filter.route = parsed->route;
      filter.listener = parsed->listener;
      filter.peer = parsed->peer;
    }
  }
  auto watch = std::make_shared<WatchReactor>(control_, executor_, std::move(filter),
                                              options_.watch_queue_capacity);
  if (!status.ok()) {
    watch->refuse(status);
    return watch.get();
  }
  watch->begin();
  {
    std::lock_guard<std::mutex> lock(watches_mutex_);
    watches_.erase(std::remove_if(watches_.begin(), watches_.end(),
                                  [](const auto& weak) { return weak.expired(); }),
                   watches_.end());
    watches_.push_back(watch);
  }
  return watch.get();
}

grpc::Status ConnectionAdminService::policyEntry(const std::string& route,
                                                 pb::RoutePolicyEntry* out) const {
  auto view = control_.getPolicy(route);
  if (!view.ok()) return toGrpc(view.status());
  out->set_route(route);
  server::routePolicyToProto(view->configured, out->mutable_configured());
  if (view->override) server::routePolicyToProto(*view->override, out->mutable_override());
  server::routePolicyToProto(view->effective(), out->mutable_effective());
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ConnectionAdminService::ListRoutePolicies(
    grpc::CallbackServerContext* context, const pb::ListRoutePoliciesRequest* request,
    pb::ListRoutePoliciesResponse* response) {
  return unary(context, Scope::kRead, "ListRoutePolicies", [=](milliseconds) {
    if (!request->route().empty()) return policyEntry(request->route(), response->add_policies());
    for (const std::string& route : names_.routes) {
      if (grpc::Status s = policyEntry(route, response->add_policies()); !s.ok()) return s;
    }
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* ConnectionAdminService::SetRoutePolicy(
    grpc::CallbackServerContext* context, const pb::SetRoutePolicyRequest* request,
    pb::RoutePolicyEntry* response) {
  return unary(context, Scope::kAdmin, "SetRoutePolicy", [=](milliseconds) {
    if (request->route().empty()) return invalid("route: required");
    auto view = control_.getPolicy(request->route());
    if (!view.ok()) return toGrpc(view.status());
    http::RoutePolicy given;
    if (absl::Status s = server::convertRoutePolicy(request->policy(), "policy", &given);
        !s.ok()) {
      return toGrpc(absl::InvalidArgumentError(s.message()));
    }
    http::RoutePolicy updated = view->effective();
    if (request->has_update_mask()) {
      const auto& fields = policyFields();
      const auto& paths = request->update_mask().paths();
      if (paths.empty()) return invalid("update_mask.paths: empty (name the fields to change)");
      for (int i = 0; i < paths.size(); ++i) {
        auto it = fields.find(paths[i]);
        if (it == fields.end()) {
          std::vector<std::string> names;
          for (const auto& [name, copy] : fields) names.push_back(name);
          return invalid(absl::StrCat("update_mask.paths[", i, "]: \"", paths[i],
                                      "\" is not a RoutePolicy field; one of ",
                                      absl::StrJoin(names, ", ")));
        }
        it->second(given, updated);
      }
    } else {
      updated = mergeSetFields(updated, given);
    }
    if (absl::Status s = control_.setPolicy(request->route(), updated); !s.ok()) return toGrpc(s);
    return policyEntry(request->route(), response);
  });
}

grpc::ServerUnaryReactor* ConnectionAdminService::ResetRoutePolicy(
    grpc::CallbackServerContext* context, const pb::ResetRoutePolicyRequest* request,
    pb::RoutePolicyEntry* response) {
  return unary(context, Scope::kAdmin, "ResetRoutePolicy", [=](milliseconds) {
    if (request->route().empty()) return invalid("route: required");
    if (absl::Status s = control_.resetPolicy(request->route()); !s.ok()) return toGrpc(s);
    return policyEntry(request->route(), response);
  });
}

grpc::ServerUnaryReactor* ConnectionAdminService::GetServerInfo(
    grpc::CallbackServerContext* context, const pb::GetServerInfoRequest* request,
    pb::ServerInfo* response) {
  return unary(context, Scope::kRead, "GetServerInfo", [=](milliseconds timeout) {
    auto summary = control_.summary(timeout);
    if (!summary.ok()) return toGrpc(summary.status());
    response->set_version(CW_VERSION);
    response->set_instance_id(instance_id_);
    toProto(started_, response->mutable_start_time());
    toProto(std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() -
                                                     started_steady_),
            response->mutable_uptime());
    response->set_workers(summary->workers);
    response->set_connections(summary->connections);
    for (int s = pb::CONNECTION_STATE_HANDSHAKE; s <= pb::CONNECTION_STATE_HIBERNATING; ++s) {
      auto* count = response->add_connections_by_state();
      count->set_state(static_cast<pb::ConnectionState>(s));
      auto state = fromProto(static_cast<pb::ConnectionState>(s), "state");
      auto it = summary->by_state.find(*state);
      count->set_count(it == summary->by_state.end() ? 0 : it->second);
    }
    response->set_connections_opened(summary->opened);
    for (const auto& [reason, n] : summary->closes) {
      auto* count = response->add_connections_closed();
      count->set_reason(toProto(reason));
      count->set_count(n);
    }
    pb::MemoryUsage* memory = response->mutable_memory();
    memory->set_total_bytes(summary->memory.total);
    memory->set_buffer_bytes(summary->memory.buffers);
    memory->set_tls_bytes(summary->memory.tls);
    memory->set_codec_bytes(summary->memory.codec);
    memory->set_other_bytes(summary->memory.other);
    memory->set_peak_bytes(summary->memory.peak);
    for (const AdminOptions::Listener& listener : options_.listeners) {
      auto* out = response->add_listeners();
      out->set_name(listener.name);
      out->set_address(listener.address);
      out->set_tls(listener.tls);
    }
    return grpc::Status::OK;
  });
}

}  // namespace connwarden::admin
