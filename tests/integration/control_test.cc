// The operator's commands through ConnectionControl, against real connections (plain and TLS), a
// real upstream and its access log: drain of each kind, kill mid-upload and mid-download, bulk
// selectors, listing, route policies changed at runtime (and kept across a restart), and the
// lifecycle event stream.
#include <algorithm>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "sidecar/conn/control.h"
#include "sidecar/server/worker.h"
#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

using conn::CommandResult;
using conn::ConnectionControl;
using http::SessionState;
using network::CloseReason;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
constexpr milliseconds kCall{2000};  // how long a control call may wait for a worker

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

// The one open connection's snapshot, once there is exactly one in `state`.
conn::ConnectionSnapshot waitForOnly(TestServer& server, SessionState state) {
  conn::ConnectionSnapshot found;
  const bool ok = waitFor([&] {
    auto all = server.connections();
    if (all.size() != 1 || all[0].state != state) return false;
    found = all[0];
    return true;
  });
  EXPECT_TRUE(ok) << "no single connection in state " << http::sessionStateName(state);
  return found;
}

// Upstream connections held by worker 0's pools, idle and in use.
std::pair<size_t, size_t> upstreamPool(TestServer& server) {
  size_t idle = 0;
  size_t active = 0;
  server.runOnWorker(0, [&](server::Worker& worker) {
    for (const auto& pool : worker.connections().httpContext().pools) {
      idle += pool->idleCount();
      active += pool->activeCount();
    }
  });
  return {idle, active};
}

// One listener (plain or TLS, by the parameter) in front of the demo app with an access log.
class ControlTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    cert_ = makeSelfSignedCertificate(dir_);
    app_ = std::make_unique<DemoApp>(dir_.file("access.log"));
  }
  bool tls() const { return GetParam(); }
  server::ServerConfig config() const {
    return TestServer::simpleConfig(app_->address(), tls() ? &cert_ : nullptr);
  }
  std::unique_ptr<TestClient> connect(TestServer& server) {
    auto client = std::make_unique<TestClient>(server.port(), tls());
    EXPECT_TRUE(client->connected());
    return client;
  }
  std::string accessLog() const { return readFile(dir_.file("access.log")); }

  TempDir dir_;
  TestCertificate cert_;
  std::unique_ptr<DemoApp> app_;
};

TEST_P(ControlTest, DrainOfAnIdleConnectionClosesItAtOnce) {
  TestServer server(config());
  auto client = connect(server);
  ASSERT_TRUE(client->send(getRequest("/")) && client->readResponse().has_value());
  const auto idle = waitForOnly(server, SessionState::kIdle);

  const auto start = Clock::now();
  auto result = server.server().control().drain(idle.id, milliseconds(5000), kCall);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->outcome, CommandResult::Outcome::kClosed);
  EXPECT_EQ(result->state_before, SessionState::kIdle);
  EXPECT_TRUE(client->waitForClose(milliseconds(1000)));
  EXPECT_LT(since(start), milliseconds(500));
  EXPECT_TRUE(waitFor([&] { return server.closes(CloseReason::kDrained) == 1; }));
  EXPECT_EQ(server.connectionCount(), 0u);
}

TEST_P(ControlTest, DrainInFlightFinishesTheResponseWithConnectionClose) {
  TestServer server(config());
  auto client = connect(server);
  ASSERT_TRUE(client->send(getRequest("/slow?ms=300")));
  const auto active = waitForOnly(server, SessionState::kActive);

  auto result = server.server().control().drain(active.id, milliseconds(5000), kCall);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->outcome, CommandResult::Outcome::kDraining);
  EXPECT_EQ(result->state_before, SessionState::kActive);
  auto listed = server.connections();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].state, SessionState::kDraining);

  auto response = client->readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->header("connection"), "close");
  EXPECT_TRUE(client->waitForClose(milliseconds(1000)));
  EXPECT_TRUE(waitFor([&] { return server.closes(CloseReason::kDrained) == 1; }));
}

