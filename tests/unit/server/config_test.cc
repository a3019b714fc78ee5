#include "sidecar/server/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/test_util.h"

namespace connwarden::server {
namespace {

using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Matcher;
using ::testing::StartsWith;

// A valid listener and cluster, to which a case appends what it tests.
constexpr char kListener[] = "listeners:\n  - address: 127.0.0.1:8080\n";
constexpr char kCluster[] = "clusters:\n  - name: app\n    addresses: [127.0.0.1:9000]\n";

std::string withBase(const std::string& rest) { return kListener + std::string(kCluster) + rest; }

// The base config with one more line in its listener, e.g. "name: x".
std::string withListenerField(const std::string& line) {
  return kListener + std::string("    ") + line + "\n" + kCluster;
}

// 300 bytes of YAML that stand for 64 * 16^5 bytes (67 MB) of text.
std::string billionLaughs() {
  std::string yaml = "l0: &l0 \"" + std::string(64, 'x') + "\"\n";
  for (int level = 1; level <= 5; ++level) {
    yaml += "l" + std::to_string(level) + ": &l" + std::to_string(level) + " [";
    for (int i = 0; i < 16; ++i) yaml += (i > 0 ? ",*l" : "*l") + std::to_string(level - 1);
    yaml += "]\n";
  }
  return yaml;
}

void writeFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(ConfigTest, RejectsInvalidConfigsNamingTheField) {
  testing::TempDir dir;
  const std::string cert = dir.file("cert.pem");
  writeFile(cert, "not checked here");
  const std::string missing = dir.file("missing.pem");

  struct Case {
    std::string yaml;
    Matcher<std::string> message;
  };
  const Case cases[] = {
      // YAML syntax and shape.
      {"listeners: [\n", StartsWith("test.yaml:2:1: ")},
      {"listeners:\n  - address: a\n    address: b\n",
       Eq("test.yaml:3:5: duplicate key \"address\"")},
      {"? [a]\n: b\n", Eq("test.yaml:1:3: a key must be a plain string")},
      {"- 1\n", Eq("test.yaml:1:1: expected a mapping with listeners, clusters and routes at the "
                   "top level")},
      // An alias inside its own anchor; aliases of aliases that multiply a small file.
      {"a: &x {b: *x}\n", HasSubstr("nested more than 32 levels deep")},
      {billionLaughs(), HasSubstr("expands to more than 4 MiB")},
      // Schema errors, as protobuf's JSON parser finds them.
      {"bogus: 1\n", Eq("bogus: unknown field")},
      {"listeners:\n  - {}\n  - bogus: 1\n", Eq("listeners[1].bogus: unknown field")},
      {"listeners:\n  - defaults: {bogus: 1}\n", Eq("listeners[0].defaults.bogus: unknown field")},
      {"listeners:\n  - max_connections: -1\n",
       Eq("listeners[0].max_connections: expected an integer from 0 to 4294967295, got -1")},
      {"listeners:\n  - max_connections: 99999999999\n",
       Eq("listeners[0].max_connections: expected an integer from 0 to 4294967295, got "
          "99999999999")},
      {"listeners:\n  - max_connections: lots\n",
       Eq("listeners[0].max_connections: expected an integer from 0 to 4294967295, got "
          "\"lots\"")},
      {"listeners:\n  - name: 12\n", Eq("listeners[0].name: expected a string, got 12 (quote it)")},
      {"listeners:\n  - name: true\n",
       Eq("listeners[0].name: expected a string, got true (quote it)")},
      {"listeners:\n  - name: [a]\n", Eq("listeners[0].name: expected a single value, not a list")},
      {"listeners:\n  - name: {a: 1}\n",
       Eq("listeners[0].name: expected a single value, not a mapping")},
      {"listeners:\n  - tls: 5\n", Eq("listeners[0].tls: expected a mapping, got 5")},
      {"listeners: 5\n", Eq("listeners: expected a mapping, got 5")},
      {"listeners:\n  - defaults: {idle_timeout: 300ms}\n",
       Eq("listeners[0].defaults.idle_timeout: expected a duration in seconds such as \"1.5s\" "
          "(Invalid duration format, failed to parse seconds)")},
      {"listeners:\n  - defaults: {idleTimeout: 60}\n",
       StartsWith("listeners[0].defaults.idle_timeout: expected a duration in seconds such as ")},
      // Listeners.
      {"", Eq("listeners: at least one listener is required")},
      {"listeners: []\n", Eq("listeners: at least one listener is required")},
      {"listeners:\n  - name: main\n", Eq("listeners[0].address: required")},
      {"listeners:\n  - address: 127.0.0.1\n", StartsWith("listeners[0].address: ")},
      {"listeners:\n  - address: example.com:80\n", StartsWith("listeners[0].address: ")},
      {"listeners:\n  - {name: a, address: '127.0.0.1:1'}\n  - {name: a, address: '127.0.0.1:2'}\n",
       Eq("listeners[1].name: \"a\" is already the name of listeners[0]")},
      {"listeners:\n  - {address: '127.0.0.1:1'}\n  - {name: listener0, address: '127.0.0.1:2'}\n",
       Eq("listeners[1].name: \"listener0\" is already the name of listeners[0]")},
      {"listeners:\n  - {address: '127.0.0.1:1', no_route_status: 200}\n",
       Eq("listeners[0].no_route_status: must be from 400 to 599, got 200")},
      {"listeners:\n  - {address: '127.0.0.1:1', no_route_status: 600}\n",
       Eq("listeners[0].no_route_status: must be from 400 to 599, got 600")},
      {"listeners:\n  - {address: '127.0.0.1:1', tls: {}}\n",
       Eq("listeners[0].tls.cert_file: required")},
      {"listeners:\n  - {address: '127.0.0.1:1', tls: {cert_file: " + cert + "}}\n",
       Eq("listeners[0].tls.key_file: required")},
      {"listeners:\n  - {address: '127.0.0.1:1', tls: {cert_file: " + missing +
           ", key_file: " + cert + "}}\n",
       Eq("listeners[0].tls.cert_file: cannot read \"" + missing +
          "\": No such file or directory")},
      {"listeners:\n  - {address: '127.0.0.1:1', tls: {cert_file: " + cert +
           ", key_file: " + dir.path() + "}}\n",
       Eq("listeners[0].tls.key_file: cannot read \"" + dir.path() + "\": Is a directory")},
      {"listeners:\n  - {address: '127.0.0.1:1', tls: {cert_file: " + cert + ", key_file: " + cert +
           ", min_version: 1.1}}\n",
       Eq("listeners[0].tls.min_version: must be \"1.2\" or \"1.3\", got \"1.1\"")},
      {"listeners:\n  - {address: '127.0.0.1:1', defaults: {idle_timeout: -1s}}\n",
       Eq("listeners[0].defaults.idle_timeout: must not be negative")},
      {"listeners:\n  - {address: '127.0.0.1:1', defaults: {request_header_timeout: -0.5s}}\n",
       Eq("listeners[0].defaults.request_header_timeout: must not be negative")},
      {"listeners:\n  - {address: '127.0.0.1:1', defaults: {tunnel_idle_timeout: 31536000.001s}}\n",
       Eq("listeners[0].defaults.tunnel_idle_timeout: must be at most 1 year (31536000s)")},
      {"listeners:\n  - {address: '127.0.0.1:1', buffer_high_watermark: 1023}\n",
       Eq("listeners[0].buffer_high_watermark: must be from 1024 to 67108864 bytes, got 1023")},
      {"listeners:\n  - {address: '127.0.0.1:1', buffer_high_watermark: 67108865}\n",
       Eq("listeners[0].buffer_high_watermark: must be from 1024 to 67108864 bytes, got "
          "67108865")},
      {"listeners:\n  - {address: '127.0.0.1:1', defaults: {hibernate: {after: -1s}}}\n",
       Eq("listeners[0].defaults.hibernate.after: must not be negative")},
      {"listeners:\n  - {address: '127.0.0.1:1', defaults: {hibernate: true}}\n",
       StartsWith("listeners[0].defaults.hibernate: expected a mapping")},
      {"listeners:\n  - {address: '127.0.0.1:1', defaults: {max_requests_per_connection: -1}}\n",
       StartsWith("listeners[0].defaults.max_requests_per_connection: expected an integer")},
      {kListener + std::string("clusters:\n  - {name: a, addresses: [127.0.0.1:1]}\n"
                               "routes:\n  - {cluster: a, policy: {write_timeout: 31536001s}}\n"),
       Eq("routes[0].policy.write_timeout: must be at most 1 year (31536000s)")},
      {kListener + std::string("clusters:\n  - {name: a, addresses: [127.0.0.1:1]}\n"
                               "routes:\n  - {cluster: a, policy: {idle: 1s}}\n"),
       Eq("routes[0].policy.idle: unknown field")},
      // Clusters.
      {kListener, Eq("clusters: at least one cluster is required")},
      {kListener + std::string("clusters:\n  - addresses: [127.0.0.1:1]\n"),
       Eq("clusters[0].name: required")},
      {withBase("  - name: app\n    addresses: [127.0.0.1:1]\n"),
       Eq("clusters[1].name: \"app\" is already the name of clusters[0]")},
      {kListener + std::string("clusters:\n  - name: app\n"),
       Eq("clusters[0].addresses: at least one address is required")},
      {kListener + std::string("clusters:\n  - name: app\n    addresses: [127.0.0.1:1, x]\n"),
       StartsWith("clusters[0].addresses[1]: ")},
      {kListener + std::string("clusters:\n  - name: app\n    addresses: [127.0.0.1:1, '']\n"),
       Eq("clusters[0].addresses[1]: required")},
      {withBase("  - {name: b, addresses: [127.0.0.1:1], connect_timeout: 0s}\n"),
       Eq("clusters[1].connect_timeout: must be positive")},
      {withBase("  - {name: b, addresses: [127.0.0.1:1], queue_timeout: 0s}\n"),
       Eq("clusters[1].queue_timeout: must be positive")},
      {withBase("  - {name: b, addresses: [127.0.0.1:1], response_idle_timeout: -1s}\n"),
       Eq("clusters[1].response_idle_timeout: must not be negative")},
      {withBase("  - {name: b, addresses: [127.0.0.1:1], response_timeout: 0s}\n"),
       Eq("clusters[1].response_timeout: must be positive")},
      {withBase("  - {name: b, addresses: [127.0.0.1:1], response_timeout: -2s}\n"),
       Eq("clusters[1].response_timeout: must not be negative")},
      {withBase("  - {name: b, addresses: [127.0.0.1:1], idle_timeout: 40000000s}\n"),
       Eq("clusters[1].idle_timeout: must be at most 1 year (31536000s)")},
      // Routes.
      {withBase("  - {name: b, addresses: [127.0.0.1:1]}\n"),
       Eq("routes: required when there are several clusters")},
      {withBase("routes:\n  - {path_prefix: /}\n"), Eq("routes[0].cluster: required")},
      {withBase("routes:\n  - {cluster: app}\n  - {cluster: app}\n  - {cluster: api}\n"),
       Eq("routes[2].cluster: no cluster named \"api\"")},
      {withBase("routes:\n  - {name: r, cluster: app}\n  - {name: r, cluster: app}\n"),
       Eq("routes[1].name: \"r\" is already the name of routes[0]")},
      {withBase("routes:\n  - {cluster: app}\n  - {name: route0, cluster: app}\n"),
       Eq("routes[1].name: \"route0\" is already the name of routes[0]")},
      {withBase("routes:\n  - {host: 'a.*.com', cluster: app}\n"),
       Eq("routes[0].host: \"a.*.com\": \"*\" is allowed only as the whole host or as a leading "
          "\"*.\"")},
      {withBase("routes:\n  - {host: '*example.com', cluster: app}\n"),
       StartsWith("routes[0].host: \"*example.com\": \"*\" is allowed only")},
      {withBase("routes:\n  - {host: '*.', cluster: app}\n"),
       Eq("routes[0].host: \"*.\" is not a host name (no port, no scheme)")},
      {withBase("routes:\n  - {host: 'api.example.com:8080', cluster: app}\n"),
       Eq("routes[0].host: \"api.example.com:8080\" is not a host name (no port, no scheme)")},
      {withBase("routes:\n  - {path_prefix: api, cluster: app}\n"),
       Eq("routes[0].path_prefix: must start with \"/\", got \"api\"")},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.yaml);
    absl::StatusOr<ServerConfig> config = parseConfig(c.yaml, "test.yaml");
    ASSERT_FALSE(config.ok());
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(config.status().message()), c.message);
  }
}

