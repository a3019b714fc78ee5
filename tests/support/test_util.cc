#include "tests/support/test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __SANITIZE_ADDRESS__
// From libasan (GCC on Debian does not ship <sanitizer/allocator_interface.h>).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <stdexcept>
#include <thread>

#include "sidecar/event/memory_account.h"
#include "sidecar/event/slab_pool.h"

namespace connwarden::testing {

bool waitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// --- TempDir, certificates ---------------------------------------------------------------------

TempDir::TempDir() {
  char tmpl[] = "/tmp/connwarden-test-XXXXXX";
  const char* made = mkdtemp(tmpl);
  if (made == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

TestCertificate makeSelfSignedCertificate(const TempDir& dir) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* san =
      X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  X509_add_ext(cert, san, -1);
  X509_EXTENSION_free(san);
  X509_sign(cert, key, EVP_sha256());

  TestCertificate out{dir.file("cert.pem"), dir.file("key.pem")};
  FILE* f = std::fopen(out.cert_file.c_str(), "w");
  PEM_write_X509(f, cert);
  std::fclose(f);
  f = std::fopen(out.key_file.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

// --- DemoApp ------------------------------------------------------------------------------------

DemoApp::DemoApp(const std::string& access_log) {
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<const char*> argv = {CW_DEMO_APP, "--address", "127.0.0.1", "--port", "0"};
    if (!access_log.empty()) {
      argv.push_back("--access-log");
      argv.push_back(access_log.c_str());
    }
    argv.push_back(nullptr);
    execv(CW_DEMO_APP, const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  close(out[1]);
  // The first line is "listening on 127.0.0.1:PORT".
  std::string line;
  char c;
  while (line.size() < 200 && read(out[0], &c, 1) == 1 && c != '\n') line += c;
  close(out[0]);
  const size_t colon = line.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("demo app did not start: " + line);
  port_ = static_cast<uint16_t>(std::atoi(line.c_str() + colon + 1));
}

DemoApp::~DemoApp() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
  }
}

// --- TestServer ---------------------------------------------------------------------------------

server::ServerConfig TestServer::simpleConfig(const std::string& upstream,
                                              const TestCertificate* tls) {
  server::ServerConfig config;
  network::ListenerConfig listener;
  listener.name = tls != nullptr ? "tls" : "plain";
  listener.address = *network::Address::parse("127.0.0.1:0");
  if (tls != nullptr) listener.tls = network::TlsConfig{tls->cert_file, tls->key_file, false};
  config.listeners.push_back(listener);
  http::ClusterConfig cluster;
  cluster.name = "app";
  cluster.addresses.push_back(*network::Address::parse(upstream));
  config.clusters.push_back(cluster);
  http::RouteConfig route;
  route.name = "default";
  route.cluster = "app";
  config.routes.push_back(route);
  return config;
}

TestServer::TestServer(server::ServerConfig config, uint32_t concurrency,
                       const std::string& state_dir) {
  auto server = server::Server::create(config, concurrency, state_dir);
  if (!server.ok()) throw std::runtime_error(std::string(server.status().message()));
  server_ = *std::move(server);
  addresses_ = server_->listenerAddresses();
  server_->start();
}

TestServer::~TestServer() { server_->shutdown(std::chrono::milliseconds(0)); }

void TestServer::runOnWorker(uint32_t index, const std::function<void(server::Worker&)>& fn) {
  std::promise<void> done;
  server::Worker& worker = server_->worker(index);
  worker.post([&] {
    fn(worker);
    done.set_value();
  });
  done.get_future().wait();
}

std::vector<conn::ConnectionSnapshot> TestServer::connections() {
  conn::ConnectionControl::ListRequest request;
  request.limit = conn::ConnectionControl::kMaxPage;
  auto result = server_->control().list(request, std::chrono::seconds(5));
  if (!result.ok()) throw std::runtime_error(std::string(result.status().message()));
  return std::move(result->connections);
}

uint64_t TestServer::closes(network::CloseReason reason) {
  uint64_t count = 0;
  for (uint32_t w = 0; w < server_->concurrency(); ++w) {
    runOnWorker(w, [&](server::Worker& worker) {
      count += worker.connections().closesByReason()[static_cast<size_t>(reason)];
    });
  }
  return count;
}

// --- TestClient ---------------------------------------------------------------------------------

std::string HttpResponse::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

TestClient::TestClient(uint16_t port, bool tls, const std::string& sni, int receive_buffer)
    : tls_(tls) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (receive_buffer > 0) {
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd_);
    fd_ = -1;
    return;
  }
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setReceiveTimeout(std::chrono::seconds(10));
  if (!tls) return;
  ctx_ = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  static const unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx_, kAlpn, sizeof(kAlpn) - 1);
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl_, sni.c_str());
  if (SSL_connect(ssl_) != 1) {
    ERR_clear_error();
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
}

TestClient::~TestClient() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  if (fd_ >= 0) close(fd_);
}

void TestClient::setReceiveTimeout(std::chrono::milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

bool TestClient::send(const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n;
    if (ssl_ != nullptr) {
      n = SSL_write(ssl_, data.data() + sent, static_cast<int>(data.size() - sent));
    } else {
      n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    }
    if (n <= 0) return false;
    sent += n;
  }
  return true;
}

bool TestClient::fill() {
  char buf[65536];
  ssize_t n;
  if (ssl_ != nullptr) {
    n = SSL_read(ssl_, buf, sizeof(buf));
    if (n <= 0) ERR_clear_error();
  } else {
    n = ::recv(fd_, buf, sizeof(buf), 0);
  }
  if (n <= 0) return false;
  buffered_.append(buf, n);
  return true;
}

