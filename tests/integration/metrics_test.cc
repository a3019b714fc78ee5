// The metrics endpoint scraped over loopback by a real HTTP client while real clients go through
// the real server to the demo application: per-connection series with their accounts' figures,
// gone at the next scrape after the close; the top-K bound; counters that move by exactly the
// events made; probes (readiness fails while draining); the exposition checked by promtool.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "sidecar/server/metrics.h"
#include "tests/support/test_util.h"

namespace connwarden::testing {
namespace {

using Labels = std::map<std::string, std::string>;
using std::chrono::milliseconds;
constexpr milliseconds kCall{2000};

struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

// The text exposition format, as far as our output uses it (no escapes in label values).
std::vector<Sample> parseExposition(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    Sample sample;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    if (brace != std::string::npos && brace < space) {
      sample.name = line.substr(0, brace);
      const size_t close = line.rfind('}');
      std::string body = line.substr(brace + 1, close - brace - 1);
      size_t pos = 0;
      while (pos < body.size()) {
        const size_t eq = body.find("=\"", pos);
        const size_t end = body.find('"', eq + 2);
        sample.labels[body.substr(pos, eq - pos)] = body.substr(eq + 2, end - eq - 2);
        pos = end + 1;
        if (pos < body.size() && body[pos] == ',') ++pos;
      }
    } else {
      sample.name = line.substr(0, space);
    }
    const std::string value = line.substr(space + 1);
    sample.value = value == "+Inf" ? INFINITY : std::stod(value);
    out.push_back(std::move(sample));
  }
  return out;
}

struct Scrape {
  std::string text;
  std::vector<Sample> samples;
  // The value of the one series with exactly these labels; NaN when absent.
  double value(const std::string& name, const Labels& labels = {}) const {
    for (const Sample& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return NAN;
  }
  std::vector<Sample> all(const std::string& name) const {
    std::vector<Sample> out;
    for (const Sample& s : samples) {
      if (s.name == name) out.push_back(s);
    }
    return out;
  }
};

std::optional<HttpResponse> get(int port, const std::string& path) {
  TestClient client(static_cast<uint16_t>(port));
  if (!client.connected() || !client.send(getRequest(path))) return std::nullopt;
  return client.readResponse();
}

Scrape scrape(const stats::MetricsServer& metrics) {
  auto response = get(metrics.port(), "/metrics");
  EXPECT_TRUE(response.has_value());
  if (!response.has_value()) return {};
  EXPECT_EQ(response->status, 200);
  EXPECT_NE(response->header("content-type").find("text/plain; version=0.0.4"), std::string::npos);
  return {response->body, parseExposition(response->body)};
}

bool request(TestClient& client, const std::string& path, int want = 200) {
  if (!client.send(getRequest(path))) return false;
  auto response = client.readResponse();
  return response.has_value() && response->status == want;
}

class MetricsTest : public ::testing::Test {
 protected:
  std::unique_ptr<TestServer> serve(const http::RoutePolicy& policy = {},
                                    const std::string& upstream = "") {
    server::ServerConfig config =
        TestServer::simpleConfig(upstream.empty() ? app_.address() : upstream);
    config.routes[0].policy = policy;
    return std::make_unique<TestServer>(config);
  }
  static std::unique_ptr<stats::MetricsServer> startMetrics(TestServer& server,
                                                            size_t limit = 100) {
    auto metrics = server::startMetrics(server.server(), "127.0.0.1:0", limit);
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    return metrics.ok() ? *std::move(metrics) : nullptr;
  }
  static std::string idOf(TestServer& server, size_t index = 0) {
    return std::to_string(server.connections().at(index).id);
  }

