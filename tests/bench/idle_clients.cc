// connwarden-idle-clients: the client side of tests/bench/idle_bench.sh. It opens many keep-alive
// connections to an HTTP/1.1 server (plain, or TLS 1.3 without certificate checks), sends one GET
// on each, reads each response to the end of its Content-Length body, then holds every connection
// open and idle, so that the script can read how much memory the server keeps per idle connection.
//
//   connwarden-idle-clients [--tls] [--conns N] [--path PATH] [--in-flight K] [--timeout SECONDS]
//                           [--close] [--source ADDR] [--sources S] HOST:PORT
//
// Single-threaded, non-blocking sockets on epoll. At most K connections are between connect() and
// the end of their response at any time, so the server's accept queue never overflows. Once every
// connection has its response, or the timeout has passed, stdout gets one line:
//
//   ready N            N connections got a 200 and their whole body, none failed
//   ready N failed F   N did, F did not (the reasons, counted, go to stderr)
//
// and then a line "open M" each time the server closes some of the held connections. It exits on
// SIGTERM or SIGINT, or when stdin reaches end of file if stdin is a pipe or a terminal. With
// --close, each connection is closed as soon as its response is complete and the program exits
// after "ready": a warm-up that never has more than K connections open.
//
// Source addresses: by default the kernel picks the source address and port of each connection,
// and one source address has only the ephemeral port range (net.ipv4.ip_local_port_range, ~28 000
// ports) toward one HOST:PORT. With --source ADDR (and --sources S, default 1), connection i is
// bound before connect() to ADDR + (i mod S), the S consecutive IPv4 addresses from ADDR (every
// 127.x.y.z is local on Linux), with IP_BIND_ADDRESS_NO_PORT so that the port is chosen at
// connect() for the whole 4-tuple and each source address has the full range to itself:
// 100 000 connections to one port need S >= 4. --sources alone starts from 127.0.0.1. A
// separate set of sources also lets a script single these connections out by peer address.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace connwarden::bench {
namespace {

// A response's header section larger than this is an error.
constexpr size_t kMaxHeadBytes = 16 * 1024;
// epoll tags of the two descriptors that are not connections (connections are tagged by index).
constexpr uint64_t kSignalTag = UINT64_MAX;
constexpr uint64_t kStdinTag = UINT64_MAX - 1;

struct Options {
  bool tls = false;
  size_t conns = 100;
  std::string path = "/";
  size_t in_flight = 200;
  int timeout_s = 60;
  bool close = false;
  sockaddr_in address{};
  in_addr_t first_source = 0;  // host byte order; 0: the kernel picks
  uint32_t sources = 1;
};

enum class State { kUnstarted, kConnecting, kHandshake, kSending, kReading, kIdle, kClosed };

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  State state = State::kUnstarted;
  uint32_t interest = 0;  // epoll events asked for
  size_t sent = 0;        // request bytes written
  std::string head;       // response bytes until the end of the header section
  bool head_done = false;
  uint64_t body_left = 0;
};

// Outcome of one read, write or handshake step.
enum class Io { kDone, kWantRead, kWantWrite, kEof, kError };

std::string Errno(const char* what, int err) { return std::string(what) + ": " + strerror(err); }

// The first OpenSSL error queued, or `fallback`; empties the queue.
std::string TlsError(const char* what, const std::string& fallback) {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return std::string(what) + ": " + fallback;
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return std::string(what) + ": " + text;
}