TEST(ConfigTest, ResolvesYamlScalarsLikeTheCoreSchema) {
  // Plain integers and booleans become JSON numbers and booleans (wrong for a string field), quoted
  // scalars and other plain text stay strings, null and empty values mean "unset".
  struct Case {
    std::string value;  // of a listener's name
    std::string name;   // what it reads as, or
    std::string error;  // why it is rejected
  };
  const Case cases[] = {
      {"'12'", "12", ""},
      {"\"true\"", "true", ""},
      {"'null'", "null", ""},
      {"1.5", "1.5", ""},
      {"0x10", "0x10", ""},
      {"yes", "yes", ""},
      {"\"a\\tb\"", "a\tb", ""},
      {"'say \"hi\"'", "say \"hi\"", ""},
      {"~", "listener0", ""},
      {"null", "listener0", ""},
      {"", "listener0", ""},
      {"12", "", "listeners[0].name: expected a string, got 12 (quote it)"},
      {"+12", "", "listeners[0].name: expected a string, got 12 (quote it)"},
      {"007", "", "listeners[0].name: expected a string, got 7 (quote it)"},
      {"FALSE", "", "listeners[0].name: expected a string, got false (quote it)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value);
    absl::StatusOr<ServerConfig> config = parseConfig(withListenerField("name: " + c.value), "t");
    if (!c.error.empty()) {
      ASSERT_FALSE(config.ok());
      EXPECT_EQ(config.status().message(), c.error);
      continue;
    }
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->listeners[0].name, c.name);
  }

  // JSON has no "+" and no leading zeros: the digits are normalised.
  const std::pair<std::string, uint32_t> numbers[] = {{"10", 10}, {"+10", 10}, {"0010", 10},
                                                      {"0", 0},   {"-0", 0},   {"'7'", 7}};
  for (const auto& [text, value] : numbers) {
    SCOPED_TRACE(text);
    absl::StatusOr<ServerConfig> config =
        parseConfig(withListenerField("max_connections: " + text), "t");
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_EQ(config->listeners[0].max_connections, value);
  }
}

