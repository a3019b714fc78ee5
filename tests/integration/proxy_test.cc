// The data plane end to end: a real client socket, the real server in-process, the demo
// application as a real upstream process, all on 127.0.0.1.
#include <gtest/gtest.h>

#include <thread>

#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

// Every case runs twice: socket I/O batched through io_uring (where the kernel allows it), and
// with one system call per read or send (--io-uring=false, or a kernel or seccomp profile that
// refuses io_uring).
class ProxyTest : public ::testing::TestWithParam<bool> {
 protected:
  ProxyTest() : uring_(GetParam()), server_(TestServer::simpleConfig(app_.address())) {}

  uint64_t upstreamConnects() {
    uint64_t connects = 0;
    server_.runOnWorker(0, [&](server::Worker& worker) {
      connects = worker.connections().httpContext().pools[0]->connectsStarted();
    });
    return connects;
  }

  IoUringAllowed uring_;
  DemoApp app_;
  TestServer server_;
};

TEST_P(ProxyTest, WorkersUseIoUringOnlyWhenAllowed) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.send(getRequest("/")) && client.readResponse());
  bool uring = false;
  std::string why;
  server_.runOnWorker(0, [&](server::Worker& worker) {
    uring = worker.dispatcher().ioBatch().uring();
    why = worker.dispatcher().ioBatch().uringUnavailableReason();
  });
  if (!GetParam()) {
    EXPECT_FALSE(uring);
  } else if (!uring) {
    GTEST_SKIP() << "io_uring unavailable here: " << why;
  }
}

TEST_P(ProxyTest, GetIsForwardedAndAnswered) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send(getRequest("/")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello from connwarden demo\n");
}

TEST_P(ProxyTest, PostBodyIsEchoed) {
  TestClient client(server_.port());
  const std::string body(100000, 'x');
  ASSERT_TRUE(client.send("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, body);
}

TEST_P(ProxyTest, KeepAliveReusesBothSides) {
  TestClient client(server_.port());
  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(client.send(getRequest("/bytes?n=10")));
    auto response = client.readResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "abcdefghij");
  }
  // One client connection, one upstream connection for all five requests.
  EXPECT_EQ(server_.connectionCount(), 1u);
  EXPECT_EQ(upstreamConnects(), 1u);
}

TEST_P(ProxyTest, PipelinedRequestsAreAnsweredInOrder) {
  TestClient client(server_.port());
  // The slow one in the middle must not let the fast one behind it overtake.
  ASSERT_TRUE(client.send(getRequest("/bytes?n=3") + getRequest("/slow?ms=100") +
                          getRequest("/bytes?n=5")));
  auto first = client.readResponse();
  auto second = client.readResponse();
  auto third = client.readResponse();
  ASSERT_TRUE(first && second && third);
  EXPECT_EQ(first->body, "abc");
  EXPECT_EQ(second->body, "hello from connwarden demo\n");
  EXPECT_EQ(third->body, "abcde");
}

TEST_P(ProxyTest, ChunkedRequestAndResponse) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.send(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(response->chunked);
  EXPECT_EQ(response->body, "hello, world");

  ASSERT_TRUE(client.send(getRequest("/bytes?n=70000&chunked=1")));
  response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_TRUE(response->chunked);
  EXPECT_EQ(response->body.size(), 70000u);
}

TEST_P(ProxyTest, ExpectContinueGetsContinueThenResponse) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.send(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n"
      "Expect: 100-continue\r\n\r\n"));
  const std::string interim = client.readSome(25);
  EXPECT_EQ(interim, "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(client.send("ping"));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "ping");
}

TEST_P(ProxyTest, HopByHopHeadersRemovedAndForwardedHeadersAdded) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.send(getRequest(
      "/headers", "Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n"
                  "TE: trailers\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n"
                  "X-Kept: yes\r\n")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  const std::string& seen = response->body;
  EXPECT_NE(seen.find("X-Kept: yes"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("X-Secret"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("Keep-Alive"), std::string::npos) << seen;
  EXPECT_EQ(seen.find("TE:"), std::string::npos) << seen;
  EXPECT_NE(seen.find("X-Forwarded-For: 10.1.2.3, 127.0.0.1"), std::string::npos) << seen;
  EXPECT_NE(seen.find("X-Forwarded-Proto: http\n"), std::string::npos) << seen;
}

TEST_P(ProxyTest, HeadRequestHasNoBody) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.send("HEAD /bytes?n=1000 HTTP/1.1\r\nHost: localhost\r\n\r\n" +
                          getRequest("/bytes?n=2")));
  auto head = client.readResponse(/*head_request=*/true);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("content-length"), "1000");
  auto next = client.readResponse();
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->body, "ab");
}