// Status 200 and a Content-Length: sets *length. Otherwise a reason in *error.
bool ParseHead(std::string_view head, uint64_t* length, std::string* error) {
  if (head.size() < 12 || head.substr(0, 7) != "HTTP/1." || head.substr(9, 3) != "200") {
    *error = "status line '" + std::string(head.substr(0, head.find('\r'))) + "'";
    return false;
  }
  bool found = false;
  for (size_t at = head.find("\r\n"); at != std::string_view::npos && at + 2 < head.size();) {
    size_t end = head.find("\r\n", at + 2);
    std::string_view line = head.substr(at + 2, end - at - 2);
    at = end;
    if (line.size() > 15 && strncasecmp(line.data(), "content-length:", 15) == 0) {
      *length = strtoull(std::string(line.substr(15)).c_str(), nullptr, 10);
      found = true;
    } else if (line.size() > 18 && strncasecmp(line.data(), "transfer-encoding:", 18) == 0) {
      *error = "Transfer-Encoding in the response (only Content-Length is supported)";
      return false;
    }
  }
  if (!found) *error = "no Content-Length in the response";
  return found;
}

class Clients {
 public:
  Clients(const Options& options, SSL_CTX* tls, int epoll_fd)
      : options_(options),
        tls_(tls),
        epoll_fd_(epoll_fd),
        request_("GET " + options.path + " HTTP/1.1\r\nHost: x\r\n\r\n"),
        conns_(options.conns) {}

