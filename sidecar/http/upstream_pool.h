// Connections from one worker to one application cluster, kept alive between requests.
//
//   acquire() ──▶ idle connection (reused)  or  a new connect (bounded by connect_timeout)
//        │
//        ▼  one request/response at a time, then
//   release() ──▶ back to the idle list (if the response was complete, keep-alive, no error,
//                 and fewer than max_idle_connections are idle)  or  closed
//
// An idle connection that the application closes, or that receives bytes nobody asked for, is
// closed and forgotten; so is one idle longer than idle_timeout. Worker thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "sidecar/event/dispatcher.h"
#include "sidecar/http/http1_codec.h"
#include "sidecar/http/http_config.h"
#include "sidecar/network/connection.h"

namespace connwarden::http {

enum class UpstreamFailure {
  kConnectFailed,      // refused, unreachable, or no descriptor
  kConnectTimeout,
  kClosedBeforeResponse,
  kClosedMidResponse,
  kProtocolError,      // the application sent something that is not HTTP/1.1
  kResponseTimeout,    // no response head within the cluster's response_timeout
  kResponseIdle,       // the response body stalled for the cluster's response_idle_timeout
};
std::string_view upstreamFailureName(UpstreamFailure failure);

// The stream using an upstream connection. Called on the worker thread; the UpstreamClient stays
// valid during each call.
class UpstreamCallbacks : public ResponseDecoder {
 public:
  // The exchange failed; the client will not call again and must be released.
  virtual void onUpstreamFailure(UpstreamFailure failure) = 0;
  // Tunnel mode (after 101): bytes from the application, and its FIN.
  virtual void onUpstreamTunnelData(network::Buffer& data, bool end_stream) = 0;
  // The upstream write buffer crossed its watermarks: stop / resume reading the client.
  virtual void onUpstreamAboveWriteHighWatermark() = 0;
  virtual void onUpstreamBelowWriteLowWatermark() = 0;
};

class UpstreamPool;

class UpstreamClient : public event::DeferredDeletable, private network::ConnectionCallbacks {
 public:
  UpstreamClient(UpstreamPool& pool, network::ConnectionPtr connection);
  ~UpstreamClient() override;

  // Request side. Bytes are buffered while the connection is still being made.
  void encodeHeaders(const RequestHead& head);
  void encodeData(network::Buffer& data, bool end_stream);
  // The request is fully sent: the response head must come within the cluster's
  // response_timeout, or the exchange fails with kResponseTimeout.
  void startResponseTimeout();
  // After a 101: raw bytes to the application.
  void sendTunnelData(network::Buffer& data, bool end_stream);
  void setTunnel();

  // Reading the application's response pauses while the client's side is slow (and so does
  // the response idle timeout: the silence is ours).
  void readDisable(bool disable);
  bool reused() const { return requests_ > 1; }
  bool connected() const { return connected_; }
  network::Connection& connection() { return *connection_; }
  // Frees the empty buffers (and an unarmed write timer), for an idle tunnel. They are made
  // again on next use. (A pooled connection keeps its buffers' queues, the pool's: see
  // UpstreamPool::release.)
  void releaseBuffers() {
    connection_->releaseBuffers();
    scratch_.release();
  }

 private:
  friend class UpstreamPool;
  // network::ConnectionCallbacks
  void onData(network::Buffer& data, bool end_stream) override;
  void onEvent(network::ConnectionEvent event) override;
  void onAboveWriteBufferHighWatermark() override;
  void onBelowWriteBufferLowWatermark() override;
  void fail(UpstreamFailure failure);
  void onTimer();
  // After bytes of the response: the head's timeout ends with the head; then, while the body
  // comes and we read it, the idle timeout runs from the latest bytes.
  void updateResponseTimer();

  UpstreamPool& pool_;
  network::ConnectionPtr connection_;
  Http1ClientCodec codec_;
  UpstreamCallbacks* callbacks_ = nullptr;
  // One timer for the client's life: connect timeout while connecting, response timeout while
  // waiting for a response head, idle timeout while pooled. Re-arming it costs no allocation.
  std::unique_ptr<event::Timer> timer_;
  // Links in the pool's idle list (intrusive: pooling a connection allocates nothing).
  UpstreamClient* idle_prev_ = nullptr;
  UpstreamClient* idle_next_ = nullptr;
  network::Buffer scratch_;
  uint64_t requests_ = 0;
  bool connected_ = false;
  bool idle_ = false;
  bool awaiting_response_ = false;  // the response_timeout runs (until the response head)
  bool reads_paused_ = false;
  bool tunnel_ = false;
  bool closed_ = false;
};

class UpstreamPool {
 public:
  UpstreamPool(event::Dispatcher& dispatcher, const ClusterConfig& config);
  ~UpstreamPool();

  // Returns a connection bound to `callbacks`: an idle one when there is one, otherwise a new
  // one being connected. Never null: a connect that cannot even start fails through
  // onUpstreamFailure() from the event loop. Until release(), the connection's buffers are
  // charged to `account` (the client connection's); its own state stays the pool's.
  UpstreamClient* acquire(UpstreamCallbacks& callbacks, event::MemoryAccount* account);
  // Gives the connection back after its exchange (complete or not). The pool decides whether
  // to keep it; the caller must not touch it again.
  void release(UpstreamClient* client);

  const ClusterConfig& config() const { return config_; }
  size_t idleCount() const { return idle_count_; }
  size_t activeCount() const { return active_; }
  uint64_t connectFailures() const { return connect_failures_; }
  uint64_t connectsStarted() const { return connects_started_; }
  // What the pool's connections hold while idle, and their parsers' state at all times.
  const event::MemoryAccount& memoryAccount() const { return *account_; }

 private:
  friend class UpstreamClient;
  void destroy(UpstreamClient* client);
  void pushIdle(UpstreamClient* client);
  void unlinkIdle(UpstreamClient* client);

  event::Dispatcher& dispatcher_;
  ClusterConfig config_;
  event::MemoryAccount* account_;
  UpstreamClient* idle_head_ = nullptr;  // most recently used first
  size_t idle_count_ = 0;
  size_t active_ = 0;
  size_t next_address_ = 0;
  uint64_t connect_failures_ = 0;
  uint64_t connects_started_ = 0;
};

}  // namespace connwarden::http