std::string TestClient::readSome(size_t max) {
  if (buffered_.empty() && !fill()) return "";
  const std::string out = buffered_.substr(0, max);
  buffered_.erase(0, out.size());
  return out;
}

bool TestClient::readLine(std::string* line) {
  size_t pos;
  while ((pos = buffered_.find("\r\n")) == std::string::npos) {
    if (buffered_.size() > 1 << 20 || !fill()) return false;
  }
  *line = buffered_.substr(0, pos);
  buffered_.erase(0, pos + 2);
  return true;
}

bool TestClient::readExactly(size_t n, std::string* out) {
  while (buffered_.size() < n) {
    if (!fill()) return false;
  }
  out->append(buffered_, 0, n);
  buffered_.erase(0, n);
  return true;
}

std::optional<HttpResponse> TestClient::readResponse(bool head_request) {
  HttpResponse response;
  while (true) {
    std::string line;
    if (!readLine(&response.status_line)) return std::nullopt;
    if (response.status_line.size() < 12) return std::nullopt;
    response.status = std::atoi(response.status_line.c_str() + 9);
    response.headers.clear();
    while (true) {
      if (!readLine(&line)) return std::nullopt;
      if (line.empty()) break;
      const size_t colon = line.find(':');
      if (colon == std::string::npos) return std::nullopt;
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), ::tolower);
      size_t start = colon + 1;
      while (start < line.size() && line[start] == ' ') ++start;
      response.headers.emplace(name, line.substr(start));
    }
    if (response.status >= 100 && response.status < 200 && response.status != 101) continue;
    break;
  }
  if (head_request || response.status == 204 || response.status == 304 ||
      response.status == 101) {
    return response;
  }
  const std::string te = response.header("transfer-encoding");
  const std::string cl = response.header("content-length");
  if (te.find("chunked") != std::string::npos) {
    response.chunked = true;
    while (true) {
      std::string size_line;
      if (!readLine(&size_line)) return std::nullopt;
      const size_t size = std::strtoul(size_line.c_str(), nullptr, 16);
      if (size == 0) {
        std::string trailer;
        do {
          if (!readLine(&trailer)) return std::nullopt;
        } while (!trailer.empty());
        break;
      }
      std::string crlf;
      if (!readExactly(size, &response.body) || !readExactly(2, &crlf)) return std::nullopt;
    }
  } else if (!cl.empty()) {
    if (!readExactly(std::strtoull(cl.c_str(), nullptr, 10), &response.body)) return std::nullopt;
  } else {
    while (fill()) {
    }
    response.body = std::move(buffered_);
    buffered_.clear();
  }
  // A large body must not stay behind as spare capacity (memory tests measure the process).
  if (buffered_.empty()) std::string().swap(buffered_);
  return response;
}

bool TestClient::waitForClose(std::chrono::milliseconds timeout) {
  setReceiveTimeout(timeout);
  buffered_.clear();
  char buf[4096];
  while (true) {
    ssize_t n;
    if (ssl_ != nullptr) {
      n = SSL_read(ssl_, buf, sizeof(buf));
      if (n <= 0) {
        const int err = SSL_get_error(ssl_, static_cast<int>(n));
        ERR_clear_error();
        return !(err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK));
      }
    } else {
      n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n == 0) return true;
      if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
    }
  }
}

void TestClient::shutdownWrite() { ::shutdown(fd_, SHUT_WR); }

std::string TestClient::alpn() const {
  if (ssl_ == nullptr) return "";
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

std::string getRequest(const std::string& path, const std::string& extra_headers) {
  return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers + "\r\n";
}

namespace {
// A "Field:   N kB" line of /proc/self/smaps_rollup, in bytes; false if it cannot be read.
// smaps_rollup walks the page tables: exact, where statm's counters may lag by some pages.
bool smapsRollup(const char* field, size_t* bytes) {
  std::FILE* file = std::fopen("/proc/self/smaps_rollup", "r");
  if (file == nullptr) return false;
  const std::string format = std::string(field) + ": %zu kB";
  char line[256];
  size_t kib = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, file) != nullptr) {
    found = std::sscanf(line, format.c_str(), &kib) == 1;
  }
  std::fclose(file);
  if (found) *bytes = kib * 1024;
  return found;
}
}  // namespace

size_t residentBytes() {
  size_t bytes = 0;
  if (smapsRollup("Rss", &bytes)) return bytes;
  std::FILE* file = std::fopen("/proc/self/statm", "r");
  if (file == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(file, "%lu %lu", &size, &resident);
  std::fclose(file);
  return n == 2 ? resident * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

size_t residentAnonymousBytes() {
  size_t bytes = 0;
  return smapsRollup("Anonymous", &bytes) ? bytes : 0;
}

size_t heapInUse() {
  // Plus the slab pools' chunks, which are mapped apart from malloc's heap; less the spare
  // evbuffer chains the threads keep (charged to no account).
#ifdef __SANITIZE_ADDRESS__
  // ASan's allocator replaces glibc's; it keeps its own count (of bytes asked for).
  return __sanitizer_get_current_allocated_bytes() + event::SlabPool::allChunkBytes() -
         static_cast<size_t>(event::spareChainBytes());
#else
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd + event::SlabPool::allChunkBytes() -
         static_cast<size_t>(event::spareChainBytes());
#endif
}

}  // namespace connwarden::testing

namespace {
// The server under test writes to sockets whose peers may be gone (OpenSSL uses write(2)).
const bool kIgnoreSigpipe = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();
}  // namespace
