// connwarden: the connection-manager sidecar. Loads the config, starts the workers, and on
// SIGTERM/SIGINT drains every connection (bounded by --drain-timeout) and exits 0.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <vector>
#include <iostream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/time/time.h"
#include "sidecar/admin/admin_server.h"
#include "sidecar/event/dispatcher.h"
#include "sidecar/event/log.h"
#include "sidecar/event/memory_account.h"
#include "sidecar/server/config.h"
#include "sidecar/server/file_limit.h"
#include "sidecar/server/metrics.h"
#include "sidecar/server/server.h"

ABSL_FLAG(std::string, config, "",
          "YAML config file; without it the embedded default serves (0.0.0.0:8080 -> "
          "127.0.0.1:8081). See --print-default-config.");
ABSL_FLAG(uint32_t, concurrency, 0, "Worker threads; 0 = one per core.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn, error or off.");
ABSL_FLAG(bool, validate, false, "Check the config and exit: 0 if valid, 2 if not.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "On SIGTERM, how long connections may take to finish before they are closed.");
ABSL_FLAG(bool, io_uring, true,
          "Read and send for every connection of a loop pass with one io_uring_enter(2) each, "
          "when the kernel allows it; false: one recv(2)/send(2) per connection.");
ABSL_FLAG(bool, print_default_config, false, "Print the embedded default config and exit.");
ABSL_FLAG(std::string, state_dir, "",
          "Directory where route policies set at runtime are kept, so that a restart keeps them. "
          "Empty: they last until exit.");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9901",
          "host:port of the Prometheus endpoint (/metrics) and the probes (/healthz, /livez, "
          "/readyz). Empty: none.");
ABSL_FLAG(uint32_t, metrics_connection_limit, 100,
          "Per-connection memory series: only the connections holding the most memory, at most "
          "this many; 0 = every connection.");

ABSL_FLAG(std::string, admin_address, "127.0.0.1:9090",
          "Where the gRPC admin API listens: host:port, or unix:/path. Empty: no admin API.");
ABSL_FLAG(std::string, admin_tls_cert, "", "PEM certificate chain: the admin API speaks TLS.");
ABSL_FLAG(std::string, admin_tls_key, "", "PEM private key of --admin-tls-cert.");
ABSL_FLAG(std::string, admin_tls_client_ca, "",
          "PEM CA: admin clients must present a certificate it signed (mutual TLS).");
ABSL_FLAG(std::string, admin_read_token_file, "",
          "File of bearer tokens (one a line) that may read: list, get, watch, policies, info.");
ABSL_FLAG(std::string, admin_admin_token_file, "",
          "File of bearer tokens (one a line) that may do everything, drain and kill included. "
          "With neither token file, the admin API asks for no token.");

