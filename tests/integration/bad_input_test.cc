// Bad input from clients and failures of the application: each gets a clear answer and costs
// nothing else — the connection that misbehaved closes, every other one carries on.
#include <gtest/gtest.h>

#include <thread>

#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

class BadInputTest : public ::testing::Test {
 protected:
  BadInputTest() : server_(TestServer::simpleConfig(app_.address())) {}

  // Sends `request` on a new connection; returns the status (0 if none) and whether the server
  // then closed the connection.
  std::pair<int, bool> exchange(const std::string& request) {
    TestClient client(server_.port());
    EXPECT_TRUE(client.connected());
    client.send(request);
    auto response = client.readResponse();
    const bool closed = client.waitForClose(std::chrono::seconds(2));
    return {response ? response->status : 0, closed};
  }

  DemoApp app_;
  TestServer server_;
};

struct BadRequestCase {
  const char* name;
  std::string request;
  int status;
};

TEST_F(BadInputTest, MalformedRequestsAreRejectedAndClosed) {
  const std::string many_headers = [] {
    std::string h;
    for (int i = 0; i < 101; ++i) h += "X-H" + std::to_string(i) + ": v\r\n";
    return h;
  }();
  const std::vector<BadRequestCase> cases = {
      {"garbage request line", "HELLO\r\n\r\n", 400},
      {"bad version", "GET / HTTP/9.9\r\nHost: a\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},
      {"no host on 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
      {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"CL and TE (smuggling)",
       "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\n",
       400},
      {"two different CLs",
       "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
       400},
      {"TE not chunked last",
       "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
       400},
      {"invalid chunk size",
       "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n", 400},
      {"negative CL", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
      {"header section over 64 KiB",
       "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(70000, 'a') + "\r\n\r\n", 431},
      {"more than 100 headers", "GET / HTTP/1.1\r\nHost: a\r\n" + many_headers + "\r\n", 431},
      {"unsupported expectation",
       "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx", 417},
  };
  for (const BadRequestCase& c : cases) {
    SCOPED_TRACE(c.name);
    const auto [status, closed] = exchange(c.request);
    EXPECT_EQ(status, c.status);
    EXPECT_TRUE(closed);
  }
  // None of that hurt anybody else.
  TestClient client(server_.port());
  ASSERT_TRUE(client.send(getRequest("/")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(waitFor([&] { return server_.connectionCount() == 1; }));
}

// A client that shuts down its side in the middle of a request has given up on it: the
// connection closes at once (not at the 10 s header timeout or the 300 s request timeout), and
// the application's half of the exchange with it. Found by tests/fuzz/proxy_fuzz.cc.
TEST_F(BadInputTest, ClientEndingInTheMiddleOfARequestIsClosedAtOnce) {
  const std::vector<std::pair<const char*, std::string>> cases = {
      {"in the request line", "GET /slo"},
      {"in the head", "GET / HTTP/1.1\r\nHost: a\r\nX-Half: "},
      {"in a Content-Length body", "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
                                   "only ten b"},
      {"in a chunked body",
       "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
      {"in a second, pipelined request",
       getRequest("/") + "GET / HTTP/1.1\r\nHost: a\r\n"},
  };
  for (const auto& [name, bytes] : cases) {
    SCOPED_TRACE(name);
    TestClient client(server_.port());
    ASSERT_TRUE(client.send(bytes));
    client.shutdownWrite();
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(client.waitForClose(std::chrono::seconds(5)));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  }
  EXPECT_TRUE(waitFor([&] { return server_.connectionCount() == 0; }));
}

// After a whole request, a half-closed client still gets its response (HTTP allows it).
TEST_F(BadInputTest, ClientHalfClosedAfterAWholeRequestGetsItsResponse) {
  TestClient client(server_.port());
  ASSERT_TRUE(client.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"));
  client.shutdownWrite();
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello");
  EXPECT_TRUE(client.waitForClose());
}

TEST_F(BadInputTest, SmuggledRequestNeverReachesTheApplication) {
  TempDir dir;
  DemoApp app(dir.file("access.log"));
  TestServer server(TestServer::simpleConfig(app.address()));
  TestClient client(server.port());
  // The classic CL.TE attack: a front end that believed Content-Length would forward the
  // "GET /smuggled" as a second request.
  ASSERT_TRUE(client.send(
      "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 400);
  TestClient probe(server.port());
  ASSERT_TRUE(probe.send(getRequest("/after")));
  ASSERT_TRUE(probe.readResponse().has_value());
  std::string log;
  ASSERT_TRUE(waitFor([&] {
    FILE* f = fopen(dir.file("access.log").c_str(), "r");
    if (f == nullptr) return false;
    char buf[4096];
    const size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    log.assign(buf, n);
    return log.find("/after") != std::string::npos;
  }));
  EXPECT_EQ(log.find("smuggled"), std::string::npos) << log;
  EXPECT_EQ(log.find("POST"), std::string::npos) << log;
}

TEST(RoutingTest, NoRouteGetsConfiguredStatus) {
  DemoApp app;
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  config.routes[0].path_prefix = "/api";
  config.routes[0].host = "*.example.com";
  TestServer server(config);
  TestClient client(server.port());
  ASSERT_TRUE(client.send(getRequest("/")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 404);
  // The connection stays usable: a request that matches goes through.
  ASSERT_TRUE(client.send("GET /api/x HTTP/1.1\r\nHost: a.example.com:8080\r\n\r\n"));
  response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 404);  // the demo app has no /api/x: its own 404, not ours
  EXPECT_EQ(response->body.find("no route"), std::string::npos) << response->body;

  config.listeners[0].no_route_status = 421;
  TestServer strict(config);
  TestClient other(strict.port());
  ASSERT_TRUE(other.send(getRequest("/api/x")));  // host "localhost" does not match
  response = other.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 421);
}

TEST(UpstreamFailureTest, RefusedConnectGets502) {
  // A port with nothing listening: bind one, note it, close it.
  uint16_t dead_port;
  {
    auto fd = network::Listener::bindSocket(*network::Address::parse("127.0.0.1:0"));
    ASSERT_TRUE(fd.ok());
    dead_port = network::Address::localOf(*fd).port();
    close(*fd);
  }
  TestServer server(TestServer::simpleConfig("127.0.0.1:" + std::to_string(dead_port)));
  TestClient client(server.port());
  ASSERT_TRUE(client.send(getRequest("/")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 502);
  // Still keep-alive: the client did nothing wrong.
  ASSERT_TRUE(client.send(getRequest("/")));
  response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 502);
}

// No response head within response_timeout: 504. The timeout runs until the whole head is in,
// not only its first bytes: an application that stalls inside its head used to hold the client
// with no timeout at all (found by tests/fuzz/proxy_fuzz.cc).
TEST(UpstreamFailureTest, SlowUpstreamGets504) {
  DemoApp app;
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  config.clusters[0].response_timeout = std::chrono::milliseconds(200);
  TestServer server(config);
  for (const char* path : {"/slow?ms=3000", "/stall?at=head"}) {
    SCOPED_TRACE(path);
    TestClient client(server.port());
    const auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(client.send(getRequest(path)));
    auto response = client.readResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 504);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    // The next request on the same connection gets a fresh upstream connection and succeeds.
    ASSERT_TRUE(client.send(getRequest("/")));
    response = client.readResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
  }
}

TEST(UpstreamFailureTest, UpstreamClosingMidResponseResetsTheClient) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()));
  TestClient client(server.port());
  ASSERT_TRUE(client.send(getRequest("/abort?after=1000")));
  // The head and some of the body arrive; then the connection ends without the rest, so the
  // client can tell the response was cut short.
  auto response = client.readResponse();
  EXPECT_FALSE(response.has_value());
  EXPECT_TRUE(waitFor([&] { return server.connectionCount() == 0; }));
}

// Once the head is in, a body that stalls for response_idle_timeout is cut off: the client sees
// its connection end before the Content-Length it was promised.
TEST(UpstreamFailureTest, BodyStalledForTheIdleTimeoutIsCutOff) {
  DemoApp app;
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  config.clusters[0].response_idle_timeout = std::chrono::milliseconds(200);
  TestServer server(config);
  TestClient client(server.port());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(client.send(getRequest("/stall?at=body")));
  EXPECT_FALSE(client.readResponse().has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(waitFor([&] { return server.connectionCount() == 0; }));
}

// The idle timeout counts the application's silence only: while a client that stopped reading
// holds the proxy's reading back (at the watermarks), the application is not silent. A 4 MiB
// body with a 100 ms idle timeout, to a client that pauses 400 ms after its first bytes.
TEST(UpstreamFailureTest, SlowClientIsNotTheApplicationsSilence) {
  DemoApp app;
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  config.clusters[0].response_idle_timeout = std::chrono::milliseconds(100);
  TestServer server(config);
  TestClient client(server.port(), false, "", 16384);
  constexpr size_t kSize = 4 << 20;
  ASSERT_TRUE(client.send(getRequest("/bytes?n=" + std::to_string(kSize))));
  std::string first = client.readSome(65536);
  const size_t head_end = first.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos) << first;
  const size_t expected = head_end + 4 + kSize;
  size_t received = first.size();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (received < expected && std::chrono::steady_clock::now() < deadline) {
    const std::string piece = client.readSome(65536);
    if (piece.empty()) break;
    received += piece.size();
  }
  EXPECT_EQ(received, expected);  // the whole body arrived
}

TEST(UpstreamFailureTest, UpstreamDownThenUpRecovers) {
  auto app = std::make_unique<DemoApp>();
  const std::string address = app->address();
  TestServer server(TestServer::simpleConfig(address));
  TestClient client(server.port());
  ASSERT_TRUE(client.send(getRequest("/")));
  ASSERT_EQ(client.readResponse()->status, 200);
  app.reset();  // the application goes away, with our pooled connection to it
  ASSERT_TRUE(client.send(getRequest("/")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 502);
}

}  // namespace
}  // namespace connwarden::testing
