// Helpers for tests with real sockets on 127.0.0.1: the demo application as a child process,
// the real server in-process, a blocking HTTP/1.1 client (plain or TLS), and self-signed
// certificates made with OpenSSL.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "sidecar/server/config.h"
#include "sidecar/server/server.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace connwarden::testing {

// Polls `condition` every millisecond until it holds or `timeout` passes.
bool waitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Sets whether the workers made while it lives may use io_uring (tests run their cases both
// ways: batched through io_uring, and one system call per read or send as with --io-uring=false
// or a seccomp profile that refuses io_uring).
struct IoUringAllowed {
  explicit IoUringAllowed(bool allowed) { event::Dispatcher::setIoUringAllowed(allowed); }
  ~IoUringAllowed() { event::Dispatcher::setIoUringAllowed(true); }
};

// A temporary directory, removed with its files on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A self-signed EC P-256 certificate for "localhost"/127.0.0.1, written as PEM files.
struct TestCertificate {
  std::string cert_file;
  std::string key_file;
};
TestCertificate makeSelfSignedCertificate(const TempDir& dir);

// The demo application (tests/demo) as a child process on a free port.
class DemoApp {
 public:
  // `access_log`: where the app records each request it receives ("" = none).
  explicit DemoApp(const std::string& access_log = "");
  ~DemoApp();
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
};

// The real server in this process: one listener on 127.0.0.1:0 (TLS when `tls` is set), one
// cluster "app" at `upstream` (or `config` as given).
class TestServer {
 public:
  explicit TestServer(server::ServerConfig config, uint32_t concurrency = 1,
                      const std::string& state_dir = "");
  ~TestServer();
  static server::ServerConfig simpleConfig(const std::string& upstream,
                                           const TestCertificate* tls = nullptr);

  uint16_t port(size_t listener = 0) const { return addresses_.at(listener).port(); }
  server::Server& server() { return *server_; }
  size_t connectionCount() { return server_->connectionCount(); }
  // Runs `fn` on worker `index` and waits for it.
  void runOnWorker(uint32_t index, const std::function<void(server::Worker&)>& fn);
  // Every open connection, through the control interface.
  std::vector<conn::ConnectionSnapshot> connections();
  // Closes by `reason` since start, over all workers.
  uint64_t closes(network::CloseReason reason);

 private:
  std::unique_ptr<server::Server> server_;
  std::vector<network::Address> addresses_;
};

struct HttpResponse {
  int status = 0;
  std::string status_line;
  std::multimap<std::string, std::string> headers;  // names lower-cased
  std::string body;
  bool chunked = false;
  std::string header(const std::string& name) const;
};

// A blocking client connection with a receive timeout, so a test never hangs.
class TestClient {
 public:
  // Connects to 127.0.0.1:port; with `tls`, completes a TLS handshake (ALPN http/1.1,
  // certificate not verified). Check connected(). A `receive_buffer` (SO_RCVBUF) is set before
  // connecting: shrunk afterwards, the window the kernel already advertised can leave the
  // sender in zero-window probing for seconds.
  explicit TestClient(uint16_t port, bool tls = false, const std::string& sni = "",
                      int receive_buffer = 0);
  ~TestClient();
  bool connected() const { return fd_ >= 0 && (!tls_ || ssl_ != nullptr); }

  bool send(const std::string& data);
  // Reads one response; nullopt if the connection closed or timed out first.
  std::optional<HttpResponse> readResponse(bool head_request = false);
  // Reads up to `max` bytes; "" on close or timeout.
  std::string readSome(size_t max = 65536);
  // True if the peer closed the connection (reads EOF or reset) within `timeout`.
  bool waitForClose(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  void shutdownWrite();
  int fd() const { return fd_; }
  std::string alpn() const;
  void setReceiveTimeout(std::chrono::milliseconds timeout);

 private:
  // Fills buffered_ with more bytes; false on close/timeout.
  bool fill();
  bool readLine(std::string* line);
  bool readExactly(size_t n, std::string* out);

  int fd_ = -1;
  bool tls_ = false;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string buffered_;
};

// "GET path HTTP/1.1" with Host: localhost, and extra header lines (each ending in \r\n).
std::string getRequest(const std::string& path, const std::string& extra_headers = "");

// Bytes allocated on the heap right now (glibc mallinfo2, all arenas; ASan's own count in a
// sanitizer build), plus our slab pools' chunks.
size_t heapInUse();
// False in a sanitizer build: its allocator holds freed memory in quarantine, so the process's
// RSS does not follow frees.
constexpr bool kRssFollowsFrees =
#ifdef __SANITIZE_ADDRESS__
    false;
#else
    true;
#endif
// The process's resident set size in bytes (/proc/self/smaps_rollup, exact).
size_t residentBytes();
// Its resident anonymous memory (heaps, stacks, mappings of no file): without the code pages
// that a first call of a library function faults in.
size_t residentAnonymousBytes();

}  // namespace connwarden::testing
