// Fuzzes the whole path of one client connection through the real server: listener, connection,
// the TLS transport after its handshake (records, close_notify), ServerSession, the HTTP/1
// codecs, ProxyStream, the upstream pool and its queue, tunnels, timeouts and the close. The fuzzer's bytes are what a client sends on a fresh connection and what the
// application answers to each request head it receives. Everything runs on real sockets on
// 127.0.0.1: one worker, and an application of the harness's own on a thread of its own.
//
// Input: a flags byte, two bytes of little-endian length L, then the client's bytes (the next L
// bytes, or fewer) and the application's answer (the rest).
//   flags & 7   the size of the client's writes (readSize)
//   flags & 8   the client keeps its side open (else it shuts it down after writing)
//   flags & 16  the application closes its connection after answering (else keeps it open)
//   flags & 32  the client speaks TLS 1.3 to a TLS listener (each write one record; the
//               half-close is close_notify, then FIN)
//
// Invariants, besides no crash, leak or sanitizer report:
//   - what the client receives is HTTP from its first byte: a status line;
//   - the connection is gone from the server soon after the client closes it, or at most 3 s
//     after the application closes its connections too (no hang, no connection left behind).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "sidecar/event/log.h"
#include "sidecar/server/server.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/support/test_util.h"

namespace connwarden {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int listenOnLoopback(uint16_t* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FUZZ_CHECK(fd >= 0, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  FUZZ_CHECK(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0, "bind");
  FUZZ_CHECK(listen(fd, 64) == 0, "listen");
  FUZZ_CHECK(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0, "getsockname");
  *port = ntohs(a.sin_port);
  return fd;
}

// The application: answers every request head it reads (up to an empty line) with the current
// script's bytes, and closes the connection after that if the script says so, or when the proxy
// closes its side. One thread, poll(2), blocking sends.
class ScriptedApp {
 public:
  ScriptedApp() : listener_(listenOnLoopback(&port_)) {
    FUZZ_CHECK(pipe(wake_) == 0, "pipe");
    thread_ = std::thread([this] { run(); });
  }
  ~ScriptedApp() {
    const char stop = 's';
    FUZZ_CHECK(write(wake_[1], &stop, 1) == 1, "write");
    thread_.join();
    for (auto& [fd, pending] : connections_) close(fd);
    close(listener_);
    close(wake_[0]);
    close(wake_[1]);
  }
  uint16_t port() const { return port_; }
  // Closes every connection the proxy has open to the application (after a call, once the
  // application's thread gets to it).
  void closeAll() {
    const char close_all = 'c';
    FUZZ_CHECK(write(wake_[1], &close_all, 1) == 1, "write");
  }
  void setScript(std::string answer, bool close_after) {
    std::lock_guard<std::mutex> lock(mu_);
    answer_ = std::move(answer);
    close_after_ = close_after;
  }

 private:
  void run() {
    for (;;) {
      std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listener_, POLLIN, 0}};
      for (auto& [fd, pending] : connections_) fds.push_back({fd, POLLIN, 0});
      if (poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[0].revents != 0) {
        char command = 's';
        if (read(wake_[0], &command, 1) != 1 || command == 's') return;
        for (auto& [fd, pending] : connections_) close(fd);
        connections_.clear();
        continue;
      }
      if (fds[1].revents & POLLIN) {
        int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) connections_[fd];
      }
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents != 0) serve(fds[i].fd);
      }
    }
  }

  // Reads what the proxy sent on `fd` and answers each complete head in it.
  void serve(int fd) {
    char buf[16384];
    const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      close(fd);
      connections_.erase(fd);
      return;
    }
    if (n < 0) return;
    std::string& pending = connections_[fd];
    pending.append(buf, static_cast<size_t>(n));
    std::string answer;
    bool close_after;
    {
      std::lock_guard<std::mutex> lock(mu_);
      answer = answer_;
      close_after = close_after_;
    }
    for (size_t end; (end = pending.find("\r\n\r\n")) != std::string::npos;) {
      pending.erase(0, end + 4);
      // Blocking, bounded: the proxy reads its upstream unless its client is slow, and the
      // fuzzing client always reads.
      for (size_t sent = 0; sent < answer.size();) {
        const ssize_t w = send(fd, answer.data() + sent, answer.size() - sent, MSG_NOSIGNAL);
        if (w <= 0) break;
        sent += static_cast<size_t>(w);
      }
      if (close_after) {
        close(fd);
        connections_.erase(fd);
        return;
      }
    }
  }

  uint16_t port_ = 0;
  int listener_;
  int wake_[2];
  std::thread thread_;
  std::map<int, std::string> connections_;  // the bytes after the last head, per connection
  std::mutex mu_;
  std::string answer_;
  bool close_after_ = false;
};

// One server (a plain and a TLS listener) and one application for the whole run: starting them
// costs more than an input.
struct Harness {
  Harness() : cert(testing::makeSelfSignedCertificate(dir)) {
    event::setLogLevel(event::LogLevel::kOff);
    server::ServerConfig config =
        testing::TestServer::simpleConfig("127.0.0.1:" + std::to_string(app.port()));
    server::ServerConfig tls = testing::TestServer::simpleConfig("127.0.0.1:1", &cert);
    config.listeners.push_back(tls.listeners[0]);
    // Short enough that an input waiting on one stays cheap.
    config.clusters[0].response_timeout = milliseconds(100);
    config.clusters[0].connect_timeout = milliseconds(500);
    config.clusters[0].response_idle_timeout = milliseconds(100);
    // The connection limit and its queue are on the path too.
    config.clusters[0].max_connections = 2;
    config.clusters[0].queue_timeout = milliseconds(100);
    server = std::make_unique<testing::TestServer>(config);
    client_tls = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client_tls, SSL_VERIFY_NONE, nullptr);
    SSL_CTX_set_min_proto_version(client_tls, TLS1_3_VERSION);
  }
  ~Harness() { SSL_CTX_free(client_tls); }
  testing::TempDir dir;
  testing::TestCertificate cert;
  ScriptedApp app;
  std::unique_ptr<testing::TestServer> server;
  SSL_CTX* client_tls = nullptr;
};

