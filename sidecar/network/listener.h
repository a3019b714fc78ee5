// A listening socket on one worker. Each worker binds its own socket to the listener's address
// with SO_REUSEPORT, so the kernel spreads new connections across workers without locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "sidecar/event/dispatcher.h"
#include "sidecar/network/address.h"
#include "sidecar/network/listener_config.h"
#include "sidecar/network/tls_transport_socket.h"

namespace connwarden::network {

// What the listeners of one configured listener share across workers. Created once by the
// server; read by every worker.
struct ListenerShared {
  ListenerConfig config;
  size_t index = 0;                      // in the server's listener list
  Address bound_address;                 // with the real port when config asked for port 0
  std::shared_ptr<const TlsContext> tls;  // null for plain listeners
  std::atomic<uint32_t> open_connections{0};
  std::atomic<uint64_t> overload_rejections{0};
  std::atomic<uint64_t> accept_errors{0};
};

class ListenerCallbacks {
 public:
  virtual ~ListenerCallbacks() = default;
  // A new connection; the callee owns `fd` (non-blocking, close-on-exec). The shared
  // open_connections count has already been incremented for it; the callee decrements it when
  // the connection closes.
  virtual void onAccept(int fd) = 0;
};

class Listener {
 public:
  // Binds a non-blocking, SO_REUSEPORT listening socket. The error names the address.
  static absl::StatusOr<int> bindSocket(const Address& address, int backlog = 4096);

  // Takes ownership of `listen_fd`. Accepting starts at once.
  Listener(event::Dispatcher& dispatcher, int listen_fd, ListenerShared& shared,
           ListenerCallbacks& callbacks);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Stops accepting for good (shutdown); the socket is closed so the kernel sends new clients
  // to other workers or refuses them.
  void stop();
  ListenerShared& shared() { return shared_; }

 private:
  void onAcceptReady();

  event::Dispatcher& dispatcher_;
  int fd_;
  ListenerShared& shared_;
  ListenerCallbacks& callbacks_;
  std::unique_ptr<event::FileEvent> file_event_;
  std::unique_ptr<event::Timer> retry_timer_;  // after EMFILE/ENFILE/ENOBUFS
};

}  // namespace connwarden::network
