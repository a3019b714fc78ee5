// Per-connection memory accounts against the allocator's own view, and hibernation: the memory of
// an idle connection leaves our accounts and the process.
#include <malloc.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "sidecar/event/memory_account.h"
#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

using std::chrono::milliseconds;
constexpr size_t kTenMegabytes = 10u << 20;

int64_t poolBytes(TestServer& server) {
  int64_t total = 0;
  for (uint32_t w = 0; w < server.server().concurrency(); ++w) {
    server.runOnWorker(w, [&](server::Worker& worker) {
      for (const auto& pool : worker.connections().httpContext().pools) {
        total += pool->memoryAccount().total();
      }
    });
  }
  return total;
}

std::optional<conn::ConnectionSnapshot> onlyConnection(TestServer& server) {
  auto all = server.connections();
  if (all.size() != 1) return std::nullopt;
  return all[0];
}

bool allInState(TestServer& server, http::SessionState state, size_t count) {
  size_t n = 0;
  for (const auto& c : server.connections()) n += c.state == state;
  return n == count;
}

server::ServerConfig plainAndTls(const DemoApp& app, const TestCertificate& cert) {
  server::ServerConfig config = TestServer::simpleConfig(app.address());
  network::ListenerConfig tls = config.listeners[0];
  tls.name = "tls";
  tls.tls = network::TlsConfig{cert.cert_file, cert.key_file, false};
  config.listeners.push_back(tls);
  return config;
}

// Opens connections in assorted states and checks that what their accounts say matches what
// glibc says the heap grew by, once the test's own (client-side) allocations are taken out.
TEST(MemoryAccountTest, SumOfAccountsMatchesTheHeapDelta) {
  DemoApp app;
  TempDir dir;
  const TestCertificate cert = makeSelfSignedCertificate(dir);
  TestServer server(plainAndTls(app, cert));
  {
    // Warm-up: TLS context caches, the upstream pool, the workers' first allocations.
    TestClient plain(server.port(0));
    TestClient tls(server.port(1), true);
    ASSERT_TRUE(plain.send(getRequest("/")) && plain.readResponse().has_value());
    ASSERT_TRUE(tls.send(getRequest("/")) && tls.readResponse().has_value());
  }
  ASSERT_TRUE(waitFor([&] { return server.connectionCount() == 0; }));

  event::MemoryAccount* client_side = event::MemoryAccount::create();
  {
    event::MemoryAccount::Scope scope(client_side);
    std::vector<std::unique_ptr<TestClient>> clients;
    clients.reserve(256);
    const size_t heap_before = heapInUse();
    const int64_t client_before = client_side->total();
    const int64_t pool_before = poolBytes(server);

    // Enough of each that the allocator's per-thread caches (glibc's tcache counts cached free
    // chunks as in use) are noise, not signal.
    for (int i = 0; i < 96; ++i) {  // idle keep-alive, plain and TLS
      auto& client = clients.emplace_back(std::make_unique<TestClient>(server.port(i % 2), i % 2));
      ASSERT_TRUE(client->send(getRequest("/")) && client->readResponse().has_value());
    }
    for (int i = 0; i < 2; ++i) {  // idle after a 10 MB response
      auto& client = clients.emplace_back(std::make_unique<TestClient>(server.port(i % 2), i % 2));
      ASSERT_TRUE(client->send(getRequest("/bytes?n=" + std::to_string(kTenMegabytes))));
      auto response = client->readResponse();
      ASSERT_TRUE(response.has_value());
      ASSERT_EQ(response->body.size(), kTenMegabytes);
    }
    for (int i = 0; i < 48; ++i) {  // a partial request head
      auto& client = clients.emplace_back(std::make_unique<TestClient>(server.port(i % 2), i % 2));
      ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: a\r\nX-Partial: "));
    }
    for (int i = 0; i < 48; ++i) {  // a request in flight at the application
      auto& client = clients.emplace_back(std::make_unique<TestClient>(server.port(i % 2), i % 2));
      ASSERT_TRUE(client->send(getRequest("/slow?ms=20000")));
    }
    const size_t total = clients.size();
    ASSERT_TRUE(waitFor([&] {
      size_t active = 0;
      const auto all = server.connections();
      for (const auto& c : all) active += c.state == http::SessionState::kActive;
      return all.size() == total && active == 96;
    }));
    // Let the upstream side settle (connects, request heads written).
    std::this_thread::sleep_for(milliseconds(200));

    const int64_t heap_delta = static_cast<int64_t>(heapInUse()) - static_cast<int64_t>(heap_before);
    const int64_t client_delta = client_side->total() - client_before;
    const int64_t pool_delta = poolBytes(server) - pool_before;
    int64_t accounts = 0;
    int64_t tls_bytes = 0;
    for (const auto& c : server.connections()) {
      accounts += c.memory.total;
      tls_bytes += c.memory.tls;
      EXPECT_EQ(c.memory.total,
                c.memory.buffers + c.memory.tls + c.memory.codec + c.memory.other);
      EXPECT_GE(c.memory.peak, c.memory.total);
    }
    const int64_t server_side = heap_delta - client_delta - pool_delta;
    std::printf("heap delta %ld, client side %ld, upstream pools %ld, server side %ld; "
                "accounts %ld (tls %ld) over %zu connections\n",
                heap_delta, client_delta, pool_delta, server_side, accounts, tls_bytes, total);
    EXPECT_GT(tls_bytes, 0);
    EXPECT_NEAR(static_cast<double>(accounts), static_cast<double>(server_side),
                0.10 * static_cast<double>(accounts));
  }
  client_side->retire();
}

