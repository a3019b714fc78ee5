// The gRPC admin server (DESIGN §5): connwarden.admin.v1.ConnectionAdmin, server reflection and
// grpc.health.v1.Health, on its own threads. It reaches connections only through
// conn::ConnectionControl, with a deadline on every call. This header includes no gRPC header,
// so that main.cc and the rest of the sidecar never see one.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sidecar/conn/control.h"

namespace connwarden::admin {

struct AdminOptions {
  // "host:port" (port 0 picks one), "[::1]:port", or "unix:/path".
  std::string address = "127.0.0.1:9090";
  // TLS when both are set (PEM files). With `tls_client_ca_file`, clients must present a
  // certificate signed by it (mutual TLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  // Bearer tokens, one a line ('#' comments and blank lines skipped). With neither file, calls
  // need no token. `read` tokens may list, get, watch, read policies and server info; `admin`
  // tokens may do everything.
  std::string read_token_file;
  std::string admin_token_file;
  // Longest wait for the workers in one call (shorter when the client's deadline is nearer).
  std::chrono::milliseconds call_timeout{5000};
  // Events a watcher may have waiting; past it its stream ends with RESOURCE_EXHAUSTED.
  size_t watch_queue_capacity = 4096;

  // What the server reports about the data plane (GetServerInfo) and checks selectors against.
  struct Listener {
    std::string name;
    std::string address;
    bool tls = false;
  };
  std::vector<Listener> listeners;
};

class AdminServer {
 public:
  // Binds and starts serving. UNAVAILABLE naming the address when it cannot listen (in use, not
  // allowed); INVALID_ARGUMENT naming the option for unreadable TLS or token files.
  // `control` must outlive the server.
  static absl::StatusOr<std::unique_ptr<AdminServer>> start(const AdminOptions& options,
                                                            conn::ConnectionControl& control);
  // Stops: open watches end (CANCELLED), calls in progress get up to a second to finish.
  ~AdminServer();
  void shutdown();

  // Where it listens: "127.0.0.1:<real port>" for a port-0 address; the address as given for
  // unix: addresses.
  const std::string& boundAddress() const;
  const std::string& instanceId() const;

  struct Impl;

 private:
  explicit AdminServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace connwarden::admin