// Requests pipelined behind the one in flight are dropped: the upstream never sees them.
TEST_P(ControlTest, DrainDropsPipelinedRequestsThatHaveNotStarted) {
  TestServer server(config());
  auto client = connect(server);
  ASSERT_TRUE(client->send(getRequest("/slow?ms=300") + getRequest("/pipelined-second") +
                           getRequest("/pipelined-third")));
  const auto active = waitForOnly(server, SessionState::kActive);
  ASSERT_TRUE(waitFor([&] { return accessLog().find("/slow?ms=300") != std::string::npos; }));

  auto result = server.server().control().drain(active.id, std::nullopt, kCall);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->outcome, CommandResult::Outcome::kDraining);

  auto response = client->readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->header("connection"), "close");
  EXPECT_TRUE(client->waitForClose(milliseconds(1000)));
  // The proxy still holds an idle upstream connection it could have used: it did not.
  std::this_thread::sleep_for(milliseconds(100));
  const std::string log = accessLog();
  EXPECT_EQ(log.find("pipelined"), std::string::npos) << log;
}

TEST_P(ControlTest, DrainDeadlineKillsWhatHasNotFinished) {
  TestServer server(config());
  auto client = connect(server);
  ASSERT_TRUE(client->send(getRequest("/slow?ms=5000")));
  const auto active = waitForOnly(server, SessionState::kActive);

  const auto start = Clock::now();
  auto result = server.server().control().drain(active.id, milliseconds(300), kCall);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->outcome, CommandResult::Outcome::kDraining);
  EXPECT_EQ(client->readSome(), "");  // no response: reset at the deadline
  const auto took = since(start);
  EXPECT_GE(took, milliseconds(300 - 5));
  EXPECT_LE(took, milliseconds(300 + 50));
  EXPECT_TRUE(waitFor([&] { return server.closes(CloseReason::kKilled) == 1; }));
  // The upstream connection carried an unfinished response: it is not kept.
  EXPECT_TRUE(waitFor([&] { return upstreamPool(server) == std::make_pair(size_t{0}, size_t{0}); }));
}

TEST_P(ControlTest, DrainWithADeadlineOfZeroIsAKill) {
  TestServer server(config());
  auto client = connect(server);
  ASSERT_TRUE(client->send(getRequest("/slow?ms=5000")));
  const auto active = waitForOnly(server, SessionState::kActive);
  auto result = server.server().control().drain(active.id, milliseconds(0), kCall);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->outcome, CommandResult::Outcome::kClosed);
  EXPECT_EQ(result->state_before, SessionState::kActive);
  EXPECT_TRUE(client->waitForClose(milliseconds(500)));
  EXPECT_TRUE(waitFor([&] { return server.closes(CloseReason::kKilled) == 1; }));
}

// Kill during a download: the client is reset at once, the upstream request is cancelled and
// its connection discarded, and the next request gets a fresh one.
TEST_P(ControlTest, KillMidDownload) {
  TestServer server(config());
  auto client = connect(server);
  ASSERT_TRUE(client->send(getRequest("/bytes?n=" + std::to_string(200u << 20))));
  ASSERT_FALSE(client->readSome(4096).empty());  // the download has started
  const auto active = waitForOnly(server, SessionState::kActive);

  auto result = server.server().control().kill(active.id, kCall);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->outcome, CommandResult::Outcome::kClosed);
  EXPECT_EQ(result->state_before, SessionState::kActive);
  // What was in flight may still arrive; then the connection ends, far short of 200 MB.
  size_t received = 0;
  for (std::string chunk; !(chunk = client->readSome()).empty();) received += chunk.size();
  EXPECT_LT(received, 200u << 20);
  EXPECT_EQ(server.closes(CloseReason::kKilled), 1u);
  EXPECT_TRUE(waitFor([&] { return upstreamPool(server) == std::make_pair(size_t{0}, size_t{0}); }));

  auto next = connect(server);
  ASSERT_TRUE(next->send(getRequest("/")));
  auto response = next->readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
}

// Kill during an upload: the same, with the body half sent.
TEST_P(ControlTest, KillMidUpload) {
  TestServer server(config());
  auto client = connect(server);
  const size_t length = 100u << 20;
  ASSERT_TRUE(client->send("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: " +
                           std::to_string(length) + "\r\n\r\n"));
  ASSERT_TRUE(client->send(std::string(1u << 20, 'u')));
  const auto active = waitForOnly(server, SessionState::kActive);
  ASSERT_TRUE(waitFor([&] { return upstreamPool(server).second == 1; }));

  auto result = server.server().control().kill(active.id, kCall);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->outcome, CommandResult::Outcome::kClosed);
  EXPECT_TRUE(client->waitForClose(milliseconds(1000)));
  EXPECT_TRUE(waitFor([&] { return upstreamPool(server) == std::make_pair(size_t{0}, size_t{0}); }));
  EXPECT_EQ(server.closes(CloseReason::kKilled), 1u);
}