// Each test: the demo app, and the server's config, plain or TLS (the parameter), whose route
// has `policy`.
class HibernateTest : public ::testing::TestWithParam<bool> {
 protected:
  server::ServerConfig config(const http::RoutePolicy& policy) {
    server::ServerConfig result =
        TestServer::simpleConfig(app_.address(), GetParam() ? &cert_ : nullptr);
    result.routes[0].policy = policy;
    return result;
  }

  DemoApp app_;
  TempDir dir_;
  const TestCertificate cert_ = makeSelfSignedCertificate(dir_);
};

// The Cowboy case, with hibernate on: after a 10 MB response the connection keeps only a small
// record, and the process gives the memory back.
TEST_P(HibernateTest, LargeResponseLeavesNothingBehind) {
  const bool tls = GetParam();
  http::RoutePolicy policy;
  policy.hibernate = true;
  policy.hibernate_after = milliseconds(200);
  TestServer server(config(policy));

  {
    // Warm-up, so that nothing first-time is counted below.
    TestClient first(server.port(), tls);
    ASSERT_TRUE(first.send(getRequest("/")) && first.readResponse().has_value());
  }
  ASSERT_TRUE(waitFor([&] { return server.connectionCount() == 0; }));
  malloc_trim(0);
  const size_t rss_before = residentBytes();
  // The floor: a connection that served a tiny response and hibernated.
  TestClient small(server.port(), tls);
  ASSERT_TRUE(small.send(getRequest("/")) && small.readResponse().has_value());
  ASSERT_TRUE(waitFor([&] { return allInState(server, http::SessionState::kHibernating, 1); }));
  const uint64_t small_id = server.connections()[0].id;
  const int64_t floor = server.connections()[0].memory.total;

  TestClient client(server.port(), tls);
  ASSERT_TRUE(client.send(getRequest("/bytes?n=" + std::to_string(kTenMegabytes))));
  {
    auto response = client.readResponse();
    ASSERT_TRUE(response.has_value());
    ASSERT_EQ(response->body.size(), kTenMegabytes);
  }
  const auto done = std::chrono::steady_clock::now();
  auto other = [&]() -> std::optional<conn::ConnectionSnapshot> {
    for (const auto& c : server.connections()) {
      if (c.id != small_id) return c;
    }
    return std::nullopt;
  };
  auto busy = other();
  ASSERT_TRUE(busy.has_value());
  ASSERT_TRUE(waitFor([&] { return allInState(server, http::SessionState::kHibernating, 2); }));
  const auto hibernated_after = std::chrono::steady_clock::now() - done;
  auto hibernated = other();
  ASSERT_TRUE(hibernated.has_value());
  std::printf("%s: account %ld B after the response (peak %ld), %ld B hibernated (floor %ld), "
              "after %ld ms\n",
              tls ? "tls" : "plain", busy->memory.total, hibernated->memory.peak,
              hibernated->memory.total, floor,
              std::chrono::duration_cast<milliseconds>(hibernated_after).count());
  EXPECT_LE(hibernated_after, milliseconds(200 + 50));
  // OpenSSL's own per-connection state varies by a few bytes from one handshake to the next.
  EXPECT_LE(hibernated->memory.total, floor + 256);
  EXPECT_EQ(hibernated->memory.buffers, 0);
  EXPECT_EQ(hibernated->memory.codec, 0);
  EXPECT_GT(hibernated->memory.peak, 64 * 1024);  // it did hold the response's buffers
  // And the process: back to within 2 MiB of where it was (the trim follows hibernation).
  EXPECT_TRUE(!kRssFollowsFrees ||
              waitFor([&] { return residentBytes() < rss_before + (2u << 20); },
                      milliseconds(2000)))
      << "RSS " << residentBytes() << " vs " << rss_before << " before";

  // It wakes on the next request and serves it.
  ASSERT_TRUE(client.send(getRequest("/")));
  auto again = client.readResponse();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status, 200);
}