TEST_P(ProxyTest, ConnectionCloseIsHonouredAndRegistryEmpties) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.send(getRequest("/", "Connection: close\r\n")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->header("connection"), "close");
  EXPECT_TRUE(client.waitForClose());
  EXPECT_TRUE(waitFor([&] { return server_.connectionCount() == 0; }));
}

TEST_P(ProxyTest, Http10WithoutKeepAliveCloses) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.send("GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(client.waitForClose());
}

// HTTP/1.0 lets a client leave Host out; we speak HTTP/1.1 to the application, which needs one
// (RFC 9112 §3.2): empty for an origin-form target, the authority of an absolute-form one.
TEST_P(ProxyTest, Http10WithoutHostReachesTheApplicationWithAHost) {
  const std::pair<std::string, std::string> cases[] = {
      {"/headers", "Host: \n"},
      {"http://app.example:8081/headers", "Host: app.example:8081\n"},
  };
  for (const auto& [target, host] : cases) {
    SCOPED_TRACE(target);
    TestClient client(server_.port());
    ASSERT_TRUE(client.send("GET " + target + " HTTP/1.0\r\n\r\n"));
    auto response = client.readResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
    EXPECT_NE(response->body.find(host), std::string::npos) << response->body;
  }
}

TEST_P(ProxyTest, WebSocketUpgradeBecomesTunnel) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.send(getRequest(
      "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  ASSERT_EQ(response->status, 101);
  EXPECT_EQ(response->header("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  // A masked text frame "hi" (RFC 6455 §5.3), echoed back unmasked.
  const unsigned char mask[4] = {1, 2, 3, 4};
  std::string frame = {'\x81', static_cast<char>(0x80 | 2), 1, 2, 3, 4};
  frame += static_cast<char>('h' ^ mask[0]);
  frame += static_cast<char>('i' ^ mask[1]);
  ASSERT_TRUE(client.send(frame));
  std::string echoed;
  while (echoed.size() < 4) {
    const std::string more = client.readSome();
    ASSERT_FALSE(more.empty());
    echoed += more;
  }
  EXPECT_EQ(echoed, std::string("\x81\x02hi", 4));
}

TEST_P(ProxyTest, ManyConnectionsLeaveRegistryEmpty) {
  for (int i = 0; i < 200; ++i) {
    TestClient client(server_.port());
    ASSERT_TRUE(client.send(getRequest("/", i % 2 == 0 ? "Connection: close\r\n" : "")));
    ASSERT_TRUE(client.readResponse().has_value());
  }
  EXPECT_TRUE(waitFor([&] { return server_.connectionCount() == 0; }));
}

INSTANTIATE_TEST_SUITE_P(UringAndPlain, ProxyTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Uring" : "Plain"; });

// A second worker: connections are spread by the kernel, and IDs say which worker owns them.
TEST(ProxyWorkersTest, TwoWorkersServeAndIdsEncodeTheWorker) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()), 2);
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 16; ++i) {
    clients.push_back(std::make_unique<TestClient>(server.port()));
    ASSERT_TRUE(clients.back()->send(getRequest("/")));
    ASSERT_TRUE(clients.back()->readResponse().has_value());
  }
  EXPECT_EQ(server.connectionCount(), 16u);
  for (uint32_t w = 0; w < 2; ++w) {
    server.runOnWorker(w, [w](server::Worker& worker) {
      worker.connections().forEach([w](conn::ManagedConnection& connection) {
        EXPECT_EQ(conn::workerOfConnectionId(connection.id()), w);
        EXPECT_EQ(connection.requestsServed(), 1u);
        ASSERT_NE(connection.route(), nullptr);
        EXPECT_EQ(connection.route()->config.name, "default");
      });
    });
  }
}

}  // namespace
}  // namespace connwarden::testing
