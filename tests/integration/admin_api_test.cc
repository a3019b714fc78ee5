// The gRPC admin API through the real gRPC client, over loopback (plain, TLS and mutual TLS),
// against the real server with live connections to the demo app: list (filters, sort, pages over
// 5 000 connections), get, drain and kill (by ID and by selector, as seen on the sockets), route
// policies (field masks, effect on live connections, kept across a restart), token scopes, watch
// (order, filters, a slow watcher cut alone), deadlines, bad input, health and reflection used
// with no generated code.
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "connwarden/admin/v1/admin.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/unknown_field_set.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/client_unary_call.h"
#include "grpcpp/impl/codegen/sync_stream.h"
#include "gtest/gtest.h"
#include "sidecar/admin/admin_server.h"
#include "sidecar/server/worker.h"
#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

namespace pb = ::connwarden::admin::v1;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

pb::ConnectionState stateOf(const pb::Connection& c) { return c.state(); }

// The sidecar with its admin API, a client channel to it, and the demo app behind it.
class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override { app_ = std::make_unique<DemoApp>(); }

  // (Re)starts the sidecar and its admin API.
  void start(uint32_t concurrency = 2, admin::AdminOptions options = {},
             const std::string& state_dir = "") {
    admin_.reset();
    server_.reset();
    server_ = std::make_unique<TestServer>(TestServer::simpleConfig(app_->address()), concurrency,
                                           state_dir);
    options.address = "127.0.0.1:0";
    for (const auto& listener : server_->server().listeners()) {
      options.listeners.push_back({listener->config.name, listener->bound_address.toString(),
                                   listener->tls != nullptr});
    }
    auto started = admin::AdminServer::start(options, server_->server().control());
    ASSERT_TRUE(started.ok()) << started.status();
    admin_ = *std::move(started);
    if (options.tls_cert_file.empty()) connectPlain();
  }
  void connectPlain() {
    channel_ = grpc::CreateChannel(admin_->boundAddress(), grpc::InsecureChannelCredentials());
    stub_ = pb::ConnectionAdmin::NewStub(channel_);
  }
  void TearDown() override {
    admin_.reset();
    server_.reset();
  }

  std::unique_ptr<grpc::ClientContext> context(const std::string& token = "",
                                               milliseconds deadline = milliseconds(10000)) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + deadline);
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }

  grpc::Status list(const pb::ListConnectionsRequest& request, pb::ListConnectionsResponse* out) {
    auto ctx = context();
    return stub_->ListConnections(ctx.get(), request, out);
  }
  // Every page of a query.
  std::vector<pb::Connection> listAll(pb::ListConnectionsRequest request, size_t* pages = nullptr) {
    std::vector<pb::Connection> all;
    size_t count = 0;
    for (;;) {
      pb::ListConnectionsResponse response;
      grpc::Status status = list(request, &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      if (!status.ok()) break;
      ++count;
      for (const auto& c : response.connections()) all.push_back(c);
      if (response.next_page_token().empty()) break;
      request.set_page_token(response.next_page_token());
    }
    if (pages != nullptr) *pages = count;
    return all;
  }
  grpc::Status drain(const pb::DrainConnectionsRequest& request, pb::CommandResponse* out,
                     const std::string& token = "") {
    auto ctx = context(token);
    return stub_->DrainConnections(ctx.get(), request, out);
  }
  grpc::Status kill(const pb::KillConnectionsRequest& request, pb::CommandResponse* out,
                    const std::string& token = "") {
    auto ctx = context(token);
    return stub_->KillConnections(ctx.get(), request, out);
  }
  grpc::Status setPolicy(const pb::SetRoutePolicyRequest& request, pb::RoutePolicyEntry* out) {
    auto ctx = context();
    return stub_->SetRoutePolicy(ctx.get(), request, out);
  }
  pb::RoutePolicyEntry policyOf(const std::string& route) {
    pb::ListRoutePoliciesRequest request;
    request.set_route(route);
    pb::ListRoutePoliciesResponse response;
    auto ctx = context();
    grpc::Status status = stub_->ListRoutePolicies(ctx.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.policies_size() == 1 ? response.policies(0) : pb::RoutePolicyEntry();
  }

  // A keep-alive connection that has served one request (route "default").
  std::unique_ptr<TestClient> servedConnection() {
    auto client = std::make_unique<TestClient>(server_->port());
    EXPECT_TRUE(client->connected());
    EXPECT_TRUE(client->send(getRequest("/")));
    auto response = client->readResponse();
    EXPECT_TRUE(response.has_value());
    return client;
  }
  // The ID of the one connection listed in `state`.
  uint64_t onlyIdIn(pb::ConnectionState state) {
    uint64_t id = 0;
    EXPECT_TRUE(waitFor([&] {
      pb::ListConnectionsRequest request;
      request.mutable_selector()->set_state(state);
      pb::ListConnectionsResponse response;
      if (!list(request, &response).ok() || response.connections_size() != 1) return false;
      id = response.connections(0).id();
      return true;
    })) << "no single connection in state " << pb::ConnectionState_Name(state);
    return id;
  }

  TempDir dir_;
  std::unique_ptr<DemoApp> app_;
  std::unique_ptr<TestServer> server_;
  std::unique_ptr<admin::AdminServer> admin_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::ConnectionAdmin::Stub> stub_;
};

void expectStatus(const grpc::Status& status, grpc::StatusCode code, const std::string& text) {
  EXPECT_EQ(status.error_code(), code) << status.error_message();
  EXPECT_NE(status.error_message().find(text), std::string::npos)
      << "\"" << status.error_message() << "\" does not contain \"" << text << "\"";
}

// ---- List: 5 000 connections, filters, sort, pages ----------------------------------------------

TEST_F(AdminTest, ListsFiltersSortsAndPagesFiveThousandConnections) {
  // Two descriptors a connection (client and server side), and some to spare.
  rlimit limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  ASSERT_GE(limit.rlim_cur, 11000u) << "raise the hard limit on open files (ulimit -Hn)";
  start(2);
  constexpr size_t kIdle = 4990;
  constexpr size_t kActive = 10;
  std::vector<std::unique_ptr<TestClient>> clients;
  clients.reserve(kIdle + kActive);
  for (size_t i = 0; i < kIdle; ++i) {
    clients.push_back(std::make_unique<TestClient>(server_->port()));
    ASSERT_TRUE(clients.back()->connected()) << "connection " << i;
  }
  // Ten with a request in flight (the app answers after 60 s), hence ACTIVE, on route "default",
  // and holding more memory than the idle ones.
  for (size_t i = 0; i < kActive; ++i) {
    clients.push_back(std::make_unique<TestClient>(server_->port()));
    ASSERT_TRUE(clients.back()->send(getRequest("/slow?ms=60000")));
  }
  ASSERT_TRUE(waitFor([&] { return server_->connectionCount() == kIdle + kActive; },
                      std::chrono::seconds(60)));
  const auto started = Clock::now();

  // Every connection exactly once, over pages of 700, in ID order.
  pb::ListConnectionsRequest request;
  request.set_page_size(700);
  size_t pages = 0;
  std::vector<pb::Connection> all = listAll(request, &pages);
  EXPECT_EQ(all.size(), kIdle + kActive);
  EXPECT_EQ(pages, (kIdle + kActive + 699) / 700);
  std::set<uint64_t> ids;
  for (const auto& c : all) ids.insert(c.id());
  EXPECT_EQ(ids.size(), kIdle + kActive);
  pb::ListConnectionsResponse first;
  request.set_page_token("");
  ASSERT_TRUE(list(request, &first).ok());
  EXPECT_EQ(first.total_size(), kIdle + kActive);
  EXPECT_EQ(first.connections_size(), 700);
  EXPECT_EQ(first.instance_id(), admin_->instanceId());
  for (const auto& c : first.connections()) {
    EXPECT_EQ(c.listener(), "plain");
    EXPECT_TRUE(c.peer_address().rfind("127.0.0.1:", 0) == 0) << c.peer_address();
    EXPECT_TRUE(c.has_created_time());
    EXPECT_GT(c.memory().total_bytes(), 0);
  }

  // Filters.
  request.Clear();
  request.mutable_selector()->set_state(pb::CONNECTION_STATE_ACTIVE);
  std::vector<pb::Connection> active = listAll(request);
  ASSERT_EQ(active.size(), kActive);
  for (const auto& c : active) {
    EXPECT_EQ(stateOf(c), pb::CONNECTION_STATE_ACTIVE);
    EXPECT_EQ(c.route(), "default");
  }
  request.Clear();
  request.mutable_selector()->set_route("default");
  EXPECT_EQ(listAll(request).size(), kActive);
  request.Clear();
  request.mutable_selector()->set_peer_cidr("10.0.0.0/8");
  pb::ListConnectionsResponse none;
  ASSERT_TRUE(list(request, &none).ok());
  EXPECT_EQ(none.total_size(), 0u);
  EXPECT_TRUE(none.next_page_token().empty());
  request.mutable_selector()->set_peer_cidr("127.0.0.0/8");
  request.set_page_size(1);
  pb::ListConnectionsResponse loopback;
  ASSERT_TRUE(list(request, &loopback).ok());
  EXPECT_EQ(loopback.total_size(), kIdle + kActive);
  request.Clear();
  request.mutable_selector()->mutable_min_idle()->set_seconds(3600);
  ASSERT_TRUE(list(request, &none).ok());
  EXPECT_EQ(none.total_size(), 0u);
  request.Clear();
  request.mutable_selector()->set_listener("plain");
  request.mutable_selector()->mutable_min_age()->set_nanos(1);
  pb::ListConnectionsResponse aged;
  ASSERT_TRUE(list(request, &aged).ok());
  EXPECT_EQ(aged.total_size(), kIdle + kActive);

  // Sort by memory, largest first: the active ones lead; a min_memory filter at the largest
  // figure keeps exactly those at or above it.
  request.Clear();
  request.set_sort_by(pb::ListConnectionsRequest::SORT_BY_MEMORY);
  request.set_descending(true);
  request.set_page_size(1000);
  std::vector<pb::Connection> by_memory = listAll(request);
  ASSERT_EQ(by_memory.size(), kIdle + kActive);
  for (size_t i = 1; i < by_memory.size(); ++i) {
    ASSERT_GE(by_memory[i - 1].memory().total_bytes(), by_memory[i].memory().total_bytes()) << i;
  }
  for (size_t i = 0; i < kActive; ++i) {
    EXPECT_EQ(stateOf(by_memory[i]), pb::CONNECTION_STATE_ACTIVE) << i;
  }
  request.Clear();
  request.mutable_selector()->set_min_memory_bytes(by_memory[kActive - 1].memory().total_bytes());
  pb::ListConnectionsResponse heavy;
  ASSERT_TRUE(list(request, &heavy).ok());
  EXPECT_GE(heavy.total_size(), kActive);
  EXPECT_LT(heavy.total_size(), kIdle);
  // Sort by age, oldest first: the first idle connection opened leads.
  request.Clear();
  request.set_sort_by(pb::ListConnectionsRequest::SORT_BY_AGE);
  request.set_descending(true);
  request.set_page_size(3);
  pb::ListConnectionsResponse oldest;
  ASSERT_TRUE(list(request, &oldest).ok());
  ASSERT_EQ(oldest.connections_size(), 3);
  EXPECT_GE(oldest.connections(0).age().seconds() * 1000 + oldest.connections(0).age().nanos() / 1000000,
            oldest.connections(2).age().seconds() * 1000 + oldest.connections(2).age().nanos() / 1000000);

  // A page token belongs to its query.
  request.Clear();
  request.set_page_size(10);
  pb::ListConnectionsResponse page;
  ASSERT_TRUE(list(request, &page).ok());
  ASSERT_FALSE(page.next_page_token().empty());
  request.set_page_token(page.next_page_token());
  request.set_sort_by(pb::ListConnectionsRequest::SORT_BY_MEMORY);
  expectStatus(list(request, &none), grpc::StatusCode::INVALID_ARGUMENT, "page_token:");
  request.set_sort_by(pb::ListConnectionsRequest::SORT_BY_ID);  // the same query, spelled out
  pb::ListConnectionsResponse second;
  ASSERT_TRUE(list(request, &second).ok());
  EXPECT_EQ(second.connections(0).id(), all[10].id());
  request.set_page_token("bm90IGEgdG9rZW4");
  expectStatus(list(request, &none), grpc::StatusCode::INVALID_ARGUMENT, "page_token: malformed");

  EXPECT_LT(Clock::now() - started, std::chrono::seconds(60));
  // GetServerInfo counts them by state.
  pb::ServerInfo info;
  auto ctx = context();
  ASSERT_TRUE(stub_->GetServerInfo(ctx.get(), pb::GetServerInfoRequest(), &info).ok());
  EXPECT_EQ(info.connections(), kIdle + kActive);
  EXPECT_EQ(info.workers(), 2u);
  EXPECT_EQ(info.instance_id(), admin_->instanceId());
  EXPECT_FALSE(info.version().empty());
  uint64_t by_state = 0;
  for (const auto& count : info.connections_by_state()) {
    by_state += count.count();
    if (count.state() == pb::CONNECTION_STATE_ACTIVE) {
      EXPECT_EQ(count.count(), kActive);
    }
  }
  EXPECT_EQ(by_state, kIdle + kActive);
  EXPECT_GT(info.memory().total_bytes(), 0);
  ASSERT_EQ(info.listeners_size(), 1);
  EXPECT_EQ(info.listeners(0).address(), "127.0.0.1:" + std::to_string(server_->port()));
}

// ---- Bad input ----------------------------------------------------------------------------------

TEST_F(AdminTest, BadInputGetsAStatusNamingTheField) {
  start(1);
  pb::ListConnectionsRequest request;
  pb::ListConnectionsResponse response;
  for (const char* cidr : {"10.0.0.0/33", "not-an-address", "300.1.1.1"}) {
    request.mutable_selector()->set_peer_cidr(cidr);
    expectStatus(list(request, &response), grpc::StatusCode::INVALID_ARGUMENT,
                 "selector.peer_cidr:");
  }
  request.Clear();
  request.mutable_selector()->mutable_min_idle()->set_seconds(-1);
  expectStatus(list(request, &response), grpc::StatusCode::INVALID_ARGUMENT,
               "selector.min_idle: must not be negative");
  request.Clear();
  request.mutable_selector()->mutable_min_age()->set_nanos(2'000'000'000);
  expectStatus(list(request, &response), grpc::StatusCode::INVALID_ARGUMENT, "selector.min_age:");
  request.Clear();
  request.mutable_selector()->set_route("nope");
  expectStatus(list(request, &response), grpc::StatusCode::INVALID_ARGUMENT,
               "selector.route: no route named \"nope\"");
  request.Clear();
  request.mutable_selector()->set_listener("nope");
  expectStatus(list(request, &response), grpc::StatusCode::INVALID_ARGUMENT, "selector.listener:");
  request.Clear();
  request.mutable_selector()->set_state(static_cast<pb::ConnectionState>(42));
  expectStatus(list(request, &response), grpc::StatusCode::INVALID_ARGUMENT, "selector.state:");
  request.Clear();
  request.set_page_size(20000);
  expectStatus(list(request, &response), grpc::StatusCode::INVALID_ARGUMENT, "page_size:");
  request.Clear();
  request.set_page_token("%%%");
  expectStatus(list(request, &response), grpc::StatusCode::INVALID_ARGUMENT, "page_token:");

  pb::Connection connection;
  pb::GetConnectionRequest get;
  get.set_id(123456789);
  auto ctx = context();
  expectStatus(stub_->GetConnection(ctx.get(), get, &connection), grpc::StatusCode::NOT_FOUND,
               "123456789");

  pb::CommandResponse result;
  pb::DrainConnectionsRequest drain_request;
  drain_request.add_ids(987654321);
  expectStatus(drain(drain_request, &result), grpc::StatusCode::NOT_FOUND, "987654321");
  drain_request.mutable_selector()->set_state(pb::CONNECTION_STATE_IDLE);
  expectStatus(drain(drain_request, &result), grpc::StatusCode::INVALID_ARGUMENT, "ids:");
  drain_request.Clear();
  expectStatus(drain(drain_request, &result), grpc::StatusCode::INVALID_ARGUMENT, "selector:");
  drain_request.mutable_selector()->set_state(pb::CONNECTION_STATE_IDLE);
  drain_request.mutable_deadline()->set_seconds(-5);
  expectStatus(drain(drain_request, &result), grpc::StatusCode::INVALID_ARGUMENT,
               "deadline: must not be negative");
  pb::KillConnectionsRequest kill_request;
  kill_request.mutable_selector()->set_peer_cidr("1.2.3.4/99");
  expectStatus(kill(kill_request, &result), grpc::StatusCode::INVALID_ARGUMENT,
               "selector.peer_cidr:");
  kill_request.Clear();
  kill_request.add_ids(55555);
  expectStatus(kill(kill_request, &result), grpc::StatusCode::NOT_FOUND, "55555");

  pb::SetRoutePolicyRequest set;
  pb::RoutePolicyEntry entry;
  set.set_route("nope");
  set.mutable_policy()->mutable_idle_timeout()->set_seconds(5);
  expectStatus(setPolicy(set, &entry), grpc::StatusCode::NOT_FOUND, "nope");
  set.set_route("default");
  set.mutable_policy()->mutable_idle_timeout()->set_seconds(-5);
  expectStatus(setPolicy(set, &entry), grpc::StatusCode::INVALID_ARGUMENT,
               "policy.idle_timeout");
  set.mutable_policy()->mutable_idle_timeout()->set_seconds(5);
  set.mutable_update_mask()->add_paths("idle_timeout");
  set.mutable_update_mask()->add_paths("colour");
  expectStatus(setPolicy(set, &entry), grpc::StatusCode::INVALID_ARGUMENT,
               "update_mask.paths[1]: \"colour\"");
  pb::ResetRoutePolicyRequest reset;
  auto ctx2 = context();
  expectStatus(stub_->ResetRoutePolicy(ctx2.get(), reset, &entry),
               grpc::StatusCode::INVALID_ARGUMENT, "route:");
  // Nothing changed, and the server still answers.
  EXPECT_FALSE(policyOf("default").has_override());
  pb::WatchConnectionsRequest watch;
  watch.mutable_selector()->mutable_min_idle()->set_seconds(1);
  auto ctx3 = context();
  auto reader = stub_->WatchConnections(ctx3.get(), watch);
  pb::ConnectionEvent event;
  EXPECT_FALSE(reader->Read(&event));
  expectStatus(reader->Finish(), grpc::StatusCode::INVALID_ARGUMENT, "selector:");
}

// ---- Drain and kill -------------------------------------------------------------------------------

TEST_F(AdminTest, DrainAndKillByIdChangeTheSockets) {
  start(2);
  // Drain of an idle connection: it closes at once.
  auto idle = servedConnection();
  const uint64_t idle_id = onlyIdIn(pb::CONNECTION_STATE_IDLE);
  pb::DrainConnectionsRequest drain_request;
  drain_request.add_ids(idle_id);
  pb::CommandResponse result;
  ASSERT_TRUE(drain(drain_request, &result).ok());
  ASSERT_EQ(result.results_size(), 1);
  EXPECT_EQ(result.results(0).id(), idle_id);
  EXPECT_EQ(result.results(0).outcome(), pb::CommandResult::OUTCOME_CLOSED);
  EXPECT_EQ(result.results(0).state_before(), pb::CONNECTION_STATE_IDLE);
  EXPECT_TRUE(idle->waitForClose(std::chrono::seconds(2)));

  // Drain with a request in flight: the response completes with Connection: close, then EOF.
  auto busy = std::make_unique<TestClient>(server_->port());
  ASSERT_TRUE(busy->send(getRequest("/slow?ms=1500")));
  const uint64_t busy_id = onlyIdIn(pb::CONNECTION_STATE_ACTIVE);
  drain_request.Clear();
  drain_request.add_ids(busy_id);
  drain_request.add_ids(busy_id + (1u << 8) * 1000);  // unknown: reported, not fatal
  drain_request.mutable_deadline()->set_seconds(10);
  ASSERT_TRUE(drain(drain_request, &result).ok());
  ASSERT_EQ(result.results_size(), 2);
  EXPECT_EQ(result.results(0).outcome(), pb::CommandResult::OUTCOME_DRAINING);
  EXPECT_EQ(result.results(1).outcome(), pb::CommandResult::OUTCOME_NOT_FOUND);
  EXPECT_EQ(result.draining(), 1u);
  EXPECT_EQ(result.not_found(), 1u);
  pb::Connection draining;
  pb::GetConnectionRequest get;
  get.set_id(busy_id);
  auto ctx = context();
  ASSERT_TRUE(stub_->GetConnection(ctx.get(), get, &draining).ok());
  EXPECT_EQ(draining.state(), pb::CONNECTION_STATE_DRAINING);
  auto response = busy->readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->header("connection"), "close");
  EXPECT_TRUE(busy->waitForClose(std::chrono::seconds(2)));

  // Kill with a request in flight: no response, the socket closes now.
  auto killed = std::make_unique<TestClient>(server_->port());
  ASSERT_TRUE(killed->send(getRequest("/slow?ms=3000")));
  const uint64_t killed_id = onlyIdIn(pb::CONNECTION_STATE_ACTIVE);
  pb::KillConnectionsRequest kill_request;
  kill_request.add_ids(killed_id);
  const auto start_kill = Clock::now();
  ASSERT_TRUE(kill(kill_request, &result).ok());
  EXPECT_EQ(result.results(0).outcome(), pb::CommandResult::OUTCOME_CLOSED);
  EXPECT_EQ(result.results(0).state_before(), pb::CONNECTION_STATE_ACTIVE);
  EXPECT_FALSE(killed->readResponse().has_value());
  EXPECT_LT(Clock::now() - start_kill, std::chrono::milliseconds(2500));
  EXPECT_TRUE(waitFor([&] { return server_->connectionCount() == 0; }));
  // Gone: GetConnection says NOT_FOUND.
  auto ctx2 = context();
  get.set_id(killed_id);
  EXPECT_EQ(stub_->GetConnection(ctx2.get(), get, &draining).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminTest, DrainAndKillBySelector) {
  start(2);
  std::vector<std::unique_ptr<TestClient>> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(servedConnection());
  auto busy = std::make_unique<TestClient>(server_->port());
  ASSERT_TRUE(busy->send(getRequest("/slow?ms=10000")));
  ASSERT_TRUE(waitFor([&] {
    pb::ListConnectionsRequest request;
    request.mutable_selector()->set_state(pb::CONNECTION_STATE_ACTIVE);
    pb::ListConnectionsResponse response;
    return list(request, &response).ok() && response.total_size() == 1;
  }));
  // Drain what is idle: the four close, the busy one is untouched.
  pb::DrainConnectionsRequest drain_request;
  drain_request.mutable_selector()->set_state(pb::CONNECTION_STATE_IDLE);
  drain_request.mutable_selector()->set_peer_cidr("127.0.0.1");
  pb::CommandResponse result;
  ASSERT_TRUE(drain(drain_request, &result).ok());
  EXPECT_EQ(result.results_size(), 4);
  EXPECT_EQ(result.closed(), 4u);
  for (auto& client : idle) EXPECT_TRUE(client->waitForClose(std::chrono::seconds(2)));
  EXPECT_EQ(server_->connectionCount(), 1u);
  // A selector that matches nothing does nothing.
  pb::KillConnectionsRequest kill_request;
  kill_request.mutable_selector()->set_peer_cidr("192.0.2.0/24");
  ASSERT_TRUE(kill(kill_request, &result).ok());
  EXPECT_EQ(result.results_size(), 0);
  EXPECT_EQ(server_->connectionCount(), 1u);
  // Kill everything: needs `all`.
  kill_request.Clear();
  expectStatus(kill(kill_request, &result), grpc::StatusCode::INVALID_ARGUMENT, "selector.all");
  kill_request.mutable_selector()->set_all(true);
  ASSERT_TRUE(kill(kill_request, &result).ok());
  EXPECT_EQ(result.closed(), 1u);
  EXPECT_FALSE(busy->readResponse().has_value());
  EXPECT_TRUE(waitFor([&] { return server_->connectionCount() == 0; }));
}

// ---- Route policies --------------------------------------------------------------------------------

TEST_F(AdminTest, PolicySetThroughTheApiActsOnLiveConnectionsAndSurvivesARestart) {
  TempDir state;
  start(1, {}, state.path());
  auto client = servedConnection();
  // Field mask: only idle_timeout changes, though the request also carries a write_timeout.
  pb::SetRoutePolicyRequest set;
  set.set_route("default");
  set.mutable_policy()->mutable_idle_timeout()->set_nanos(300'000'000);
  set.mutable_policy()->mutable_write_timeout()->set_seconds(7);
  set.mutable_update_mask()->add_paths("idle_timeout");
  pb::RoutePolicyEntry entry;
  const auto start_set = Clock::now();
  ASSERT_TRUE(setPolicy(set, &entry).ok());
  ASSERT_TRUE(entry.has_override());
  EXPECT_EQ(entry.override().idle_timeout().nanos(), 300'000'000);
  EXPECT_FALSE(entry.override().has_write_timeout());
  EXPECT_EQ(entry.effective().idle_timeout().nanos(), 300'000'000);
  // The live idle connection obeys it at once: closed by the idle timeout, not at 60 s.
  EXPECT_TRUE(client->waitForClose(std::chrono::seconds(3)));
  EXPECT_LT(Clock::now() - start_set, std::chrono::seconds(3));
  EXPECT_EQ(server_->closes(network::CloseReason::kIdleTimeout), 1u);

  // Without a mask, the fields given change and the others keep their value.
  set.clear_update_mask();
  set.clear_policy();
  set.mutable_policy()->mutable_hibernate()->set_enabled(true);
  ASSERT_TRUE(setPolicy(set, &entry).ok());
  EXPECT_EQ(entry.override().idle_timeout().nanos(), 300'000'000);
  EXPECT_TRUE(entry.override().hibernate().enabled());
  // A masked field absent from the request goes back to inheriting.
  set.clear_policy();
  set.mutable_update_mask()->add_paths("hibernate");
  ASSERT_TRUE(setPolicy(set, &entry).ok());
  EXPECT_FALSE(entry.override().has_hibernate());
  EXPECT_EQ(entry.override().idle_timeout().nanos(), 300'000'000);

  // Restart: the override is still there, and still governs connections.
  start(1, {}, state.path());
  entry = policyOf("default");
  ASSERT_TRUE(entry.has_override());
  EXPECT_EQ(entry.override().idle_timeout().nanos(), 300'000'000);
  auto again = servedConnection();
  EXPECT_TRUE(again->waitForClose(std::chrono::seconds(3)));

  // Reset: back to the config's policy, also after a restart.
  pb::ResetRoutePolicyRequest reset;
  reset.set_route("default");
  auto ctx = context();
  ASSERT_TRUE(stub_->ResetRoutePolicy(ctx.get(), reset, &entry).ok());
  EXPECT_FALSE(entry.has_override());
  start(1, {}, state.path());
  EXPECT_FALSE(policyOf("default").has_override());
  auto kept = servedConnection();
  EXPECT_FALSE(kept->waitForClose(std::chrono::milliseconds(800)));
}

// ---- Auth ----------------------------------------------------------------------------------------------

TEST_F(AdminTest, TokenScopesAreEnforced) {
  writeFile(dir_.file("read.tokens"), "# readers\nreader-token\n\n");
  writeFile(dir_.file("admin.tokens"), "admin-token\n");
  admin::AdminOptions options;
  options.read_token_file = dir_.file("read.tokens");
  options.admin_token_file = dir_.file("admin.tokens");
  start(1, options);
  pb::ListConnectionsResponse listed;
  pb::CommandResponse result;
  pb::KillConnectionsRequest kill_request;
  kill_request.add_ids(4242);

  auto ctx = context();
  expectStatus(stub_->ListConnections(ctx.get(), {}, &listed), grpc::StatusCode::UNAUTHENTICATED,
               "missing bearer token");
  ctx = context("wrong-token");
  expectStatus(stub_->ListConnections(ctx.get(), {}, &listed), grpc::StatusCode::UNAUTHENTICATED,
               "not recognized");
  ctx = context();
  ctx->AddMetadata("authorization", "Basic reader-token");
  expectStatus(stub_->ListConnections(ctx.get(), {}, &listed), grpc::StatusCode::UNAUTHENTICATED,
               "Bearer");
  ctx = context("reader-token");
  EXPECT_TRUE(stub_->ListConnections(ctx.get(), {}, &listed).ok());
  pb::ServerInfo info;
  ctx = context("reader-token");
  EXPECT_TRUE(stub_->GetServerInfo(ctx.get(), {}, &info).ok());
  expectStatus(kill(kill_request, &result, "reader-token"), grpc::StatusCode::PERMISSION_DENIED,
               "KillConnections needs an admin token");
  pb::SetRoutePolicyRequest set;
  set.set_route("default");
  set.mutable_policy()->mutable_idle_timeout()->set_seconds(5);
  pb::RoutePolicyEntry entry;
  ctx = context("reader-token");
  expectStatus(stub_->SetRoutePolicy(ctx.get(), set, &entry), grpc::StatusCode::PERMISSION_DENIED,
               "SetRoutePolicy");
  // The admin token does everything (here: a kill that finds nothing to kill).
  expectStatus(kill(kill_request, &result, "admin-token"), grpc::StatusCode::NOT_FOUND, "4242");
  ctx = context("admin-token");
  EXPECT_TRUE(stub_->ListConnections(ctx.get(), {}, &listed).ok());
  // Watch needs a token too.
  ctx = context();
  auto reader = stub_->WatchConnections(ctx.get(), {});
  pb::ConnectionEvent event;
  EXPECT_FALSE(reader->Read(&event));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // A token file that is missing or empty fails the start, naming the option.
  writeFile(dir_.file("empty.tokens"), "# nothing\n");
  options.read_token_file = dir_.file("empty.tokens");
  auto failed = admin::AdminServer::start(options, server_->server().control());
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("--admin-read-token-file"), std::string::npos);
  options.read_token_file = dir_.file("missing.tokens");
  failed = admin::AdminServer::start(options, server_->server().control());
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("missing.tokens"), std::string::npos);
}