TEST_P(ControlTest, UnknownAndClosedIdsAreNotFound) {
  TestServer server(config());
  ConnectionControl& control = server.server().control();
  // An ID that never existed, on a worker that exists and on one that does not.
  for (uint64_t id : {uint64_t{12345} << 8, (uint64_t{7} << 8) | 200}) {
    auto drained = control.drain(id, std::nullopt, kCall);
    ASSERT_TRUE(drained.ok()) << drained.status();
    EXPECT_EQ(drained->outcome, CommandResult::Outcome::kNotFound);
    auto killed = control.kill(id, kCall);
    ASSERT_TRUE(killed.ok()) << killed.status();
    EXPECT_EQ(killed->outcome, CommandResult::Outcome::kNotFound);
    EXPECT_EQ(control.get(id, kCall).status().code(), absl::StatusCode::kNotFound);
  }
  // One that existed and closed.
  uint64_t closed_id = 0;
  {
    auto client = connect(server);
    ASSERT_TRUE(client->send(getRequest("/")) && client->readResponse().has_value());
    closed_id = waitForOnly(server, SessionState::kIdle).id;
    ASSERT_EQ(control.get(closed_id, kCall)->id, closed_id);
  }
  ASSERT_TRUE(waitFor([&] { return server.connectionCount() == 0; }));
  EXPECT_EQ(control.kill(closed_id, kCall)->outcome, CommandResult::Outcome::kNotFound);
  EXPECT_EQ(control.drain(closed_id, milliseconds(10), kCall)->outcome,
            CommandResult::Outcome::kNotFound);
  EXPECT_EQ(control.get(closed_id, kCall).status().code(), absl::StatusCode::kNotFound);
  // A negative deadline is refused, naming the field.
  auto negative = control.drain(closed_id, milliseconds(-1), kCall);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(negative.status().message().find("deadline"), std::string::npos);
}

// What a snapshot says of a connection: addresses, TLS, route, counters, memory.
TEST_P(ControlTest, SnapshotDescribesTheConnection) {
  TestServer server(config());
  auto client = connect(server);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client->send(getRequest("/")) && client->readResponse().has_value());
  }
  const auto c = waitForOnly(server, SessionState::kIdle);
  EXPECT_EQ(c.worker, conn::workerOfConnectionId(c.id));
  EXPECT_EQ(c.listener, tls() ? "tls" : "plain");
  EXPECT_EQ(c.peer.rfind("127.0.0.1:", 0), 0u) << c.peer;
  EXPECT_EQ(c.local, "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(c.tls, tls());
  if (tls()) {
    EXPECT_EQ(c.tls_info.version, "TLSv1.3");
    EXPECT_EQ(c.tls_info.alpn, "http/1.1");
  }
  EXPECT_EQ(c.protocol, "http/1.1");
  EXPECT_EQ(c.route, "default");
  EXPECT_EQ(c.requests, 3u);
  EXPECT_GT(c.bytes_in, 3 * getRequest("/").size() - 1);
  EXPECT_GT(c.bytes_out, 0u);
  EXPECT_GT(c.memory.total, 0);
  EXPECT_GE(c.memory.peak, c.memory.total);
  EXPECT_LE(c.created, c.last_activity);
  EXPECT_LE(c.idle, c.age);
}

