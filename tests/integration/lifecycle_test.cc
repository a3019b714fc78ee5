// Flow control, timeouts, connection limits and graceful shutdown, on real sockets.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <future>
#include <thread>

#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

using std::chrono::milliseconds;

uint64_t closes(TestServer& server, network::CloseReason reason) {
  uint64_t count = 0;
  for (uint32_t w = 0; w < server.server().concurrency(); ++w) {
    server.runOnWorker(w, [&](server::Worker& worker) {
      count += worker.connections().closesByReason()[static_cast<size_t>(reason)];
    });
  }
  return count;
}

// Reads the response to a request whose body is `body_size` bytes, without keeping it; returns
// the body bytes received, and samples the heap while doing so.
uint64_t drainResponse(int fd, uint64_t body_size, size_t* peak_heap) {
  std::string head;
  char buf[65536];
  uint64_t body = 0;
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    if (body == 0 && head.find("\r\n\r\n") == std::string::npos) {
      head.append(buf, n);
      const size_t end = head.find("\r\n\r\n");
      if (end != std::string::npos) body = head.size() - end - 4;
    } else {
      body += n;
    }
    *peak_heap = std::max(*peak_heap, heapInUse());
    if (body >= body_size) break;
  }
  return body;
}

TEST(FlowControlTest, HundredMegabytesStreamThroughWithBoundedHeap) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()));
  TestClient client(server.port());
  constexpr uint64_t kBody = 100ull << 20;
  const size_t baseline = heapInUse();
  size_t peak = baseline;

  // Upload and download at once through /echo: both directions of the proxy are busy.
  std::thread uploader([&] {
    const std::string head = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " +
                             std::to_string(kBody) + "\r\n\r\n";
    client.send(head);
    const std::string chunk(64 * 1024, 'u');
    for (uint64_t sent = 0; sent < kBody; sent += chunk.size()) {
      if (::send(client.fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL) <= 0) return;
    }
  });
  const uint64_t received = drainResponse(client.fd(), kBody, &peak);
  uploader.join();
  EXPECT_EQ(received, kBody);
  RecordProperty("heap_growth_bytes", std::to_string(peak - baseline));
  // Two 64 KiB watermarks per direction plus buffer slack: a few MiB at most, never the body.
  EXPECT_LT(peak - baseline, 8u << 20) << "heap grew by " << (peak - baseline) << " bytes";
}

TEST(FlowControlTest, SlowClientPausesTheUpstream) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()));
  // A small receive buffer makes the client slow for real.
  TestClient client(server.port(), /*tls=*/false, /*sni=*/"", /*receive_buffer=*/16 * 1024);
  ASSERT_TRUE(client.connected());
  constexpr uint64_t kBody = 50ull << 20;
  const size_t baseline = heapInUse();
  ASSERT_TRUE(client.send(getRequest("/bytes?n=" + std::to_string(kBody))));
  // Read nothing for a while: the proxy must stop reading the application, not buffer.
  size_t peak = baseline;
  const auto until = std::chrono::steady_clock::now() + milliseconds(300);
  while (std::chrono::steady_clock::now() < until) {
    peak = std::max(peak, heapInUse());
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_EQ(drainResponse(client.fd(), kBody, &peak), kBody);
  EXPECT_LT(peak - baseline, 8u << 20) << "heap grew by " << (peak - baseline) << " bytes";
}

TEST(TimeoutTest, IdleKeepAliveConnectionIsClosed) {
  DemoApp app;
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  config.listener_policies = {http::RoutePolicy{}};
  config.listener_policies[0].idle_timeout = milliseconds(200);
  TestServer server(config);
  TestClient client(server.port());
  ASSERT_TRUE(client.send(getRequest("/")));
  ASSERT_TRUE(client.readResponse().has_value());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(client.waitForClose(milliseconds(2000)));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(150));
  EXPECT_LE(elapsed, milliseconds(400));
  EXPECT_TRUE(waitFor([&] { return closes(server, network::CloseReason::kIdleTimeout) == 1; }));
}

TEST(TimeoutTest, SlowRequestHeadGets408) {
  DemoApp app;
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  config.listener_policies = {http::RoutePolicy{}};
  config.listener_policies[0].request_header_timeout = milliseconds(200);
  TestServer server(config);
  TestClient client(server.port());
  ASSERT_TRUE(client.send("GET / HTTP/1.1\r\nHost: a\r\n"));  // never finished
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 408);
  EXPECT_TRUE(client.waitForClose());
  EXPECT_TRUE(waitFor([&] { return closes(server, network::CloseReason::kHeaderTimeout) == 1; }));

  // A client that connects and never says anything is closed too.
  TestClient silent(server.port());
  EXPECT_TRUE(silent.waitForClose(milliseconds(2000)));
}

TEST(LimitTest, ConnectionsOverTheListenerLimitAreRefused) {
  DemoApp app;
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  config.listeners[0].max_connections = 2;
  TestServer server(config, 2);
  TestClient a(server.port());
  TestClient b(server.port());
  ASSERT_TRUE(a.send(getRequest("/")) && a.readResponse().has_value());
  ASSERT_TRUE(b.send(getRequest("/")) && b.readResponse().has_value());
  TestClient c(server.port());
  EXPECT_TRUE(c.waitForClose());
  EXPECT_EQ(server.server().listeners()[0]->overload_rejections.load(), 1u);
}

TEST(ShutdownTest, InFlightRequestCompletesWithConnectionClose) {
  DemoApp app;
  auto server = std::make_unique<TestServer>(TestServer::simpleConfig(app.address()));
  TestClient busy(server->port());
  TestClient idle(server->port());
  ASSERT_TRUE(idle.send(getRequest("/")) && idle.readResponse().has_value());
  ASSERT_TRUE(busy.send(getRequest("/slow?ms=300")));
  ASSERT_TRUE(waitFor([&] { return server->connectionCount() == 2; }));
  auto forced = std::async(std::launch::async,
                           [&] { return server->server().shutdown(std::chrono::seconds(5)); });
  // The idle connection closes at once; the busy one gets its whole response first.
  EXPECT_TRUE(idle.waitForClose(milliseconds(1000)));
  auto response = busy.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->header("connection"), "close");
  EXPECT_TRUE(busy.waitForClose());
  EXPECT_EQ(forced.get(), 0u);
}

}  // namespace
}  // namespace connwarden::testing