  // Opens every connection and reads every response, within the timeout; then prints "ready".
  // False if a signal came first.
  bool Open() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options_.timeout_s);
    while (ok_ + failed_ < conns_.size()) {
      while (in_flight_ < options_.in_flight && next_ < conns_.size()) Start(conns_[next_++]);
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        for (Conn& c : conns_) {
          if (c.state != State::kIdle && c.state != State::kClosed) Fail(c, "timed out");
        }
        break;
      }
      if (!Wait(static_cast<int>(left.count()) + 1)) return false;
    }
    printf(failed_ ? "ready %zu failed %zu\n" : "ready %zu\n", ok_, failed_);
    if (!options_.close && open_ != ok_) printf("open %zu\n", open_);  // the server closed some
    fflush(stdout);
    for (const auto& [reason, count] : failures_) {
      fprintf(stderr, "connwarden-idle-clients: %zu connection(s): %s\n", count, reason.c_str());
    }
    ready_ = true;
    return true;
  }

  // Holds the connections until a signal or the end of stdin.
  void Hold() {
    Watch(STDIN_FILENO, EPOLLIN, kStdinTag, /*optional=*/true);
    while (Wait(-1)) {
    }
  }

  // Adds a descriptor to the epoll set. An optional one may be unpollable (stdin on /dev/null
  // or a regular file): then it is not watched.
  void Watch(int fd, uint32_t events, uint64_t tag, bool optional) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) == 0 || (optional && errno == EPERM)) return;
    perror("connwarden-idle-clients: epoll_ctl");
    exit(1);
  }

 private:
  // Handles one batch of events; false when it is time to exit.
  bool Wait(int timeout_ms) {
    epoll_event events[256];
    int n = epoll_wait(epoll_fd_, events, 256, timeout_ms);
    if (n < 0 && errno != EINTR) {
      perror("connwarden-idle-clients: epoll_wait");
      exit(1);
    }
    size_t open_before = open_;
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kSignalTag) return false;
      if (tag == kStdinTag) {
        if (read(STDIN_FILENO, buffer_, sizeof buffer_) <= 0) return false;
      } else if (conns_[tag].state == State::kIdle) {
        CheckIdle(conns_[tag]);
      } else {
        Step(conns_[tag]);
      }
    }
    if (ready_ && open_ != open_before) {
      printf("open %zu\n", open_);
      fflush(stdout);
    }
    return true;
  }

  void Start(Conn& c) {
    ++in_flight_;
    c.state = State::kConnecting;
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return Fail(c, Errno("socket", errno));
    Watch(c.fd, 0, &c - conns_.data(), /*optional=*/false);
    if (options_.first_source != 0) {
      const size_t index = &c - conns_.data();
      sockaddr_in source{};
      source.sin_family = AF_INET;
      source.sin_addr.s_addr = htonl(options_.first_source + index % options_.sources);
      // Without it, bind() would take a port for the source address alone, and the ports of one
      // address would run out after ~28 000 connections whatever the destination.
      const int one = 1;
      if (setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0) {
        return Fail(c, Errno("setsockopt(IP_BIND_ADDRESS_NO_PORT)", errno));
      }
      if (bind(c.fd, reinterpret_cast<const sockaddr*>(&source), sizeof source) != 0) {
        return Fail(c, Errno("bind", errno));
      }
    }
    if (connect(c.fd, reinterpret_cast<const sockaddr*>(&options_.address),
                sizeof options_.address) == 0) {
      return Step(c);
    }
    if (errno != EINPROGRESS) return Fail(c, Errno("connect", errno));
    Want(c, EPOLLOUT);
  }

  // Moves a connection as far as it can go without blocking.
  void Step(Conn& c) {
    for (;;) {
      Io io = Io::kDone;
      std::string error;
      switch (c.state) {
        case State::kConnecting: {
          int err = 0;
          socklen_t len = sizeof err;
          getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
          if (err != 0) return Fail(c, Errno("connect", err));
          if (tls_ == nullptr) {
            c.state = State::kSending;
            continue;
          }
          c.ssl = SSL_new(tls_);
          if (c.ssl == nullptr || SSL_set_fd(c.ssl, c.fd) != 1) {
            return Fail(c, TlsError("SSL_new", "failed"));
          }
          SSL_set_connect_state(c.ssl);
          c.state = State::kHandshake;
          continue;
        }
        case State::kHandshake:
          io = TlsResult(c, SSL_do_handshake(c.ssl), "TLS handshake", &error);
          if (io == Io::kDone) c.state = State::kSending;
          break;
        case State::kSending: {
          size_t n = 0;
          io = Transfer(c, /*write=*/true, &request_[c.sent], request_.size() - c.sent, &n, &error);
          c.sent += n;
          if (io == Io::kDone && c.sent == request_.size()) c.state = State::kReading;
          break;
        }
        case State::kReading: {
          size_t n = 0;
          io = Transfer(c, /*write=*/false, buffer_, sizeof buffer_, &n, &error);
          if (io == Io::kDone) Consume(c, n);
          if (io == Io::kEof) error = "closed before the end of the response";
          break;
        }
        default:
          return;
      }
      if (io == Io::kWantRead) return Want(c, EPOLLIN);
      if (io == Io::kWantWrite) return Want(c, EPOLLOUT);
      if (io != Io::kDone) return Fail(c, error);
    }
  }

  // Takes n response bytes from buffer_.
  void Consume(Conn& c, size_t n) {
    std::string_view data(buffer_, n);
    if (!c.head_done) {
      size_t from = c.head.size() < 3 ? 0 : c.head.size() - 3;
      c.head.append(data);
      size_t end = c.head.find("\r\n\r\n", from);
      if (end == std::string::npos) {
        if (c.head.size() > kMaxHeadBytes) Fail(c, "response header section over 16 KiB");
        return;
      }
      std::string error;
      if (!ParseHead(std::string_view(c.head).substr(0, end + 2), &c.body_left, &error)) {
        return Fail(c, error);
      }
      data = data.substr(data.size() - (c.head.size() - end - 4));
      c.head_done = true;
      std::string().swap(c.head);
    }
    if (data.size() > c.body_left) return Fail(c, "more bytes than Content-Length");
    c.body_left -= data.size();
    if (c.body_left == 0) {
      --in_flight_;
      ++ok_;
      if (options_.close) return Close(c);
      c.state = State::kIdle;
      Want(c, EPOLLIN | EPOLLRDHUP);
      ++open_;
    }
  }

  // An idle connection became readable: the server closed it (or sent bytes, which are dropped).
  void CheckIdle(Conn& c) {
    size_t n = 0;
    std::string error;
    Io io = Transfer(c, /*write=*/false, buffer_, sizeof buffer_, &n, &error);
    if (io == Io::kEof || io == Io::kError) {
      Close(c);
      --open_;
    }
  }

  // One read or write, plain or TLS; *n = bytes moved.
  Io Transfer(Conn& c, bool write, char* data, size_t size, size_t* n, std::string* error) {
    if (c.ssl != nullptr) {
      int r = write ? SSL_write(c.ssl, data, static_cast<int>(size))
                    : SSL_read(c.ssl, data, static_cast<int>(size));
      if (r > 0) *n = static_cast<size_t>(r);
      return TlsResult(c, r, write ? "TLS write" : "TLS read", error);
    }
    ssize_t r = write ? send(c.fd, data, size, MSG_NOSIGNAL) : recv(c.fd, data, size, 0);
    if (r > 0) {
      *n = static_cast<size_t>(r);
      return Io::kDone;
    }
    if (r == 0) return Io::kEof;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return write ? Io::kWantWrite : Io::kWantRead;
    *error = Errno(write ? "send" : "recv", errno);
    return Io::kError;
  }

  Io TlsResult(Conn& c, int r, const char* what, std::string* error) {
    if (r > 0) return Io::kDone;
    int saved_errno = errno;
    switch (SSL_get_error(c.ssl, r)) {
      case SSL_ERROR_WANT_READ:
        return Io::kWantRead;
      case SSL_ERROR_WANT_WRITE:
        return Io::kWantWrite;
      case SSL_ERROR_ZERO_RETURN:
        return Io::kEof;
      case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && (r == 0 || saved_errno == 0)) return Io::kEof;
        *error = TlsError(what, strerror(saved_errno));
        return Io::kError;
      default:
        *error = TlsError(what, "failed");
        return Io::kError;
    }
  }

  void Want(Conn& c, uint32_t events) {
    if (c.interest == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = &c - conns_.data();
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev) != 0) {
      perror("connwarden-idle-clients: epoll_ctl");
      exit(1);
    }
    c.interest = events;
  }

  void Fail(Conn& c, const std::string& reason) {
    ++failures_[reason];
    ++failed_;
    if (c.state != State::kUnstarted) --in_flight_;
    Close(c);
  }

  void Close(Conn& c) {
    SSL_free(c.ssl);
    c.ssl = nullptr;
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    c.state = State::kClosed;
  }

  const Options options_;
  SSL_CTX* const tls_;
  const int epoll_fd_;
  std::string request_;
  std::vector<Conn> conns_;
  size_t next_ = 0;       // first connection not started yet
  size_t in_flight_ = 0;  // started, response not complete
  size_t ok_ = 0;
  size_t failed_ = 0;
  size_t open_ = 0;  // idle and still open
  bool ready_ = false;
  std::map<std::string, size_t> failures_;
  char buffer_[64 * 1024];  // every read lands here; bodies are only counted
};