INSTANTIATE_TEST_SUITE_P(PlainAndTls, ControlTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Tls" : "Plain"; });

// Two routes ("api" on /api, "default" for the rest) to select by.
server::ServerConfig twoRoutes(const DemoApp& app) {
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  http::RouteConfig api;
  api.name = "api";
  api.path_prefix = "/api";
  api.cluster = "app";
  config.routes.insert(config.routes.begin(), api);
  return config;
}

TEST(SelectorTest, BulkDrainAndKillTakeExactlyWhatMatches) {
  DemoApp app;
  TestServer server(twoRoutes(app));
  ConnectionControl& control = server.server().control();
  std::vector<std::unique_ptr<TestClient>> api, other;
  for (int i = 0; i < 3; ++i) {
    api.push_back(std::make_unique<TestClient>(server.port()));
    ASSERT_TRUE(api.back()->send(getRequest("/api/x")) && api.back()->readResponse());
    other.push_back(std::make_unique<TestClient>(server.port()));
    ASSERT_TRUE(other.back()->send(getRequest("/")) && other.back()->readResponse());
  }
  auto busy = std::make_unique<TestClient>(server.port());
  ASSERT_TRUE(busy->send(getRequest("/slow?ms=5000")));
  ASSERT_TRUE(waitFor([&] { return server.connections().size() == 7; }));

  // Selectors that match nothing do nothing.
  conn::ConnectionSelector elsewhere;
  elsewhere.peer = *network::Cidr::parse("10.0.0.0/8");
  auto none = control.drainMatching(elsewhere, std::nullopt, false, kCall);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  conn::ConnectionSelector old;
  old.age_at_least = milliseconds(60'000);
  EXPECT_TRUE(control.drainMatching(old, std::nullopt, true, kCall)->empty());

  // By route.
  conn::ConnectionSelector by_route;
  by_route.route = "api";
  ConnectionControl::ListRequest list;
  list.selector = by_route;
  EXPECT_EQ(control.list(list, kCall)->total, 3u);
  auto drained = control.drainMatching(by_route, std::nullopt, false, kCall);
  ASSERT_TRUE(drained.ok());
  ASSERT_EQ(drained->size(), 3u);
  for (const auto& r : *drained) EXPECT_EQ(r.outcome, CommandResult::Outcome::kClosed);
  for (auto& c : api) EXPECT_TRUE(c->waitForClose(milliseconds(1000)));
  EXPECT_EQ(server.connections().size(), 4u);

  // By state: only the idle ones, and only in the loopback range.
  conn::ConnectionSelector idle;
  idle.state = SessionState::kIdle;
  idle.peer = *network::Cidr::parse("127.0.0.0/8");
  idle.idle_at_least = milliseconds(0);
  auto killed = control.drainMatching(idle, std::nullopt, true, kCall);
  ASSERT_TRUE(killed.ok());
  EXPECT_EQ(killed->size(), 3u);
  for (auto& c : other) EXPECT_TRUE(c->waitForClose(milliseconds(1000)));
  auto left = server.connections();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].state, SessionState::kActive);

  // All.
  auto all = control.drainMatching({}, milliseconds(0), false, kCall);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].state_before, SessionState::kActive);
  EXPECT_TRUE(busy->waitForClose(milliseconds(1000)));
  EXPECT_EQ(server.closes(CloseReason::kDrained), 3u);
  EXPECT_EQ(server.closes(CloseReason::kKilled), 4u);
}

