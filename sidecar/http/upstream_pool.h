// Connections from one worker to one application cluster, kept alive between requests.
//
//   acquire() ──▶ idle connection (reused)  or  a new connect (bounded by connect_timeout)
//        │
//        ▼  one request/response at a time, then
//   release() ──▶ back to the idle list (if the response was complete, keep-alive, no error,
//                 and fewer than max_idle_connections are idle)  or  closed
//
// An idle connection that the application closes, or that receives bytes nobody asked for, is
// closed and forgotten; so is one idle longer than idle_timeout.
//
// With the cluster's max_connections, each worker opens at most its share of them (idle ones
// included). A request that finds none free waits in the worker's queue, first come first
// served, for a connection given back or a slot freed; past queue_timeout, or with the queue at
// its share of max_queued_requests, it fails (the client gets 503). Worker thread only.
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
  kConnectFailed,  // refused, unreachable, or no descriptor
  kConnectTimeout,
  kClosedBeforeResponse,
  kClosedMidResponse,
  kProtocolError,    // the application sent something that is not HTTP/1.1
  kResponseTimeout,  // no response head within the cluster's response_timeout
  kResponseIdle,     // the response body stalled for the cluster's response_idle_timeout
  kQueueFull,        // at max_connections, and the queue at max_queued_requests
  kQueueTimeout,     // at max_connections, and no connection free within queue_timeout
};
std::string_view upstreamFailureName(UpstreamFailure failure);

class UpstreamClient;

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
  // A queued request's turn: `client` is bound to these callbacks, as acquire() would return it.
  virtual void onUpstreamReady(UpstreamClient* client) = 0;

 protected:
  // In a pool's queue (acquire() said kQueued, and neither its turn nor its failure came yet).
  bool waitingForConnection() const { return queued_; }

 private:
  friend class UpstreamPool;
  // While queued: links in the pool's queue (intrusive: waiting allocates nothing).
  UpstreamCallbacks* queue_prev_ = nullptr;
  UpstreamCallbacks* queue_next_ = nullptr;
  event::MemoryAccount* queued_account_ = nullptr;
  event::MonotonicTime queued_at_{};
  bool queued_ = false;
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
  // `worker` of `workers`: this pool's share of the cluster's max_connections and
  // max_queued_requests (the totals split evenly; the first workers take the remainder).
  UpstreamPool(event::Dispatcher& dispatcher, const ClusterConfig& config, uint32_t worker = 0,
               uint32_t workers = 1);
  ~UpstreamPool();

  enum class Acquired { kConnection, kQueued, kQueueFull };
  // kConnection: `*client` is a connection bound to `callbacks`: an idle one when there is one,
  // otherwise a new one being connected (a connect that cannot even start fails through
  // onUpstreamFailure() from the event loop). Until release(), the connection's buffers are
  // charged to `account` (the client connection's); its own state stays the pool's.
  // kQueued: at this worker's share of max_connections; onUpstreamReady() comes with the
  // connection when it is this request's turn, or onUpstreamFailure(kQueueTimeout), from the
  // event loop, unless cancelWait() first. kQueueFull: the queue is full too; nothing follows.
  Acquired acquire(UpstreamCallbacks& callbacks, event::MemoryAccount* account,
                   UpstreamClient** client);
  // Takes a queued request out of the queue (nothing if it is not queued).
  void cancelWait(UpstreamCallbacks& callbacks);
  // Gives the connection back after its exchange (complete or not). The pool decides whether
  // to keep it; the caller must not touch it again.
  void release(UpstreamClient* client);

  const ClusterConfig& config() const { return config_; }
  size_t idleCount() const { return idle_count_; }
  size_t activeCount() const { return active_; }
  uint64_t connectFailures() const { return connect_failures_; }
  uint64_t connectsStarted() const { return connects_started_; }
  size_t queuedCount() const { return queued_; }
  uint64_t queueFull() const { return queue_full_; }
  uint64_t queueTimeouts() const { return queue_timeouts_; }
  // This worker's shares (0 connections: no limit).
  uint32_t maxConnections() const { return max_connections_; }
  uint32_t maxQueued() const { return max_queued_; }
  static uint32_t shareOf(uint32_t total, uint32_t worker, uint32_t workers) {
    return total / workers + (worker < total % workers ? 1 : 0);
  }
  // What the pool's connections hold while idle, and their parsers' state at all times.
  const event::MemoryAccount& memoryAccount() const { return *account_; }

 private:
  friend class UpstreamClient;
  void destroy(UpstreamClient* client);
  void pushIdle(UpstreamClient* client);
  void unlinkIdle(UpstreamClient* client);
  // An idle connection, or a new one, bound to `callbacks`.
  UpstreamClient* take(UpstreamCallbacks& callbacks, event::MemoryAccount* account);
  bool atLimit() const {
    return max_connections_ != 0 && active_ + idle_count_ >= max_connections_;
  }
  void enqueue(UpstreamCallbacks& callbacks, event::MemoryAccount* account);
  void unlinkQueued(UpstreamCallbacks& callbacks);
  // From the loop, after a connection was given back or closed: the queue's turn.
  void serveQueue();
  void onQueueTimer();
  void armQueueTimer();

  event::Dispatcher& dispatcher_;
  ClusterConfig config_;
  event::MemoryAccount* account_;
  UpstreamClient* idle_head_ = nullptr;  // most recently used first
  size_t idle_count_ = 0;
  size_t active_ = 0;
  size_t next_address_ = 0;
  uint64_t connect_failures_ = 0;
  uint64_t connects_started_ = 0;
  uint32_t max_connections_ = 0;
  uint32_t max_queued_ = 0;
  UpstreamCallbacks* queue_head_ = nullptr;  // oldest first
  UpstreamCallbacks* queue_tail_ = nullptr;
  size_t queued_ = 0;
  uint64_t queue_full_ = 0;
  uint64_t queue_timeouts_ = 0;
  std::unique_ptr<event::Timer> queue_timer_;  // the oldest request's queue_timeout
  std::unique_ptr<event::Timer> serve_timer_;  // 0 ms: serveQueue() from the loop
};

}  // namespace connwarden::http