[[noreturn]] void Usage(const char* error) {
  fprintf(stderr,
          "connwarden-idle-clients: %s\n"
          "usage: connwarden-idle-clients [--tls] [--conns N] [--path PATH] [--in-flight K] "
          "[--timeout SECONDS] [--close] [--source ADDR] [--sources S] HOST:PORT\n"
          "  --tls        TLS 1.3, no certificate verification\n"
          "  --conns      connections to open and hold (default 100)\n"
          "  --path       request path (default /)\n"
          "  --in-flight  connections opening at once (default 200)\n"
          "  --timeout    limit for opening all and reading their responses (default 60)\n"
          "  --close      close each connection after its response; exit once all are done\n"
          "  --source     bind connection i to ADDR + (i mod S) (default: the kernel picks)\n"
          "  --sources    S consecutive source addresses from ADDR (default 1; alone: from "
          "127.0.0.1)\n"
          "HOST is an IPv4 address.\n",
          error);
  exit(2);
}

size_t PositiveArg(const char* flag, const char* value) {
  char* end = nullptr;
  unsigned long long n = strtoull(value, &end, 10);
  if (*value == '\0' || *end != '\0' || n == 0 || n > 10'000'000) {
    Usage((std::string(flag) + " needs a positive integer").c_str());
  }
  return static_cast<size_t>(n);
}