TEST(ListTest, SortsAndPages) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()), 2);
  ConnectionControl& control = server.server().control();
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_unique<TestClient>(server.port()));
    ASSERT_TRUE(clients.back()->send(getRequest("/")) && clients.back()->readResponse());
  }
  // One holds 40 KB of a request head that has not ended yet.
  auto big = std::make_unique<TestClient>(server.port());
  ASSERT_TRUE(big->send("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(40'000, 'b')));
  // Counted once its 40 KB have all been read (not as soon as it is accepted).
  ASSERT_TRUE(waitFor([&] {
    auto all = server.connections();
    return all.size() == 21 && std::any_of(all.begin(), all.end(), [](const auto& c) {
             return c.bytes_in > 40'000u;
           });
  }));

  ConnectionControl::ListRequest request;
  request.sort_by = ConnectionControl::SortBy::kMemory;
  request.descending = true;
  request.limit = 1;
  auto top = control.list(request, kCall);
  ASSERT_TRUE(top.ok());
  EXPECT_EQ(top->total, 21u);
  ASSERT_EQ(top->connections.size(), 1u);
  EXPECT_GT(top->connections[0].memory.total, 40'000);
  EXPECT_GT(top->connections[0].bytes_in, 40'000u);

  // Pages by ID cover every connection once, in order.
  request.sort_by = ConnectionControl::SortBy::kId;
  request.descending = false;
  request.limit = 8;
  std::vector<uint64_t> ids;
  for (request.offset = 0; request.offset < 21; request.offset += request.limit) {
    auto page = control.list(request, kCall);
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(page->total, 21u);
    for (const auto& c : page->connections) ids.push_back(c.id);
  }
  ASSERT_EQ(ids.size(), 21u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());

  request.offset = 100;
  EXPECT_TRUE(control.list(request, kCall)->connections.empty());
  request.offset = 0;
  request.limit = ConnectionControl::kMaxPage + 1;
  EXPECT_EQ(control.list(request, kCall).status().code(), absl::StatusCode::kInvalidArgument);
}

// Pages of a sorted list over many more connections than a page: each page is the matching
// slice of the whole list, with ties broken by ID (sorted by ID with two workers, their sequence
// numbers tie); with one worker (whose ranking is final, so it skips the pages before the offset)
// and with two (whose parts are merged).
class ListPagingTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(ListPagingTest, PagesAreSlicesOfTheWholeSortedList) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()), GetParam());
  ConnectionControl& control = server.server().control();
  // Request heads not ended yet, of many sizes: their read buffers make memory differ, with ties.
  constexpr size_t kConnections = 150;
  std::vector<std::unique_ptr<TestClient>> clients;
  uint64_t sent = 0;
  for (size_t i = 0; i < kConnections; ++i) {
    const std::string head =
        "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + std::string((i * 997) % 9000, 'p');
    clients.push_back(std::make_unique<TestClient>(server.port()));
    ASSERT_TRUE(clients.back()->send(head));
    sent += head.size();
  }
  ASSERT_TRUE(waitFor([&] {
    uint64_t read = 0;
    for (const auto& c : server.connections()) read += c.bytes_in;
    return read == sent;
  }));

  struct Order {
    ConnectionControl::SortBy by;
    bool descending;
    int64_t (*key)(const conn::ConnectionSnapshot&);
  };
  // Age only largest first, and only with one worker: ages are whole milliseconds that tie or
  // not from one call to the next, and only that direction agrees with the tie-break (older
  // connections have lower IDs); and each worker measures ages at its own loop's time, so the
  // ages of two workers' connections shift against each other from one call to the next.
  std::vector<Order> orders = {
      {ConnectionControl::SortBy::kMemory, true, [](const auto& c) { return c.memory.total; }},
      {ConnectionControl::SortBy::kMemory, false, [](const auto& c) { return c.memory.total; }},
      {ConnectionControl::SortBy::kId, false,
       [](const auto& c) { return static_cast<int64_t>(c.id >> conn::kWorkerIdBits); }},
  };
  if (GetParam() == 1) {
    orders.push_back({ConnectionControl::SortBy::kAge, true,
                      [](const auto& c) { return static_cast<int64_t>(c.age.count()); }});
  }
  for (const Order& order : orders) {
    SCOPED_TRACE(::testing::Message() << "sort " << static_cast<int>(order.by)
                                      << (order.descending ? " descending" : " ascending"));
    ConnectionControl::ListRequest request;
    request.sort_by = order.by;
    request.descending = order.descending;
    request.limit = ConnectionControl::kMaxPage;
    auto whole = control.list(request, kCall);
    ASSERT_TRUE(whole.ok());
    ASSERT_EQ(whole->total, kConnections);
    ASSERT_EQ(whole->connections.size(), kConnections);
    std::set<int64_t> keys;
    for (size_t i = 0; i < kConnections; ++i) {
      const auto& c = whole->connections[i];
      keys.insert(order.key(c));
      if (i == 0) continue;
      const auto& p = whole->connections[i - 1];
      if (order.key(p) == order.key(c)) {
        EXPECT_LT(p.id, c.id) << i;
      } else {
        EXPECT_EQ(order.key(p) > order.key(c), order.descending) << i;
      }
    }
    if (order.by == ConnectionControl::SortBy::kMemory) {
      EXPECT_GT(keys.size(), 3u);  // the order is not just the tie-break
    }

    request.limit = 11;
    std::vector<uint64_t> paged;
    for (request.offset = 0; request.offset < kConnections + 20; request.offset += request.limit) {
      auto page = control.list(request, kCall);
      ASSERT_TRUE(page.ok());
      EXPECT_EQ(page->total, kConnections);
      EXPECT_EQ(
          page->connections.size(),
          std::min<size_t>(request.limit, kConnections - std::min(kConnections, request.offset)));
      for (const auto& c : page->connections) paged.push_back(c.id);
    }
    std::vector<uint64_t> expected;
    for (const auto& c : whole->connections) expected.push_back(c.id);
    EXPECT_EQ(paged, expected);
  }

  // With a selector: total counts the matches, the page is the head of the matching slice.
  ConnectionControl::ListRequest request;
  request.sort_by = ConnectionControl::SortBy::kMemory;
  request.descending = true;
  request.limit = ConnectionControl::kMaxPage;
  auto whole = control.list(request, kCall);
  ASSERT_TRUE(whole.ok());
  const int64_t threshold = whole->connections[kConnections / 3].memory.total;
  std::vector<uint64_t> heavy;
  for (const auto& c : whole->connections) {
    if (c.memory.total >= threshold) heavy.push_back(c.id);
  }
  request.selector.memory_at_least = threshold;
  request.offset = 5;
  request.limit = 9;
  auto page = control.list(request, kCall);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->total, heavy.size());
  ASSERT_EQ(page->connections.size(), 9u);
  for (size_t i = 0; i < 9; ++i) EXPECT_EQ(page->connections[i].id, heavy[5 + i]) << i;
}