// With hibernate off, the connection keeps what it holds until the idle timeout closes it.
TEST_P(HibernateTest, WithoutHibernateMemoryStaysUntilIdleTimeout) {
  const bool tls = GetParam();
  http::RoutePolicy policy;
  policy.hibernate = false;
  // Long enough that the client (slow under sanitizers) has read the 10 MB well before it.
  constexpr milliseconds kIdle{1500};
  policy.idle_timeout = kIdle;
  TestServer server(config(policy));

  TestClient client(server.port(), tls);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(client.send(getRequest("/bytes?n=" + std::to_string(kTenMegabytes))));
  ASSERT_TRUE(client.readResponse().has_value());
  const auto done = std::chrono::steady_clock::now();
  ASSERT_TRUE(waitFor([&] { return allInState(server, http::SessionState::kIdle, 1); }));
  const int64_t held = onlyConnection(server)->memory.total;
  std::this_thread::sleep_for(milliseconds(300));
  auto later = onlyConnection(server);
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->state, http::SessionState::kIdle);
  EXPECT_GE(later->memory.total, held);
  EXPECT_GT(later->memory.codec, 0);
  EXPECT_TRUE(client.waitForClose(milliseconds(2000)));
  // The idle clock starts when the server has written the response: between the request and
  // the moment the client finished reading it.
  const auto now = std::chrono::steady_clock::now();
  EXPECT_GE(now - start, kIdle - milliseconds(50));
  EXPECT_LE(now - done, kIdle + milliseconds(50));
  EXPECT_EQ(server.closes(network::CloseReason::kIdleTimeout), 1u);
}

// Hibernate off too, what a burst leaves in the worker goes back once the worker is quiet: the
// evbuffer chains it keeps for reuse (charged to no connection) and the free heap. Before, they
// stayed until some connection hibernated, or for the life of the process.
TEST_P(HibernateTest, AQuietWorkerGivesBackWhatABurstLeft) {
  const bool tls = GetParam();
  http::RoutePolicy policy;
  policy.hibernate = false;
  TestServer server(config(policy));
  const int64_t spare_before = event::spareChainBytes();

  TestClient client(server.port(), tls);
  ASSERT_TRUE(client.send(getRequest("/bytes?n=" + std::to_string(kTenMegabytes))));
  ASSERT_TRUE(client.readResponse().has_value());
  EXPECT_GT(event::spareChainBytes(), spare_before);  // the drained chains, kept
  EXPECT_TRUE(waitFor([&] { return event::spareChainBytes() == spare_before; },
                      milliseconds(3000)))
      << event::spareChainBytes() << " B of spare chains against " << spare_before << " before";
  // The connection itself is left alone: still open, idle, and it serves the next request.
  ASSERT_TRUE(allInState(server, http::SessionState::kIdle, 1));
  ASSERT_TRUE(client.send(getRequest("/")));
  auto again = client.readResponse();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status, 200);
}

