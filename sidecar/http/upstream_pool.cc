#include "sidecar/http/upstream_pool.h"

#include <algorithm>

#include "sidecar/event/log.h"

namespace connwarden::http {

std::string_view upstreamFailureName(UpstreamFailure failure) {
  switch (failure) {
    case UpstreamFailure::kConnectFailed: return "connect_failed";
    case UpstreamFailure::kConnectTimeout: return "connect_timeout";
    case UpstreamFailure::kClosedBeforeResponse: return "closed_before_response";
    case UpstreamFailure::kClosedMidResponse: return "closed_mid_response";
    case UpstreamFailure::kProtocolError: return "protocol_error";
    case UpstreamFailure::kResponseTimeout: return "response_timeout";
    case UpstreamFailure::kResponseIdle: return "response_idle_timeout";
    case UpstreamFailure::kQueueFull: return "queue_full";
    case UpstreamFailure::kQueueTimeout: return "queue_timeout";
  }
  return "unknown";
}

// --- UpstreamClient -----------------------------------------------------------------------------

UpstreamClient::UpstreamClient(UpstreamPool& pool, network::ConnectionPtr connection)
    : pool_(pool), connection_(std::move(connection)) {
  connection_->setCallbacks(*this);
  // Made once, under the pool's account (the caller's scope), and kept while the connection
  // lives: making and freeing three queues per request was a tenth of a request's allocations.
  connection_->prepareBuffers();
  scratch_.prepare();
  timer_ = pool_.dispatcher_.createTimer([this] { onTimer(); });
}

void UpstreamClient::onTimer() {
  if (idle_) {
    pool_.destroy(this);
  } else if (!connected_) {
    ++pool_.connect_failures_;
    fail(UpstreamFailure::kConnectTimeout);
  } else if (awaiting_response_) {
    fail(UpstreamFailure::kResponseTimeout);
  } else if (callbacks_ != nullptr && !tunnel_ && codec_.responseHeadComplete() &&
             !codec_.responseComplete()) {
    fail(UpstreamFailure::kResponseIdle);
  }
}

void UpstreamClient::updateResponseTimer() {
  if (callbacks_ == nullptr || closed_ || tunnel_ || !connected_) return;
  if (!codec_.responseHeadComplete()) return;  // the head's timeout, if any, keeps running
  awaiting_response_ = false;
  const auto timeout = pool_.config_.response_idle_timeout;
  if (timeout.count() > 0 && !reads_paused_ && !codec_.responseComplete()) {
    timer_->enable(timeout);
  } else {
    timer_->disable();
  }
}

void UpstreamClient::readDisable(bool disable) {
  connection_->readDisable(disable);
  reads_paused_ = disable;
  updateResponseTimer();
}

void UpstreamClient::startResponseTimeout() {
  const auto timeout = pool_.config_.response_timeout;
  // A response whose head came early (before the request's end) is timed as a body from then.
  if (timeout.count() <= 0 || codec_.responseHeadComplete()) return;
  awaiting_response_ = true;
  // While still connecting, the connect timeout runs; the response timeout starts on connect.
  if (connected_) timer_->enable(timeout);
}

UpstreamClient::~UpstreamClient() {
  if (connection_->state() != network::Connection::State::kClosed) {
    closed_ = true;
    connection_->close(network::Connection::CloseType::kNoFlush, network::CloseReason::kShutdown);
  }
}

void UpstreamClient::encodeHeaders(const RequestHead& head) {
  ++requests_;
  codec_.encodeHeaders(head, *callbacks_, scratch_);
  connection_->write(scratch_);
}

void UpstreamClient::encodeData(network::Buffer& data, bool end_stream) {
  codec_.encodeData(data, end_stream, scratch_);
  connection_->write(scratch_);
}

void UpstreamClient::setTunnel() {
  tunnel_ = true;
  awaiting_response_ = false;
  timer_->disable();  // the session's tunnel idle timeout governs from here
}

void UpstreamClient::sendTunnelData(network::Buffer& data, bool end_stream) {
  connection_->write(data, end_stream);
}

void UpstreamClient::onData(network::Buffer& data, bool end_stream) {
  if (idle_ || callbacks_ == nullptr) {
    // Bytes nobody asked for, or a FIN: this connection can carry no further request.
    data.drain(data.length());
    pool_.destroy(this);
    return;
  }
  if (tunnel_) {
    callbacks_->onUpstreamTunnelData(data, end_stream);
    return;
  }
  const bool got_bytes = !data.empty();
  bool parsed;
  {
    // Parser state outlives the exchange: it is the pool's. The stream's callbacks switch back
    // to the client connection's account.
    event::MemoryAccount::Scope scope(pool_.account_);
    parsed = codec_.dispatch(data);
  }
  if (!parsed) {
    CW_LOG(kWarn, "upstream %s: %s", connection_->peerAddress().toString(), codec_.error());
    fail(UpstreamFailure::kProtocolError);
    return;
  }
  if (tunnel_ && callbacks_ != nullptr && (!data.empty() || end_stream)) {
    // The 101 just turned this into a tunnel: what followed it in the same read is tunnel
    // data (the application may speak first).
    callbacks_->onUpstreamTunnelData(data, end_stream);
    return;
  }
  if (end_stream && callbacks_ != nullptr && !codec_.responseComplete()) {
    const bool started = codec_.responseStarted();
    if (!codec_.onConnectionClosed()) {
      fail(started ? UpstreamFailure::kClosedMidResponse : UpstreamFailure::kClosedBeforeResponse);
      return;
    }
  }
  if (got_bytes) updateResponseTimer();
}

void UpstreamClient::onEvent(network::ConnectionEvent event) {
  if (event == network::ConnectionEvent::kConnected) {
    connected_ = true;
    if (awaiting_response_) {
      timer_->enable(pool_.config_.response_timeout);
    } else {
      timer_->disable();
    }
    return;
  }
  if (closed_) return;
  closed_ = true;
  if (idle_) {
    pool_.destroy(this);
    return;
  }
  if (callbacks_ == nullptr) return;
  if (!connected_) {
    ++pool_.connect_failures_;
    fail(UpstreamFailure::kConnectFailed);
    return;
  }
  if (tunnel_) {
    network::Buffer empty;
    callbacks_->onUpstreamTunnelData(empty, true);
    return;
  }
  if (!codec_.responseComplete()) {
    const bool started = codec_.responseStarted();
    if (!codec_.onConnectionClosed()) {
      fail(started ? UpstreamFailure::kClosedMidResponse : UpstreamFailure::kClosedBeforeResponse);
    }
  }
}

void UpstreamClient::onAboveWriteBufferHighWatermark() {
  if (callbacks_ != nullptr) callbacks_->onUpstreamAboveWriteHighWatermark();
}

void UpstreamClient::onBelowWriteBufferLowWatermark() {
  if (callbacks_ != nullptr) callbacks_->onUpstreamBelowWriteLowWatermark();
}

void UpstreamClient::fail(UpstreamFailure failure) {
  UpstreamCallbacks* callbacks = callbacks_;
  callbacks_ = nullptr;
  awaiting_response_ = false;
  codec_.reset();
  timer_->disable();
  if (!closed_) {
    closed_ = true;
    connection_->close(network::Connection::CloseType::kNoFlush,
                       network::CloseReason::kUpstreamError);
  }
  if (callbacks != nullptr) callbacks->onUpstreamFailure(failure);
}

// --- UpstreamPool -------------------------------------------------------------------------------

UpstreamPool::UpstreamPool(event::Dispatcher& dispatcher, const ClusterConfig& config,
                           uint32_t worker, uint32_t workers)
    : dispatcher_(dispatcher),
      config_(config),
      account_(event::MemoryAccount::create()),
      max_connections_(shareOf(config.max_connections, worker, workers)),
      max_queued_(shareOf(config.max_queued_requests, worker, workers)) {
  if (config_.max_connections != 0) {
    event::MemoryAccount::Scope scope(account_);
    queue_timer_ = dispatcher_.createTimer([this] { onQueueTimer(); });
    serve_timer_ = dispatcher_.createTimer([this] { serveQueue(); });
  }
}

UpstreamPool::~UpstreamPool() {
  // Streams release their connections and leave the queue before the pool goes; what is left
  // is idle.
  CW_ASSERT(queue_head_ == nullptr);
  while (idle_head_ != nullptr) {
    UpstreamClient* client = idle_head_;
    unlinkIdle(client);
    delete client;
  }
  account_->retire();
}

UpstreamPool::Acquired UpstreamPool::acquire(UpstreamCallbacks& callbacks,
                                             event::MemoryAccount* account,
                                             UpstreamClient** client) {
  CW_ASSERT(dispatcher_.isThreadSafe());
  CW_ASSERT(!callbacks.queued_);
  *client = nullptr;
  // First come, first served: while anyone waits, newcomers wait behind them.
  if (queue_head_ == nullptr && (idle_head_ != nullptr || !atLimit())) {
    *client = take(callbacks, account);
    return Acquired::kConnection;
  }
  if (queued_ >= max_queued_) {
    ++queue_full_;
    return Acquired::kQueueFull;
  }
  enqueue(callbacks, account);
  return Acquired::kQueued;
}

UpstreamClient* UpstreamPool::take(UpstreamCallbacks& callbacks, event::MemoryAccount* account) {
  ++active_;
  UpstreamClient* client;
  if (idle_head_ != nullptr) {
    client = idle_head_;
    unlinkIdle(client);
    client->timer_->disable();
  } else {
    ++connects_started_;
    const network::Address& address =
        config_.addresses[next_address_++ % config_.addresses.size()];
    event::MemoryAccount::Scope scope(account_);
    client = new UpstreamClient(
        *this, network::Connection::connectTo(dispatcher_, address,
                                              std::make_unique<network::RawTransportSocket>()));
    client->timer_->enable(config_.connect_timeout);
  }
  client->callbacks_ = &callbacks;
  client->connection_->setMemoryAccount(account);
  return client;
}

void UpstreamPool::enqueue(UpstreamCallbacks& callbacks, event::MemoryAccount* account) {
  callbacks.queued_ = true;
  callbacks.queued_account_ = account;
  callbacks.queued_at_ = dispatcher_.now();
  callbacks.queue_next_ = nullptr;
  callbacks.queue_prev_ = queue_tail_;
  if (queue_tail_ != nullptr) {
    queue_tail_->queue_next_ = &callbacks;
  } else {
    queue_head_ = &callbacks;
  }
  queue_tail_ = &callbacks;
  ++queued_;
  if (queue_head_ == &callbacks) armQueueTimer();
}

void UpstreamPool::unlinkQueued(UpstreamCallbacks& callbacks) {
  CW_ASSERT(callbacks.queued_);
  if (callbacks.queue_prev_ != nullptr) {
    callbacks.queue_prev_->queue_next_ = callbacks.queue_next_;
  } else {
    queue_head_ = callbacks.queue_next_;
  }
  if (callbacks.queue_next_ != nullptr) {
    callbacks.queue_next_->queue_prev_ = callbacks.queue_prev_;
  } else {
    queue_tail_ = callbacks.queue_prev_;
  }
  callbacks.queue_prev_ = callbacks.queue_next_ = nullptr;
  callbacks.queued_account_ = nullptr;
  callbacks.queued_ = false;
  --queued_;
}

void UpstreamPool::cancelWait(UpstreamCallbacks& callbacks) {
  if (!callbacks.queued_) return;
  const bool was_head = queue_head_ == &callbacks;
  unlinkQueued(callbacks);
  if (was_head) armQueueTimer();
}

void UpstreamPool::serveQueue() {
  while (queue_head_ != nullptr && (idle_head_ != nullptr || !atLimit())) {
    UpstreamCallbacks& next = *queue_head_;
    event::MemoryAccount* account = next.queued_account_;
    unlinkQueued(next);
    next.onUpstreamReady(take(next, account));
  }
  armQueueTimer();
}

void UpstreamPool::onQueueTimer() {
  const event::MonotonicTime now = dispatcher_.now();
  while (queue_head_ != nullptr && queue_head_->queued_at_ + config_.queue_timeout <= now) {
    UpstreamCallbacks& expired = *queue_head_;
    unlinkQueued(expired);
    ++queue_timeouts_;
    expired.onUpstreamFailure(UpstreamFailure::kQueueTimeout);
  }
  armQueueTimer();
}

void UpstreamPool::armQueueTimer() {
  if (queue_head_ == nullptr) {
    queue_timer_->disable();
    return;
  }
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
      dispatcher_.now() - queue_head_->queued_at_);
  queue_timer_->enable(std::max(config_.queue_timeout - waited, std::chrono::milliseconds(0)));
}

