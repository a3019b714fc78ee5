// How bytes move between a socket and a Connection's buffers: raw TCP, or TLS on OpenSSL.
// The Connection owns its TransportSocket and calls it on its dispatcher's thread only.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sidecar/network/buffer.h"

namespace connwarden::network {

enum class PostIoAction { kKeepOpen, kClose };

struct IoResult {
  PostIoAction action = PostIoAction::kKeepOpen;
  // Application bytes: read into the buffer, or taken from it to be sent (TLS: encrypted).
  uint64_t bytes = 0;
  // Writes: bytes the socket took (TLS: of its records), the progress a slow reader makes.
  uint64_t sent = 0;
  // The peer finished sending (TCP FIN, or TLS close_notify).
  bool end_stream = false;
  // The close was a failure of the transport itself (reset, TLS alert), not a clean end.
  bool error = false;
};

// What a transport may ask of the connection that owns it.
class TransportSocketCallbacks {
 public:
  virtual ~TransportSocketCallbacks() = default;
  virtual int fd() const = 0;
  // The handshake (if any) completed: the connection is ready for application bytes.
  virtual void onTransportConnected() = 0;
  // Bytes are buffered inside the transport (decrypted TLS records) that the kernel will not
  // signal again: the connection must call doRead() again without waiting for the socket.
  virtual void setReadBufferReady() = 0;
};

struct TlsInfo {
  std::string version;  // "TLSv1.3"
  std::string alpn;     // "http/1.1", or empty
  std::string sni;      // server name the client asked for, or empty
};

// Every transport's socket I/O may be made by the worker's IoBatch (one system call for every
// connection's reads, and one for their sends, per loop pass): the batch reads into memory of its
// own and hands the bytes to completeBatchedRead(); it sends what prepareBatchedWrite() returns
// and reports to completeBatchedWrite(). doRead() and doWrite() use the socket directly, for a
// read that goes on past the batch's slot and for a send when the socket becomes writable again.
class TransportSocket {
 public:
  virtual ~TransportSocket() = default;

  virtual void setCallbacks(TransportSocketCallbacks& callbacks) = 0;
  // The socket is connected (server side: accepted). A raw transport is ready at once; TLS
  // starts its handshake and calls onTransportConnected() when it completes.
  virtual void onConnected() = 0;
  // Reads what is available into `buffer` (at most about `max_bytes`, so one busy connection
  // does not starve the others).
  virtual IoResult doRead(Buffer& buffer, uint64_t max_bytes) = 0;
  // Applies a batched read's outcome (`result` bytes at `data`, 0 at end of stream, or -errno)
  // to `buffer`, as doRead() would have.
  virtual IoResult completeBatchedRead(Buffer& buffer, const char* data, ssize_t result) = 0;
  // Writes as much of `buffer` as the socket takes, draining what was written. With
  // `end_stream` and the buffer fully written, the transport ends its direction (TLS
  // close_notify); the Connection then shuts down the socket's write side.
  virtual IoResult doWrite(Buffer& buffer, bool end_stream) = 0;
  // What a batched send of `buffer` sends: `buffer` itself, or (TLS) the records it was
  // encrypted into. Calls no one back. The outcome goes to completeBatchedWrite().
  virtual Buffer& prepareBatchedWrite(Buffer& buffer, bool end_stream) = 0;
  // Applies a batched send's outcome (bytes sent, or -errno), as doWrite() would have.
  virtual IoResult completeBatchedWrite(Buffer& buffer, ssize_t result) = 0;
  // Bytes the transport made for the socket and has not sent: TLS records (handshake messages,
  // session tickets, encrypted output, close_notify).
  virtual uint64_t bytesToSend() const { return 0; }
  // Frees what the transport holds only while data moves (TLS record buffers); it is
  // allocated again on the next read or write.
  virtual void releaseBuffers() {}
  virtual bool isTls() const { return false; }
  virtual TlsInfo tlsInfo() const { return {}; }
  // A short description of the last transport failure, for logs.
  virtual std::string failureReason() const { return {}; }

 protected:
  // Socket calls both transports make. Each records a failure in `failure`.
  // Sends `buffer` until the socket takes no more, draining what it took.
  static IoResult sendFrom(int fd, Buffer& buffer, std::string& failure);
  // A send's outcome (bytes sent, or -errno) applied to the buffer it was sent from.
  static IoResult applySend(Buffer& buffer, ssize_t result, std::string& failure);
};

using TransportSocketPtr = std::unique_ptr<TransportSocket>;

// Plain TCP with recv/send.
class RawTransportSocket : public TransportSocket {
 public:
  void setCallbacks(TransportSocketCallbacks& callbacks) override { callbacks_ = &callbacks; }
  void onConnected() override { callbacks_->onTransportConnected(); }
  IoResult doRead(Buffer& buffer, uint64_t max_bytes) override;
  IoResult completeBatchedRead(Buffer& buffer, const char* data, ssize_t result) override;
  IoResult doWrite(Buffer& buffer, bool) override {
    return sendFrom(callbacks_->fd(), buffer, failure_);
  }
  Buffer& prepareBatchedWrite(Buffer& buffer, bool) override { return buffer; }
  IoResult completeBatchedWrite(Buffer& buffer, ssize_t result) override {
    return applySend(buffer, result, failure_);
  }
  std::string failureReason() const override { return failure_; }

 private:
  TransportSocketCallbacks* callbacks_ = nullptr;
  std::string failure_;
};

}  // namespace connwarden::network