INSTANTIATE_TEST_SUITE_P(OneAndTwoWorkers, ListPagingTest, ::testing::Values(1u, 2u),
                         [](const auto& info) { return info.param == 1 ? "OneWorker" : "TwoWorkers"; });

TEST(PolicyControlTest, ExistingConnectionsPickUpANewPolicyAtOnce) {
  DemoApp app;
  TestServer server(twoRoutes(app));
  ConnectionControl& control = server.server().control();
  TestClient api(server.port());
  TestClient other(server.port());
  ASSERT_TRUE(api.send(getRequest("/api/x")) && api.readResponse());
  ASSERT_TRUE(other.send(getRequest("/")) && other.readResponse());
  std::this_thread::sleep_for(milliseconds(300));

  // Idle for 300 ms already; a 200 ms idle timeout closes it now, not 200 ms from now.
  http::RoutePolicy policy;
  policy.idle_timeout = milliseconds(200);
  const auto start = Clock::now();
  ASSERT_TRUE(control.setPolicy("api", policy).ok());
  EXPECT_TRUE(api.waitForClose(milliseconds(1000)));
  EXPECT_LT(since(start), milliseconds(100));
  EXPECT_EQ(server.closes(CloseReason::kIdleTimeout), 1u);
  auto view = control.getPolicy("api");
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(view->override.has_value());
  EXPECT_EQ(view->effective().idle_timeout, milliseconds(200));
  EXPECT_FALSE(view->configured.idle_timeout.has_value());

  // The other route is untouched; reset brings the config file's policy back.
  auto others = server.connections();
  ASSERT_EQ(others.size(), 1u);
  EXPECT_EQ(others[0].route, "default");
  ASSERT_TRUE(control.resetPolicy("api").ok());
  EXPECT_FALSE(control.getPolicy("api")->override.has_value());
  TestClient again(server.port());
  ASSERT_TRUE(again.send(getRequest("/api/y")) && again.readResponse());
  EXPECT_FALSE(again.waitForClose(milliseconds(400)));
}