// The fuzzing client's connection: plain, or TLS over a handshake done before the input's bytes.
class Client {
 public:
  Client(uint16_t port, SSL_CTX* tls) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd_ >= 0, "socket");
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0, "connect");
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (tls != nullptr) {
      ssl_ = SSL_new(tls);
      SSL_set_fd(ssl_, fd_);
      FUZZ_CHECK(SSL_connect(ssl_) == 1, "the TLS handshake with the server failed");
      // From here the socket does not block: a blocking SSL_read would wait past the session
      // tickets for application data that may never come.
      FUZZ_CHECK(fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK) == 0, "fcntl");
    }
  }
  ~Client() {
    SSL_free(ssl_);
    close(fd_);
  }
  // False once the server has closed (a bad request): the rest is not sent.
  bool send(std::string_view piece) {
    if (ssl_ != nullptr) {
      const Clock::time_point deadline = Clock::now() + std::chrono::seconds(1);
      for (;;) {
        const int n = SSL_write(ssl_, piece.data(), static_cast<int>(piece.size()));
        if (n == static_cast<int>(piece.size())) return true;
        if (SSL_get_error(ssl_, n) != SSL_ERROR_WANT_WRITE || Clock::now() >= deadline) {
          return false;
        }
        pollfd p{fd_, POLLOUT, 0};
        poll(&p, 1, 10);
      }
    }
    return ::send(fd_, piece.data(), piece.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(piece.size());
  }
  void halfClose() {
    if (ssl_ != nullptr) SSL_shutdown(ssl_);  // close_notify
    shutdown(fd_, SHUT_WR);
  }
  // What the server sends until it closes, the connection has been quiet for `quiet`, or one
  // second has passed.
  std::string readAll(milliseconds quiet) {
    std::string out;
    const Clock::time_point deadline = Clock::now() + std::chrono::seconds(1);
    char buf[16384];
    for (;;) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return out;
      if (ssl_ == nullptr || SSL_pending(ssl_) == 0) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(std::min(left, quiet).count())) <= 0) return out;
      }
      const ssize_t n = ssl_ != nullptr ? SSL_read(ssl_, buf, sizeof(buf))
                                        : recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
      } else if (ssl_ == nullptr || SSL_get_error(ssl_, static_cast<int>(n)) != SSL_ERROR_WANT_READ) {
        return out;  // the end, or an error
      }
    }
  }

 private:
  int fd_ = -1;
  SSL* ssl_ = nullptr;
};

}  // namespace
}  // namespace connwarden

// LeakSanitizer checks before the static harness is destroyed (libFuzzer runs it at the end of
// a run), while the server's worker still runs. That worker's OpenSSL state (its random
// generator and error queue, made by warmUpTlsForThisThread) is then held only through a
// pthread key, where LeakSanitizer does not look, and would be reported as leaked. OpenSSL's
// frames end the stacks it reports (no frame pointers), so the suppression is the whole
// library: a TLS object our code failed to free is caught by the TLS tests under
// `make test-asan`, which check for leaks after the server has stopped.
extern "C" const char* __lsan_default_suppressions() { return "leak:libcrypto.so\n"; }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace connwarden;
  static Harness harness;
  fuzz::FuzzInput input(data, size);
  const uint8_t flags = input.takeByte();
  const size_t client_len = input.takeByte() | (size_t{input.takeByte()} << 8);
  const std::string_view rest = input.rest();
  const std::string_view client = rest.substr(0, std::min(client_len, rest.size()));
  const std::string_view answer = rest.substr(client.size());
  harness.app.setScript(std::string(answer), (flags & 16) != 0);

  {
    const bool tls = (flags & 32) != 0;
    Client connection(harness.server->port(tls ? 1 : 0), tls ? harness.client_tls : nullptr);
    const size_t step = fuzz::readSize(flags, client.size());
    for (size_t at = 0; at < client.size(); at += step) {
      if (!connection.send(client.substr(at, step))) break;
    }
    const bool half_close = (flags & 8) == 0;
    if (half_close) connection.halfClose();
    const std::string received = connection.readAll(milliseconds(half_close ? 150 : 5));
    FUZZ_CHECK(received.empty() || received.rfind("HTTP/1.1 ", 0) == 0,
               "the client got bytes that are not a response: " + received.substr(0, 64));
  }

  // The connection leaves the server soon after the client is gone; or, if the server still
  // waits on the application (a response until close that stalls: the client's FIN alone does
  // not end it, as HTTP allows half-closed clients), once the application is gone too.
  auto openAfter = [&](milliseconds limit) {
    const Clock::time_point deadline = Clock::now() + limit;
    size_t open = harness.server->connectionCount();
    while (open != 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(1));
      open = harness.server->connectionCount();
    }
    return open;
  };
  if (openAfter(milliseconds(20)) == 0) return 0;
  harness.app.closeAll();
  const size_t open = openAfter(std::chrono::seconds(3));
  FUZZ_CHECK(open == 0, std::to_string(open) +
                            " connection(s) still open 3 s after both the client and the "
                            "application left");
  return 0;
}