TEST(ConfigTest, FillsDefaultsFromTheSchema) {
  absl::StatusOr<ServerConfig> config = parseConfig(withBase(""), "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->listeners.size(), 1u);
  const network::ListenerConfig& listener = config->listeners[0];
  EXPECT_EQ(listener.name, "listener0");
  EXPECT_EQ(listener.address.toString(), "127.0.0.1:8080");
  EXPECT_FALSE(listener.tls.has_value());
  EXPECT_EQ(listener.max_connections, 0u);
  EXPECT_EQ(listener.no_route_status, 404u);
  EXPECT_EQ(listener.buffer_high_watermark, 65536u);
  // Policies: nothing set, so the built-in defaults apply.
  ASSERT_EQ(config->listener_policies.size(), 1u);
  const http::ConnectionPolicy policy = config->listener_policies[0].over({});
  EXPECT_FALSE(policy.hibernate);
  EXPECT_EQ(policy.idle_timeout, std::chrono::seconds(60));
  EXPECT_EQ(policy.request_header_timeout, std::chrono::seconds(10));
  EXPECT_EQ(policy.request_timeout, std::chrono::seconds(300));
  EXPECT_EQ(policy.write_timeout, std::chrono::seconds(60));
  EXPECT_EQ(policy.max_connection_age, std::chrono::seconds(0));
  EXPECT_EQ(policy.max_requests_per_connection, 0u);
  EXPECT_EQ(policy.drain_timeout, std::chrono::seconds(30));
  EXPECT_EQ(policy.tunnel_idle_timeout, std::chrono::hours(1));

  ASSERT_EQ(config->clusters.size(), 1u);
  const http::ClusterConfig& cluster = config->clusters[0];
  EXPECT_EQ(cluster.name, "app");
  ASSERT_EQ(cluster.addresses.size(), 1u);
  EXPECT_EQ(cluster.addresses[0].toString(), "127.0.0.1:9000");
  EXPECT_EQ(cluster.connect_timeout, std::chrono::seconds(5));
  EXPECT_EQ(cluster.response_timeout, std::chrono::seconds(60));
  EXPECT_EQ(cluster.max_idle_connections, 128u);
  EXPECT_EQ(cluster.idle_timeout, std::chrono::seconds(60));
  EXPECT_EQ(cluster.response_idle_timeout, std::chrono::seconds(300));
  EXPECT_EQ(cluster.max_connections, 0u);
  EXPECT_EQ(cluster.max_queued_requests, 1024u);
  EXPECT_EQ(cluster.queue_timeout, std::chrono::seconds(5));

  // No routes and one cluster: everything goes to it.
  ASSERT_EQ(config->routes.size(), 1u);
  EXPECT_EQ(config->routes[0].name, "default");
  EXPECT_EQ(config->routes[0].host, "");
  EXPECT_EQ(config->routes[0].path_prefix, "");
  EXPECT_EQ(config->routes[0].cluster, "app");
}

TEST(ConfigTest, ReadsEveryField) {
  testing::TempDir dir;
  writeFile(dir.file("cert.pem"), "cert");
  writeFile(dir.file("key.pem"), "key");
  const std::string yaml = R"(
listeners:
  - name: public
    address: "[::1]:8443"
    tls: {cert_file: )" + dir.file("cert.pem") +
                           ", key_file: " + dir.file("key.pem") +
                           R"(, min_version: "1.3"}
    max_connections: 1000
    no_route_status: 503
    buffer_high_watermark: 1024
    defaults:
      hibernate: {enabled: true, after: 0.25s}
      idle_timeout: 30s
      requestHeaderTimeout: 2.5s
      request_timeout: 20s
      write_timeout: 5s
      max_connection_age: 3600s
      max_requests_per_connection: 1000
      drain_timeout: 7s
      tunnel_idle_timeout: 0s
  - address: localhost:0
    tls: {cert_file: )" + dir.file("cert.pem") +
                           ", key_file: " + dir.file("key.pem") + R"(}
clusters:
  - name: api
    addresses: [127.0.0.1:9001, "[::1]:9002"]
    connect_timeout: 0.0001s
    response_timeout: 31536000s
    max_idle_connections: 4
    idle_timeout: 0s
    response_idle_timeout: 0s
    max_connections: 8
    max_queued_requests: 0
    queue_timeout: 0.25s
  - name: web
    addresses: [127.0.0.1:9003]
routes:
  - {name: api, host: API.Example.com, path_prefix: /v1/, cluster: api,
     policy: {idle_timeout: 5s, hibernate: {enabled: false}}}
  - {host: "*.Example.COM", cluster: web}
  - {host: "*", cluster: web}
)";
  absl::StatusOr<ServerConfig> config = parseConfig(yaml, "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status();

  ASSERT_EQ(config->listeners.size(), 2u);
  const network::ListenerConfig& listener = config->listeners[0];
  EXPECT_EQ(listener.name, "public");
  EXPECT_EQ(listener.address.toString(), "[::1]:8443");
  ASSERT_TRUE(listener.tls.has_value());
  EXPECT_EQ(listener.tls->cert_file, dir.file("cert.pem"));
  EXPECT_EQ(listener.tls->key_file, dir.file("key.pem"));
  EXPECT_TRUE(listener.tls->min_tls13);
  EXPECT_EQ(listener.max_connections, 1000u);
  EXPECT_EQ(listener.no_route_status, 503u);
  EXPECT_EQ(listener.buffer_high_watermark, 1024u);
  const http::ConnectionPolicy defaults = config->listener_policies[0].over({});
  EXPECT_TRUE(defaults.hibernate);
  EXPECT_EQ(defaults.hibernate_after, std::chrono::milliseconds(250));
  EXPECT_EQ(defaults.idle_timeout, std::chrono::seconds(30));
  EXPECT_EQ(defaults.request_header_timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(defaults.request_timeout, std::chrono::seconds(20));
  EXPECT_EQ(defaults.write_timeout, std::chrono::seconds(5));
  EXPECT_EQ(defaults.max_connection_age, std::chrono::hours(1));
  EXPECT_EQ(defaults.max_requests_per_connection, 1000u);
  EXPECT_EQ(defaults.drain_timeout, std::chrono::seconds(7));
  EXPECT_EQ(defaults.tunnel_idle_timeout, std::chrono::milliseconds(0));
  // A route's policy overrides the listener's defaults field by field.
  const http::ConnectionPolicy api = config->routes[0].policy.over(defaults);
  EXPECT_FALSE(api.hibernate);
  EXPECT_EQ(api.hibernate_after, std::chrono::milliseconds(250));
  EXPECT_EQ(api.idle_timeout, std::chrono::seconds(5));
  EXPECT_EQ(api.write_timeout, std::chrono::seconds(5));
  EXPECT_EQ(config->listeners[1].name, "listener1");
  EXPECT_EQ(config->listeners[1].address.toString(), "127.0.0.1:0");
  ASSERT_TRUE(config->listeners[1].tls.has_value());
  EXPECT_FALSE(config->listeners[1].tls->min_tls13);

  ASSERT_EQ(config->clusters.size(), 2u);
  const http::ClusterConfig& cluster = config->clusters[0];
  ASSERT_EQ(cluster.addresses.size(), 2u);
  EXPECT_EQ(cluster.addresses[1].toString(), "[::1]:9002");
  // A fraction of a millisecond rounds up rather than becoming 0.
  EXPECT_EQ(cluster.connect_timeout, std::chrono::milliseconds(1));
  EXPECT_EQ(cluster.response_timeout, std::chrono::hours(24 * 365));
  EXPECT_EQ(cluster.max_idle_connections, 4u);
  EXPECT_EQ(cluster.idle_timeout, std::chrono::milliseconds(0));
  EXPECT_EQ(cluster.response_idle_timeout, std::chrono::milliseconds(0));
  EXPECT_EQ(cluster.max_connections, 8u);
  EXPECT_EQ(cluster.max_queued_requests, 0u);  // explicitly none, not the default
  EXPECT_EQ(cluster.queue_timeout, std::chrono::milliseconds(250));

  ASSERT_EQ(config->routes.size(), 3u);
  struct Expected {
    const char* name;
    const char* host;
    const char* path_prefix;
    const char* cluster;
  };
  const Expected expected[] = {
      {"api", "api.example.com", "/v1/", "api"},
      {"route1", "*.example.com", "", "web"},
      {"route2", "", "", "web"},
  };
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(config->routes[i].name, expected[i].name);
    EXPECT_EQ(config->routes[i].host, expected[i].host);
    EXPECT_EQ(config->routes[i].path_prefix, expected[i].path_prefix);
    EXPECT_EQ(config->routes[i].cluster, expected[i].cluster);
  }
}

TEST(ConfigTest, LoadsFiles) {
  testing::TempDir dir;
  writeFile(dir.file("good.yaml"), withBase(""));
  absl::StatusOr<ServerConfig> config = loadConfigFile(dir.file("good.yaml"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->clusters[0].name, "app");

  struct Case {
    std::string path;
    std::string message;
  };
  writeFile(dir.file("bad.yaml"), "listeners:\n  - address: [\n");
  const Case cases[] = {
      {dir.file("missing.yaml"), dir.file("missing.yaml") + ": No such file or directory"},
      {dir.path(), dir.path() + ": Is a directory"},
      {dir.file("bad.yaml"), dir.file("bad.yaml") + ":3:1: end of sequence flow not found"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    absl::StatusOr<ServerConfig> bad = loadConfigFile(c.path);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.status().message(), c.message);
  }
}

TEST(ConfigTest, DefaultConfigIsTheEmbeddedYaml) {
  const ServerConfig config = defaultConfig();
  ASSERT_EQ(config.listeners.size(), 1u);
  EXPECT_EQ(config.listeners[0].name, "main");
  EXPECT_EQ(config.listeners[0].address.toString(), "0.0.0.0:8080");
  ASSERT_EQ(config.clusters.size(), 1u);
  EXPECT_EQ(config.clusters[0].name, "app");
  ASSERT_EQ(config.clusters[0].addresses.size(), 1u);
  EXPECT_EQ(config.clusters[0].addresses[0].toString(), "127.0.0.1:8081");
  ASSERT_EQ(config.routes.size(), 1u);
  EXPECT_EQ(config.routes[0].name, "default");
  EXPECT_EQ(config.routes[0].host, "");
  EXPECT_EQ(config.routes[0].path_prefix, "");
  EXPECT_EQ(config.routes[0].cluster, "app");
  EXPECT_TRUE(parseConfig(defaultConfigYaml(), "default").ok());
}

}  // namespace
}  // namespace connwarden::server
