#include "sidecar/stats/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string_view>
#include <thread>
#include <vector>

#include "CivetServer.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace connwarden::stats {
namespace {

void reply(mg_connection* connection, int status, std::string_view content_type,
           std::string_view body) {
  mg_printf(connection,
            "HTTP/1.1 %d %s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\n"
            "Connection: close\r\n\r\n",
            status, mg_get_response_code_text(connection, status),
            static_cast<int>(content_type.size()), content_type.data(), body.size());
  mg_write(connection, body.data(), body.size());
}

// civetweb reports why it could not start through this callback, on the thread running its
// constructor; later messages (other threads) are dropped.
thread_local std::string* start_errors = nullptr;
int logStartError(const mg_connection*, const char* message) {
  if (start_errors != nullptr) absl::StrAppend(start_errors, start_errors->empty() ? "" : "; ", message);
  return 1;
}

}  // namespace

class MetricsServer::Handler : public CivetHandler {
 public:
  enum class Kind { kMetrics, kLive, kReady };
  Handler(MetricsServer& server, Kind kind) : server_(server), kind_(kind) {}
  bool handleGet(CivetServer*, mg_connection* connection) override {
    switch (kind_) {
      case Kind::kMetrics: {
        const std::string body =
            prometheus::TextSerializer().Serialize(server_.collectable_->Collect());
        reply(connection, 200, "text/plain; version=0.0.4; charset=utf-8", body);
        break;
      }
      case Kind::kLive:
        reply(connection, 200, "text/plain", "ok\n");
        break;
      case Kind::kReady:
        if (server_.ready_()) {
          reply(connection, 200, "text/plain", "ready\n");
        } else {
          reply(connection, 503, "text/plain", "draining\n");
        }
        break;
    }
    return true;
  }

 private:
  MetricsServer& server_;
  const Kind kind_;
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::start(
    const std::string& address, std::shared_ptr<prometheus::Collectable> collectable,
    std::function<bool()> ready) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address \"", address, "\": want host:port, e.g. 0.0.0.0:9901"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->host_ = address.substr(0, colon);
  server->collectable_ = std::move(collectable);
  server->ready_ = std::move(ready);
  const std::vector<std::string> options = {"listening_ports", address, "num_threads", "2"};
  CivetCallbacks callbacks;
  callbacks.log_message = &logStartError;
  std::string errors;
  try {
    start_errors = &errors;
    struct Reset {
      ~Reset() { start_errors = nullptr; }
    } reset;
    server->server_ = std::make_unique<CivetServer>(options, &callbacks);
  } catch (const CivetException& e) {
    return absl::UnavailableError(absl::StrCat("metrics address ", address, ": cannot listen (",
                                               errors.empty() ? e.what() : errors, ")"));
  }
  server->metrics_handler_ = std::make_unique<Handler>(*server, Handler::Kind::kMetrics);
  server->live_handler_ = std::make_unique<Handler>(*server, Handler::Kind::kLive);
  server->ready_handler_ = std::make_unique<Handler>(*server, Handler::Kind::kReady);
  server->server_->addHandler("/metrics", *server->metrics_handler_);
  server->server_->addHandler("/healthz", *server->live_handler_);
  server->server_->addHandler("/livez", *server->live_handler_);
  server->server_->addHandler("/readyz", *server->ready_handler_);
  const std::vector<int> ports = server->server_->getListeningPorts();
  server->port_ = ports.empty() ? port : ports.front();
  return server;
}

MetricsServer::~MetricsServer() {
  if (server_ == nullptr) return;
  // civetweb's accept loop notices the stop only when its poll() returns, after up to 2 s: a
  // connection to the listener wakes it at once (shutdown would otherwise wait for it).
  std::atomic<bool> stopped{false};
  std::thread stopper([this, &stopped] {
    server_->close();
    stopped.store(true);
  });
  sockaddr_in wake{};
  wake.sin_family = AF_INET;
  wake.sin_port = htons(static_cast<uint16_t>(port_));
  if (inet_pton(AF_INET, host_.c_str(), &wake.sin_addr) != 1 || wake.sin_addr.s_addr == 0) {
    wake.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  while (!stopped.load()) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      connect(fd, reinterpret_cast<const sockaddr*>(&wake), sizeof(wake));
      ::close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stopper.join();
}

}  // namespace connwarden::stats
