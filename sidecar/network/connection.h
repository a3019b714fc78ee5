// One TCP connection (accepted or outgoing) bound to one worker's dispatcher for life: its
// socket, transport (raw or TLS), read and write buffers, write watermarks and closing.
//
// Lifecycle:
//
//   connecting ──▶ open ──close(kFlushWrite)──▶ closing (flush, FIN, linger) ──▶ closed
//                    └───────close(kNoFlush / kAbort) or peer reset ───────────▶ closed
//
// Exactly one onEvent(kRemoteClose | kLocalClose) is raised, when the socket is closed. The owner
// then hands the Connection to Dispatcher::deferredDelete(); it must not be deleted inside its
// own callbacks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "sidecar/event/dispatcher.h"
#include "sidecar/event/memory_account.h"
#include "sidecar/network/address.h"
#include "sidecar/network/buffer.h"
#include "sidecar/network/close_reason.h"
#include "sidecar/network/transport_socket.h"

namespace connwarden::network {

enum class ConnectionEvent {
  kConnected,    // outgoing connect (and TLS handshake, if any) completed
  kRemoteClose,  // the socket closed because of the peer (EOF while closing, reset, error)
  kLocalClose,   // the socket closed because we closed it
};

// Called on the connection's dispatcher thread. The Connection stays valid during each call,
// even if the callback closes it.
class ConnectionCallbacks {
 public:
  virtual ~ConnectionCallbacks() = default;
  // Bytes arrived; `data` is the connection's read buffer: the callee drains what it consumes
  // and leaves the rest for the next call. `end_stream`: the peer will send nothing more.
  virtual void onData(Buffer& data, bool end_stream) = 0;
  virtual void onEvent(ConnectionEvent event) = 0;
  // The write buffer crossed the high watermark going up / the low watermark going down.
  virtual void onAboveWriteBufferHighWatermark() {}
  virtual void onBelowWriteBufferLowWatermark() {}
};

class Connection : public event::DeferredDeletable,
                   private TransportSocketCallbacks,
                   private event::IoBatch::Socket {
 public:
  enum class State { kConnecting, kOpen, kClosing, kClosed };
  enum class CloseType {
    kFlushWrite,  // send what is buffered, then FIN; discard input until the peer closes
    kNoFlush,     // close now, dropping buffered output
    kAbort,       // close now with a TCP reset (SO_LINGER 0)
  };

  // An accepted socket. Takes ownership of `fd` (non-blocking).
  Connection(event::Dispatcher& dispatcher, int fd, TransportSocketPtr transport);
  // A socket handed over by detachSocket() of an earlier Connection (a hibernated connection
  // waking up): open, its transport connected already. Takes ownership of `fd`.
  struct Resumed {};
  Connection(event::Dispatcher& dispatcher, int fd, TransportSocketPtr transport, Resumed);
  // Starts a non-blocking connect to `address`. Failure to even start (e.g. EMFILE) is reported
  // like a failed connect: onEvent(kRemoteClose) on the next loop iteration.
  static std::unique_ptr<Connection> connectTo(event::Dispatcher& dispatcher,
                                               const Address& address,
                                               TransportSocketPtr transport);
  ~Connection() override;

  // Must be set before the first loop iteration after construction.
  void setCallbacks(ConnectionCallbacks& callbacks) { callbacks_ = &callbacks; }

  // Moves all of `data` to the write buffer and schedules a flush. With `end_stream`, the
  // write side is shut down once the buffer is flushed (half-close).
  void write(Buffer& data, bool end_stream = false);
  // Counted: reading resumes when every disable has been matched by an enable.
  void readDisable(bool disable);
  bool readEnabled() const { return read_disable_count_ == 0; }
  void close(CloseType type, CloseReason reason);

  State state() const { return state_; }
  // The transport is ready for application bytes (TLS handshake done). An accepted raw
  // connection is ready from the start; kConnected is raised only when this changes later.
  bool transportConnected() const { return transport_connected_; }
  CloseReason closeReason() const { return close_reason_; }
  // While output is pending, the peer must take some of it at least this often, or the
  // connection is aborted with kWriteTimeout. 0 = no limit.
  void setWriteTimeout(std::chrono::milliseconds timeout);
  // Frees the read and write buffers (when empty), the transport's buffers, the write event
  // and unarmed spare timers, for an idle connection; they are made again on the next bytes
  // either way.
  void releaseBuffers();
  // Makes the read and write buffers' queues now, charged to the current account: for a
  // connection that keeps them for life (a pooled upstream connection, whose queues are the
  // pool's; otherwise each request would make and free them).
  void prepareBuffers();
  // Frees the write and closing timers when they are not armed (they were made, and charged,
  // for whoever's exchange needed them).
  void releaseSpareTimers();
  // Open, with nothing buffered on either side (nor inside the transport) and no read paused:
  // nothing would be lost if the socket changed hands now.
  bool quiet() const;
  // Hands the socket and its transport over, for a hibernated connection to sleep without a
  // Connection; requires quiet(). This Connection is closed afterwards, with no close event,
  // and leaves the socket alone.
  struct DetachedSocket {
    int fd = -1;
    TransportSocketPtr transport;
  };
  DetachedSocket detachSocket();
  // The write buffer's high watermark; the low one is half of it.
  void setBufferLimits(uint32_t high_watermark);
  // The most one read event takes from the socket, at least the batch's first slot: an owner
  // that relays into a buffer near its watermark reads less, so that the other side holds
  // little more than the watermark (not twice it). Default, and the most: 64 KiB.
  static constexpr uint64_t kMaxReadPerEvent = 64 * 1024;
  void setReadLimit(uint64_t bytes) { read_limit_ = std::min(bytes, kMaxReadPerEvent); }
  bool aboveHighWatermark() const { return above_high_watermark_; }

  Buffer& readBuffer() { return read_buffer_; }
  // Bytes waiting for the socket: the write buffer and what the transport made of it (TLS
  // records). The watermarks count these.
  size_t unsentBytes() const {
    return write_buffer_.length() + (transport_ != nullptr ? transport_->bytesToSend() : 0);
  }
  const Address& peerAddress() const { return peer_; }
  const Address& localAddress() const { return local_; }
  const TransportSocket& transport() const { return *transport_; }
  uint64_t bytesRead() const { return bytes_read_; }
  uint64_t bytesWritten() const { return bytes_written_; }
  event::Dispatcher& dispatcher() { return dispatcher_; }
  int fd() const override { return fd_; }

  // The account charged with what is allocated while this connection's events are handled
  // (null: nobody's). Not owned; the owner keeps it alive while it is set.
  void setMemoryAccount(event::MemoryAccount* account) { account_ = account; }
  event::MemoryAccount* memoryAccount() const { return account_; }

 private:
  enum class Start { kAccepted, kConnecting, kResumed };
  Connection(event::Dispatcher& dispatcher, int fd, TransportSocketPtr transport, Start start);
  void onFileEvent(uint32_t events);
  // What follows any read: closing on errors, end of stream, handing the bytes on.
  void afterRead(const IoResult& result);
  void onConnectReady();
  void flushWrite();
  // What follows any write: half-close, finishing a close, the write timer, interest, watermarks.
  void afterWrite(const IoResult& result);
  void updateInterest();
  void checkWatermarks();
  void updateWriteTimer(uint64_t progress);
  // Closes the socket now and raises the close event.
  void closeSocket(ConnectionEvent event);
  void finishClosing();

  // TransportSocketCallbacks
  void onTransportConnected() override;
  void setReadBufferReady() override;

  // event::IoBatch::Socket: the socket's reads and sends, at the end of the loop pass.
  bool prepareRecv(int* fd) override;
  void completeRecv(const char* data, ssize_t result) override;
  int prepareSend(event::IoBatch::Op& op) override;
  void completeSend(ssize_t result) override;

  event::Dispatcher& dispatcher_;
  int fd_;
  TransportSocketPtr transport_;
  event::FileEvent file_event_;
  std::unique_ptr<event::Timer> close_timer_;  // bounds the closing state
  std::unique_ptr<event::Timer> write_timer_;  // made when a write first has to wait
  std::chrono::milliseconds write_timeout_{0};
  ConnectionCallbacks* callbacks_ = nullptr;
  event::MemoryAccount* account_ = nullptr;
  Buffer read_buffer_;
  Buffer write_buffer_;
  Address peer_;
  Address local_;
  State state_;
  CloseReason close_reason_ = CloseReason::kNone;
  uint32_t read_disable_count_ = 0;
  uint32_t high_watermark_ = 64 * 1024;
  uint64_t read_limit_ = kMaxReadPerEvent;
  uint64_t bytes_read_ = 0;
  uint64_t bytes_written_ = 0;
  bool above_high_watermark_ = false;
  bool write_end_stream_ = false;   // shut down the write side once flushed
  bool write_shut_down_ = false;
  bool read_end_stream_ = false;    // the peer sent FIN
  bool transport_connected_ = false;
  bool read_pending_in_transport_ = false;
};

using ConnectionPtr = std::unique_ptr<Connection>;

}  // namespace connwarden::network