// ---- Watch -------------------------------------------------------------------------------------------

// Reads events until `done` says so or the stream ends.
std::vector<pb::ConnectionEvent> readEvents(
    grpc::ClientReader<pb::ConnectionEvent>& reader,
    const std::function<bool(const std::vector<pb::ConnectionEvent>&)>& done) {
  std::vector<pb::ConnectionEvent> events;
  pb::ConnectionEvent event;
  while (!done(events) && reader.Read(&event)) events.push_back(event);
  return events;
}

TEST_F(AdminTest, WatchSeesOpenStateAndCloseInOrder) {
  start(2);
  auto ctx = context("", milliseconds(20000));
  auto reader = stub_->WatchConnections(ctx.get(), {});
  reader->WaitForInitialMetadata();  // subscribed from here on
  // A filtered watcher that wants only clients from elsewhere.
  auto other_ctx = context("", milliseconds(20000));
  pb::WatchConnectionsRequest elsewhere;
  elsewhere.mutable_selector()->set_peer_cidr("192.0.2.0/24");
  auto other = stub_->WatchConnections(other_ctx.get(), elsewhere);
  other->WaitForInitialMetadata();

  auto client = servedConnection();
  client.reset();  // the client closes
  auto killed = std::make_unique<TestClient>(server_->port());
  const uint64_t killed_id = onlyIdIn(pb::CONNECTION_STATE_IDLE);
  pb::KillConnectionsRequest kill_request;
  kill_request.add_ids(killed_id);
  pb::CommandResponse result;
  ASSERT_TRUE(kill(kill_request, &result).ok());

  auto events = readEvents(*reader, [](const auto& events) {
    size_t closed = 0;
    for (const auto& e : events) closed += e.kind() == pb::ConnectionEvent::KIND_CLOSED;
    return closed == 2;
  });
  ASSERT_GE(events.size(), 4u);
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].sequence(), i + 1);
  // Per connection: OPENED first, CLOSED last, state changes between.
  std::map<uint64_t, std::vector<pb::ConnectionEvent>> by_id;
  for (const auto& e : events) by_id[e.connection().id()].push_back(e);
  ASSERT_EQ(by_id.size(), 2u);
  for (const auto& [id, list] : by_id) {
    ASSERT_GE(list.size(), 2u);
    EXPECT_EQ(list.front().kind(), pb::ConnectionEvent::KIND_OPENED) << id;
    EXPECT_EQ(list.front().connection().listener(), "plain");
    EXPECT_EQ(list.back().kind(), pb::ConnectionEvent::KIND_CLOSED) << id;
    for (size_t i = 1; i + 1 < list.size(); ++i) {
      EXPECT_EQ(list[i].kind(), pb::ConnectionEvent::KIND_STATE_CHANGED) << id;
    }
  }
  EXPECT_EQ(by_id[killed_id].back().connection().close_reason(), pb::CLOSE_REASON_KILLED);
  const uint64_t served_id =
      by_id.begin()->first == killed_id ? by_id.rbegin()->first : by_id.begin()->first;
  EXPECT_EQ(by_id[served_id].back().connection().close_reason(), pb::CLOSE_REASON_PEER_CLOSED);
  // The served one went ACTIVE with route "default" at its request.
  bool saw_active = false;
  for (const auto& e : by_id[served_id]) {
    saw_active |= e.kind() == pb::ConnectionEvent::KIND_STATE_CHANGED &&
                  e.connection().state() == pb::CONNECTION_STATE_ACTIVE;
  }
  EXPECT_TRUE(saw_active);

  // The filtered watcher saw none of it.
  other_ctx->TryCancel();
  pb::ConnectionEvent event;
  EXPECT_FALSE(other->Read(&event));
  EXPECT_EQ(other->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ctx->TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish();
}

