#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "sidecar/network/transport_socket.h"

namespace connwarden::network {

namespace {
// One read syscall per readiness event: a 16 KiB slice is enough for a request head and keeps
// an idle connection's buffer small; bigger bodies take several events (level-triggered).
constexpr uint64_t kReadSlice = 16 * 1024;
}  // namespace

IoResult RawTransportSocket::doRead(Buffer& buffer, uint64_t max_bytes) {
  IoResult result;
  while (result.bytes < max_bytes) {
    iovec slices[2];
    const int n = buffer.reserve(kReadSlice, slices, 2);
    size_t reserved = 0;
    for (int i = 0; i < n; ++i) reserved += slices[i].iov_len;
    ssize_t rc;
    do {
      rc = ::readv(callbacks_->fd(), slices, n);
    } while (rc < 0 && errno == EINTR);
    if (rc > 0) {
      buffer.commit(slices, n, static_cast<size_t>(rc));
      result.bytes += rc;
      // A short read means the socket is empty: save the syscall that would say EAGAIN.
      if (static_cast<size_t>(rc) < reserved) break;
      continue;
    }
    buffer.commit(slices, n, 0);
    if (rc == 0) {
      result.end_stream = true;
    } else if (errno != EAGAIN) {
      failure_ = std::strerror(errno);
      result.action = PostIoAction::kClose;
      result.error = true;
    }
    break;
  }
  return result;
}

IoResult RawTransportSocket::doWrite(Buffer& buffer, bool end_stream) {
  IoResult result;
  while (!buffer.empty()) {
    iovec slices[16];
    const int n = buffer.peek(slices, 16);
    msghdr msg{};
    msg.msg_iov = slices;
    msg.msg_iovlen = n;
    ssize_t rc;
    do {
      rc = ::sendmsg(callbacks_->fd(), &msg, MSG_NOSIGNAL);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) {
      if (errno != EAGAIN) {
        failure_ = std::strerror(errno);
        result.action = PostIoAction::kClose;
        result.error = true;
      }
      break;
    }
    buffer.drain(static_cast<size_t>(rc));
    result.bytes += rc;
  }
  return result;
}

}  // namespace connwarden::network