INSTANTIATE_TEST_SUITE_P(PlainAndTls, HibernateTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Tls" : "Plain"; });

// The quic-go case: many connections opened and closed leave nothing behind, neither in the
// registry nor in live accounts.
// A client that reads a big download slowly: reading from the application stops at the
// client's 64 KiB watermark, and the read that crosses it adds little (it is sized to the room
// left), so the connection's peak memory is about the watermark, not up to twice it. The client
// reads a little at a time, so that the watermark is crossed again and again.
TEST(SlowReaderTest, HoldsLittleMoreThanTheWatermark) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()));
  // A peak counts the buffers' allocated chains, not only their bytes, and a busy machine can
  // add a slice to one download: the median of three is what the read sizing decides.
  std::vector<int64_t> peaks;
  for (int i = 0; i < 3; ++i) {
    {
      // Closed with the response unread (a reset) at the end of the block.
      TestClient client(server.port(), false, "", /*receive_buffer=*/16 * 1024);
      ASSERT_TRUE(client.send(getRequest("/bytes?n=" + std::to_string(20 << 20))));
      size_t received = 0;
      const auto until = std::chrono::steady_clock::now() + milliseconds(800);
      while (std::chrono::steady_clock::now() < until) {
        received += client.readSome(4096).size();
        std::this_thread::sleep_for(milliseconds(1));
      }
      EXPECT_GT(received, 256u * 1024);
      const auto snapshot = onlyConnection(server);
      ASSERT_TRUE(snapshot.has_value());
      peaks.push_back(snapshot->memory.peak);
    }
    ASSERT_TRUE(waitFor([&] { return server.connectionCount() == 0; }));
  }
  // Measured: 76-87 KiB, once 96 KiB under a parallel ctest; 104-144 KiB when every read
  // took up to 64 KiB.
  std::sort(peaks.begin(), peaks.end());
  EXPECT_LE(peaks[1], (64 + 32) * 1024) << "the watermark is 64 KiB; peaks " << peaks[0] << ", "
                                        << peaks[1] << ", " << peaks[2];
}

TEST(ChurnTest, ManyConnectionsLeaveRegistryEmptyAndHeapFlat) {
  DemoApp app;
  TestServer server(TestServer::simpleConfig(app.address()), 2);
  const int kConnections = 200'000;
  const int kWithRequest = 2'000;  // these also go through the proxy to the application
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(server.port());
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string request = getRequest("/");
  size_t heap_warm = 0;
  const int64_t accounts_before = event::MemoryAccount::liveAccounts();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  int opened = 0;
  for (; opened < kConnections && std::chrono::steady_clock::now() < deadline; ++opened) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    if (opened % (kConnections / kWithRequest) == 0) {
      ASSERT_EQ(send(fd, request.data(), request.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(request.size()));
      char buf[4096];
      ASSERT_GT(recv(fd, buf, sizeof(buf), 0), 0);
    }
    // An abortive close now and then, like clients that crash.
    if (opened % 7 == 0) {
      const linger abortive{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
    }
    close(fd);
    if (opened == 10'000) {
      ASSERT_TRUE(waitFor([&] { return server.connectionCount() == 0; }));
      heap_warm = heapInUse();
    }
  }
  ASSERT_EQ(opened, kConnections) << "the loop ran out of time";
  ASSERT_TRUE(waitFor([&] { return server.connectionCount() == 0; }, std::chrono::seconds(20)));
  uint64_t opened_by_server = 0;
  for (uint32_t w = 0; w < 2; ++w) {
    server.runOnWorker(w, [&](server::Worker& worker) {
      opened_by_server += worker.connections().opened();
      EXPECT_EQ(worker.connections().size(), 0u);
    });
  }
  EXPECT_EQ(opened_by_server, static_cast<uint64_t>(kConnections));
  // Every connection's account is gone with it (nothing stays charged to a closed connection).
  EXPECT_TRUE(waitFor([&] { return event::MemoryAccount::liveAccounts() == accounts_before; }))
      << event::MemoryAccount::liveAccounts() - accounts_before << " accounts left";
  const int64_t growth = static_cast<int64_t>(heapInUse()) - static_cast<int64_t>(heap_warm);
  std::printf("heap after 10k connections %zu, after %d: %+ld bytes\n", heap_warm, kConnections,
              growth);
  EXPECT_LT(growth, 256 * 1024) << "the heap grew with closed connections";
}

}  // namespace
}  // namespace connwarden::testing