TEST_F(AdminTest, SlowWatcherIsCutAloneWithResourceExhausted) {
  admin::AdminOptions options;
  options.watch_queue_capacity = 32;
  start(2, options);
  // The slow watcher's channel grants a small, fixed flow-control window, so its stream backs up.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt("grpc.http2.lookahead_bytes", 8192);
  auto slow_channel =
      grpc::CreateCustomChannel(admin_->boundAddress(), grpc::InsecureChannelCredentials(), args);
  auto slow_stub = pb::ConnectionAdmin::NewStub(slow_channel);
  auto slow_ctx = context("", milliseconds(60000));
  auto slow = slow_stub->WatchConnections(slow_ctx.get(), {});
  slow->WaitForInitialMetadata();
  auto fast_ctx = context("", milliseconds(60000));
  auto fast = stub_->WatchConnections(fast_ctx.get(), {});
  fast->WaitForInitialMetadata();

  // Batches of connections opened and closed; the fast watcher keeps up with each batch.
  size_t closed_seen = 0;
  pb::ConnectionEvent event;
  uint64_t last_sequence = 0;
  // Small batches: a few events at a time, well under the queue's capacity, for the fast one.
  constexpr int kBatches = 150;
  constexpr int kPerBatch = 4;
  for (int batch = 0; batch < kBatches; ++batch) {
    {
      std::vector<std::unique_ptr<TestClient>> clients;
      for (int i = 0; i < kPerBatch; ++i) {
        clients.push_back(std::make_unique<TestClient>(server_->port()));
      }
    }
    const size_t want = static_cast<size_t>(batch + 1) * kPerBatch;
    while (closed_seen < want && fast->Read(&event)) {
      ASSERT_EQ(event.sequence(), last_sequence + 1);
      last_sequence = event.sequence();
      closed_seen += event.kind() == pb::ConnectionEvent::KIND_CLOSED;
    }
    ASSERT_EQ(closed_seen, want) << "the fast watcher's stream ended: "
                                 << fast->Finish().error_message();
  }
  // The slow one now reads: a few events, then RESOURCE_EXHAUSTED.
  size_t slow_events = 0;
  while (slow->Read(&event)) ++slow_events;
  expectStatus(slow->Finish(), grpc::StatusCode::RESOURCE_EXHAUSTED, "read too slowly");
  EXPECT_LT(slow_events, static_cast<size_t>(kBatches * kPerBatch * 2));
  // The fast one is still open and still gets events; the proxy still serves.
  auto client = servedConnection();
  client.reset();
  bool saw_close = false;
  while (!saw_close && fast->Read(&event)) {
    saw_close = event.kind() == pb::ConnectionEvent::KIND_CLOSED;
  }
  EXPECT_TRUE(saw_close);
  fast_ctx->TryCancel();
  while (fast->Read(&event)) {
  }
  fast->Finish();
}

