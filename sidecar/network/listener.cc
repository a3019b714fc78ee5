#include "sidecar/network/listener.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "sidecar/event/log.h"

namespace connwarden::network {

namespace {
// Connections accepted per readiness event before yielding to the connections we serve.
constexpr int kMaxAcceptsPerEvent = 64;
// Out of descriptors or memory: stop accepting for this long instead of spinning on a
// listening socket that stays readable (the nginx way).
constexpr std::chrono::milliseconds kAcceptRetryDelay{500};
}  // namespace

absl::StatusOr<int> Listener::bindSocket(const Address& address, int backlog) {
  const int fd = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket(): ", std::strerror(errno)));
  }
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (::bind(fd, address.sockaddr_ptr(), address.length()) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot bind ", address.toString(), ": ", std::strerror(err)));
  }
  if (::listen(fd, backlog) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address.toString(), ": ", std::strerror(err)));
  }
  return fd;
}

Listener::Listener(event::Dispatcher& dispatcher, int listen_fd, ListenerShared& shared,
                   ListenerCallbacks& callbacks)
    : dispatcher_(dispatcher), fd_(listen_fd), shared_(shared), callbacks_(callbacks) {
  file_event_ = dispatcher_.createFileEvent(fd_, [this](uint32_t) { onAcceptReady(); });
  file_event_->setEnabled(event::FileReadyType::kRead);
  retry_timer_ = dispatcher_.createTimer(
      [this] { file_event_->setEnabled(event::FileReadyType::kRead); });
}

Listener::~Listener() { stop(); }

void Listener::stop() {
  if (fd_ < 0) return;
  file_event_->setEnabled(0);
  retry_timer_->disable();
  ::close(fd_);
  fd_ = -1;
}

void Listener::onAcceptReady() {
  for (int i = 0; i < kMaxAcceptsPerEvent && fd_ >= 0; ++i) {
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      switch (errno) {
        case EAGAIN:
          return;
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
          continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
          shared_.accept_errors.fetch_add(1, std::memory_order_relaxed);
          CW_LOG(kWarn, "listener %s: accept: %s; not accepting for %d ms",
                 shared_.config.name, std::strerror(errno), kAcceptRetryDelay.count());
          file_event_->setEnabled(0);
          retry_timer_->enable(kAcceptRetryDelay);
          return;
        default:
          shared_.accept_errors.fetch_add(1, std::memory_order_relaxed);
          CW_LOG(kError, "listener %s: accept: %s", shared_.config.name, std::strerror(errno));
          return;
      }
    }
    const uint32_t limit = shared_.config.max_connections;
    const uint32_t open = shared_.open_connections.fetch_add(1, std::memory_order_relaxed);
    if (limit != 0 && open >= limit) {
      shared_.open_connections.fetch_sub(1, std::memory_order_relaxed);
      shared_.overload_rejections.fetch_add(1, std::memory_order_relaxed);
      const linger abortive{1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive));
      ::close(fd);
      continue;
    }
    callbacks_.onAccept(fd);
  }
}

}  // namespace connwarden::network