void UpstreamPool::release(UpstreamClient* client) {
  CW_ASSERT(active_ > 0);
  --active_;
  client->connection_->setMemoryAccount(account_);
  client->connection_->setReadLimit(network::Connection::kMaxReadPerEvent);
  client->callbacks_ = nullptr;
  client->awaiting_response_ = false;
  client->reads_paused_ = false;
  if (client->closed_ || client->tunnel_ || !client->codec_.reusable() ||
      idle_count_ >= config_.max_idle_connections || !client->connection_->readBuffer().empty() ||
      client->connection_->unsentBytes() > 0 || !client->scratch_.empty()) {
    destroy(client);
    return;
  }
  // Its queues and write event are the pool's and empty (their bytes were charged to the
  // client connection, and are gone); a write timer made during the exchange was the client's
  // and goes, so that nothing stays on that client's account.
  client->connection_->releaseSpareTimers();
  pushIdle(client);
  if (config_.idle_timeout.count() > 0) {
    client->timer_->enable(config_.idle_timeout);
  }
  if (queue_head_ != nullptr) serve_timer_->enable(std::chrono::milliseconds(0));
}

void UpstreamPool::pushIdle(UpstreamClient* client) {
  client->idle_ = true;
  client->idle_prev_ = nullptr;
  client->idle_next_ = idle_head_;
  if (idle_head_ != nullptr) idle_head_->idle_prev_ = client;
  idle_head_ = client;
  ++idle_count_;
}

void UpstreamPool::unlinkIdle(UpstreamClient* client) {
  CW_ASSERT(client->idle_);
  if (client->idle_prev_ != nullptr) client->idle_prev_->idle_next_ = client->idle_next_;
  if (client->idle_next_ != nullptr) client->idle_next_->idle_prev_ = client->idle_prev_;
  if (idle_head_ == client) idle_head_ = client->idle_next_;
  client->idle_prev_ = client->idle_next_ = nullptr;
  client->idle_ = false;
  --idle_count_;
}

void UpstreamPool::destroy(UpstreamClient* client) {
  if (client->idle_) unlinkIdle(client);
  if (!client->closed_) {
    client->closed_ = true;
    client->connection_->close(network::Connection::CloseType::kNoFlush,
                               network::CloseReason::kIdleTimeout);
  }
  client->timer_->disable();
  client->callbacks_ = nullptr;
  dispatcher_.deferredDelete(std::unique_ptr<event::DeferredDeletable>(client));
  // A slot is free: the queue's turn (from the loop, not inside whoever gave it back).
  if (queue_head_ != nullptr) serve_timer_->enable(std::chrono::milliseconds(0));
}

}  // namespace connwarden::http