// ---- Deadlines -------------------------------------------------------------------------------------

TEST_F(AdminTest, AWorkerThatDoesNotAnswerGivesDeadlineExceeded) {
  start(1);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  server_->server().worker(0).post([released] { released.wait(); });
  const auto started = Clock::now();
  pb::ListConnectionsResponse listed;
  auto ctx = context("", milliseconds(300));
  expectStatus(stub_->ListConnections(ctx.get(), {}, &listed),
               grpc::StatusCode::DEADLINE_EXCEEDED, "");
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(3));
  pb::ServerInfo info;
  ctx = context("", milliseconds(300));
  EXPECT_EQ(stub_->GetServerInfo(ctx.get(), {}, &info).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  release.set_value();
  ctx = context();
  EXPECT_TRUE(stub_->ListConnections(ctx.get(), {}, &listed).ok());
}

// ---- Listening: port in use, unix socket ---------------------------------------------------------

TEST_F(AdminTest, AnAddressInUseFailsClearlyAndUnixSocketsWork) {
  start(1);
  admin::AdminOptions options;
  options.address = admin_->boundAddress();
  auto second = admin::AdminServer::start(options, server_->server().control());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(admin_->boundAddress()), std::string::npos)
      << second.status().message();

  options.address = "unix:" + dir_.file("admin.sock");
  auto unix_server = admin::AdminServer::start(options, server_->server().control());
  ASSERT_TRUE(unix_server.ok()) << unix_server.status();
  auto channel = grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials());
  auto stub = pb::ConnectionAdmin::NewStub(channel);
  pb::ServerInfo info;
  auto ctx = context();
  ASSERT_TRUE(stub->GetServerInfo(ctx.get(), {}, &info).ok());
  EXPECT_EQ(info.instance_id(), (*unix_server)->instanceId());
}

