// Dormant connections (a hibernated HTTP connection without a session: its socket waits in the
// worker's DormantPoll): they wake on bytes, again and again, keep what the operator sees, and
// obey every deadline, drain, kill and policy change while asleep. Plain and TLS.
#include <thread>

#include "gtest/gtest.h"
#include "sidecar/conn/control.h"
#include "sidecar/server/worker.h"
#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

using conn::CommandResult;
using http::SessionState;
using network::CloseReason;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
constexpr milliseconds kCall{2000};
// A timer may not fire early by more than the clock's steps, but it may fire late when both
// cores are busy (CI runs the sanitizer build beside others): early is a bug, late by a little
// is the machine. The late bound still tells one timeout from another.
constexpr milliseconds kTolerance{50};
constexpr milliseconds kLateTolerance{250};

milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

http::RoutePolicy sleepy() {
  http::RoutePolicy policy;
  policy.idle_timeout = milliseconds(30'000);
  policy.request_header_timeout = milliseconds(30'000);
  policy.request_timeout = milliseconds(30'000);
  policy.hibernate = true;
  policy.hibernate_after = milliseconds(20);
  return policy;
}

class DormantTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { cert_ = makeSelfSignedCertificate(dir_); }
  bool tls() const { return GetParam(); }
  std::unique_ptr<TestServer> serve(const http::RoutePolicy& policy, bool listener_wide = false) {
    server::ServerConfig config =
        TestServer::simpleConfig(app_.address(), tls() ? &cert_ : nullptr);
    config.routes[0].policy = policy;
    if (listener_wide) config.listener_policies = {policy};
    return std::make_unique<TestServer>(config);
  }
  std::unique_ptr<TestClient> connect(TestServer& server) {
    auto client = std::make_unique<TestClient>(server.port(), tls());
    EXPECT_TRUE(client->connected());
    return client;
  }
  // Connections asleep on worker 0, and how many woke since start.
  static std::pair<size_t, uint64_t> dormancy(TestServer& server) {
    std::pair<size_t, uint64_t> out;
    server.runOnWorker(0, [&](server::Worker& worker) {
      out = {worker.connections().dormant(), worker.connections().wakeups()};
    });
    return out;
  }
  static bool waitDormant(TestServer& server, size_t count = 1) {
    return waitFor([&] { return dormancy(server).first == count; });
  }
  static bool request(TestClient& client, const std::string& path = "/") {
    if (!client.send(getRequest(path))) return false;
    auto response = client.readResponse();
    return response.has_value() && response->status == 200;
  }

  TempDir dir_;
  TestCertificate cert_;
  DemoApp app_;
};

TEST_P(DormantTest, SleepsAndWakesAgainAndAgainKeepingWhatTheOperatorSees) {
  auto server = serve(sleepy());
  auto client = connect(*server);
  ASSERT_TRUE(request(*client));
  conn::ConnectionSnapshot awake = server->connections().at(0);
  for (int round = 1; round <= 3; ++round) {
    SCOPED_TRACE(round);
    ASSERT_TRUE(waitDormant(*server));
    auto all = server->connections();
    ASSERT_EQ(all.size(), 1u);
    const conn::ConnectionSnapshot& asleep = all[0];
    EXPECT_EQ(asleep.state, SessionState::kHibernating);
    EXPECT_EQ(asleep.id, awake.id);
    EXPECT_EQ(asleep.peer, awake.peer);
    EXPECT_EQ(asleep.local, awake.local);
    EXPECT_EQ(asleep.tls, tls());
    EXPECT_EQ(asleep.tls_info.version, awake.tls_info.version);
    EXPECT_EQ(asleep.tls_info.alpn, awake.tls_info.alpn);
    EXPECT_EQ(asleep.route, "default");
    EXPECT_EQ(asleep.requests, static_cast<uint64_t>(round));
    EXPECT_GE(asleep.bytes_in, awake.bytes_in);
    EXPECT_GT(asleep.bytes_out, 0u);
    // Only the record and the account (and TLS's own state) are left.
    EXPECT_EQ(asleep.memory.buffers, 0);
    EXPECT_EQ(asleep.memory.codec, 0);
    if (!tls()) {
      EXPECT_LE(asleep.memory.total, 512);
    }
    awake = asleep;

    ASSERT_TRUE(request(*client, "/bytes?n=" + std::to_string(1000 * round)));
    EXPECT_EQ(dormancy(*server).second, static_cast<uint64_t>(round));
    all = server->connections();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_GT(all[0].bytes_out, awake.bytes_out + 1000u * round);
    EXPECT_EQ(all[0].requests, static_cast<uint64_t>(round + 1));
  }
}

TEST_P(DormantTest, ThePeerClosingWakesAndClosesIt) {
  auto server = serve(sleepy());
  auto client = connect(*server);
  ASSERT_TRUE(request(*client));
  ASSERT_TRUE(waitDormant(*server));
  client.reset();
  EXPECT_TRUE(waitFor([&] { return server->connectionCount() == 0; }));
  EXPECT_EQ(server->closes(CloseReason::kPeerClosed), 1u);
  EXPECT_EQ(dormancy(*server).first, 0u);
}

TEST_P(DormantTest, IdleTimeoutFiresWhileAsleep) {
  http::RoutePolicy policy = sleepy();
  policy.idle_timeout = milliseconds(400);
  auto server = serve(policy);
  auto client = connect(*server);
  ASSERT_TRUE(request(*client));
  const auto start = Clock::now();
  ASSERT_TRUE(waitDormant(*server));
  ASSERT_TRUE(client->waitForClose(milliseconds(3000)));
  EXPECT_GE(since(start), milliseconds(400) - kTolerance);
  EXPECT_LE(since(start), milliseconds(400) + kLateTolerance);
  EXPECT_TRUE(waitFor([&] { return server->closes(CloseReason::kIdleTimeout) == 1; }));
  EXPECT_EQ(server->connectionCount(), 0u);
}

TEST_P(DormantTest, MaxAgeDrainsItWhileAsleep) {
  http::RoutePolicy policy = sleepy();
  policy.max_connection_age = milliseconds(500);
  auto server = serve(policy);
  const auto start = Clock::now();
  auto client = connect(*server);
  ASSERT_TRUE(request(*client));
  ASSERT_TRUE(waitDormant(*server));
  ASSERT_TRUE(client->waitForClose(milliseconds(3000)));
  EXPECT_GE(since(start), milliseconds(500) - kTolerance);
  EXPECT_LE(since(start), milliseconds(500) + kLateTolerance);
  EXPECT_TRUE(waitFor([&] { return server->closes(CloseReason::kMaxAge) == 1; }));
}

// A client that connects and never asks anything is still bounded by the header timeout, asleep
// or not.
TEST_P(DormantTest, HeaderTimeoutBoundsASilentConnectionThatFellAsleep) {
  http::RoutePolicy policy = sleepy();
  policy.request_header_timeout = milliseconds(400);
  auto server = serve(policy, /*listener_wide=*/true);
  const auto start = Clock::now();
  auto client = connect(*server);
  ASSERT_TRUE(waitDormant(*server));
  ASSERT_TRUE(client->waitForClose(milliseconds(3000)));
  EXPECT_GE(since(start), milliseconds(400) - kTolerance);
  EXPECT_LE(since(start), milliseconds(400) + kLateTolerance);
  EXPECT_TRUE(waitFor([&] { return server->closes(CloseReason::kHeaderTimeout) == 1; }));
}

TEST_P(DormantTest, DrainAndKillWhileAsleep) {
  auto server = serve(sleepy());
  auto drained = connect(*server);
  auto killed = connect(*server);
  ASSERT_TRUE(request(*drained));
  ASSERT_TRUE(request(*killed));
  ASSERT_TRUE(waitDormant(*server, 2));
  auto all = server->connections();
  ASSERT_EQ(all.size(), 2u);
  // Connections are listed by ID: the first opened is the first.
  const uint64_t drained_id = all[0].id;
  const uint64_t killed_id = all[1].id;

  const uint64_t wakeups_before = dormancy(*server).second;
  auto drain = server->server().control().drain(drained_id, milliseconds(5000), kCall);
  ASSERT_TRUE(drain.ok()) << drain.status();
  EXPECT_EQ(drain->outcome, CommandResult::Outcome::kClosed);
  EXPECT_EQ(drain->state_before, SessionState::kHibernating);
  EXPECT_TRUE(drained->waitForClose(milliseconds(1000)));
  // A plain one with nothing unread closes as it lies; a TLS one wakes to say close_notify.
  EXPECT_EQ(dormancy(*server).second - wakeups_before, tls() ? 1u : 0u);

  auto kill = server->server().control().kill(killed_id, kCall);
  ASSERT_TRUE(kill.ok()) << kill.status();
  EXPECT_EQ(kill->outcome, CommandResult::Outcome::kClosed);
  EXPECT_EQ(kill->state_before, SessionState::kHibernating);
  EXPECT_TRUE(killed->waitForClose(milliseconds(1000)));

  EXPECT_TRUE(waitFor([&] { return server->connectionCount() == 0; }));
  EXPECT_EQ(server->closes(CloseReason::kDrained), 1u);
  EXPECT_EQ(server->closes(CloseReason::kKilled), 1u);
  EXPECT_EQ(dormancy(*server).first, 0u);
  // Gone means gone: a second command finds nothing.
  auto again = server->server().control().kill(killed_id, kCall);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome, CommandResult::Outcome::kNotFound);
}

// A policy set while it sleeps applies at once: its deadline is recomputed in place.
TEST_P(DormantTest, APolicyChangeReachesItWhileAsleep) {
  auto server = serve(sleepy());
  auto client = connect(*server);
  ASSERT_TRUE(request(*client));
  const auto idle_start = Clock::now();
  ASSERT_TRUE(waitDormant(*server));
  // Long enough that a clock started at the change (1000 ms) is past the late bound (850 ms).
  std::this_thread::sleep_for(milliseconds(400));
  http::RoutePolicy shorter = sleepy();
  shorter.idle_timeout = milliseconds(600);
  ASSERT_TRUE(server->server().control().setPolicy("default", shorter).ok());
  ASSERT_TRUE(client->waitForClose(milliseconds(3000)));
  // The idle clock started at the response, not at the change.
  EXPECT_GE(since(idle_start), milliseconds(600) - kTolerance);
  EXPECT_LE(since(idle_start), milliseconds(600) + kLateTolerance);
  EXPECT_TRUE(waitFor([&] { return server->closes(CloseReason::kIdleTimeout) == 1; }));
}

// Many asleep at once, woken together by their requests; then shutdown closes the ones asleep
// again as they lie.
TEST_P(DormantTest, ManyWakeTogether) {
  constexpr int kClients = 64;
  auto server = serve(sleepy());
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(connect(*server));
    ASSERT_TRUE(request(*clients.back()));
  }
  ASSERT_TRUE(waitDormant(*server, kClients));
  for (auto& client : clients) ASSERT_TRUE(client->send(getRequest("/")));
  for (auto& client : clients) {
    auto response = client->readResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
  }
  EXPECT_EQ(dormancy(*server).second, static_cast<uint64_t>(kClients));
  ASSERT_TRUE(waitDormant(*server, kClients));
  server.reset();
  for (auto& client : clients) EXPECT_TRUE(client->waitForClose(milliseconds(1000)));
}

INSTANTIATE_TEST_SUITE_P(PlainAndTls, DormantTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Tls" : "Plain";
                         });

}  // namespace
}  // namespace connwarden::testing
