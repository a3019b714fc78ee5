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
  uint64_t bytes = 0;
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
  // Writes as much of `buffer` as the socket takes, draining what was written. With
  // `end_stream` and the buffer fully written, the transport ends its direction (TLS
  // close_notify); the Connection then shuts down the socket's write side.
  virtual IoResult doWrite(Buffer& buffer, bool end_stream) = 0;
  // True while the transport itself needs the socket to become writable (TLS handshake).
  virtual bool wantsWrite() const { return false; }
  // Bytes go between the socket and the buffers as they are, so the Connection may have its
  // worker's IoBatch do the reads and sends (one system call for every connection's reads, and
  // one for their sends, per loop pass) and give the outcomes back through the two calls below.
  virtual bool batchesIo() const { return false; }
  // Applies a batched read's outcome (`result` bytes at `data`, 0 at end of stream, or -errno)
  // to `buffer`, as doRead() would have. Only if batchesIo().
  virtual IoResult completeBatchedRead(Buffer& buffer, const char* data, ssize_t result);
  // Applies a batched send's outcome (bytes sent, or -errno) to `buffer`, as doWrite() would
  // have. Only if batchesIo().
  virtual IoResult completeBatchedWrite(Buffer& buffer, ssize_t result);
  // Frees what the transport holds only while data moves (TLS record buffers); it is
  // allocated again on the next read or write.
  virtual void releaseBuffers() {}
  virtual bool isTls() const { return false; }
  virtual TlsInfo tlsInfo() const { return {}; }
  // A short description of the last transport failure, for logs.
  virtual std::string failureReason() const { return {}; }
};

using TransportSocketPtr = std::unique_ptr<TransportSocket>;

// Plain TCP with recv/send.
class RawTransportSocket : public TransportSocket {
 public:
  void setCallbacks(TransportSocketCallbacks& callbacks) override { callbacks_ = &callbacks; }
  void onConnected() override { callbacks_->onTransportConnected(); }
  IoResult doRead(Buffer& buffer, uint64_t max_bytes) override;
  IoResult doWrite(Buffer& buffer, bool end_stream) override;
  bool batchesIo() const override { return true; }
  IoResult completeBatchedRead(Buffer& buffer, const char* data, ssize_t result) override;
  IoResult completeBatchedWrite(Buffer& buffer, ssize_t result) override;
  std::string failureReason() const override { return failure_; }

 private:
  TransportSocketCallbacks* callbacks_ = nullptr;
  std::string failure_;
};

}  // namespace connwarden::network