namespace {

constexpr int kExitConfigError = 2;

int run() {
  using namespace connwarden;
  event::LogLevel level;
  if (!event::parseLogLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    std::cerr << "connwarden: --log-level: \"" << absl::GetFlag(FLAGS_log_level)
              << "\" is not one of debug, info, warn, error, off\n";
    return kExitConfigError;
  }
  event::setLogLevel(level);
  if (absl::GetFlag(FLAGS_print_default_config)) {
    std::cout << server::defaultConfigYaml();
    return 0;
  }

  const std::string path = absl::GetFlag(FLAGS_config);
  absl::StatusOr<server::ServerConfig> config =
      path.empty() ? absl::StatusOr<server::ServerConfig>(server::defaultConfig())
                   : server::loadConfigFile(path);
  if (!config.ok()) {
    std::cerr << "connwarden: config error: " << config.status().message() << "\n";
    return kExitConfigError;
  }
  uint32_t concurrency = absl::GetFlag(FLAGS_concurrency);
  if (concurrency == 0) concurrency = std::max(1u, std::thread::hardware_concurrency());
  if (absl::Status s = server::checkForWorkers(*config, concurrency); !s.ok()) {
    std::cerr << "connwarden: config error: " << (path.empty() ? "" : path + ": ") << s.message()
              << "\n";
    return kExitConfigError;
  }
  if (absl::GetFlag(FLAGS_validate)) {
    std::cout << (path.empty() ? "default config" : path) << ": ok\n";
    return 0;
  }

  // Signals are taken by sigwait() below, so block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A write to a socket the peer closed must fail with EPIPE, not kill the process (OpenSSL
  // writes with write(2), which cannot pass MSG_NOSIGNAL).
  signal(SIGPIPE, SIG_IGN);

  // One descriptor per client connection: the soft limit a process inherits (often 1024) would
  // cap the connections long before memory does.
  if (absl::StatusOr<server::FileLimit> files = server::raiseOpenFileLimit(); files.ok()) {
    if (files->now != files->before) {
      CW_LOG(kInfo, "open files: soft limit raised from %d to %d", files->before, files->now);
    } else {
      CW_LOG(kInfo, "open files: soft limit %d", files->now);
    }
  } else {
    CW_LOG(kWarn, "open files: soft limit not raised: %s; accepting pauses when it is reached",
           files.status().message());
  }
  if (!connwarden::event::MemoryAccount::hooksInstalled()) {
    CW_LOG(kWarn, "OpenSSL allocated before connwarden could hook it: TLS memory is not "
                  "attributed to connections");
  }
  event::Dispatcher::setIoUringAllowed(absl::GetFlag(FLAGS_io_uring));
  auto server = server::Server::create(*config, concurrency, absl::GetFlag(FLAGS_state_dir));
  if (!server.ok()) {
    std::cerr << "connwarden: " << server.status().message() << "\n";
    return server.status().code() == absl::StatusCode::kInvalidArgument ? kExitConfigError : 1;
  }
  // Before the workers start, so that a metrics port in use stops us before we serve.
  std::unique_ptr<stats::MetricsServer> metrics;
  const std::string metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (!metrics_address.empty()) {
    auto started = server::startMetrics(**server, metrics_address,
                                        absl::GetFlag(FLAGS_metrics_connection_limit));
    if (!started.ok()) {
      std::cerr << "connwarden: " << started.status().message() << "\n";
      return started.status().code() == absl::StatusCode::kInvalidArgument ? kExitConfigError
                                                                            : 1;
    }
    metrics = *std::move(started);
    CW_LOG(kInfo, "metrics and probes on %s (port %d)", metrics_address, metrics->port());
  }
  std::unique_ptr<admin::AdminServer> admin_server;
  if (const std::string address = absl::GetFlag(FLAGS_admin_address); !address.empty()) {
    admin::AdminOptions options;
    options.address = address;
    options.tls_cert_file = absl::GetFlag(FLAGS_admin_tls_cert);
    options.tls_key_file = absl::GetFlag(FLAGS_admin_tls_key);
    options.tls_client_ca_file = absl::GetFlag(FLAGS_admin_tls_client_ca);
    options.read_token_file = absl::GetFlag(FLAGS_admin_read_token_file);
    options.admin_token_file = absl::GetFlag(FLAGS_admin_admin_token_file);
    for (const auto& listener : (*server)->listeners()) {
      options.listeners.push_back({listener->config.name, listener->bound_address.toString(),
                                   listener->tls != nullptr});
    }
    auto started = admin::AdminServer::start(options, (*server)->control());
    if (!started.ok()) {
      std::cerr << "connwarden: " << started.status().message() << "\n";
      return started.status().code() == absl::StatusCode::kInvalidArgument ? kExitConfigError : 1;
    }
    admin_server = *std::move(started);
  }
  (*server)->start();
  CW_LOG(kInfo, "connwarden started: %d workers", concurrency);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  const auto drain_timeout = absl::ToChronoMilliseconds(absl::GetFlag(FLAGS_drain_timeout));
  CW_LOG(kInfo, "%s: draining connections (up to %d ms)", strsignal(signal_number),
         drain_timeout.count());
  const size_t forced = (*server)->shutdown(drain_timeout);
  if (admin_server != nullptr) admin_server->shutdown();
  CW_LOG(kInfo, "stopped (%d connections closed at the deadline)", forced);
  metrics.reset();  // before the server it reads
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "connwarden [--config FILE] [--concurrency N] [--log-level LEVEL] [--drain-timeout D] "
      "[--state-dir DIR] [--admin-address ADDR] [--admin-tls-cert F --admin-tls-key F "
      "[--admin-tls-client-ca F]] [--admin-read-token-file F] [--admin-admin-token-file F] "
      "[--metrics-address HOST:PORT] [--metrics-connection-limit N] [--io-uring=false] "
      "[--validate]");
  // Operators write --log-level; Abseil's flag names have underscores. Accept both spellings.
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> normalized;
  for (std::string& arg : args) {
    if (arg.rfind("--", 0) == 0) {
      const size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + end, '-', '_');
    }
    normalized.push_back(arg.data());
  }
  absl::ParseCommandLine(argc, normalized.data());
  return run();
}