  DemoApp app_;
};

TEST_F(MetricsTest, ConnectionSeriesHasItsAccountsMemoryAndIsGoneAtTheNextScrapeAfterClose) {
  auto server = serve();
  auto metrics = startMetrics(*server);
  ASSERT_NE(metrics, nullptr);
  auto client = std::make_unique<TestClient>(server->port());
  ASSERT_TRUE(request(*client, "/bytes?n=200000"));

  // An idle keep-alive connection holds still: its account reads the same before and after.
  std::vector<conn::ConnectionSnapshot> before, after;
  Scrape during;
  ASSERT_TRUE(waitFor([&] {
    before = server->connections();
    during = scrape(*metrics);
    after = server->connections();
    return before.size() == 1 && after.size() == 1 &&
           before[0].memory.total == after[0].memory.total &&
           before[0].state == http::SessionState::kIdle;
  }));
  const conn::ConnectionSnapshot& connection = after[0];
  const Labels labels = {{"id", std::to_string(connection.id)},
                         {"listener", "plain"},
                         {"route", "default"},
                         {"state", "idle"}};
  EXPECT_GT(connection.memory.total, 0);
  EXPECT_EQ(during.value("connwarden_connection_memory_bytes", labels),
            static_cast<double>(connection.memory.total))
      << during.text;
  EXPECT_EQ(during.all("connwarden_connection_memory_bytes").size(), 1u);
  EXPECT_EQ(during.value("connwarden_registry_connections"), 1);
  EXPECT_EQ(during.value("connwarden_connections",
                         {{"listener", "plain"}, {"route", "default"}, {"state", "idle"}}),
            1);
  EXPECT_EQ(during.value("connwarden_connection_memory_distribution_bytes_count"), 1);
  EXPECT_EQ(during.value("connwarden_connection_memory_distribution_bytes_sum"),
            static_cast<double>(connection.memory.total));
  double components = 0;
  for (const Sample& s : during.all("connwarden_connections_memory_bytes")) components += s.value;
  EXPECT_EQ(components, static_cast<double>(connection.memory.total));
  EXPECT_EQ(during.value("connwarden_connections_memory_bytes", {{"component", "buffers"}}),
            static_cast<double>(connection.memory.buffers));

  client.reset();
  ASSERT_TRUE(waitFor([&] { return server->connectionCount() == 0; }));
  const Scrape closed = scrape(*metrics);
  EXPECT_TRUE(closed.all("connwarden_connection_memory_bytes").empty()) << closed.text;
  EXPECT_EQ(closed.value("connwarden_registry_connections"), 0);
  EXPECT_EQ(closed.value("connwarden_connection_memory_distribution_bytes_count"), 0);
  EXPECT_TRUE(closed.all("connwarden_connections").empty());
}

TEST_F(MetricsTest, PerConnectionSeriesAreTheTopKByMemory) {
  http::RoutePolicy patient;
  patient.request_header_timeout = milliseconds(30'000);
  patient.idle_timeout = milliseconds(30'000);
  auto server = serve(patient);
  auto top3 = startMetrics(*server, 3);
  auto unbounded = startMetrics(*server, 0);
  ASSERT_NE(top3, nullptr);
  ASSERT_NE(unbounded, nullptr);
  // Six connections, each holding a different amount: an unfinished request head of 1..32 KiB.
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(std::make_unique<TestClient>(server->port()));
    ASSERT_TRUE(clients.back()->send("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " +
                                     std::string(1024u << i, 'p')));
  }
  std::vector<conn::ConnectionSnapshot> connections;
  Scrape bounded, all;
  ASSERT_TRUE(waitFor([&] {
    connections = server->connections();
    if (connections.size() != 6) return false;
    bounded = scrape(*top3);
    all = scrape(*unbounded);
    // Every request head fully read, and each series the value of its connection's account.
    const auto series = all.all("connwarden_connection_memory_bytes");
    if (series.size() != 6) return false;
    for (const auto& c : connections) {
      const auto it = std::find_if(series.begin(), series.end(), [&](const Sample& s) {
        return s.labels.at("id") == std::to_string(c.id);
      });
      if (it == series.end() || it->value != static_cast<double>(c.memory.total) ||
          c.bytes_in < 1024) {
        return false;
      }
    }
    return true;
  }));
  std::sort(connections.begin(), connections.end(), [](const auto& a, const auto& b) {
    return a.memory.total > b.memory.total;
  });
  ASSERT_GT(connections[2].memory.total, connections[3].memory.total);
  std::set<std::string> want, got;
  for (size_t i = 0; i < 3; ++i) want.insert(std::to_string(connections[i].id));
  const auto series = bounded.all("connwarden_connection_memory_bytes");
  for (const Sample& s : series) got.insert(s.labels.at("id"));
  EXPECT_EQ(series.size(), 3u) << bounded.text;
  EXPECT_EQ(got, want);
  EXPECT_EQ(bounded.value("connwarden_connections_omitted"), 3);
  EXPECT_EQ(all.value("connwarden_connections_omitted"), 0);
  // Every connection still counts in the figures for all.
  EXPECT_EQ(bounded.value("connwarden_connection_memory_distribution_bytes_count"), 6);
  EXPECT_EQ(bounded.value("connwarden_registry_connections"), 6);
}

TEST_F(MetricsTest, CountersMoveByExactlyTheEventsMade) {
  auto server = serve();
  auto metrics = startMetrics(*server);
  ASSERT_NE(metrics, nullptr);
  const Scrape before = scrape(*metrics);
  auto delta = [&](const Scrape& after, const std::string& name, const Labels& labels = {}) {
    const double was = before.value(name, labels);
    return after.value(name, labels) - (std::isnan(was) ? 0 : was);
  };

  TestClient peer(server->port()), killed(server->port()), drained(server->port());
  ASSERT_TRUE(request(peer, "/"));
  ASSERT_TRUE(request(peer, "/"));
  ASSERT_TRUE(request(peer, "/status?code=404", 404));
  ASSERT_TRUE(request(killed, "/status?code=503", 503));
  ASSERT_TRUE(request(drained, "/status?code=302", 302));
  ASSERT_TRUE(waitFor([&] { return server->connectionCount() == 3; }));
  const auto connections = server->connections();
  auto id_of = [&](size_t requests, int skip) {
    for (const auto& c : connections) {
      if (c.requests == requests && skip-- == 0) return c.id;
    }
    return uint64_t{0};
  };
  // `killed` and `drained` each made one request; IDs grow in accept order.
  const uint64_t first = std::min(id_of(1, 0), id_of(1, 1));
  const uint64_t second = std::max(id_of(1, 0), id_of(1, 1));
  ASSERT_TRUE(server->server().control().kill(first, kCall).ok());
  ASSERT_TRUE(server->server().control().drain(second, std::nullopt, kCall).ok());
  peer.shutdownWrite();
  ASSERT_TRUE(peer.waitForClose());
  ASSERT_TRUE(waitFor([&] { return server->connectionCount() == 0; }));

  const Scrape after = scrape(*metrics);
  EXPECT_EQ(delta(after, "connwarden_connections_opened_total"), 3);
  EXPECT_EQ(delta(after, "connwarden_connections_closed_total", {{"reason", "peer_closed"}}), 1);
  EXPECT_EQ(delta(after, "connwarden_connections_closed_total", {{"reason", "killed"}}), 1);
  EXPECT_EQ(delta(after, "connwarden_connections_closed_total", {{"reason", "drained"}}), 1);
  EXPECT_EQ(delta(after, "connwarden_connections_closed_total", {{"reason", "idle_timeout"}}), 0);
  EXPECT_EQ(delta(after, "connwarden_connection_kills_total"), 1);
  EXPECT_EQ(delta(after, "connwarden_connection_drains_total"), 1);
  auto requests = [&](const char* status_class) {
    return delta(after, "connwarden_http_requests_total",
                 {{"route", "default"}, {"status_class", status_class}});
  };
  EXPECT_EQ(requests("2xx"), 2) << after.text;
  EXPECT_EQ(requests("3xx"), 1);
  EXPECT_EQ(requests("4xx"), 1);
  EXPECT_EQ(requests("5xx"), 1);
  EXPECT_EQ(requests("1xx"), 0);
  EXPECT_EQ(delta(after, "connwarden_http_request_duration_seconds_count", {{"route", "default"}}),
            5);
  EXPECT_EQ(delta(after, "connwarden_http_request_duration_seconds_bucket",
                  {{"route", "default"}, {"le", "+Inf"}}),
            5);
  EXPECT_GT(delta(after, "connwarden_http_request_duration_seconds_sum", {{"route", "default"}}),
            0);
  // One upstream connection served them all, one after the other, and is pooled now.
  EXPECT_EQ(after.value("connwarden_upstream_connections", {{"cluster", "app"}, {"state", "idle"}}),
            1);
  EXPECT_EQ(
      after.value("connwarden_upstream_connections", {{"cluster", "app"}, {"state", "active"}}), 0);
  EXPECT_EQ(delta(after, "connwarden_upstream_connect_failures_total", {{"cluster", "app"}}), 0);
}

TEST_F(MetricsTest, RequestsMatchingNoRouteCountUnderRouteNone) {
  server::ServerConfig config = TestServer::simpleConfig(app_.address());
  config.routes[0].host = "only.example.com";
  TestServer server(config);
  auto metrics = startMetrics(server);
  ASSERT_NE(metrics, nullptr);
  TestClient client(server.port());
  ASSERT_TRUE(request(client, "/", 404));  // Host: localhost
  const Scrape after = scrape(*metrics);
  EXPECT_EQ(after.value("connwarden_http_requests_total", {{"route", "none"}, {"status_class", "4xx"}}),
            1);
  EXPECT_EQ(after.value("connwarden_http_requests_total",
                        {{"route", "default"}, {"status_class", "4xx"}}),
            0);
  const auto series = after.all("connwarden_connection_memory_bytes");
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(series[0].labels.at("route"), "none");
}

TEST_F(MetricsTest, UpstreamConnectFailuresAreCounted) {
  // Nothing listens on port 1: every connect is refused, and the client gets a 502.
  auto server = serve({}, "127.0.0.1:1");
  auto metrics = startMetrics(*server);
  ASSERT_NE(metrics, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(request(client, "/", 502));
  ASSERT_TRUE(request(client, "/", 502));
  const Scrape after = scrape(*metrics);
  EXPECT_EQ(after.value("connwarden_upstream_connect_failures_total", {{"cluster", "app"}}), 2);
  EXPECT_EQ(after.value("connwarden_upstream_connects_total", {{"cluster", "app"}}), 2);
  EXPECT_EQ(after.value("connwarden_http_requests_total",
                        {{"route", "default"}, {"status_class", "5xx"}}),
            2);
}

// A cluster at max_connections: the request that waits shows as queued, and the one turned away
// (the queue holds one) is counted by reason.
TEST_F(MetricsTest, UpstreamQueueIsCounted) {
  server::ServerConfig config = TestServer::simpleConfig(app_.address());
  config.clusters[0].max_connections = 1;
  config.clusters[0].max_queued_requests = 1;
  TestServer server(config);
  auto metrics = startMetrics(server);
  ASSERT_NE(metrics, nullptr);
  TestClient busy(server.port());
  ASSERT_TRUE(busy.send(getRequest("/slow?ms=500")));
  ASSERT_TRUE(waitFor([&] {
    return scrape(*metrics).value("connwarden_upstream_connections",
                                  {{"cluster", "app"}, {"state", "active"}}) == 1;
  }));
  TestClient waiting(server.port());
  ASSERT_TRUE(waiting.send(getRequest("/")));
  ASSERT_TRUE(waitFor([&] {
    return scrape(*metrics).value("connwarden_upstream_queued_requests", {{"cluster", "app"}}) == 1;
  }));
  TestClient turned_away(server.port());
  ASSERT_TRUE(request(turned_away, "/", 503));
  const Scrape after = scrape(*metrics);
  EXPECT_EQ(after.value("connwarden_upstream_queue_rejections_total",
                        {{"cluster", "app"}, {"reason", "full"}}),
            1);
  EXPECT_EQ(after.value("connwarden_upstream_queue_rejections_total",
                        {{"cluster", "app"}, {"reason", "timeout"}}),
            0);
  ASSERT_TRUE(waiting.readResponse().has_value());
  ASSERT_TRUE(busy.readResponse().has_value());
}

TEST_F(MetricsTest, HibernationsWakeupsAndDormantTime) {
  http::RoutePolicy sleepy;
  sleepy.idle_timeout = milliseconds(30'000);
  sleepy.hibernate = true;
  sleepy.hibernate_after = milliseconds(20);
  auto server = serve(sleepy);
  auto metrics = startMetrics(*server);
  ASSERT_NE(metrics, nullptr);
  TestClient client(server->port());
  ASSERT_TRUE(request(client, "/"));
  Scrape asleep;
  ASSERT_TRUE(waitFor([&] {
    asleep = scrape(*metrics);
    return asleep.value("connwarden_connections_dormant") == 1;
  }));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(asleep.value("connwarden_connection_hibernations_total"), 1);
  EXPECT_EQ(asleep.value("connwarden_connection_wakeups_total"), 0);
  EXPECT_EQ(asleep.value("connwarden_connections",
                         {{"listener", "plain"}, {"route", "default"}, {"state", "hibernating"}}),
            1);
  const auto series = asleep.all("connwarden_connection_memory_bytes");
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(series[0].labels.at("state"), "hibernating");
  EXPECT_EQ(series[0].value, static_cast<double>(server->connections().at(0).memory.total));

  // Asleep for at least 200 ms more, then woken by a request, and asleep again.
  std::this_thread::sleep_for(milliseconds(200));
  ASSERT_TRUE(request(client, "/"));
  const double slept = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Scrape again;
  ASSERT_TRUE(waitFor([&] {
    again = scrape(*metrics);
    return again.value("connwarden_connections_dormant") == 1;
  }));
  EXPECT_EQ(again.value("connwarden_connection_wakeups_total"), 1);
  EXPECT_EQ(again.value("connwarden_connection_hibernations_total"), 2);
  const double dormant = again.value("connwarden_connection_dormant_seconds_total");
  EXPECT_GE(dormant, 0.2);
  EXPECT_LT(dormant, slept + 1.0);
  EXPECT_EQ(again.value("connwarden_http_requests_total",
                        {{"route", "default"}, {"status_class", "2xx"}}),
            2);
}

TEST_F(MetricsTest, ProbesAndReadinessFailsWhileDraining) {
  auto server = serve();
  auto metrics = startMetrics(*server);
  ASSERT_NE(metrics, nullptr);
  EXPECT_EQ(get(metrics->port(), "/healthz")->status, 200);
  EXPECT_EQ(get(metrics->port(), "/livez")->status, 200);
  EXPECT_EQ(get(metrics->port(), "/readyz")->status, 200);

  // A request in flight keeps the drain going for a while.
  TestClient slow(server->port());
  ASSERT_TRUE(slow.send(getRequest("/slow?ms=1500")));
  ASSERT_TRUE(waitFor([&] {
    auto c = server->connections();
    return c.size() == 1 && c[0].state == http::SessionState::kActive;
  }));
  auto shutdown = std::async(std::launch::async,
                             [&] { return server->server().shutdown(milliseconds(5000)); });
  EXPECT_TRUE(waitFor([&] {
    auto ready = get(metrics->port(), "/readyz");
    return ready.has_value() && ready->status == 503;
  }));
  EXPECT_EQ(get(metrics->port(), "/healthz")->status, 200);
  auto response = slow.readResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(shutdown.get(), 0u);
  EXPECT_EQ(get(metrics->port(), "/readyz")->status, 503);
  // A scrape after the workers stopped: left out, and what it posted must not run on the
  // registry as the worker is destroyed (ASan would catch it).
  EXPECT_EQ(scrape(*metrics).value("connwarden_metrics_workers_unanswered"), 1);
}

// Whether the workers batch their socket I/O through io_uring depends on the kernel and the
// seccomp profile; the gauge says how many do, as the workers themselves know it.
TEST_F(MetricsTest, IoUringWorkersCountsTheWorkersThatUseIt) {
  for (bool allowed : {true, false}) {
    SCOPED_TRACE(allowed);
    event::Dispatcher::setIoUringAllowed(allowed);
    auto server = std::make_unique<TestServer>(TestServer::simpleConfig(app_.address()), 2);
    event::Dispatcher::setIoUringAllowed(true);
    auto metrics = startMetrics(*server);
    ASSERT_NE(metrics, nullptr);
    int using_it = 0;
    for (uint32_t w = 0; w < 2; ++w) {
      server->runOnWorker(w, [&](server::Worker& worker) {
        using_it += worker.dispatcher().ioBatch().uring() ? 1 : 0;
      });
    }
    if (!allowed) {
      EXPECT_EQ(using_it, 0);
    }
    EXPECT_EQ(scrape(*metrics).value("connwarden_io_uring_workers"), using_it);
  }
}

TEST_F(MetricsTest, AWorkerThatDoesNotAnswerIsLeftOutAndTheScrapeStillAnswers) {
  auto server = serve();
  auto metrics = startMetrics(*server);
  ASSERT_NE(metrics, nullptr);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> blocked;
  server->server().worker(0).post([released, &blocked] {
    blocked.set_value();
    released.wait();
  });
  blocked.get_future().wait();
  const auto start = std::chrono::steady_clock::now();
  const Scrape stuck = scrape(*metrics);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_EQ(stuck.value("connwarden_metrics_workers_unanswered"), 1) << stuck.text;
  EXPECT_EQ(stuck.value("connwarden_build_info", {{"version", "0.1.0"}}), 1);
  release.set_value();
  EXPECT_EQ(scrape(*metrics).value("connwarden_metrics_workers_unanswered"), 0);
}

TEST_F(MetricsTest, ExpositionPassesPromtoolCheckMetricsDuringTraffic) {
  // Debian's prometheus package (in the Makefile's DEPS) brings promtool: missing is a failure.
  ASSERT_EQ(access("/usr/bin/promtool", X_OK), 0) << "promtool missing: apt-get install prometheus";
  auto server = serve();
  auto metrics = startMetrics(*server);
  ASSERT_NE(metrics, nullptr);
  std::vector<std::unique_ptr<TestClient>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<TestClient>(server->port()));
    ASSERT_TRUE(request(*clients.back(), "/bytes?n=" + std::to_string(1000 * (i + 1))));
  }
  ASSERT_TRUE(clients[0]->send(getRequest("/slow?ms=300")));  // one in flight while scraped
  const Scrape during = scrape(*metrics);
  EXPECT_EQ(during.all("connwarden_connection_memory_bytes").size(), 4u);
  TempDir dir;
  const std::string file = dir.file("scrape.txt");
  std::ofstream(file) << during.text;
  const std::string command = "promtool check metrics < " + file + " > " + dir.file("out") + " 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream out(dir.file("out"));
  const std::string said((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << said << "\n" << during.text;
  ASSERT_TRUE(clients[0]->readResponse().has_value());
}

TEST_F(MetricsTest, AMetricsPortInUseIsAClearError) {
  const int taken = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ASSERT_EQ(bind(taken, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(taken, 1), 0);
  ASSERT_EQ(getsockname(taken, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string in_use = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
  auto server = serve();
  auto metrics = server::startMetrics(server->server(), in_use, 100);
  ASSERT_FALSE(metrics.ok());
  EXPECT_EQ(metrics.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(metrics.status().message().find(in_use), std::string_view::npos);
  EXPECT_NE(metrics.status().message().find("in use"), std::string_view::npos)
      << metrics.status();
  EXPECT_EQ(server::startMetrics(server->server(), "no-port", 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  close(taken);
}

}  // namespace
}  // namespace connwarden::testing
