// TLS termination with real OpenSSL on both ends. Every case runs with socket I/O batched
// through io_uring and with one system call per read or send.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <thread>

#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

class TlsTest : public ::testing::TestWithParam<bool> {
 protected:
  TlsTest()
      : uring_(GetParam()),
        cert_(makeSelfSignedCertificate(dir_)),
        server_(TestServer::simpleConfig(app_.address(), &cert_)) {}

  IoUringAllowed uring_;
  TempDir dir_;
  TestCertificate cert_;
  DemoApp app_;
  TestServer server_;
};

TEST_P(TlsTest, RequestsOverTlsAreForwarded) {
  TestClient client(server_.port(), /*tls=*/true, "localhost");
  ASSERT_TRUE(client.connected());
  EXPECT_EQ(client.alpn(), "http/1.1");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client.send(getRequest("/headers")));
    auto response = client.readResponse();
    ASSERT_TRUE(response.has_value());
    EXPECT_EQ(response->status, 200);
    EXPECT_NE(response->body.find("X-Forwarded-Proto: https"), std::string::npos);
  }
  server_.runOnWorker(0, [](server::Worker& worker) {
    worker.connections().forEach([](conn::ManagedConnection& connection) {
      const network::TlsInfo info = connection.session().connection().transport().tlsInfo();
      EXPECT_EQ(info.version, "TLSv1.3");
      EXPECT_EQ(info.alpn, "http/1.1");
      EXPECT_EQ(info.sni, "localhost");
    });
  });
}

TEST_P(TlsTest, LargeBodiesBothWays) {
  TestClient client(server_.port(), /*tls=*/true);
  const std::string body(3 * 1024 * 1024 + 7, 'z');
  ASSERT_TRUE(client.send("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body.size(), body.size());
  EXPECT_EQ(response->body, body);
}

TEST_P(TlsTest, HandshakeFailureClosesOnlyThatConnection) {
  TestClient good(server_.port(), /*tls=*/true);
  ASSERT_TRUE(good.connected());
  // Plain HTTP on the TLS port: not a ClientHello.
  TestClient plain(server_.port());
  ASSERT_TRUE(plain.send(getRequest("/")));
  EXPECT_TRUE(plain.waitForClose());
  // A client that offers only TLS 1.1 is refused at the handshake, and told why (the alert
  // reaches it before the connection closes).
  {
    TestClient old_client(server_.port());
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, old_client.fd());
    EXPECT_NE(SSL_connect(ssl), 1);
    EXPECT_EQ(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
  }
  ASSERT_TRUE(good.send(getRequest("/")));
  auto response = good.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(waitFor([&] { return server_.connectionCount() == 1; }));
}

TEST_P(TlsTest, WebSocketOverTls) {
  TestClient client(server_.port(), /*tls=*/true);
  ASSERT_TRUE(client.send(getRequest(
      "/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")));
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  ASSERT_EQ(response->status, 101);
  std::string frame = {'\x82', static_cast<char>(0x80 | 3), 0, 0, 0, 0, 'a', 'b', 'c'};
  ASSERT_TRUE(client.send(frame));
  std::string echoed;
  while (echoed.size() < 5) {
    const std::string more = client.readSome();
    ASSERT_FALSE(more.empty());
    echoed += more;
  }
  EXPECT_EQ(echoed, std::string("\x82\x03" "abc", 5));
}

// Requests written back to back arrive as many records in one read (more than the batch's slot
// holds); they are answered in order.
TEST_P(TlsTest, PipelinedRequestsAreAnsweredInOrder) {
  TestClient client(server_.port(), /*tls=*/true);
  ASSERT_TRUE(client.connected());
  constexpr int kRequests = 40;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(client.send(getRequest("/bytes?n=" + std::to_string(i + 1))));
  }
  for (int i = 0; i < kRequests; ++i) {
    auto response = client.readResponse();
    ASSERT_TRUE(response.has_value()) << i;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body.size(), static_cast<size_t>(i + 1));
  }
}

// A client that does not read: the records made for it count against the watermark, so the
// proxy stops reading the application instead of encrypting the whole body into memory.
TEST_P(TlsTest, SlowClientPausesTheUpstream) {
  TestClient client(server_.port(), /*tls=*/true, /*sni=*/"", /*receive_buffer=*/16 * 1024);
  ASSERT_TRUE(client.connected());
  constexpr uint64_t kBody = 20ull << 20;
  const size_t baseline = heapInUse();
  ASSERT_TRUE(client.send(getRequest("/bytes?n=" + std::to_string(kBody))));
  size_t peak = baseline;
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until) {
    peak = std::max(peak, heapInUse());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  size_t unsent = 0;
  int64_t tls_memory = 0;
  server_.runOnWorker(0, [&](server::Worker& worker) {
    worker.connections().forEach([&](conn::ManagedConnection& connection) {
      network::Connection& downstream = connection.session().connection();
      unsent = downstream.unsentBytes();
      tls_memory = downstream.memoryAccount()->bytes(event::MemoryCategory::kTls);
    });
  });
  EXPECT_GT(unsent, 0u);
  EXPECT_LT(unsent, 256u * 1024) << "the watermark is 64 KiB";
  // The records waiting for the client are TLS memory in its account, as OpenSSL's are.
  EXPECT_GE(tls_memory, static_cast<int64_t>(unsent));
  EXPECT_LT(peak - baseline, 8u << 20) << "heap grew by " << (peak - baseline) << " bytes";
  auto response = client.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body.size(), kBody);
}

INSTANTIATE_TEST_SUITE_P(UringAndPlain, TlsTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Uring" : "Plain"; });

}  // namespace
}  // namespace connwarden::testing