// ---- TLS and mutual TLS ------------------------------------------------------------------------------

TEST_F(AdminTest, TlsAndMutualTls) {
  TempDir server_dir;
  TempDir client_dir;
  const TestCertificate server_cert = makeSelfSignedCertificate(server_dir);
  const TestCertificate client_cert = makeSelfSignedCertificate(client_dir);
  admin::AdminOptions options;
  options.tls_cert_file = server_cert.cert_file;
  options.tls_key_file = server_cert.key_file;
  start(1, options);
  auto client = servedConnection();

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = readFile(server_cert.cert_file);
  auto tls_channel = grpc::CreateChannel(admin_->boundAddress(), grpc::SslCredentials(ssl));
  auto stub = pb::ConnectionAdmin::NewStub(tls_channel);
  pb::ListConnectionsResponse listed;
  auto ctx = context();
  ASSERT_TRUE(stub->ListConnections(ctx.get(), {}, &listed).ok());
  ASSERT_EQ(listed.connections_size(), 1);
  pb::KillConnectionsRequest kill_request;
  kill_request.add_ids(listed.connections(0).id());
  pb::CommandResponse result;
  ctx = context();
  ASSERT_TRUE(stub->KillConnections(ctx.get(), kill_request, &result).ok());
  EXPECT_TRUE(client->waitForClose(std::chrono::seconds(2)));
  // Plaintext against the TLS port fails.
  auto plain = pb::ConnectionAdmin::NewStub(
      grpc::CreateChannel(admin_->boundAddress(), grpc::InsecureChannelCredentials()));
  ctx = context("", milliseconds(2000));
  EXPECT_FALSE(plain->ListConnections(ctx.get(), {}, &listed).ok());

  // Mutual TLS: no client certificate, no call; with one signed by the CA, calls work.
  options.tls_client_ca_file = client_cert.cert_file;
  start(1, options);
  auto no_cert = pb::ConnectionAdmin::NewStub(
      grpc::CreateChannel(admin_->boundAddress(), grpc::SslCredentials(ssl)));
  ctx = context("", milliseconds(2000));
  EXPECT_EQ(no_cert->ListConnections(ctx.get(), {}, &listed).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  grpc::SslCredentialsOptions mutual = ssl;
  mutual.pem_private_key = readFile(client_cert.key_file);
  mutual.pem_cert_chain = readFile(client_cert.cert_file);
  auto with_cert = pb::ConnectionAdmin::NewStub(
      grpc::CreateChannel(admin_->boundAddress(), grpc::SslCredentials(mutual)));
  ctx = context();
  grpc::Status status = with_cert->ListConnections(ctx.get(), {}, &listed);
  EXPECT_TRUE(status.ok()) << status.error_message();
  // A client CA without a server certificate is refused at start.
  admin::AdminOptions bad;
  bad.address = "127.0.0.1:0";
  bad.tls_client_ca_file = client_cert.cert_file;
  auto refused = admin::AdminServer::start(bad, server_->server().control());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("--admin-tls-client-ca"), std::string::npos);
}