Options ParseArgs(int argc, char** argv) {
  Options options;
  const char* target = nullptr;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--tls") {
      options.tls = true;
    } else if (arg == "--conns" && has_value) {
      options.conns = PositiveArg("--conns", argv[++i]);
    } else if (arg == "--path" && has_value) {
      options.path = argv[++i];
    } else if (arg == "--in-flight" && has_value) {
      options.in_flight = PositiveArg("--in-flight", argv[++i]);
    } else if (arg == "--timeout" && has_value) {
      options.timeout_s = static_cast<int>(PositiveArg("--timeout", argv[++i]));
    } else if (arg == "--close") {
      options.close = true;
    } else if (arg == "--source" && has_value) {
      in_addr source{};
      if (inet_pton(AF_INET, argv[++i], &source) != 1 || source.s_addr == 0) {
        Usage("--source needs an IPv4 address, such as 127.0.0.2");
      }
      options.first_source = ntohl(source.s_addr);
    } else if (arg == "--sources" && has_value) {
      options.sources = static_cast<uint32_t>(PositiveArg("--sources", argv[++i]));
    } else if (arg.substr(0, 2) != "--" && target == nullptr) {
      target = argv[i];
    } else {
      Usage(("unexpected argument " + std::string(arg)).c_str());
    }
  }
  if (target == nullptr) Usage("HOST:PORT missing");
  if (options.sources > 1 && options.first_source == 0) options.first_source = INADDR_LOOPBACK;
  if (options.first_source != 0 &&
      (options.sources > 65536 || options.first_source > UINT32_MAX - options.sources)) {
    Usage("--source + --sources runs past 255.255.255.255");
  }
  std::string_view text = target;
  size_t colon = text.rfind(':');
  std::string host(text.substr(0, colon));
  int port = colon == std::string_view::npos ? 0 : atoi(target + colon + 1);
  options.address.sin_family = AF_INET;
  options.address.sin_port = htons(static_cast<uint16_t>(port));
  if (port <= 0 || port > 65535 ||
      inet_pton(AF_INET, host.c_str(), &options.address.sin_addr) != 1) {
    Usage("HOST:PORT must be an IPv4 address and a port, such as 127.0.0.1:8080");
  }
  return options;
}

// One descriptor per connection plus a few: raise the soft limit, and the hard one if allowed.
void RaiseFileLimit(size_t conns) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  rlim_t need = conns + 16;
  if (limit.rlim_cur >= need) return;
  limit.rlim_cur = need;
  if (limit.rlim_max < need) limit.rlim_max = need;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    fprintf(stderr,
            "connwarden-idle-clients: needs %llu file descriptors: %s (raise the hard limit)\n",
            static_cast<unsigned long long>(need), strerror(errno));
    exit(1);
  }
}

SSL_CTX* MakeTlsContext() {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr || SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1) {
    fprintf(stderr, "%s\n", TlsError("connwarden-idle-clients: TLS context", "failed").c_str());
    exit(1);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  // Our own idle connections should stay small too; a server's EOF is a plain close.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  return ctx;
}

}  // namespace
}  // namespace connwarden::bench

int main(int argc, char** argv) {
  using namespace connwarden::bench;
  Options options = ParseArgs(argc, argv);
  RaiseFileLimit(options.conns);

  // SIGTERM and SIGINT arrive through a signalfd; writes to a closed socket fail with EPIPE.
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);
  int signal_fd = signalfd(-1, &stop, SFD_CLOEXEC);
  int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (signal_fd < 0 || epoll_fd < 0) {
    perror("connwarden-idle-clients: signalfd/epoll_create1");
    return 1;
  }

  Clients clients(options, options.tls ? MakeTlsContext() : nullptr, epoll_fd);
  clients.Watch(signal_fd, EPOLLIN, kSignalTag, /*optional=*/false);
  if (clients.Open() && !options.close) clients.Hold();
  return 0;
}
