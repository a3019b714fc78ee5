// connwarden-floor-relay: the least a proxy can do on this machine, as a reference row for
// tests/bench/proxy_bench.sh. It relays bytes between each client connection and an upstream
// connection of its own, opened when the client is accepted, and does nothing else: no parsing,
// no routing, no headers, no timers, no accounting. It is not an HTTP proxy (a client could not
// be moved to another upstream connection, nothing is checked), only a measure of what the
// kernel charges to any proxy that receives a request, sends it on, receives the response and
// sends it back: the loopback TCP path of each send (which runs the receiver's side too, and
// wakes it) and of each receive, with epoll(7) for readiness. A real proxy's CPU per request
// minus this one's is what its own code costs.
//
//   connwarden-floor-relay LISTEN_PORT UPSTREAM_PORT      # both on 127.0.0.1
//
// One thread, non-blocking sockets, edge-triggered epoll, recv(2)/send(2) into one 16 KiB buffer
// per direction. It prints "listening on 127.0.0.1:PORT" once it accepts, and runs until SIGTERM.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr size_t kBufferSize = 16384;

// One direction of a relayed pair: bytes read from `from` wait in `data` until `to` takes them.
struct Direction {
  int from = -1;
  int to = -1;
  char data[kBufferSize];
  size_t start = 0;
  size_t end = 0;
};

// A client connection and its upstream connection. Each socket's epoll data points at the
// direction it reads for; its peer's direction sends to it.
struct Pair {
  Direction up;    // client -> upstream
  Direction down;  // upstream -> client
  bool closed = false;
};

struct Owned;
struct Tag {
  Owned* owner;
  Pair* pair;
  bool client;  // the client socket (else the upstream one)
};

struct Owned {
  Pair pair;
  Tag client{this, &pair, true};
  Tag upstream{this, &pair, false};
};

int g_epoll = -1;

void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// Closed pairs, freed after the epoll batch that closed them (a later event of the same batch
// may still point at one).
std::vector<Owned*> g_closed;

void closePair(Owned* o) {
  if (o->pair.closed) return;
  o->pair.closed = true;
  close(o->pair.up.from);
  close(o->pair.down.from);
  g_closed.push_back(o);
}

// Sends what `d` holds; false when the pair must close.
bool flush(Direction& d) {
  while (d.start < d.end) {
    ssize_t n = send(d.to, d.data + d.start, d.end - d.start, MSG_NOSIGNAL);
    if (n > 0) {
      d.start += static_cast<size_t>(n);
    } else if (n < 0 && errno == EAGAIN) {
      return true;  // EPOLLOUT on d.to resumes it
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return false;
    }
  }
  d.start = d.end = 0;
  return true;
}

// Reads what `d.from` has and sends it on, while the buffer has room; false when the pair must
// close.
bool pump(Direction& d) {
  for (;;) {
    if (!flush(d)) return false;
    if (d.end != 0) return true;  // the peer is full: reading resumes after EPOLLOUT
    ssize_t n = recv(d.from, d.data, kBufferSize, 0);
    if (n > 0) {
      d.end = static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EAGAIN) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;  // end of stream or error: the relay has no half-close
  }
}

void watch(int fd, Tag* tag) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = tag;
  if (epoll_ctl(g_epoll, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
}

void accept_all(int listener, const sockaddr_in& upstream) {
  for (;;) {
    int c = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    int u = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(u, reinterpret_cast<const sockaddr*>(&upstream), sizeof upstream) != 0 &&
        errno != EINPROGRESS) {
      close(c);
      close(u);
      continue;
    }
    auto* o = new Owned;
    o->pair.up.from = c;
    o->pair.up.to = u;
    o->pair.down.from = u;
    o->pair.down.to = c;
    watch(c, &o->client);
    watch(u, &o->upstream);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT\n", argv[0]);
    return 2;
  }
  const sockaddr_in listen_at = loopback(std::atoi(argv[1]));
  const sockaddr_in upstream = loopback(std::atoi(argv[2]));
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listener, reinterpret_cast<const sockaddr*>(&listen_at), sizeof listen_at) != 0)
    die("bind");
  if (listen(listener, 4096) != 0) die("listen");
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &len);
  g_epoll = epoll_create1(EPOLL_CLOEXEC);
  if (g_epoll < 0) die("epoll_create1");
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.ptr = nullptr;
  if (epoll_ctl(g_epoll, EPOLL_CTL_ADD, listener, &lev) != 0) die("epoll_ctl");
  std::printf("listening on 127.0.0.1:%d\n", ntohs(bound.sin_port));
  std::fflush(stdout);

  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(g_epoll, events, 256, -1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; ++i) {
      auto* tag = static_cast<Tag*>(events[i].data.ptr);
      if (tag == nullptr) {
        accept_all(listener, upstream);
        continue;
      }
      Pair* p = tag->pair;
      if (p->closed) continue;
      // Readable: this socket's direction reads and sends on. Writable: the other direction,
      // which sends to this socket, may flush what it holds (and read more).
      Direction& reads = tag->client ? p->up : p->down;
      Direction& sends_here = tag->client ? p->down : p->up;
      bool ok = true;
      if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ok = pump(reads);
      if (ok && (events[i].events & EPOLLOUT)) ok = pump(sends_here);
      if (!ok) closePair(tag->owner);
    }
    for (Owned* o : g_closed) delete o;
    g_closed.clear();
  }
}