// ---- Health and reflection, with no generated code (as a generic gRPC CLI does) -----------------

grpc::Status rawUnary(grpc::Channel& channel, const std::string& method, const std::string& in,
                      std::string* out) {
  grpc::GenericStub stub(std::shared_ptr<grpc::Channel>(&channel, [](grpc::Channel*) {}));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice slice(in);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(s); });
  grpc::Status status = done.get_future().get();
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    out->clear();
    for (const auto& s : slices) out->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

// One reflection request/response on the v1alpha stream, as raw bytes.
std::string reflect(grpc::Channel& channel, const std::string& request) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  const grpc::internal::RpcMethod method(
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      grpc::internal::RpcMethod::BIDI_STREAMING);
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          &channel, method, &ctx));
  grpc::Slice slice(request);
  grpc::ByteBuffer out(&slice, 1);
  EXPECT_TRUE(stream->Write(out));
  stream->WritesDone();
  grpc::ByteBuffer in;
  std::string bytes;
  if (stream->Read(&in)) {
    std::vector<grpc::Slice> slices;
    EXPECT_TRUE(in.Dump(&slices).ok());
    for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  while (stream->Read(&in)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
  return bytes;
}

// A length-delimited protobuf field: tag, length, bytes.
std::string field(int number, const std::string& value) {
  std::string out;
  out.push_back(static_cast<char>(number << 3 | 2));
  size_t n = value.size();
  while (n >= 0x80) {
    out.push_back(static_cast<char>(n | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
  return out + value;
}

std::vector<std::string> lengthDelimited(const std::string& bytes, int number) {
  google::protobuf::UnknownFieldSet fields;
  EXPECT_TRUE(fields.ParseFromString(bytes));
  std::vector<std::string> out;
  for (int i = 0; i < fields.field_count(); ++i) {
    if (fields.field(i).number() == number &&
        fields.field(i).type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      out.push_back(fields.field(i).length_delimited());
    }
  }
  return out;
}

TEST_F(AdminTest, HealthAndReflectionServeAGenericClient) {
  start(1);
  std::string reply;
  ASSERT_TRUE(rawUnary(*channel_, "/grpc.health.v1.Health/Check", "", &reply).ok());
  EXPECT_EQ(reply, std::string("\x08\x01", 2));  // status: SERVING

  // list_services (field 7): the admin service and reflection itself.
  const std::string listed = reflect(*channel_, field(7, ""));
  std::set<std::string> services;
  for (const std::string& list : lengthDelimited(listed, 6)) {
    for (const std::string& service : lengthDelimited(list, 1)) {
      for (const std::string& name : lengthDelimited(service, 1)) services.insert(name);
    }
  }
  EXPECT_TRUE(services.count("connwarden.admin.v1.ConnectionAdmin")) << services.size();
  EXPECT_TRUE(services.count("grpc.reflection.v1alpha.ServerReflection"));

  // file_containing_symbol (field 4): the descriptors, from which the messages are built.
  const std::string files =
      reflect(*channel_, field(4, "connwarden.admin.v1.ConnectionAdmin"));
  google::protobuf::DescriptorPool pool;
  std::vector<google::protobuf::FileDescriptorProto> protos;
  for (const std::string& response : lengthDelimited(files, 4)) {
    for (const std::string& bytes : lengthDelimited(response, 1)) {
      protos.emplace_back();
      ASSERT_TRUE(protos.back().ParseFromString(bytes));
    }
  }
  ASSERT_FALSE(protos.empty());
  // Dependencies first: add until every file is in (each pass adds at least one).
  for (size_t pass = 0; pass < protos.size(); ++pass) {
    for (const auto& proto : protos) {
      if (pool.FindFileByName(proto.name()) != nullptr) continue;
      bool ready = true;
      for (const std::string& dep : proto.dependency()) ready &= pool.FindFileByName(dep) != nullptr;
      if (ready) {
        ASSERT_NE(pool.BuildFile(proto), nullptr) << proto.name();
      }
    }
  }
  const google::protobuf::ServiceDescriptor* service =
      pool.FindServiceByName("connwarden.admin.v1.ConnectionAdmin");
  ASSERT_NE(service, nullptr);
  const google::protobuf::MethodDescriptor* list_method = service->FindMethodByName("ListConnections");
  const google::protobuf::MethodDescriptor* kill_method = service->FindMethodByName("KillConnections");
  ASSERT_NE(list_method, nullptr);
  ASSERT_NE(kill_method, nullptr);

  auto client = servedConnection();
  google::protobuf::DynamicMessageFactory factory(&pool);
  std::unique_ptr<google::protobuf::Message> list_request(
      factory.GetPrototype(list_method->input_type())->New());
  std::string list_bytes;
  list_request->SerializeToString(&list_bytes);
  ASSERT_TRUE(rawUnary(*channel_, "/connwarden.admin.v1.ConnectionAdmin/ListConnections",
                       list_bytes, &reply)
                  .ok());
  std::unique_ptr<google::protobuf::Message> list_response(
      factory.GetPrototype(list_method->output_type())->New());
  ASSERT_TRUE(list_response->ParseFromString(reply));
  const auto* connections = list_method->output_type()->FindFieldByName("connections");
  const auto* reflection = list_response->GetReflection();
  ASSERT_EQ(reflection->FieldSize(*list_response, connections), 1);
  const google::protobuf::Message& connection =
      reflection->GetRepeatedMessage(*list_response, connections, 0);
  const uint64_t id = connection.GetReflection()->GetUInt64(
      connection, connection.GetDescriptor()->FindFieldByName("id"));

  std::unique_ptr<google::protobuf::Message> kill_request(
      factory.GetPrototype(kill_method->input_type())->New());
  kill_request->GetReflection()->AddUInt64(kill_request.get(),
                                           kill_method->input_type()->FindFieldByName("ids"), id);
  std::string kill_bytes;
  kill_request->SerializeToString(&kill_bytes);
  ASSERT_TRUE(rawUnary(*channel_, "/connwarden.admin.v1.ConnectionAdmin/KillConnections",
                       kill_bytes, &reply)
                  .ok());
  EXPECT_TRUE(client->waitForClose(std::chrono::seconds(2)));
}

}  // namespace
}  // namespace connwarden::testing
