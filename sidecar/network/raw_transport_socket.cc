#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "sidecar/event/dispatcher.h"
#include "sidecar/network/transport_socket.h"

namespace connwarden::network {

IoResult RawTransportSocket::doRead(Buffer& buffer, uint64_t max_bytes) {
  IoResult result;
  while (result.bytes < max_bytes) {
    // Up to 16 KiB per read(2) (Buffer::kReadSlice): enough for a request head; bigger bodies
    // take several, up to max_bytes.
    iovec slices[2];
    const int n =
        buffer.reserve(std::min<uint64_t>(Buffer::kReadSlice, max_bytes - result.bytes), slices, 2);
    size_t reserved = 0;
    for (int i = 0; i < n; ++i) reserved += slices[i].iov_len;
    ssize_t rc;
    do {
      rc = n == 1 ? ::recv(callbacks_->fd(), slices[0].iov_base, slices[0].iov_len, 0)
                  : ::readv(callbacks_->fd(), slices, n);
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

IoResult TransportSocket::sendFrom(int fd, Buffer& buffer, std::string& failure) {
  IoResult result;
  while (!buffer.empty()) {
    iovec slices[16];
    const int n = buffer.peek(slices, 16);
    msghdr msg{};
    msg.msg_iov = slices;
    msg.msg_iovlen = n;
    ssize_t rc;
    do {
      // A single slice (a head and its small body share one): send(2) spares the kernel the
      // msghdr and iovec copies.
      rc = n == 1 ? ::send(fd, slices[0].iov_base, slices[0].iov_len, MSG_NOSIGNAL)
                  : ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (rc < 0 && errno == EINTR);
    const IoResult one = applySend(buffer, rc < 0 ? -errno : rc, failure);
    result.bytes += one.bytes;
    result.sent += one.sent;
    if (rc <= 0 || one.action == PostIoAction::kClose) {
      result.action = one.action;
      result.error = one.error;
      break;
    }
  }
  return result;
}

IoResult TransportSocket::applySend(Buffer& buffer, ssize_t result, std::string& failure) {
  IoResult out;
  if (result >= 0) {
    buffer.drain(static_cast<size_t>(result));
    out.bytes = out.sent = static_cast<uint64_t>(result);
  } else if (result != -EAGAIN) {
    failure = std::strerror(static_cast<int>(-result));
    out.action = PostIoAction::kClose;
    out.error = true;
  }
  return out;
}

IoResult RawTransportSocket::completeBatchedRead(Buffer& buffer, const char* data,
                                                 ssize_t result) {
  IoResult out;
  if (result > 0) {
    buffer.add(data, static_cast<size_t>(result));
    out.bytes = static_cast<uint64_t>(result);
  } else if (result == 0) {
    out.end_stream = true;
  } else if (result != -EAGAIN) {
    failure_ = std::strerror(static_cast<int>(-result));
    out.action = PostIoAction::kClose;
    out.error = true;
  }
  return out;
}

}  // namespace connwarden::network
