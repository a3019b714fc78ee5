// A cluster's max_connections: requests beyond it wait their turn for a connection, first come
// first served, and get 503 when the queue is full or their wait is over; the application never
// sees more connections than allowed.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "sidecar/http/upstream_pool.h"
#include "sidecar/server/config.h"
#include "sidecar/server/worker.h"
#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

server::ServerConfig limitedConfig(const DemoApp& app, uint32_t max_connections) {
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  config.clusters[0].max_connections = max_connections;
  return config;
}

// Upstream connects started, and requests queued now, over all workers.
struct PoolCounts {
  uint64_t connects = 0;
  uint64_t queued = 0;
  uint64_t full = 0;
  uint64_t timeouts = 0;
};
PoolCounts poolCounts(TestServer& server, uint32_t workers = 1) {
  PoolCounts counts;
  for (uint32_t w = 0; w < workers; ++w) {
    server.runOnWorker(w, [&](server::Worker& worker) {
      const http::UpstreamPool& pool = *worker.pools()[0];
      counts.connects += pool.connectsStarted();
      counts.queued += pool.queuedCount();
      counts.full += pool.queueFull();
      counts.timeouts += pool.queueTimeouts();
    });
  }
  return counts;
}

TEST(UpstreamLimitTest, RequestsBeyondTheLimitWaitTheirTurn) {
  DemoApp app;
  TestServer server(limitedConfig(app, 1));
  TestClient first(server.port());
  TestClient second(server.port());
  TestClient third(server.port());
  const auto start = Clock::now();
  ASSERT_TRUE(first.send(getRequest("/slow?ms=300")));
  ASSERT_TRUE(waitFor([&] { return poolCounts(server).connects == 1; }));
  ASSERT_TRUE(second.send(getRequest("/slow?ms=300")));
  ASSERT_TRUE(waitFor([&] { return poolCounts(server).queued == 1; }));
  ASSERT_TRUE(third.send(getRequest("/")));
  ASSERT_TRUE(waitFor([&] { return poolCounts(server).queued == 2; }));
  for (TestClient* client : {&first, &second, &third}) {
    auto response = client->readResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
  }
  // One after the other, on the one connection.
  EXPECT_GE(Clock::now() - start, milliseconds(600));
  const PoolCounts counts = poolCounts(server);
  EXPECT_EQ(counts.connects, 1u);
  EXPECT_EQ(counts.queued, 0u);
}

TEST(UpstreamLimitTest, BodyWaitsWithItsRequest) {
  DemoApp app;
  TestServer server(limitedConfig(app, 1));
  TestClient busy(server.port());
  ASSERT_TRUE(busy.send(getRequest("/slow?ms=200")));
  ASSERT_TRUE(waitFor([&] { return poolCounts(server).connects == 1; }));
  // 300 KiB, more than the watermark: reading the client pauses while it waits.
  const std::string body(300 * 1024, 'b');
  TestClient poster(server.port());
  ASSERT_TRUE(poster.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body));
  auto response = poster.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body.size(), body.size());
  EXPECT_TRUE(response->body == body);
  ASSERT_TRUE(busy.readResponse().has_value());
}

TEST(UpstreamLimitTest, WaitPastTheQueueTimeoutGets503) {
  DemoApp app;
  server::ServerConfig config = limitedConfig(app, 1);
  config.clusters[0].queue_timeout = milliseconds(150);
  TestServer server(config);
  TestClient busy(server.port());
  ASSERT_TRUE(busy.send(getRequest("/slow?ms=1000")));
  ASSERT_TRUE(waitFor([&] { return poolCounts(server).connects == 1; }));
  TestClient waiting(server.port());
  const auto start = Clock::now();
  ASSERT_TRUE(waiting.send(getRequest("/")));
  auto response = waiting.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 503);
  EXPECT_NE(response->body.find("queue_timeout"), std::string::npos) << response->body;
  EXPECT_GE(Clock::now() - start, milliseconds(140));
  EXPECT_LT(Clock::now() - start, milliseconds(900));
  // The connection that waited serves its next request once the slot is free.
  auto done = busy.readResponse();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->status, 200);
  ASSERT_TRUE(waiting.send(getRequest("/")));
  response = waiting.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(poolCounts(server).timeouts, 1u);
}

TEST(UpstreamLimitTest, FullQueueGets503AtOnce) {
  DemoApp app;
  server::ServerConfig config = limitedConfig(app, 1);
  config.clusters[0].max_queued_requests = 0;
  TestServer server(config);
  TestClient busy(server.port());
  ASSERT_TRUE(busy.send(getRequest("/slow?ms=1000")));
  ASSERT_TRUE(waitFor([&] { return poolCounts(server).connects == 1; }));
  TestClient turned_away(server.port());
  const auto start = Clock::now();
  ASSERT_TRUE(turned_away.send(getRequest("/")));
  auto response = turned_away.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 503);
  EXPECT_NE(response->body.find("queue_full"), std::string::npos) << response->body;
  EXPECT_LT(Clock::now() - start, milliseconds(500));
  EXPECT_EQ(poolCounts(server).full, 1u);
}

// A client that resets its connection while it waits is taken out of the queue at once; the
// next in line gets the connection. (A client's FIN alone is a half-close, which HTTP allows:
// its request stays in line and is answered.)
TEST(UpstreamLimitTest, ClientLeavingTheQueueIsForgotten) {
  DemoApp app;
  TestServer server(limitedConfig(app, 1));
  TestClient busy(server.port());
  const auto start = Clock::now();
  ASSERT_TRUE(busy.send(getRequest("/slow?ms=800")));
  ASSERT_TRUE(waitFor([&] { return poolCounts(server).connects == 1; }));
  {
    TestClient leaving(server.port());
    ASSERT_TRUE(leaving.send(getRequest("/")));
    ASSERT_TRUE(waitFor([&] { return poolCounts(server).queued == 1; }));
    const linger reset{1, 0};
    ASSERT_EQ(setsockopt(leaving.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
  }
  ASSERT_TRUE(waitFor([&] { return poolCounts(server).queued == 0; }));
  EXPECT_LT(Clock::now() - start, milliseconds(700));  // before the busy one was done
  TestClient next(server.port());
  ASSERT_TRUE(next.send(getRequest("/")));
  auto response = next.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  ASSERT_TRUE(busy.readResponse().has_value());
  EXPECT_EQ(poolCounts(server).connects, 1u);
  EXPECT_TRUE(waitFor([&] { return server.connectionCount() == 2; }));
}

// Two workers share max_connections: 3 → 2 and 1. Fewer than the workers is a config error
// naming the field.
TEST(UpstreamLimitTest, WorkersShareTheLimit) {
  EXPECT_EQ(http::UpstreamPool::shareOf(3, 0, 2), 2u);
  EXPECT_EQ(http::UpstreamPool::shareOf(3, 1, 2), 1u);
  EXPECT_EQ(http::UpstreamPool::shareOf(0, 1, 2), 0u);
  DemoApp app;
  const absl::Status status = server::checkForWorkers(limitedConfig(app, 1), 2);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("clusters[0].max_connections"), std::string::npos)
      << status.message();
  EXPECT_TRUE(server::checkForWorkers(limitedConfig(app, 2), 2).ok());
}

}  // namespace
}  // namespace connwarden::testing