TEST(PolicyControlTest, HibernateSetAtRuntimeHibernatesIdleConnections) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()));
  TestClient client(server.port());
  ASSERT_TRUE(client.send(getRequest("/")) && client.readResponse());
  waitForOnly(server, SessionState::kIdle);
  http::RoutePolicy policy;
  policy.hibernate = true;
  policy.hibernate_after = milliseconds(0);
  ASSERT_TRUE(server.server().control().setPolicy("default", policy).ok());
  const auto hibernated = waitForOnly(server, SessionState::kHibernating);
  EXPECT_EQ(hibernated.memory.buffers, 0);
  ASSERT_TRUE(client.send(getRequest("/")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
}

TEST(PolicyControlTest, BadPoliciesAreRefusedNamingTheField) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()));
  ConnectionControl& control = server.server().control();
  http::RoutePolicy negative;
  negative.idle_timeout = milliseconds(-5);
  auto status = control.setPolicy("default", negative);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("policy.idle_timeout"), std::string::npos) << status;

  http::RoutePolicy absurd;
  absurd.hibernate_after = std::chrono::hours(24 * 365 * 20);
  status = control.setPolicy("default", absurd);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("policy.hibernate.after"), std::string::npos) << status;

  http::RoutePolicy fine;
  fine.idle_timeout = milliseconds(1000);
  status = control.setPolicy("no-such-route", fine);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find("no-such-route"), std::string::npos) << status;
  EXPECT_EQ(control.getPolicy("no-such-route").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(control.resetPolicy("no-such-route").code(), absl::StatusCode::kNotFound);
  // Nothing was applied.
  EXPECT_FALSE(control.getPolicy("default")->override.has_value());
}

TEST(PolicyControlTest, OverridesSurviveARestartWithAStateDirectory) {
  DemoApp app;
  TempDir state;
  http::RoutePolicy policy;
  policy.idle_timeout = milliseconds(250);
  policy.max_requests_per_connection = 7;
  {
    TestServer first(TestServer::simpleConfig(app.address()), 1, state.path());
    ASSERT_TRUE(first.server().control().setPolicy("default", policy).ok());
  }
  TestServer second(TestServer::simpleConfig(app.address()), 1, state.path());
  auto view = second.server().control().getPolicy("default");
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(view->override.has_value());
  EXPECT_EQ(view->override->idle_timeout, milliseconds(250));
  EXPECT_EQ(view->override->max_requests_per_connection, 7u);
  // And connections obey it.
  TestClient client(second.port());
  ASSERT_TRUE(client.send(getRequest("/")) && client.readResponse());
  const auto start = Clock::now();
  EXPECT_TRUE(client.waitForClose(milliseconds(2000)));
  EXPECT_LE(since(start), milliseconds(250 + 50));
  EXPECT_EQ(second.closes(CloseReason::kIdleTimeout), 1u);

  // A reset is kept too.
  ASSERT_TRUE(second.server().control().resetPolicy("default").ok());
  EXPECT_EQ(readFile(state.file("policies.json")).find("250"), std::string::npos);
}

TEST(EventTest, OpenStateChangesAndCloseArriveInOrder) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()));
  std::mutex mutex;
  std::vector<conn::LifecycleEvent> events;
  const uint64_t subscription = server.server().control().subscribe(
      [&](const conn::LifecycleEvent& event) {
        std::lock_guard<std::mutex> lock(mutex);
        events.push_back(event);
      });
  {
    TestClient client(server.port());
    ASSERT_TRUE(client.send(getRequest("/")) && client.readResponse());
  }
  ASSERT_TRUE(waitFor([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return !events.empty() && events.back().kind == conn::LifecycleEvent::Kind::kClosed;
  }));
  server.server().control().unsubscribe(subscription);
  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_GE(events.size(), 4u);
  const uint64_t id = events.front().connection.id;
  EXPECT_EQ(events.front().kind, conn::LifecycleEvent::Kind::kOpened);
  EXPECT_EQ(events.front().connection.peer.rfind("127.0.0.1:", 0), 0u);
  std::vector<SessionState> states;
  for (const auto& e : events) {
    EXPECT_EQ(e.connection.id, id);
    if (e.kind == conn::LifecycleEvent::Kind::kStateChanged) states.push_back(e.connection.state);
  }
  // Idle -> active (the request) -> idle (response done); the close follows.
  ASSERT_GE(states.size(), 2u);
  EXPECT_NE(std::find(states.begin(), states.end(), SessionState::kActive), states.end());
  EXPECT_EQ(events.back().connection.close_reason, CloseReason::kPeerClosed);
  EXPECT_EQ(events.back().connection.requests, 1u);
  const size_t seen = events.size();
  // After unsubscribe(), nothing more arrives.
  {
    TestClient client(server.port());
    ASSERT_TRUE(client.send(getRequest("/")) && client.readResponse());
  }
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(events.size(), seen);
}

}  // namespace
}  // namespace connwarden::testing
